"""fit, evaluate and checkpoints: the training loop, one concept per module.

Import from the modules (``.loop``, ``.evaluate``, ``.checkpoint``, ...); this package imports
nothing itself. ``.distributed`` is what fit does differently under torchrun.
"""
