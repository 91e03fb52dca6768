"""Who holds a GPU while idle, whose GPU waits, and the opt-in culling of idle holders.

There is no GPU here: the fake NVML (the sampler's test seam) reports the kernels' real pids as
GPU processes, so everything above NVML is the real code: the registry's idle times, the flags,
the document, the Prometheus series, and shutting a kernel down through the real kernel manager.
"""

from __future__ import annotations

import asyncio
import json
import os
from typing import Any

import pytest
from prometheus_client import REGISTRY
from traitlets.config import Config

from jupyter_torchlab.metrics import GpuSampler, HostSampler, ProcessTreeSnapshot, Sampler
from jupyter_torchlab.metrics.starvation import STARVED_AFTER
from jupyter_torchlab.server.gpu_use import GpuUse
from jupyter_torchlab.server.kernels import KernelInfo
from jupyter_torchlab.server.monitor import ServerMonitor
from tests.metrics.fake_nvml import FakeNvml, device, proc, sample

from .conftest import INTERVAL, execute_request, kernel_entry, kernel_message, server_config

GIB = 2**30


def info(kid: str, state: str, *, idle_since: float | None = None, pid: int = 1) -> KernelInfo:
    return KernelInfo(
        kid, "python3", state, None, None, 0, pid, f"{kid}.ipynb", None, idle_since=idle_since
    )


def tree(
    gpu_memory: int | None, utilization: float | None = None, devices: int = 1
) -> ProcessTreeSnapshot:
    return ProcessTreeSnapshot(
        pid=1,
        cpu_percent=0.0,
        rss=1,
        pss=None,
        num_threads=1,
        num_children=0,
        pids=(1,),
        gpu_memory=gpu_memory,
        gpu_utilization=utilization,
        gpu_devices=tuple(range(devices)) if gpu_memory else (),
    )


def test_an_idle_kernel_holding_gpu_memory_is_flagged_once_the_threshold_passes() -> None:
    use = GpuUse(warn_after=1800.0)
    kernels = {
        "holder": info("holder", "idle", idle_since=1000.0),
        "empty": info("empty", "idle", idle_since=1000.0),  # idle too, but holds nothing
        "busy": info("busy", "busy"),
    }
    trees = {"holder": tree(4 * GIB), "empty": tree(0), "busy": tree(4 * GIB, 95.0)}

    assert use.observe(kernels, trees, now=1000.0 + 1799.0) == {}
    flags = use.observe(kernels, trees, now=1000.0 + 1800.0)
    assert set(flags) == {"holder"}
    assert flags["holder"].holding_idle == {"seconds": 1800.0, "bytes": 4 * GIB}
    assert flags["holder"].gpu_waiting is None

    assert GpuUse(warn_after=0).observe(kernels, trees, now=10**6) == {}  # 0: off


def test_an_idle_kernel_whose_thread_keeps_the_gpu_busy_is_not_an_idle_holder() -> None:
    # a cell started a background thread (or a child process) that trains on: the kernel reads
    # idle, but its GPU works; the idle stretch counts from the last time it did
    use = GpuUse(warn_after=1800.0)
    kernels = {"bg": info("bg", "idle", idle_since=1000.0)}
    assert use.observe(kernels, {"bg": tree(4 * GIB, 85.0)}, now=4000.0) == {}
    quiet = {"bg": tree(4 * GIB, 0.0)}
    assert use.observe(kernels, quiet, now=4000.0 + 1799.0) == {}
    flags = use.observe(kernels, quiet, now=4000.0 + 1800.0)
    assert flags["bg"].holding_idle == {"seconds": 1800.0, "bytes": 4 * GIB}
    # a little work (under WORKING_ABOVE) does not count; an unknown share does not either
    assert use.observe(kernels, {"bg": tree(4 * GIB, 3.0)}, now=6000.0)["bg"].holding_idle
    assert use.observe(kernels, {"bg": tree(4 * GIB, None)}, now=6001.0)["bg"].holding_idle


