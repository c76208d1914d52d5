"""How weights are made: the Accelerate trainer (GAR/NAR), the codec trainer, Trainer-compatible
collators, checkpoint assembly, recipes and configs.

Installed as ``ella_v_hf.training``.
"""
