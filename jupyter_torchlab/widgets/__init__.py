"""ipywidgets that run in the kernel: ``tl.progress``, fit's display and the kernel monitor.

Importing this package is cheap (no ipywidgets, no torch) and changes nothing: the package root
hands fit its display explicitly (:func:`jupyter_torchlab.train.display.set_display`).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._budget import set_refresh_rate

__all__ = [
    "FitProgress",
    "KernelMonitor",
    "Progress",
    "close_monitor",
    "monitor",
    "notebook_display",
    "progress",
    "set_refresh_rate",
]

_LAZY = {
    "progress": ".progress",
    "Progress": ".progress",
    "FitProgress": ".fit_display",
    "notebook_display": ".fit_display",
    "monitor": ".monitor",
    "close_monitor": ".monitor",
    "KernelMonitor": ".monitor",
}

if TYPE_CHECKING:
    from .fit_display import FitProgress, notebook_display
    from .monitor import KernelMonitor, close_monitor, monitor
    from .progress import Progress, progress


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module, __name__), name)