def test_a_busy_kernel_whose_gpu_share_stays_low_is_said_to_wait() -> None:
    use = GpuUse()
    kernels = {"k": info("k", "busy")}
    low = {"k": tree(2 * GIB, 4.0)}
    assert use.observe(kernels, low, now=0.0) == {}
    assert use.observe(kernels, {"k": tree(2 * GIB, 2.0)}, now=STARVED_AFTER - 1) == {}
    flags = use.observe(kernels, low, now=STARVED_AFTER)
    assert flags["k"].gpu_waiting is not None
    assert flags["k"].gpu_waiting["seconds"] == STARVED_AFTER
    assert flags["k"].gpu_waiting["utilization"] == pytest.approx((4 + 2 + 4) / 3)
    # one busy reading starts the stretch over
    assert use.observe(kernels, {"k": tree(2 * GIB, 80.0)}, now=STARVED_AFTER + 1) == {}
    assert use.observe(kernels, low, now=STARVED_AFTER + 2) == {}
    # unknown utilisation (the GPU does not report it) never claims a wait
    unknown = {"k": tree(2 * GIB, None)}
    assert use.observe(kernels, unknown, now=10**4) == {}
    assert use.observe(kernels, unknown, now=10**5) == {}


def test_a_kernel_on_eight_gpus_waits_when_each_gpu_does() -> None:
    """The share sums over the GPUs (like CPU over cores); waiting is judged per GPU."""
    use = GpuUse()
    kernels = {"k": info("k", "busy")}
    eight_at_5 = {"k": tree(8 * GIB, 40.0, devices=8)}  # 5% of each of 8 GPUs
    use.observe(kernels, eight_at_5, now=0.0)
    flags = use.observe(kernels, eight_at_5, now=STARVED_AFTER)
    assert flags["k"].gpu_waiting == {"seconds": STARVED_AFTER, "utilization": 5.0}
    two_at_40 = {"k": tree(2 * GIB, 80.0, devices=2)}  # both GPUs work
    assert use.observe(kernels, two_at_40, now=STARVED_AFTER + 1) == {}


class Wall:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class NoKernels:
    def list_kernel_ids(self) -> list[str]:
        return []


async def test_the_document_and_prometheus_carry_each_kernels_gpu_share_and_idle_flag() -> None:
    wall = Wall(50_000.0)
    me = os.getpid()
    nvml = FakeNvml(
        [
            device(0, compute=[proc(me, 3 * GIB)], samples=[sample(me, 10, 30)]),
            device(1, compute=[proc(me, GIB)], samples=[sample(me, 10, 12), sample(me, 20, 8)]),
            device(2),
        ]
    )
    sampler = Sampler(host=HostSampler(), gpu=GpuSampler(nvml, environ={}), wall=wall)
    monitor = ServerMonitor(
        NoKernels(), None, sampler=sampler, wall=wall, usage_interval=0, gpu_idle_warn=600.0
    )
    view = {"nb": info("nb", "idle", idle_since=wall.now - 3600.0, pid=me)}
    monitor.registry.view = lambda: view  # type: ignore[method-assign]
    try:
        doc = json.loads(monitor.tick() or b"{}")
        (entry,) = doc["kernels"]
        assert entry["gpu_memory"] == 4 * GIB
        assert entry["gpu_devices"] == [0, 1]
        assert entry["gpu_utilization"] == pytest.approx(30 + 10)  # device 1: mean of 12 and 8
        assert entry["gpu_utilization_reason"] is None
        # idle for an hour, but something of it keeps the GPU 40% busy: not an idle holder
        assert entry["holding_idle"] is None

        labels = {"kernel_id": "nb", "kernel_name": "python3", "path": "nb.ipynb"}
        value = REGISTRY.get_sample_value
        assert value("torchlab_kernel_gpu_utilization_percent", labels) == pytest.approx(40)
        assert value("torchlab_kernel_gpu_memory_bytes", labels) == 4 * GIB
        assert value("torchlab_kernel_idle_gpu_bytes", labels) == 0

        # no new samples for 10 minutes: the GPU did nothing of it since, and it is flagged
        wall.now += 600.0
        entry = json.loads(monitor.tick() or b"{}")["kernels"][0]
        assert entry["gpu_utilization"] == 0
        assert entry["holding_idle"] == {"seconds": 600.0, "bytes": 4 * GIB}
        assert "cull_at" not in entry["holding_idle"]  # culling is off
        assert value("torchlab_kernel_idle_gpu_bytes", labels) == 4 * GIB
        assert value("torchlab_kernel_idle_seconds", labels) == 4200.0  # since it went idle

        # it runs a cell: no longer idle, the flag and the idle bytes go
        view = {"nb": info("nb", "busy", pid=me)}
        wall.now += 1
        entry = json.loads(monitor.tick() or b"{}")["kernels"][0]
        assert entry["holding_idle"] is None
        assert value("torchlab_kernel_idle_gpu_bytes", labels) == 0
        assert value("torchlab_kernel_idle_seconds", labels) == 0
    finally:
        monitor.stop()
    assert REGISTRY.get_sample_value("torchlab_kernel_idle_gpu_bytes", labels) is None


