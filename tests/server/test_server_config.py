"""Configuration traits and route authentication checks of the extension."""

from __future__ import annotations

import json
from typing import Any

import pytest
from traitlets import TraitError
from traitlets.config import Config

from jupyter_torchlab.server.app import TorchlabExtension
from jupyter_torchlab.server.document import GPU_OFF

from .conftest import server_config


@pytest.fixture
def jp_server_config() -> Config:
    return server_config(sample_interval=0.1, gpu=False, prometheus=False)


async def test_gpu_off_reports_why_and_config_reaches_the_sampler(
    jp_fetch: Any, monitor: Any
) -> None:
    assert monitor.ticker.interval == 0.1
    doc = json.loads((await jp_fetch("torchlab", "api", "metrics")).body)
    assert doc["gpus"] == []
    assert doc["gpu_reason"] == GPU_OFF


async def test_no_route_of_ours_lacks_authentication(jp_serverapp: Any) -> None:
    from jupyter_torchlab.server.handlers import make_handlers

    ext = next(iter(jp_serverapp.extension_manager.extension_apps["jupyter_torchlab"]))
    for pattern, handler, _ in make_handlers(ext.monitor, ext.tutorial):
        assert jp_serverapp.web_app._check_handler_auth(pattern, handler) == [], pattern


@pytest.mark.parametrize(
    ("trait", "value"),
    [("sample_interval", 0.0), ("sample_interval", -1.0), ("history_seconds", -5.0)],
)
def test_bad_config_values_are_refused_with_the_trait_named(trait: str, value: float) -> None:
    with pytest.raises(TraitError, match=f"TorchlabExtension.{trait}"):
        TorchlabExtension(**{trait: value})
