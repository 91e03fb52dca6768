"""ipywidgets that run in the kernel: ``tl.progress``, fit's display and the kernel monitor.

Importing this package is cheap (no ipywidgets, no torch) and changes nothing. Its names are
loaded on first use; none of them is also the name of a submodule (``tl.progress`` lives in
:mod:`.progress` and ``tl.monitor`` in :mod:`.kernel_monitor`: import them from there, or from the
package root).
"""

from __future__ import annotations

import importlib
from typing import Any

from ._budget import set_refresh_rate

#: name -> submodule that defines it (imported on first use); ``__all__`` is made from it
_NAMES = {
    "FitProgress": ".fit_display",
    "KernelMonitor": ".kernel_monitor",
    "Progress": ".progress",
    "close_monitor": ".kernel_monitor",
    "notebook_display": ".fit_display",
}

__all__ = ["set_refresh_rate", *_NAMES]


def __getattr__(name: str) -> Any:
    module = _NAMES.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module, __name__), name)