async def test_a_gpu_without_per_process_utilisation_says_so_per_kernel() -> None:
    me = os.getpid()
    nvml = FakeNvml([device(0, compute=[proc(me, GIB)])])  # samples: Not Supported
    sampler = Sampler(host=HostSampler(), gpu=GpuSampler(nvml, environ={}))
    monitor = ServerMonitor(NoKernels(), None, sampler=sampler, prometheus=False, usage_interval=0)
    view = {"nb": info("nb", "busy", pid=me)}
    monitor.registry.view = lambda: view  # type: ignore[method-assign]
    try:
        entry = json.loads(monitor.tick() or b"{}")["kernels"][0]
        assert entry["gpu_memory"] == GIB
        assert entry["gpu_utilization"] is None
        assert "not reported by this GPU or driver" in entry["gpu_utilization_reason"]
        assert entry["gpu_waiting"] is None
    finally:
        monitor.stop()


# --- the opt-in culling, in a real server with real kernels ------------------------------------


@pytest.fixture
def jp_server_config() -> Config:
    return server_config(
        sample_interval=INTERVAL, history_seconds=30.0, gpu_idle_warn=1.0, gpu_idle_cull=1.5
    )


def fake_gpu_for(monitor: Any, pids: list[int]) -> None:
    """Make the server's sampler see ``pids`` as GPU processes holding 2 GiB each."""
    nvml = FakeNvml([device(0, compute=[proc(pid, 2 * GIB) for pid in pids])])
    monitor.sampler = Sampler(host=HostSampler(), gpu=GpuSampler(nvml, environ={}))


def actions(action: str) -> float:
    value = REGISTRY.get_sample_value("torchlab_kernel_idle_gpu_actions_total", {"action": action})
    return value or 0.0


