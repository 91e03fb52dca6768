"""Kernels that are not local processes report their own usage through usage_request.

The kernels are real ipykernels started by the server through a test provisioner that hides
their process (tests/server/usage_kernels.py), so the server has to ask them over ZMQ.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from typing import Any

import pytest
import zmq
from jupyter_client.provisioning import KernelProvisionerFactory
from jupyter_server.services.kernels.kernelmanager import MappingKernelManager
from traitlets import TraitError
from traitlets.config import Config

from jupyter_torchlab.server.app import USAGE_OFF, TorchlabExtension, snapshot_document
from jupyter_torchlab.server.kernels import GATEWAY, KernelRegistry
from jupyter_torchlab.server.usage import UsagePoller

from .conftest import INTERVAL, kernel_entry, server_config
from .usage_kernels import HIDDEN, NO_USAGE, register_provisioner, write_kernelspecs

USAGE_INTERVAL = 0.2
USAGE_TIMEOUT = 0.5
# a user's own untracked type must survive the extension adding usage_request/usage_reply
USER_UNTRACKED = "my_extension_request"
DEFAULT_UNTRACKED = MappingKernelManager.class_traits()["untracked_message_types"].default()


@pytest.fixture
def hidden_kernels(jp_kernel_dir: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Install the hidden-process kernelspecs and register their provisioner for this test."""
    write_kernelspecs(jp_kernel_dir)
    name, entry = register_provisioner()
    monkeypatch.setitem(KernelProvisionerFactory.provisioners, name, entry)


@pytest.fixture
def jp_server_config(hidden_kernels: None, request: pytest.FixtureRequest) -> Config:
    config = server_config(
        sample_interval=INTERVAL,
        history_seconds=30.0,
        # parametrize("jp_server_config", [...], indirect=True) picks another usage_interval
        usage_interval=getattr(request, "param", USAGE_INTERVAL),
        usage_timeout=USAGE_TIMEOUT,
    )
    config.MappingKernelManager.untracked_message_types = [*DEFAULT_UNTRACKED, USER_UNTRACKED]
    return config


async def start(jp_fetch: Any, name: str) -> str:
    r = await jp_fetch("api", "kernels", method="POST", body=json.dumps({"name": name}))
    return str(json.loads(r.body)["id"])


async def kernel_model(jp_fetch: Any, kid: str) -> dict[str, Any]:
    r = await jp_fetch("api", "kernels", kid)
    return dict(json.loads(r.body))


pytestmark = pytest.mark.slow


async def test_a_hidden_kernel_reports_usage_and_being_asked_never_moves_its_state(
    jp_fetch: Any, jp_ws_fetch: Any, jp_serverapp: Any, wait_metrics: Any, monitor: Any
) -> None:
    km = jp_serverapp.kernel_manager
    configured = [*DEFAULT_UNTRACKED, USER_UNTRACKED]
    assert km.untracked_message_types[: len(configured)] == configured
    assert {"usage_request", "usage_reply"} <= set(km.untracked_message_types)

    hidden = await start(jp_fetch, HIDDEN)
    local = await start(jp_fetch, "python3")
    # a client makes the server ask for kernel_info, whose status makes the kernel "idle"
    sockets = [await jp_ws_fetch("api", "kernels", kid, "channels") for kid in (hidden, local)]

    doc = await wait_metrics(
        lambda d: (
            (h := kernel_entry(d, hidden))
            and h["cpu_percent"] is not None
            and h["execution_state"] == "idle"
            and (k := kernel_entry(d, local))
            and k["source"] == "process"
        )
    )
    entry = kernel_entry(doc, hidden)
    assert entry is not None
    assert entry["pid"] is None  # the server has no local process for it
    assert entry["source"] == "kernel"
    assert entry["reason"] is None
    assert entry["memory"] > 10_000_000  # a Python kernel is tens of MB
    assert entry["cpu_percent"] >= 0
    assert 0 <= entry["usage_age"] < USAGE_INTERVAL + USAGE_TIMEOUT + 2 * INTERVAL
    local_entry = kernel_entry(doc, local)
    assert local_entry["pid"] is not None
    assert local_entry["usage_age"] is None

    # many rounds of usage_request: neither GET /api/kernels/<id> nor our endpoint ever sees
    # the kernel busy, and its last_activity stays where it was
    before = await kernel_model(jp_fetch, hidden)
    replies = monitor.usage.replies
    seen_states, seen_activity = set(), set()
    deadline = time.monotonic() + 30
    while monitor.usage.replies - replies < 10 and time.monotonic() < deadline:
        model = await kernel_model(jp_fetch, hidden)
        ours = kernel_entry(await get(jp_fetch), hidden)
        seen_states |= {model["execution_state"], ours["execution_state"]}
        seen_activity |= {model["last_activity"], ours["last_activity"]}
        await asyncio.sleep(INTERVAL / 4)
    assert monitor.usage.replies - replies >= 10
    assert seen_states == {"idle"}
    assert seen_activity == {before["last_activity"]}

    # the same polling with usage_request tracked again does move last_activity: the check
    # above would have seen it
    km.untracked_message_types = configured
    deadline = time.monotonic() + 30
    while (await kernel_model(jp_fetch, hidden))["last_activity"] == before["last_activity"]:
        assert time.monotonic() < deadline, "usage_request never counted as activity"
        await asyncio.sleep(INTERVAL / 4)

    # the kernel-reported figures reach Prometheus under the usual kernel series
    from prometheus_client.parser import text_string_to_metric_families

    r = await jp_fetch("metrics")
    families = {f.name: f for f in text_string_to_metric_families(r.body.decode())}
    memory = {
        s.labels["kernel_id"]: s.value for s in families["torchlab_kernel_memory_bytes"].samples
    }
    assert memory[hidden] > 10_000_000
    ages = {s.labels["kernel_id"] for s in families["torchlab_kernel_usage_age_seconds"].samples}
    assert hidden in ages
    assert local not in ages
    for ws in sockets:
        ws.close()


