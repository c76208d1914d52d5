"""Evaluation, benchmarks and measurements: ``ella-v evaluate`` (WER/CER/SIM/INF/EMPTY/CUT/RTF with
offline judges), ``ella-v bench`` (speed against a stock Llama), evaluation sets, and the
measurement scripts of the codec, aligner and NAR.

Installed as ``ella_v_hf.evaluation``.
"""
