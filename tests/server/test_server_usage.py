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
from jupyter_client.session import Session
from jupyter_server.services.kernels.kernelmanager import MappingKernelManager
from traitlets import TraitError
from traitlets.config import Config
from zmq.utils.monitor import recv_monitor_message

from jupyter_torchlab.server.app import TorchlabExtension
from jupyter_torchlab.server.document import USAGE_OFF, USAGE_STARTING, build_document
from jupyter_torchlab.server.kernels import GATEWAY, KernelRegistry
from jupyter_torchlab.server.monitor import ServerMonitor, usage_wait
from jupyter_torchlab.server.usage import FIRST_IPYKERNEL, UsagePoller

from .conftest import INTERVAL, execute_request, kernel_entry, server_config
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
    jp_fetch: Any, jp_ws_fetch: Any, jp_serverapp: Any, wait_metrics: Any, monitor: Any
) -> None:
    kid = await start(jp_fetch, HIDDEN)
    ws = await jp_ws_fetch("api", "kernels", kid, "channels")  # it is asked once out of "starting"
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
        # a round with a hung kernel waits only the in-tick budget, never usage_timeout: the
        # reply it does not get is looked for again at the start of the next tick
        wait = usage_wait(INTERVAL, USAGE_TIMEOUT)
        assert monitor.usage.wait == wait < USAGE_TIMEOUT
        # a round that waited for the hung kernel would take usage_timeout; the rest of a
        # round is ZMQ bookkeeping, slow on a loaded CPU
        assert max(rounds) < USAGE_TIMEOUT
    finally:
        os.kill(pid, signal.SIGCONT)
    doc = await wait_metrics(lambda d: (k := kernel_entry(d, kid)) and k["reason"] is None)
    assert kernel_entry(doc, kid)["usage_age"] < USAGE_INTERVAL + USAGE_TIMEOUT + 2 * INTERVAL
    assert doc["errors"] == {}

    # shutting the extension down closes the kernel's control-channel socket
    assert monitor.usage.open_clients == 1
    monitor.stop()
    assert monitor.usage.open_clients == 0
    ws.close()


async def test_a_kernel_that_ignores_usage_request_says_so(
    jp_fetch: Any, jp_ws_fetch: Any, wait_metrics: Any
) -> None:
    kid = await start(jp_fetch, NO_USAGE)
    ws = await jp_ws_fetch("api", "kernels", kid, "channels")
    doc = await wait_metrics(
        lambda d: (k := kernel_entry(d, kid)) and "ignores usage_request" in (k["reason"] or "")
    )
    entry = kernel_entry(doc, kid)
    assert f"ipykernel answers it from version {FIRST_IPYKERNEL};" in entry["reason"]
    assert "upgrade ipykernel" in entry["reason"]
    assert entry["cpu_percent"] is None
    assert entry["memory"] is None
    assert entry["source"] is None
    assert entry["execution_state"] == "idle"
    ws.close()


