"""Training: Accelerate trainer, Trainer-compatible collators, configs, evaluation and benchmarks.

Installed as ``ella_v_hf.training``. Its components land with the training issue.
"""
