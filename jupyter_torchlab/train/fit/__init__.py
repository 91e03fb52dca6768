"""fit, evaluate, History and checkpoints: the training loop, one concept per module.

Import from the modules (``.loop``, ``.evaluate``, ``.history``, ``.checkpoint``); this package
imports nothing itself, so reading :mod:`.history` does not load torch.
"""
