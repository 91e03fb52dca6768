"""The ServerMonitor's tick, driven by hand: one registry view, one sample, one ring buffer."""

from __future__ import annotations

import json
import os
from typing import Any

from jupyter_torchlab.metrics import GpuSampler, HostSampler, Sampler
from jupyter_torchlab.server.kernels import KernelInfo
from jupyter_torchlab.server.monitor import ServerMonitor
from tests.metrics.fake_nvml import FakeNvml, device


class NoKernels:
    def list_kernel_ids(self) -> list[str]:
        return []


class RecordingSampler(Sampler):
    """The real sampler, recording the targets of each tick."""

    def __init__(self) -> None:
        super().__init__(host=HostSampler(), gpu=GpuSampler(FakeNvml([device(0)]), environ={}))
        self.asked: list[dict[str, int]] = []

    def sample_once(self, targets: Any = None) -> Any:
        self.asked.append(dict(targets or {}))
        return super().sample_once(targets or {})


class Wall:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _info(kid: str, pid: int | None) -> KernelInfo:
    return KernelInfo(kid, "python3", "idle", None, None, 0, pid, f"{kid}.ipynb", None)


async def test_a_tick_samples_and_lists_the_kernels_of_one_registry_view() -> None:
    sampler = RecordingSampler()
    monitor = ServerMonitor(NoKernels(), None, sampler=sampler, prometheus=False)
    views = [{"a": _info("a", os.getpid()), "remote": _info("remote", None)}]
    monitor.registry.view = lambda: views[0]  # type: ignore[method-assign]
    try:
        data = monitor.tick()
        assert data is not None
        doc = json.loads(data)
        assert sampler.asked == [{"a": os.getpid()}]  # only kernels with a local process
        assert [k["id"] for k in doc["kernels"]] == ["a", "remote"]
        assert doc["kernels"][0]["memory"] > 0
        assert doc["kernels"][0]["path"] == "a.ipynb"
        assert len(doc["gpus"]) == 1
        assert monitor.latest() == data  # GET writes these very bytes
        # the registry changes between ticks: the next tick follows it, both halves at once
        views[0] = {"b": _info("b", os.getpid())}
        doc = json.loads(monitor.tick() or b"{}")
        assert sampler.asked[-1] == {"b": os.getpid()}
        assert [k["id"] for k in doc["kernels"]] == ["b"]
    finally:
        monitor.stop()


async def test_the_history_is_one_bounded_ring_buffer_of_encoded_snapshots() -> None:
    wall = Wall()
    sampler = Sampler(host=HostSampler(), enable_gpu=False, wall=wall)
    monitor = ServerMonitor(
        NoKernels(),
        None,
        sampler=sampler,
        interval=1.0,
        history_seconds=5.0,
        wall=wall,
        prometheus=False,
        usage_interval=0,
    )
    try:
        assert json.loads(monitor.history()) == {"snapshots": []}
        for _ in range(20):
            monitor.tick()
            wall.now += 1.0
        wall.now -= 1.0  # "now" is the last tick
        everything = json.loads(monitor.history())["snapshots"]
        assert len(everything) == 6  # 5 s of 1 s ticks, both ends included
        assert [s["time"] for s in everything] == [1014.0 + i for i in range(6)]
        assert len(json.loads(monitor.history(2.0))["snapshots"]) == 3
        assert len(json.loads(monitor.history(0.0))["snapshots"]) == 1
        assert json.loads(monitor.latest() or b"{}") == everything[-1]
    finally:
        monitor.stop()
