"""Watch and run PyTorch work inside Jupyter.

``import jupyter_torchlab as tl`` is cheap: torch and ipywidgets are imported only when a name
that needs them is first used, so the server extension (which loads this package) never pays for
torch. The two things importing does are explicit, below: it hands ``fit(progress=True)`` the
notebook display (widgets in a kernel, text elsewhere), and in a kernel it registers the hook that
explains an out-of-memory error under its traceback.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .train.display import set_display as _set_display
from .widgets import oom_display as _oom_display
from .widgets.fit_display import notebook_display as _notebook_display

__version__ = "0.1.0"

# fit(progress=True) shows the notebook display; tl.launch's workers and use_display() override it
_set_display(_notebook_display)
# in a kernel: an out-of-memory error is explained below its traceback (nothing runs otherwise)
_oom_display.install()

__all__ = [
    "Callback",
    "FitState",
    "History",
    "LaunchError",
    "ResNet9",
    "TutorialNet",
    "__version__",
    "cifar10",
    "copy_tutorial",
    "describe_device",
    "evaluate",
    "fit",
    "free_memory",
    "launch",
    "load_checkpoint",
    "monitor",
    "pick_device",
    "progress",
    "save_checkpoint",
    "tutorial_path",
]

# public name -> module that defines it (imported on first use)
_LAZY = {
    "Callback": "jupyter_torchlab.train.callbacks",
    "FitState": "jupyter_torchlab.train.callbacks",
    "pick_device": "jupyter_torchlab.train.device",
    "describe_device": "jupyter_torchlab.train.device",
    "cifar10": "jupyter_torchlab.train.data",
    "TutorialNet": "jupyter_torchlab.train.models",
    "ResNet9": "jupyter_torchlab.train.models",
    "fit": "jupyter_torchlab.train.fit.loop",
    "free_memory": "jupyter_torchlab.train.oom",
    "evaluate": "jupyter_torchlab.train.fit.evaluate",
    "History": "jupyter_torchlab.train.history",
    "launch": "jupyter_torchlab.train.parallel.launch",
    "LaunchError": "jupyter_torchlab.train.parallel.launch",
    "save_checkpoint": "jupyter_torchlab.train.fit.checkpoint",
    "load_checkpoint": "jupyter_torchlab.train.fit.checkpoint",
    "progress": "jupyter_torchlab.widgets.progress",
    "monitor": "jupyter_torchlab.widgets.monitor",
    "tutorial_path": "jupyter_torchlab.tutorial",
    "copy_tutorial": "jupyter_torchlab.tutorial",
}

if TYPE_CHECKING:
    from .train.callbacks import Callback, FitState
    from .train.data import cifar10
    from .train.device import describe_device, pick_device
    from .train.fit.checkpoint import load_checkpoint, save_checkpoint
    from .train.fit.evaluate import evaluate
    from .train.fit.loop import fit
    from .train.history import History
    from .train.models import ResNet9, TutorialNet
    from .train.oom import free_memory
    from .train.parallel.launch import LaunchError, launch
    from .tutorial import copy_tutorial, tutorial_path
    from .widgets.monitor import monitor
    from .widgets.progress import progress


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'jupyter_torchlab' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


def _jupyter_server_extension_points() -> list[dict[str, Any]]:
    # an ExtensionApp (not a bare load function) so the server calls stop_extension on shutdown
    from .server.app import TorchlabExtension

    return [{"module": "jupyter_torchlab.server.app", "app": TorchlabExtension}]


def _jupyter_labextension_paths() -> list[dict[str, str]]:
    return [{"src": "labextension", "dest": "jupyter-torchlab"}]
