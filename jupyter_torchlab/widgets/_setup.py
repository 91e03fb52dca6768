"""The kernel-side setup: fit's default display and the IPython hooks, once per process.

The package root runs it at the first use of a public name and at ``%load_ext
jupyter_torchlab``; a ``tl.progress`` bar runs it the first time one is made in a kernel, so the
drop-in (``from jupyter_torchlab.tqdm import tqdm``, which uses no ``tl.*`` name) gets the same
hooks. Importing this module does nothing.
"""

from __future__ import annotations

from ._frontend import in_kernel

__all__ = ["set_up", "set_up_in_kernel"]

_done = False


def set_up() -> None:
    """Set fit's default display and register the IPython hooks (once; hooks in a kernel only)."""
    global _done
    if _done:
        return
    _done = True
    from ..train.display import set_default_display
    from . import _cell, _cell_cost, oom_display
    from .fit_display import notebook_display
    from .memory_guard_note import install as guard_note

    set_default_display(notebook_display)
    oom_display.install()  # in a kernel: an out-of-memory error is explained below its traceback
    _cell.hook_shell()  # in a kernel: tl.progress bars hear that their cell ended
    _cell_cost.hook_shell()  # in a kernel: each cell's exact GPU peak, for the server
    guard_note()  # in a kernel: a cell the server's memory guard interrupted says why


def set_up_in_kernel() -> None:
    """Run :func:`set_up` if it has not run and this is a kernel (a bar's first construction)."""
    if not _done and in_kernel():
        set_up()