class Clock:
    """A settable monotonic clock: usage timeouts and re-checks without sleeping."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


KEY = b"secret"


def endpoint(port: int) -> dict[str, Any]:
    return {
        "transport": "tcp",
        "ip": "127.0.0.1",
        "control_port": port,
        "key": KEY,
        "signature_scheme": "hmac-sha256",
    }


class FakeKernel:
    """A control socket that answers like one kernel process (own session id), or stays silent.

    ``usage=False`` is an old kernel: it answers kernel_info_request but ignores usage_request.
    """

    def __init__(self, context: zmq.Context, port: int | None = None, usage: bool = True) -> None:
        self.session = Session(key=KEY)  # a fresh session id, as each kernel process has
        self.socket = context.socket(zmq.ROUTER)
        self.socket.linger = 0
        # connection events, to wait until a client has (re)connected: see wait_for_client()
        self._events = self.socket.get_monitor_socket(zmq.EVENT_HANDSHAKE_SUCCEEDED)
        if port is None:
            self.port = self.socket.bind_to_random_port("tcp://127.0.0.1")
        else:
            # the previous process's socket is closed by ZMQ's I/O thread a moment later
            deadline = time.monotonic() + 10
            while True:
                try:
                    self.socket.bind(f"tcp://127.0.0.1:{port}")
                    break
                except zmq.ZMQError as e:
                    if e.errno != zmq.EADDRINUSE or time.monotonic() > deadline:
                        raise
                    time.sleep(0.02)
            self.port = port
        self.usage = usage
        self.memory = 50_000_000

    def wait_for_client(self, timeout: float = 10.0) -> None:
        """Wait until a client's connection to this socket is up.

        A client that sent to the old process before noticing it had gone lost those messages
        with the old connection (ZMQ drops what is queued on a closed pipe); once its new
        connection is up, what it sends reaches this process.
        """
        assert self._events.poll(int(timeout * 1000)), "no client connected"
        recv_monitor_message(self._events)

    def answer(self, count: int, cpu: float = 25.0, silent: bool = False) -> list[str]:
        """Read ``count`` requests (waiting for them), answer unless ``silent``; return types."""
        types = []
        while len(types) < count:
            assert self.socket.poll(10_000), f"only {types} arrived"
            idents, msg = self.session.recv(self.socket, mode=0)
            assert msg is not None
            msg_type = msg["header"]["msg_type"]
            types.append(msg_type)
            if silent:
                continue
            if msg_type == "usage_request" and self.usage:
                reply = {"kernel_cpu": cpu, "kernel_memory": self.memory, "pid": 7}
                self.session.send(self.socket, "usage_reply", reply, parent=msg, ident=idents)
            elif msg_type == "kernel_info_request":
                info = {"implementation": "fake", "implementation_version": "0.1"}
                self.session.send(self.socket, "kernel_info_reply", info, parent=msg, ident=idents)
        return types

    def close(self) -> None:
        self.socket.disable_monitor()
        self._events.close()
        self.socket.close()


def settle(poller: UsagePoller, endpoints: dict[str, Any], kid: str, check: Any) -> Any:
    """Poll until ``check(reading)`` holds (replies may need a tick or two to be read)."""
    for _ in range(200):
        reading = poller.poll(endpoints)[kid]
        if check(reading):
            return reading
        time.sleep(0.02)
    raise AssertionError(f"never settled; last reading {reading}")


def test_hung_kernels_cost_one_short_wait_per_round_together_and_are_reported_late() -> None:
    """Eight endpoints that accept messages but never reply: one in-tick wait for all."""
    context = zmq.Context()
    sinks = []
    endpoints = {}
    for i in range(8):
        sink = context.socket(zmq.ROUTER)  # what a hung kernel's control socket looks like
        sink.linger = 0
        endpoints[f"k{i}"] = endpoint(sink.bind_to_random_port("tcp://127.0.0.1"))
        sinks.append(sink)
    clock = Clock()
    poller = UsagePoller(interval=60.0, timeout=5.0, wait=0.2, clock=clock)
    try:
        readings = poller.poll(endpoints)
        # the round waits the in-tick budget once for all eight (not 8 x 0.2 s, not the timeout;
        # the slack above one budget is for a loaded CPU)
        assert 0.2 <= poller.last_round_seconds < 0.2 * 4
        assert {r.reason for r in readings.values()} == {
            "waiting for the kernel's first usage_reply"
        }
        # not due again for 60 s and not late yet: the next round only reads, without waiting
        poller.poll(endpoints)
        assert poller.last_round_seconds < 0.2  # less than one budget: it did not wait
        # "did not answer within usage_timeout" comes from the clock, not from a round waiting
        clock.now += 5.0
        readings = poller.poll(endpoints)
        for reading in readings.values():
            assert reading.reason == "kernel did not answer usage_request within 5 s"
            assert reading.cpu_percent is None
            assert reading.memory is None
        # that round sent the kernel_info probes (old kernel or hung?): one budget again
        assert poller.last_round_seconds < 0.2 * 4
        poller.poll(endpoints)
        assert poller.last_round_seconds < 0.2  # nothing sent: nothing to wait for
        # a kernel that is gone loses its client
        poller.poll({})
        assert poller.open_clients == 0
        assert poller.poll({}) == {}
    finally:
        poller.close()
        for sink in sinks:
            sink.close()
        context.destroy(linger=0)  # closes any socket a failed assert left open


def test_a_reply_after_the_in_tick_wait_is_read_next_round_with_its_latency() -> None:
    context = zmq.Context()
    kernel = FakeKernel(context)
    endpoints = {"k": endpoint(kernel.port)}
    clock = Clock()
    poller = UsagePoller(interval=60.0, timeout=5.0, wait=0.0, clock=clock)
    try:
        assert poller.poll(endpoints)["k"].memory is None  # sent; no time to wait for the reply
        kernel.answer(1)
        clock.now += 0.5  # the next tick
        reading = settle(poller, endpoints, "k", lambda r: r.memory is not None)
        assert reading.memory == kernel.memory
        assert reading.reason is None
        assert reading.latency == 0.5  # request to reading the reply, on the poller's clock
    finally:
        poller.close()
        kernel.close()
        context.destroy(linger=0)  # closes any socket a failed assert left open


def test_a_kernel_restarted_on_the_same_ports_before_it_answered_is_not_called_old() -> None:
    """The probe reaches the new process with a usage_request of its own right in front."""
    context = zmq.Context()
    before = FakeKernel(context)
    port = before.port
    endpoints = {"k": endpoint(port)}
    clock = Clock()
    poller = UsagePoller(interval=60.0, timeout=1.0, wait=0.0, clock=clock)
    try:
        poller.poll(endpoints)
        assert before.answer(1, silent=True) == ["usage_request"]  # read; the process dies
        before.close()
        after = FakeKernel(context, port=port)  # the restarted kernel, same connection info
        after.wait_for_client()
        clock.now += 1.0
        reading = poller.poll(endpoints)["k"]
        assert reading.reason == "kernel did not answer usage_request within 1 s"
        assert after.answer(2) == ["usage_request", "kernel_info_request"]
        reading = settle(poller, endpoints, "k", lambda r: r.memory is not None)
        assert reading.reason is None
        assert reading.memory == after.memory
        after.close()
    finally:
        poller.close()
        context.destroy(linger=0)  # closes any socket a failed assert left open


def test_a_restarted_kernel_starts_over_its_cpu_figure() -> None:
    """psutil's first CPU figure of a new process is meaningless; it is not shown."""
    context = zmq.Context()
    before = FakeKernel(context)
    port = before.port
    endpoints = {"k": endpoint(port)}
    clock = Clock()
    poller = UsagePoller(interval=1.0, timeout=5.0, wait=0.0, clock=clock)
    try:
        poller.poll(endpoints)
        before.answer(1, cpu=0.0)
        settle(poller, endpoints, "k", lambda r: r.memory is not None)
        before.answer(1, cpu=40.0)  # the second request went out at once, for a real CPU figure
        assert settle(poller, endpoints, "k", lambda r: r.cpu_percent == 40.0).pid == 7
        before.close()
        after = FakeKernel(context, port=port)
        after.wait_for_client()
        after.memory = 60_000_000
        clock.now += 1.0
        poller.poll(endpoints)
        after.answer(1, cpu=0.0)
        reading = settle(poller, endpoints, "k", lambda r: r.memory == after.memory)
        assert reading.cpu_percent is None  # not the new process's first 0.0, not the old 40
        after.close()
    finally:
        poller.close()
        context.destroy(linger=0)  # closes any socket a failed assert left open


