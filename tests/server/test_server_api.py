"""The REST and WebSocket routes of a real server (default test base_url /a%40b/), no kernels."""

from __future__ import annotations

import asyncio
import json
import threading
from typing import Any

import pytest
from tornado.httpclient import HTTPClientError

from .conftest import INTERVAL

HOST_KEYS = {
    "cpu_percent",
    "cpu_count",
    "cpu_limit",
    "per_cpu",
    "load_avg",
    "memory_total",
    "memory_used",
    "memory_available",
    "memory_limit",
    "swap_total",
    "swap_used",
}

ROUTES = [
    ("GET", ("torchlab", "api", "metrics")),
    ("GET", ("torchlab", "api", "metrics", "history")),
    ("GET", ("torchlab", "api", "events")),
    ("GET", ("torchlab", "api", "runs")),
    ("POST", ("torchlab", "api", "tutorial")),
]


async def test_metrics_has_the_contract_shape(get_metrics: Any, jp_base_url: str) -> None:
    assert jp_base_url == "/a%40b/"  # routes must honour base_url
    doc = await get_metrics()
    assert set(doc) == {
        "time",
        "host",
        "gpus",
        "gpu_reason",
        "kernels",
        "errors",
        "events",
        "gpu_actions",
        "memory_guard",
        "counts",
    }
    assert doc["events"] == []  # no kernel has died
    # nothing counted yet, every kind present (the hub service builds _total counters from them)
    assert doc["counts"] == {
        "kernel_deaths": {},
        "kernel_idle_gpu_actions": {},
        "memory_guard_interrupts": {},
    }
    assert doc["gpu_actions"] == []  # culling is off by default
    assert doc["memory_guard"] == []  # the guard is off by default
    assert set(doc["host"]) == HOST_KEYS
    assert 0 <= doc["host"]["cpu_percent"] <= 100
    assert doc["host"]["memory_total"] > doc["host"]["memory_used"] > 0
    assert doc["kernels"] == []
    assert doc["errors"] == {}
    # this machine has no GPU: an empty list and a reason, never an error
    if not doc["gpus"]:
        assert isinstance(doc["gpu_reason"], str)
        assert doc["gpu_reason"]


async def test_history_returns_recent_snapshots_in_order(
    jp_fetch: Any, wait_metrics: Any, get_metrics: Any
) -> None:
    first = await get_metrics()
    await wait_metrics(lambda d: d["time"] >= first["time"] + 3 * INTERVAL)
    r = await jp_fetch("torchlab", "api", "metrics", "history", params={"seconds": "60"})
    snaps = json.loads(r.body)["snapshots"]
    assert len(snaps) >= 3
    times = [s["time"] for s in snaps]
    assert times == sorted(times)
    assert set(snaps[-1]) == set(first)

    r = await jp_fetch("torchlab", "api", "metrics", "history", params={"seconds": "0.0001"})
    assert len(json.loads(r.body)["snapshots"]) <= 1


@pytest.mark.parametrize("seconds", ["abc", "-5", "0", "nan", "inf"])
async def test_history_rejects_a_bad_seconds_with_a_message(jp_fetch: Any, seconds: str) -> None:
    with pytest.raises(HTTPClientError) as e:
        await jp_fetch("torchlab", "api", "metrics", "history", params={"seconds": seconds})
    assert e.value.code == 400
    assert "seconds must be a positive number" in json.loads(e.value.response.body)["message"]


@pytest.mark.parametrize(("method", "parts"), ROUTES)
async def test_every_route_refuses_a_request_without_a_token(
    jp_fetch: Any, method: str, parts: tuple[str, ...]
) -> None:
    body = json.dumps({"dir": ""}) if method == "POST" else None
    with pytest.raises(HTTPClientError) as e:
        await jp_fetch(*parts, method=method, body=body, headers={"Authorization": ""})
    assert e.value.code in (401, 403)


async def test_stream_refuses_a_request_without_a_token(jp_ws_fetch: Any) -> None:
    with pytest.raises(HTTPClientError) as e:
        await jp_ws_fetch("torchlab", "api", "stream", headers={"Authorization": ""})
    assert e.value.code in (401, 403)


async def test_stream_pushes_consecutive_snapshots(jp_ws_fetch: Any, get_metrics: Any) -> None:
    ws = await jp_ws_fetch("torchlab", "api", "stream")
    raw = [await asyncio.wait_for(ws.read_message(), 10) for _ in range(4)]
    assert all(isinstance(m, str) for m in raw)  # text frames: a browser gets strings to parse
    messages = [json.loads(m) for m in raw]
    times = [m["time"] for m in messages]
    assert times == sorted(times)
    assert len(set(times)) == len(times)
    assert set(messages[0]) == set(await get_metrics())
    ws.close()


async def test_a_dead_subscriber_does_not_hold_up_a_live_one(
    jp_ws_fetch: Any, monitor: Any, wait_metrics: Any
) -> None:
    dead = await jp_ws_fetch("torchlab", "api", "stream")
    live = await jp_ws_fetch("torchlab", "api", "stream")
    await wait_metrics(lambda d: monitor.subscriber_count == 2)
    # drop the TCP connection without a close handshake, as a vanished browser would
    dead.protocol.stream.close()
    times = [json.loads(await asyncio.wait_for(live.read_message(), 10))["time"] for _ in range(5)]
    assert times == sorted(times)
    await wait_metrics(lambda d: monitor.subscriber_count == 1)
    live.close()
    dead.close()


async def test_a_failing_source_is_reported_and_sampling_goes_on(
    wait_metrics: Any, get_metrics: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from jupyter_torchlab.metrics.host import HostSampler

    def broken(self: Any) -> Any:
        raise RuntimeError("host sensor exploded")

    monkeypatch.setattr(HostSampler, "sample", broken)
    doc = await wait_metrics(
        lambda d: any("host sensor exploded" in v for v in d["errors"].values())
    )
    failing_since = doc["time"]
    doc = await wait_metrics(lambda d: d["time"] > failing_since)  # still sampling
    assert any("host sensor exploded" in v for v in doc["errors"].values())

    monkeypatch.undo()
    doc = await wait_metrics(lambda d: d["host"] is not None and not d["errors"])
    assert doc["host"]["memory_total"] > 0


async def test_shutdown_with_subscribers_connected_does_not_hang(
    jp_serverapp: Any, jp_ws_fetch: Any, monitor: Any
) -> None:
    sockets = [await jp_ws_fetch("torchlab", "api", "stream") for _ in range(3)]
    for ws in sockets:
        assert await asyncio.wait_for(ws.read_message(), 10) is not None
    threads_before = {t.name for t in threading.enumerate()}
    ext = next(iter(jp_serverapp.extension_manager.extension_apps["jupyter_torchlab"]))
    await asyncio.wait_for(ext.stop_extension(), 10)
    assert not monitor.running
    assert monitor.subscriber_count == 0
    for ws in sockets:
        # the server closed each stream: reads drain what was queued, then end with None
        while await asyncio.wait_for(ws.read_message(), 10) is not None:
            pass
        assert ws.close_code == 1001  # "going away": the client may reconnect later
        ws.close()
    assert {t.name for t in threading.enumerate()} <= threads_before
