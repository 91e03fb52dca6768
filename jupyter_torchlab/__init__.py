"""Watch and run PyTorch work inside Jupyter.

``import jupyter_torchlab as tl`` only defines names. torch, ipywidgets and the kernel-side
modules load when a public name is first used, so the Jupyter server (which imports this package
to find its extension) never pays for them, and importing changes nothing. The kernel-side setup
(:mod:`.widgets._setup`) runs once: the first time a public name is used, from ``%load_ext
jupyter_torchlab``, or when a ``tl.progress`` bar (the tqdm drop-in) is first made in a kernel.
It makes ``fit(progress=True)`` show the notebook display (widgets in a kernel, text elsewhere),
and in a kernel it registers the hooks that explain an out-of-memory error under its traceback,
tell ``tl.progress`` bars that their cell ended, read each cell's GPU peak for the server and
say why the server's memory guard interrupted a cell.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

#: the public names, each with the module that defines it (imported on first use); ``__all__``
#: is made from this one list
_PUBLIC = {
    "Callback": "jupyter_torchlab.train.callbacks",
    "FitState": "jupyter_torchlab.train.callbacks",
    "History": "jupyter_torchlab.train.history",
    "LaunchError": "jupyter_torchlab.train.parallel.launch",
    "ResNet9": "jupyter_torchlab.train.models",
    "TutorialNet": "jupyter_torchlab.train.models",
    "cifar10": "jupyter_torchlab.train.data",
    "copy_tutorial": "jupyter_torchlab.tutorial",
    "describe_device": "jupyter_torchlab.train.device",
    "evaluate": "jupyter_torchlab.train.fit.evaluate",
    "fit": "jupyter_torchlab.train.fit.loop",
    "free_memory": "jupyter_torchlab.train.oom",
    "launch": "jupyter_torchlab.train.parallel.launch",
    "load_checkpoint": "jupyter_torchlab.train.fit.checkpoint",
    "monitor": "jupyter_torchlab.widgets.kernel_monitor",
    "pick_device": "jupyter_torchlab.train.device",
    "progress": "jupyter_torchlab.widgets.progress",
    "save_checkpoint": "jupyter_torchlab.train.fit.checkpoint",
    "tutorial_path": "jupyter_torchlab.tutorial",
}

__all__ = ["__version__", "load_ipython_extension", *_PUBLIC]


def _set_up_kernel_side() -> None:
    """Set fit's default display and register the IPython hooks, once per process."""
    from .widgets._setup import set_up  # (a tl.progress bar runs it too: the tqdm drop-in)

    set_up()


def load_ipython_extension(ipython: Any) -> None:
    """Set up the kernel side at ``%load_ext jupyter_torchlab`` (before any name is used)."""
    _set_up_kernel_side()


def __getattr__(name: str) -> Any:
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module 'jupyter_torchlab' has no attribute {name!r}")
    _set_up_kernel_side()
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
