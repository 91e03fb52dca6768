"""ipywidgets that run in the kernel: the training progress display and the kernel monitor.

Importing this package is cheap (no ipywidgets, no torch) and makes ``fit(progress=True)`` use the
notebook display where widgets can show; elsewhere fit keeps its text display.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ..train.callbacks import register_progress_factory
from ._budget import set_refresh_rate

__all__ = ["FitProgress", "Progress", "close_monitor", "monitor", "progress", "set_refresh_rate"]

_LAZY = {
    "progress": ".progress",
    "Progress": ".progress",
    "FitProgress": ".progress",
    "monitor": ".monitor",
    "close_monitor": ".monitor",
}

if TYPE_CHECKING:
    from .monitor import close_monitor, monitor
    from .progress import FitProgress, Progress, progress


def _fit_progress() -> Any:
    from .progress import fit_progress_factory

    return fit_progress_factory()


register_progress_factory(_fit_progress)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module, __name__), name)
