"""Text and audio <-> tokens: phoneme tokenizer, codecs, aligners, EllaVProcessor, dataset preparation.

Installed as ``ella_v_hf.processing``. Its components land with the processing issue.
"""