async def get(jp_fetch: Any) -> dict[str, Any]:
    r = await jp_fetch("torchlab", "api", "metrics")
    return dict(json.loads(r.body))


async def test_a_stopped_kernel_keeps_aged_figures_with_a_reason_and_recovers(
    jp_fetch: Any, jp_serverapp: Any, wait_metrics: Any, monitor: Any
) -> None:
    kid = await start(jp_fetch, HIDDEN)
    await wait_metrics(lambda d: (k := kernel_entry(d, kid)) and k["cpu_percent"] is not None)
    pid = jp_serverapp.kernel_manager.get_kernel(kid).provisioner.hidden_pid
    os.kill(pid, signal.SIGSTOP)
    try:
        rounds: list[float] = []

        def stale(d: dict[str, Any]) -> bool:
            rounds.append(monitor.usage.last_round_seconds)
            k = kernel_entry(d, kid)
            return bool(k and k["reason"] and "did not answer" in k["reason"])

        doc = await wait_metrics(stale)
        entry = kernel_entry(doc, kid)
        assert entry["reason"].startswith(
            f"kernel did not answer usage_request within {USAGE_TIMEOUT:g} s"
        )
        assert entry["source"] == "kernel"  # the last figures stay, with their age
        assert entry["memory"] > 10_000_000
        assert entry["usage_age"] >= USAGE_TIMEOUT
        # one round waits for the deadline, not longer (the rest is ZMQ bookkeeping)
        assert max(rounds) < USAGE_TIMEOUT + 0.5
    finally:
        os.kill(pid, signal.SIGCONT)
    doc = await wait_metrics(lambda d: (k := kernel_entry(d, kid)) and k["reason"] is None)
    assert kernel_entry(doc, kid)["usage_age"] < USAGE_INTERVAL + USAGE_TIMEOUT + 2 * INTERVAL
    assert doc["errors"] == {}

    # shutting the extension down closes the kernel's control-channel socket
    assert monitor.usage.open_clients == 1
    monitor.stop()
    assert monitor.usage.open_clients == 0


async def test_a_kernel_that_ignores_usage_request_says_so(
    jp_fetch: Any, jp_ws_fetch: Any, wait_metrics: Any
) -> None:
    kid = await start(jp_fetch, NO_USAGE)
    ws = await jp_ws_fetch("api", "kernels", kid, "channels")
    doc = await wait_metrics(
        lambda d: (k := kernel_entry(d, kid)) and "ignores usage_request" in (k["reason"] or "")
    )
    entry = kernel_entry(doc, kid)
    assert "ipykernel" in entry["reason"]
    assert "upgrade ipykernel" in entry["reason"]
    assert entry["cpu_percent"] is None
    assert entry["memory"] is None
    assert entry["source"] is None
    assert entry["execution_state"] == "idle"
    ws.close()


