"""A real jupyter_server with the torchlab extension, sampling fast; helpers to drive kernels."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime, timezone
from typing import Any

import pytest

# pytest-jupyter registers no entry point; importing its fixtures here scopes them (and its
# autouse server cleanup) to tests/server instead of the whole suite.
from pytest_jupyter.jupyter_server import *  # noqa: F403
from traitlets.config import Config

INTERVAL = 0.2


def server_config(**torchlab: Any) -> Config:
    """Return a server config with our extension enabled and these TorchlabExtension traits."""
    return Config(
        {
            "ServerApp": {
                # terminals off: their handlers warn under allow_unauthenticated_access=False
                "jpserver_extensions": {
                    "jupyter_torchlab": True,
                    "jupyter_server_terminals": False,
                },
                # the default for new servers: our routes must not trigger auth warnings
                "allow_unauthenticated_access": False,
            },
            "TorchlabExtension": torchlab,
        }
    )


@pytest.fixture
def jp_server_config() -> Config:
    return server_config(sample_interval=INTERVAL, history_seconds=30.0)


@pytest.fixture
def monitor(jp_serverapp: Any) -> Any:
    """The server's one ServerMonitor (the extension's service object)."""
    return jp_serverapp.web_app.settings["torchlab_monitor"]


@pytest.fixture
def get_metrics(jp_fetch: Any) -> Callable[[], Awaitable[dict[str, Any]]]:
    async def get() -> dict[str, Any]:
        r = await jp_fetch("torchlab", "api", "metrics")
        return json.loads(r.body)

    return get


@pytest.fixture
def wait_metrics(get_metrics: Any) -> Callable[..., Awaitable[dict[str, Any]]]:
    """Poll GET torchlab/api/metrics until ``predicate(doc)`` is true; return that document."""

    async def wait(predicate: Callable[[dict[str, Any]], Any], timeout: float = 30.0) -> dict:
        deadline = time.monotonic() + timeout
        doc: dict[str, Any] = {}
        while time.monotonic() < deadline:
            doc = await get_metrics()
            if predicate(doc):
                return doc
            await asyncio.sleep(INTERVAL / 2)
        raise AssertionError(f"condition not met within {timeout} s; last snapshot: {doc}")

    return wait


@pytest.fixture
def start_kernel(jp_fetch: Any) -> Callable[..., Awaitable[str]]:
    """Start a kernel over REST (as a session when ``path`` is given) and return its id."""

    async def start(path: str | None = None) -> str:
        if path is None:
            r = await jp_fetch(
                "api", "kernels", method="POST", body=json.dumps({"name": "python3"})
            )
            return json.loads(r.body)["id"]
        body = {"path": path, "name": path, "type": "notebook", "kernel": {"name": "python3"}}
        r = await jp_fetch("api", "sessions", method="POST", body=json.dumps(body))
        return json.loads(r.body)["kernel"]["id"]

    return start


def kernel_entry(doc: dict[str, Any], kernel_id: str) -> dict[str, Any] | None:
    return next((k for k in doc["kernels"] if k["id"] == kernel_id), None)


def execute_request(code: str) -> str:
    """An execute_request in the kernel WebSocket's JSON protocol."""
    return kernel_message(
        "execute_request",
        {
            "code": code,
            "silent": False,
            "store_history": False,
            "user_expressions": {},
            "allow_stdin": False,
            "stop_on_error": True,
        },
    )


def kernel_message(msg_type: str, content: dict[str, Any], channel: str = "shell") -> str:
    """A request in the kernel WebSocket's JSON protocol, as a page sends it."""
    return json.dumps(
        {
            "header": {
                "msg_id": uuid.uuid4().hex,
                "msg_type": msg_type,
                "username": "test",
                "session": uuid.uuid4().hex,
                "date": datetime.now(timezone.utc).isoformat(),
                "version": "5.3",
            },
            "parent_header": {},
            "metadata": {},
            "content": content,
            "channel": channel,
            "buffers": [],
        }
    )