@pytest.mark.slow
async def test_culling_warns_then_shuts_down_the_idle_holder_and_never_a_busy_kernel(
    jp_fetch: Any,
    jp_ws_fetch: Any,
    jp_serverapp: Any,
    monitor: Any,
    start_kernel: Any,
    wait_metrics: Any,
) -> None:
    idle = await start_kernel("idle.ipynb")
    busy = await start_kernel("busy.ipynb")
    km = jp_serverapp.kernel_manager
    # the notebook of each is open (a kernel no client connected to stays "starting")
    opened = await jp_ws_fetch("api", "kernels", idle, "channels")
    ws = await jp_ws_fetch("api", "kernels", busy, "channels")
    await ws.write_message(execute_request("import time\nfor _ in range(600): time.sleep(0.1)"))
    await wait_metrics(
        lambda d: (
            (b := kernel_entry(d, busy)) is not None
            and b["execution_state"] == "busy"
            and (i := kernel_entry(d, idle)) is not None
            and i["execution_state"] == "idle"
            and i["pid"] is not None
        )
    )
    # the busy cell shows a widget: the page opens a kernel subshell (JupyterLab 4.4+ with
    # ipykernel 7), whose busy/idle pair leaves jupyter_server's own state "idle"
    await ws.write_message(kernel_message("create_subshell_request", {}, "control"))
    await ws.write_message(kernel_message("kernel_info_request", {}, "control"))
    pids = [km.get_kernel(kid).provisioner.process.pid for kid in (idle, busy)]
    before = {a: actions(a) for a in ("warned", "culled")}
    fake_gpu_for(monitor, pids)

    doc = await wait_metrics(
        lambda d: (
            (i := kernel_entry(d, idle)) is not None and (i["holding_idle"] or {}).get("cull_at")
        )
    )
    flagged = kernel_entry(doc, idle)
    assert flagged is not None
    assert flagged["holding_idle"]["bytes"] == 2 * GIB
    assert flagged["holding_idle"]["seconds"] >= 1.0
    assert flagged["holding_idle"]["cull_at"] > doc["time"] - 1.0
    assert kernel_entry(doc, busy)["holding_idle"] is None  # type: ignore[index]
    warned = [a for a in doc["gpu_actions"] if a["action"] == "warned"]
    assert [(a["kernel_id"], a["path"]) for a in warned] == [(idle, "idle.ipynb")]

    doc = await wait_metrics(lambda d: kernel_entry(d, idle) is None, timeout=30)
    assert idle not in km.list_kernel_ids()  # shut down through the kernel manager
    culled = [a for a in doc["gpu_actions"] if a["action"] == "culled"]
    assert [(a["kernel_id"], a["path"], a["bytes"]) for a in culled] == [
        (idle, "idle.ipynb", 2 * GIB)
    ]
    assert actions("warned") == before["warned"] + 1
    assert actions("culled") == before["culled"] + 1
    # the document counts them too, for this server alone (the hub service serves these totals)
    doc = await wait_metrics(lambda d: d["counts"]["kernel_idle_gpu_actions"].get("culled"), 10)
    assert doc["counts"]["kernel_idle_gpu_actions"] == {"warned": 1, "culled": 1}

    # the busy kernel holds the same GPU memory the whole time and is left alone
    await asyncio.sleep(3 * 1.5)
    assert busy in km.list_kernel_ids()
    still = kernel_entry(await wait_metrics(lambda d: True), busy)
    assert still is not None
    assert still["execution_state"] == "busy"
    ws.close()
    opened.close()


@pytest.mark.slow
async def test_running_a_cell_after_the_warning_cancels_the_shutdown(
    jp_ws_fetch: Any, jp_serverapp: Any, monitor: Any, start_kernel: Any, wait_metrics: Any
) -> None:
    kid = await start_kernel("saved.ipynb")
    km = jp_serverapp.kernel_manager
    ws = await jp_ws_fetch("api", "kernels", kid, "channels")
    await wait_metrics(lambda d: (k := kernel_entry(d, kid)) is not None and k["pid"] is not None)
    fake_gpu_for(monitor, [km.get_kernel(kid).provisioner.process.pid])
    await wait_metrics(
        lambda d: (
            (k := kernel_entry(d, kid)) is not None and (k["holding_idle"] or {}).get("cull_at")
        )
    )
    # the user comes back within the grace period: a short cell, then idle again
    await ws.write_message(execute_request("x = 1"))
    await asyncio.sleep(1.2)
    # a fresh idle stretch: warned afresh later, not shut down on the old warning
    doc = await wait_metrics(
        lambda d: (
            sum(a["action"] == "warned" and a["kernel_id"] == kid for a in d["gpu_actions"]) >= 2
        ),
        timeout=15,
    )
    assert kernel_entry(doc, kid) is not None
    assert kid in km.list_kernel_ids()
    ws.close()