def test_kernels_that_never_answer_cost_one_timeout_per_round_together() -> None:
    """Five endpoints that accept messages but never reply: one deadline for all of them."""
    context = zmq.Context()
    sinks = []
    endpoints = {}
    for i in range(5):
        sink = context.socket(zmq.ROUTER)  # what a hung kernel's control socket looks like
        sink.linger = 0
        port = sink.bind_to_random_port("tcp://127.0.0.1")
        sinks.append(sink)
        endpoints[f"k{i}"] = {
            "transport": "tcp",
            "ip": "127.0.0.1",
            "control_port": port,
            "key": b"secret",
            "signature_scheme": "hmac-sha256",
        }
    poller = UsagePoller(interval=60.0, timeout=0.3)
    try:
        readings = poller.poll(endpoints)
        assert 0.3 <= poller.last_round_seconds < 0.3 * 2
        for reading in readings.values():
            assert reading.reason == "kernel did not answer usage_request within 0.3 s"
            assert reading.cpu_percent is None
            assert reading.memory is None
        # not due again for 60 s: the next round asks nothing new; the one-off kernel_info probe
        # (to tell an old kernel from a hung one) waits for the same single deadline
        poller.poll(endpoints)
        assert poller.last_round_seconds < 0.3 * 2
        assert poller.poll(endpoints)["k0"].reason.startswith("kernel did not answer")
        assert poller.last_round_seconds < 0.1  # nothing sent: nothing to wait for
        # a kernel that is gone loses its client
        poller.poll({})
        assert poller.poll({}) == {}
    finally:
        poller.close()
        for sink in sinks:
            sink.close()
        context.term()


def test_a_gateway_kernel_is_listed_with_a_reason_and_not_asked() -> None:
    from jupyter_server.gateway.managers import GatewayKernelManager
    from traitlets.config import Config as TraitletsConfig

    kernel = GatewayKernelManager(config=TraitletsConfig())
    kernel.kernel = {"id": "g1", "name": "python3"}  # what refresh_model() sets once running

    class Manager:
        def list_kernel_ids(self) -> list[str]:
            return ["g1"]

        def get_kernel(self, kid: str) -> Any:
            return kernel

        def kernel_model(self, kid: str) -> dict[str, Any]:
            return {"id": kid, "name": "python3", "execution_state": "idle"}

    registry = KernelRegistry(Manager())
    asyncio.run(registry.refresh())
    assert registry.view()["g1"].reason == GATEWAY
    assert registry.endpoints() == {}  # nothing to send usage_request to
    from types import MappingProxyType

    from jupyter_torchlab.metrics import Snapshot

    snap = Snapshot(
        time=1.0,
        host=None,
        gpus=(),
        gpu_reason=None,
        trees=MappingProxyType({}),
        errors=MappingProxyType({}),
        extra=MappingProxyType({"kernels": registry.view(), "usage": {}}),
    )
    (entry,) = snapshot_document(snap)["kernels"]
    assert entry["reason"] == GATEWAY
    assert entry["source"] is None
    assert entry["cpu_percent"] is None
    registry.close()


@pytest.mark.parametrize("jp_server_config", [0.0], indirect=True)
async def test_usage_interval_zero_asks_no_kernel_and_says_so(
    jp_fetch: Any, jp_serverapp: Any, wait_metrics: Any, monitor: Any
) -> None:
    assert monitor.usage is None
    assert "usage_request" not in jp_serverapp.kernel_manager.untracked_message_types
    kid = await start(jp_fetch, HIDDEN)
    doc = await wait_metrics(lambda d: (k := kernel_entry(d, kid)) and k["reason"] == USAGE_OFF)
    entry = kernel_entry(doc, kid)
    assert entry["cpu_percent"] is None
    assert entry["source"] is None


@pytest.mark.parametrize(
    ("trait", "value"),
    [("usage_interval", -1.0), ("usage_interval", 0.01), ("usage_timeout", 0.0)],
)
def test_bad_usage_config_is_refused_with_the_trait_named(trait: str, value: float) -> None:
    with pytest.raises(TraitError, match=f"TorchlabExtension.{trait}"):
        TorchlabExtension(**{trait: value})
