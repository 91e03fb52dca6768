"""An extension that cannot load says why: at ERROR in the log, and on every torchlab/api route.

A real server is started with what users get wrong (an invalid setting, a jupyter_server too old
for the routes); the tests read what they would read: the log line, the 503 body, the page config.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
from typing import Any

import pytest
import tornado.httpclient
from traitlets import TraitError
from traitlets.config import Config

from jupyter_torchlab.server.load_failure import (
    PAGE_CONFIG_KEY,
    explain,
    unavailable_handlers,
)

from .conftest import server_config

BAD_INTERVAL = "TorchlabExtension.sample_interval must be between 0.05 and 3600 seconds, got -1.0"
SETTING_FIX = "Correct c.TorchlabExtension.sample_interval where it is set"
UPGRADE = "Upgrade jupyter_server to 2.18 or later"
SAMPLER_THREAD = "torchlab-metrics-sampler"


@pytest.fixture
def server_log(caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> Any:
    """Records of the server's log while it loads (request it before ``jp_serverapp``).

    ServerApp.init_logging stops its logger propagating, and pytest-jupyter has removed the
    logger's handlers by then, so the load phase would reach neither caplog nor a stream.
    """
    from jupyter_server.serverapp import ServerApp

    init_logging = ServerApp.init_logging

    def propagating(self: Any) -> None:
        init_logging(self)
        self.log.propagate = True

    monkeypatch.setattr(ServerApp, "init_logging", propagating)
    return caplog


def _records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    # the server loads while the fixtures are set up
    return caplog.get_records("setup") + caplog.records


def _errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in _records(caplog) if r.levelno >= logging.ERROR]


async def _refused(fetch: Any, *parts: str, **kwargs: Any) -> tuple[int, dict[str, Any]]:
    with pytest.raises(tornado.httpclient.HTTPClientError) as raised:
        await fetch(*parts, **kwargs)
    response = raised.value.response
    assert response is not None
    return raised.value.code, json.loads(response.body)


def _sampling() -> bool:
    return any(t.name == SAMPLER_THREAD for t in threading.enumerate())


class TestAnInvalidSetting:
    @pytest.fixture
    def jp_server_config(self) -> Config:
        return server_config(sample_interval=-1)

    async def test_is_logged_at_error_with_the_cause_and_the_fix(
        self, server_log: pytest.LogCaptureFixture, jp_serverapp: Any
    ) -> None:
        ours = [m for m in _errors(server_log) if m.startswith("jupyter_torchlab did not load:")]
        assert len(ours) == 1, _errors(server_log)
        assert BAD_INTERVAL in ours[0]
        assert SETTING_FIX in ours[0]
        assert "restart the Jupyter server" in ours[0]

    async def test_every_route_answers_503_with_the_reason(
        self, jp_serverapp: Any, jp_fetch: Any, jp_ws_fetch: Any
    ) -> None:
        code, body = await _refused(jp_fetch, "torchlab", "api", "metrics")
        assert code == 503
        assert body["message"].startswith(f"jupyter_torchlab did not load: {BAD_INTERVAL}. ")
        assert SETTING_FIX in body["message"]
        for parts, kwargs in [
            (("metrics", "history"), {}),
            (("events",), {}),
            (("tutorial",), {"method": "POST", "body": "{}"}),
        ]:
            code, other = await _refused(jp_fetch, "torchlab", "api", *parts, **kwargs)
            assert (code, other["message"]) == (503, body["message"]), parts
        with pytest.raises(tornado.httpclient.HTTPClientError) as raised:
            await jp_ws_fetch("torchlab", "api", "stream")
        assert raised.value.code == 503

    async def test_the_reason_is_only_for_signed_in_users(
        self, jp_serverapp: Any, jp_fetch: Any
    ) -> None:
        code, body = await _refused(
            jp_fetch, "torchlab", "api", "metrics", headers={"Authorization": ""}
        )
        assert code == 403
        assert "did not load" not in json.dumps(body)
        for pattern, handler, _ in unavailable_handlers(explain(TraitError("x"))):
            assert jp_serverapp.web_app._check_handler_auth(pattern, handler) == [], pattern

    async def test_the_lab_finds_the_reason_in_the_page_config_and_nothing_samples(
        self, jp_serverapp: Any
    ) -> None:
        settings = jp_serverapp.web_app.settings
        message = settings["page_config_data"][PAGE_CONFIG_KEY]
        assert message.startswith(f"jupyter_torchlab did not load: {BAD_INTERVAL}. ")
        assert "torchlab_monitor" not in settings
        assert not _sampling()
        ext = next(iter(jp_serverapp.extension_manager.extension_apps["jupyter_torchlab"]))
        assert ext.monitor is None
        assert ext.load_failure.message == message


class TestAJupyterServerTooOldForTheRoutes:
    """What 2.4 to 2.12 do: ``ws_authenticated`` (imported by the stream route) is not there."""

    @pytest.fixture
    def jp_server_config(self, monkeypatch: pytest.MonkeyPatch) -> Config:
        import jupyter_server
        import jupyter_server.auth.decorator

        monkeypatch.delattr(jupyter_server.auth.decorator, "ws_authenticated")
        monkeypatch.setattr(jupyter_server, "__version__", "2.12.0")
        for name in ("jupyter_torchlab.server.handlers", "jupyter_torchlab.server.stream"):
            monkeypatch.delitem(sys.modules, name, raising=False)
        return server_config(sample_interval=0.2)

    async def test_says_to_upgrade_jupyter_server_and_starts_no_sampler(
        self, server_log: pytest.LogCaptureFixture, jp_serverapp: Any, jp_fetch: Any
    ) -> None:
        logged = next(m for m in _errors(server_log) if "did not load" in m)
        assert "jupyter_server 2.12.0 is older than jupyter-torchlab needs" in logged
        assert "ws_authenticated" in logged
        assert UPGRADE in logged
        code, body = await _refused(jp_fetch, "torchlab", "api", "metrics")
        assert code == 503
        assert UPGRADE in body["message"]
        # before: the sampler thread ran while every route answered 404
        assert not _sampling()


class TestAnUnexpectedFailureHalfwayThrough:
    @pytest.fixture
    def jp_server_config(self, monkeypatch: pytest.MonkeyPatch) -> Config:
        import jupyter_torchlab.server.handlers as handlers

        def broken(*args: Any) -> Any:
            raise RuntimeError("the URL table is broken")

        # after the monitor has started: it must be stopped again
        monkeypatch.setattr(handlers, "make_handlers", broken)
        return server_config(sample_interval=0.2)

    async def test_is_logged_with_its_traceback_and_leaves_nothing_running(
        self, server_log: pytest.LogCaptureFixture, jp_serverapp: Any, jp_fetch: Any
    ) -> None:
        record = next(r for r in _records(server_log) if "did not load" in r.getMessage())
        assert record.levelno == logging.ERROR
        assert "RuntimeError: the URL table is broken" in record.getMessage()
        assert "The server log has the traceback" in record.getMessage()
        assert record.exc_info is not None
        code, _ = await _refused(jp_fetch, "torchlab", "api", "metrics")
        assert code == 503
        assert not _sampling()
        assert "torchlab_monitor" not in jp_serverapp.web_app.settings


@pytest.mark.parametrize(
    ("version", "expected"),
    [
        ("2.4.0", UPGRADE),
        ("2.12.0rc1", UPGRADE),
        ("2.14.2", UPGRADE),
        ("2.17.0", UPGRADE),
        ("2.18.0", "this jupyter-torchlab does not work with jupyter_server 2.18.0"),
        ("3.0.0", "this jupyter-torchlab does not work with jupyter_server 3.0.0"),
    ],
)
def test_a_missing_jupyter_server_api_is_explained_by_the_version(
    monkeypatch: pytest.MonkeyPatch, version: str, expected: str
) -> None:
    import jupyter_server

    monkeypatch.setattr(jupyter_server, "__version__", version)
    error = ImportError("cannot import name 'x'", name="jupyter_server.auth.decorator")
    assert expected in explain(error).message


def test_a_setting_of_the_wrong_type_names_the_setting() -> None:
    from jupyter_torchlab.server.app import TorchlabExtension

    with pytest.raises(TraitError) as raised:
        TorchlabExtension(sample_interval="fast")
    failure = explain(raised.value)
    assert "Correct c.TorchlabExtension.sample_interval where it is set" in failure.message
    assert not failure.unexpected


def test_the_fix_names_the_floor_the_package_declares() -> None:
    import re
    from pathlib import Path

    import tomllib

    from jupyter_torchlab.server.load_failure import JUPYTER_SERVER_FLOOR

    pyproject = Path(__file__).resolve().parents[2] / "pyproject.toml"
    dependencies = tomllib.loads(pyproject.read_text())["project"]["dependencies"]
    (server,) = [d for d in dependencies if re.match(r"jupyter[_-]server\b", d)]
    assert f">={JUPYTER_SERVER_FLOOR}" in server.replace(" ", "")