def test_an_old_kernel_is_asked_again_after_recheck_seconds() -> None:
    """Upgrading ipykernel and restarting the kernel on the same ports clears the verdict."""
    context = zmq.Context()
    old = FakeKernel(context, usage=False)
    endpoints = {"k": endpoint(old.port)}
    clock = Clock()
    poller = UsagePoller(interval=1.0, timeout=1.0, wait=0.0, recheck=600.0, clock=clock)
    try:
        poller.poll(endpoints)
        old.answer(1)
        clock.now += 1.0
        poller.poll(endpoints)
        assert old.answer(2) == ["usage_request", "kernel_info_request"]
        reading = settle(poller, endpoints, "k", lambda r: "ignores usage_request" in r.reason)
        assert "this kernel is fake 0.1" in reading.reason
        assert "restart the kernel" in reading.reason
        clock.now += 599.0
        poller.poll(endpoints)
        assert not old.socket.poll(100)  # not asked again before recheck seconds
        old.usage = True  # upgraded
        clock.now += 1.0
        poller.poll(endpoints)
        assert old.answer(1) == ["usage_request"]
        reading = settle(poller, endpoints, "k", lambda r: r.memory is not None)
        assert reading.reason is None
    finally:
        poller.close()
        old.close()
        context.destroy(linger=0)  # closes any socket a failed assert left open


