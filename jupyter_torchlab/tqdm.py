"""A one-line swap for tqdm: ``from jupyter_torchlab.tqdm import tqdm, trange``.

``tqdm`` is :class:`jupyter_torchlab.widgets.progress.Progress` (also ``tl.progress``), a subclass
of tqdm.auto's class outside a notebook (``tqdm.asyncio.tqdm_asyncio``) that changes only the
display: a rate-budgeted widget in a notebook, tqdm's own text elsewhere, and tensors given to
``set_postfix`` or ``log`` read only when the bar is redrawn, so the loop never waits for the GPU.
The first bar made in a kernel sets up the kernel side as a ``tl.*`` name does (the out-of-memory
note, each cell's GPU peak for the server, the memory guard's note).
"""

from __future__ import annotations

from .widgets.progress import Progress as tqdm
from .widgets.progress import trange

__all__ = ["tqdm", "trange"]
