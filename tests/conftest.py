"""Suite-wide ordering: browser tests last.

Playwright's sync API keeps an asyncio loop running in the main thread while a browser is open;
running the browser tests after everything else keeps that loop away from pytest-jupyter's own.
"""

from __future__ import annotations

import pytest


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    items.sort(key=lambda item: item.get_closest_marker("browser") is not None)
