"""A one-line swap for tqdm: ``from jupyter_torchlab.tqdm import tqdm, trange``.

``tqdm`` is :class:`jupyter_torchlab.widgets.progress.Progress` (also ``tl.progress``): it takes
tqdm's parameters and methods, draws a widget in a notebook and tqdm-style text elsewhere, and
keeps tensors given to ``set_postfix`` as tensors until a refresh, so the loop never waits for
the GPU. See that module for what is honoured and what is accepted and ignored.
"""

from __future__ import annotations

from .widgets.progress import Progress as tqdm
from .widgets.progress import trange

__all__ = ["tqdm", "trange"]