async def test_stop_closes_the_usage_sockets_when_the_tick_is_already_past_polling() -> None:
    """A tick that outlives stop()'s join, after its poll(): stop() still closes, and the rest
    of that late tick opens nothing again."""

    class Manager:
        def list_kernel_ids(self) -> list[str]:
            return []

    context = zmq.Context()
    sink = context.socket(zmq.ROUTER)
    sink.linger = 0
    port = sink.bind_to_random_port("tcp://127.0.0.1")
    monitor = ServerMonitor(Manager(), None, prometheus=False)
    try:
        assert monitor.usage is not None
        monitor.usage.poll({"k": endpoint(port)})  # what the tick did before stop()
        assert monitor.usage.open_clients == 1
        monitor.stop()
        assert monitor.usage.open_clients == 0
        assert monitor.usage._context is None  # the ZMQ context is gone too
        monitor.poll_usage()  # the rest of a late tick opens nothing again
        assert monitor.usage.open_clients == 0
        assert monitor.usage._context is None
    finally:
        sink.close()
        context.destroy(linger=0)  # closes any socket a failed assert left open


async def test_a_kernel_no_client_has_connected_to_stays_starting(
    jp_fetch: Any, jp_ws_fetch: Any, jp_serverapp: Any, wait_metrics: Any, monitor: Any
) -> None:
    import psutil

    kid = await start(jp_fetch, HIDDEN)
    kernel = jp_serverapp.kernel_manager.get_kernel(kid)
    port = kernel.get_connection_info()["control_port"]
    process = psutil.Process(kernel.provisioner.hidden_pid)
    deadline = time.monotonic() + 30
    while not any(
        c.status == psutil.CONN_LISTEN and c.laddr.port == port
        for c in process.net_connections("tcp")
    ):
        assert time.monotonic() < deadline, "the kernel never listened on its control port"
        await asyncio.sleep(0.1)
    # many usage rounds later (a request sent now would be answered within them)
    first = await wait_metrics(lambda d: kernel_entry(d, kid))
    doc = await wait_metrics(lambda d: d["time"] > first["time"] + 15 * USAGE_INTERVAL)
    entry = kernel_entry(doc, kid)
    assert entry["execution_state"] == "starting"
    assert entry["reason"] == USAGE_STARTING
    assert entry["cpu_percent"] is None
    assert (await kernel_model(jp_fetch, kid))["execution_state"] == "starting"
    assert monitor.usage.open_clients == 0
    # a client connects: the server itself ends "starting", and the kernel is asked from then on
    ws = await jp_ws_fetch("api", "kernels", kid, "channels")
    doc = await wait_metrics(lambda d: (k := kernel_entry(d, kid)) and k["source"] == "kernel")
    assert kernel_entry(doc, kid)["execution_state"] == "idle"
    ws.close()


async def test_a_busy_kernel_stays_busy_while_it_reports_usage(
    jp_fetch: Any, jp_ws_fetch: Any, wait_metrics: Any, monitor: Any
) -> None:
    kid = await start(jp_fetch, HIDDEN)
    ws = await jp_ws_fetch("api", "kernels", kid, "channels")
    await wait_metrics(
        lambda d: (
            (k := kernel_entry(d, kid))
            and k["execution_state"] == "idle"
            and k["cpu_percent"] is not None
        )
    )
    await ws.write_message(execute_request("import time; time.sleep(4)"))
    doc = await wait_metrics(lambda d: kernel_entry(d, kid)["execution_state"] == "busy")
    busy_since = kernel_entry(doc, kid)["busy_since"]
    assert busy_since is not None
    replies = monitor.usage.replies
    states, since, activity = set(), set(), []
    while monitor.usage.replies - replies < 5:
        model = await kernel_model(jp_fetch, kid)
        ours = kernel_entry(await get(jp_fetch), kid)
        states |= {model["execution_state"], ours["execution_state"]}
        since.add(ours["busy_since"])
        activity.append(model["last_activity"])
        await asyncio.sleep(INTERVAL / 4)
    # the kernel answered while running the cell (control thread) and never looked idle
    assert states == {"busy"}
    assert since == {busy_since}
    # jupyter_server counts any IOPub message of a busy kernel as activity (record_activity),
    # so last_activity may advance with each reply while the cell runs; it never goes back
    assert activity == sorted(activity)
    # the cell's end makes it idle; from then on being asked leaves last_activity alone
    doc = await wait_metrics(lambda d: kernel_entry(d, kid)["execution_state"] == "idle")
    after = (await kernel_model(jp_fetch, kid))["last_activity"]
    replies = monitor.usage.replies
    while monitor.usage.replies - replies < 3:
        await asyncio.sleep(INTERVAL / 4)
    model = await kernel_model(jp_fetch, kid)
    assert (model["execution_state"], model["last_activity"]) == ("idle", after)
    ws.close()


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
    )
    (entry,) = build_document(snap, registry.view(), usage={})["kernels"]
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
