"""The kernel registry and the snapshot document, with an injected clock.

A remote (non-local) kernel cannot exist on this machine, so these tests use a small stand-in
kernel manager with the attributes jupyter_server's has; everything else is real.
"""

from __future__ import annotations

import asyncio
from types import MappingProxyType
from typing import Any

from traitlets import HasTraits, Unicode

from jupyter_torchlab.metrics import ProcessTreeSnapshot, Snapshot
from jupyter_torchlab.server.document import PROCESS_GONE, build_document
from jupyter_torchlab.server.kernels import NOT_LOCAL, NOT_RUNNING, KernelRegistry


class RemoteProvisioner:
    """What a gateway or container provisioner looks like from the server: no local process."""


class FakeKernel(HasTraits):
    execution_state = Unicode("starting")
    kernel_name = "python3"
    provisioner: Any = RemoteProvisioner()
    has_kernel = True


class FakeKernelManager:
    def __init__(self) -> None:
        self.kernels: dict[str, FakeKernel] = {}

    def list_kernel_ids(self) -> list[str]:
        return list(self.kernels)

    def get_kernel(self, kid: str) -> FakeKernel:
        return self.kernels[kid]

    def kernel_model(self, kid: str) -> dict[str, Any]:
        k = self.kernels[kid]
        return {
            "id": kid,
            "name": k.kernel_name,
            "execution_state": k.execution_state,
            "last_activity": "2026-01-01T00:00:00Z",
            "connections": 1,
        }


class FakeSessions:
    async def list_sessions(self) -> list[dict[str, Any]]:
        return [{"path": "remote.ipynb", "kernel": {"id": "r1"}}]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_busy_since_is_the_time_of_the_state_change() -> None:
    km, clock = FakeKernelManager(), Clock()
    km.kernels["r1"] = FakeKernel()
    registry = KernelRegistry(km, FakeSessions(), wall=clock)
    asyncio.run(registry.refresh())
    assert registry.view()["r1"].execution_state == "starting"
    assert registry.view()["r1"].path == "remote.ipynb"

    clock.now = 1001.25
    km.kernels["r1"].execution_state = "busy"
    clock.now = 1005.0  # later reads keep the moment it became busy
    assert registry.view()["r1"].execution_state == "busy"
    assert registry.view()["r1"].busy_since == 1001.25
    km.kernels["r1"].execution_state = "busy"  # no change: no new time
    asyncio.run(registry.refresh())
    assert registry.view()["r1"].busy_since == 1001.25

    km.kernels["r1"].execution_state = "idle"
    assert registry.view()["r1"].busy_since is None

    del km.kernels["r1"]
    asyncio.run(registry.refresh())
    assert registry.view() == {}


def test_a_kernel_without_a_local_process_is_listed_with_a_reason() -> None:
    km = FakeKernelManager()
    km.kernels["r1"] = FakeKernel()
    registry = KernelRegistry(km, FakeSessions())
    asyncio.run(registry.refresh())
    assert registry.targets() == {}  # nothing for the sampler to measure
    snap = Snapshot(
        time=5.0,
        host=None,
        gpus=(),
        gpu_reason="no GPU",
        trees=MappingProxyType({}),
        errors=MappingProxyType({}),
    )
    (entry,) = build_document(snap, registry.view())["kernels"]
    assert entry["pid"] is None
    assert entry["cpu_percent"] is None
    assert entry["memory"] is None
    assert entry["reason"] == NOT_LOCAL
    assert entry["path"] == "remote.ipynb"
    assert entry["connections"] == 1

    # a gateway kernel: running, but with no provisioner in this server
    km.kernels["r1"].provisioner = None
    asyncio.run(registry.refresh())
    assert registry.view()["r1"].reason == NOT_LOCAL
    km.kernels["r1"].has_kernel = False  # a local kernel not launched yet
    asyncio.run(registry.refresh())
    assert registry.view()["r1"].reason == NOT_RUNNING


def test_an_entry_joins_the_tree_sampled_for_its_kernel() -> None:
    """The tick samples the pids of one registry view and builds the entries from that view."""
    from jupyter_torchlab.server.kernels import KernelInfo

    info = KernelInfo("k", "python3", "idle", None, None, 0, 42, None, None)
    snap = Snapshot(
        time=5.0,
        host=None,
        gpus=(),
        gpu_reason=None,
        trees=MappingProxyType({}),
        errors=MappingProxyType({}),
    )
    (entry,) = build_document(snap, {"k": info})["kernels"]
    assert entry["memory"] is None  # no tree this tick: the process exited
    assert entry["reason"] == PROCESS_GONE

    tree = ProcessTreeSnapshot(
        pid=42, cpu_percent=5.0, rss=100, pss=80, num_threads=1, num_children=0, pids=(42,)
    )
    snap = Snapshot(**{**snap.__dict__, "trees": MappingProxyType({"k": tree})})
    (entry,) = build_document(snap, {"k": info})["kernels"]
    assert entry["memory"] == 80  # PSS when known
    assert entry["cpu_percent"] == 5.0
    assert entry["reason"] is None
