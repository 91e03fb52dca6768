"""A pytest plugin that runs tqdm's own test suite with tqdm's bar classes replaced by ours.

Loaded with ``-p _tqdm_upstream`` into a pytest run over the ``tests/`` folder of tqdm's source
distribution (see ``test_tqdm_upstream.py``). On import it loads tqdm and the tqdm modules those
tests use, then replaces every module attribute that *is* one of tqdm's bar classes
(``tqdm.tqdm``, ``tqdm.std.tqdm``, ``tqdm.asyncio.tqdm_asyncio``, ``tqdm.auto.tqdm``, the
``tqdm_auto``/``std_tqdm`` defaults in ``tqdm.contrib``) by
:class:`jupyter_torchlab.widgets.progress.Progress`. tqdm's ``trange``/``tarange`` and its
contrib helpers look those names up when called, so they build our bars too; a test's
``from tqdm import tqdm`` runs after this and gets ours. Our class was defined before the swap,
so it still subclasses tqdm's real classes.

With ``TORCHLAB_TQDM_BASELINE=1`` nothing is replaced: the same run then measures tqdm itself.

It also runs the ``async def`` tests (marked ``asyncio``) with ``asyncio.run``, which is all
``pytest-asyncio`` does for them, so the run needs nothing beyond this project's test tools.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import os
import sys
from typing import Any

import pytest

os.environ["JUPYTER_TORCHLAB_PROGRESS"] = "text"  # the text display, whatever runs the tests

TQDM_MODULES = [
    "tqdm",
    "tqdm.std",
    "tqdm.asyncio",
    "tqdm.auto",
    "tqdm.autonotebook",
    "tqdm.contrib",
    "tqdm.contrib.concurrent",
    "tqdm.contrib.itertools",
    "tqdm.contrib.logging",
]


def _swap() -> type:
    for name in TQDM_MODULES:
        importlib.import_module(name)
    from jupyter_torchlab.widgets.progress import Progress

    std = sys.modules["tqdm.std"].tqdm
    originals = {id(std), id(sys.modules["tqdm.asyncio"].tqdm_asyncio)}
    originals.add(id(sys.modules["tqdm.auto"].tqdm))
    for name, module in list(sys.modules.items()):
        if name == "tqdm" or name.startswith("tqdm."):
            for attr, value in list(vars(module).items()):
                if id(value) in originals:
                    setattr(module, attr, Progress)
    return Progress


BASELINE = os.environ.get("TORCHLAB_TQDM_BASELINE") == "1"
OURS = None if BASELINE else _swap()


def pytest_report_header() -> str:
    """Say which class the run tests."""
    if OURS is None:
        return "tqdm's own classes (baseline)"
    return f"tqdm's classes replaced by {OURS.__module__}.{OURS.__qualname__}"


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: Any) -> bool | None:
    """Run an ``async def`` test in a fresh event loop."""
    if not inspect.iscoroutinefunction(pyfuncitem.obj):
        return None
    names = pyfuncitem._fixtureinfo.argnames
    asyncio.run(pyfuncitem.obj(**{name: pyfuncitem.funcargs[name] for name in names}))
    return True
