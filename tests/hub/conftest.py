"""A real JupyterHub per test module (see hubenv.py); jupyterhub and the proxy must be installed.

CI installs both (scripts/install-and-test.sh): a missing one fails these tests, it does not skip
them, so a green run always means the hub was really tested.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from .hubenv import Hub, start_hub


@pytest.fixture(scope="module")
def make_hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., Hub]]:
    """Start hubs on demand for this module; stop them all at its end."""
    if importlib.util.find_spec("jupyterhub") is None:
        pytest.fail("jupyterhub is not installed: pip install -e '.[test]' (it is a test extra)")
    hubs: list[Hub] = []

    def make(**kwargs: int) -> Hub:
        root: Path = tmp_path_factory.mktemp("hub")
        hub = start_hub(root, **kwargs)
        hubs.append(hub)
        return hub

    yield make
    for hub in hubs:
        hub.stop()
