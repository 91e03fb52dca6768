from __future__ import annotations

import json
import logging
import math
import os

import pytest

from jupyter_torchlab.metrics import (
    GpuSampler,
    HostSnapshot,
    ProcessTreeSampler,
    Sampler,
)

from .fake_nvml import NVML_ERROR_LIBRARY_NOT_FOUND, FakeNvml, device, error, proc

GiB = 1 << 30


class StubHost:
    """A host source with fixed numbers (the real one is tested in test_host.py)."""

    def __init__(self, cpu_percent: float = 12.5) -> None:
        self.cpu_percent = cpu_percent
        self.fail: Exception | None = None

    def sample(self) -> HostSnapshot:
        if self.fail is not None:
            raise self.fail
        return HostSnapshot(
            cpu_percent=self.cpu_percent,
            cpu_count=2,
            cpu_limit=None,
            per_cpu=(10.0, 15.0),
            load_avg=(0.5, 0.25, 0.125),
            memory_total=8 * GiB,
            memory_used=2 * GiB,
            memory_available=6 * GiB,
            memory_limit=None,
            swap_total=0,
            swap_used=0,
        )


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def make_sampler(**kwargs) -> Sampler:
    kwargs.setdefault("host", StubHost())
    kwargs.setdefault("gpu", GpuSampler(FakeNvml([device(0)]), environ={}))
    return Sampler(**kwargs)


def test_snapshot_joins_gpu_memory_into_each_tree(make_tree):
    gpu_user, cpu_only = make_tree("sleep", "sleep"), make_tree("sleep")
    worker = gpu_user.pids("sleep")[0]
    nvml = FakeNvml(
        [
            device(0, compute=[proc(gpu_user.pid, GiB), proc(worker, 2 * GiB)]),
            device(1, compute=[proc(worker, GiB)]),
        ]
    )
    targets = {"kernel-a": gpu_user.pid, "kernel-b": cpu_only.pid, "gone": 4_000_000}
    sampler = make_sampler(gpu=GpuSampler(nvml, environ={}))
    snap = sampler.sample_once(targets)

    assert set(snap.trees) == {"kernel-a", "kernel-b"}  # a vanished pid is simply absent
    assert snap.trees["kernel-a"].gpu_memory == 4 * GiB  # both pids, both devices
    assert snap.trees["kernel-a"].pids == (gpu_user.pid, worker)
    assert snap.trees["kernel-b"].gpu_memory == 0
    assert [g.index for g in snap.gpus] == [0, 1]
    assert snap.gpu_reason is None
    assert snap.errors == {}
    assert snap.host is not None
    assert snap.host.cpu_percent == 12.5


def test_targets_are_given_per_tick(make_tree):
    """The caller decides each tick's targets: a tree appears and leaves with its key."""
    a, b = make_tree("sleep"), make_tree("sleep")
    sampler = make_sampler()
    assert set(sampler.sample_once({"a": a.pid}).trees) == {"a"}
    both = sampler.sample_once({"a": a.pid, "b": b.pid})
    assert set(both.trees) == {"a", "b"}
    assert both.trees["b"].pid == b.pid
    assert sampler.sample_once().trees == {}  # no targets: host and GPUs only
    assert sampler.sample_once({"b": b.pid}).trees["b"].pid == b.pid


def test_gpu_memory_is_unknown_without_a_gpu_reading(make_tree):
    tree = make_tree("sleep")
    no_gpu = GpuSampler(
        FakeNvml([], init_error=error(NVML_ERROR_LIBRARY_NOT_FOUND)),
        environ={},
        torch_fallback=False,
    )
    snap = make_sampler(gpu=no_gpu).sample_once({"k": tree.pid})
    assert snap.trees["k"].gpu_memory is None
    assert snap.gpus == ()
    assert "not found" in snap.gpu_reason
    snap = make_sampler(enable_gpu=False, gpu=None).sample_once({"k": tree.pid})
    assert snap.trees["k"].gpu_memory is None
    assert snap.gpu_reason is None


def test_to_dict_is_json_ready(make_tree):
    tree = make_tree("sleep")
    sampler = make_sampler(host=StubHost(cpu_percent=math.nan))
    data = sampler.sample_once({"k": tree.pid}).to_dict()
    text = json.dumps(data, allow_nan=False)  # raises on NaN/inf
    assert json.loads(text) == data
    assert data["host"]["cpu_percent"] is None
    assert data["host"]["per_cpu"] == [10.0, 15.0]
    assert data["host"]["load_avg"] == [0.5, 0.25, 0.125]
    assert data["gpus"][0]["name"] == "NVIDIA Fake 0"
    assert data["gpus"][0]["processes"] == []
    assert data["trees"]["k"]["pids"] == [tree.pid]
    assert data["errors"] == {}
    assert set(data) == {
        "time",
        "host",
        "gpus",
        "gpu_reason",
        "trees",
        "errors",
        "gpu_utilization_reason",
    }


def test_snapshots_are_immutable():
    snap = make_sampler().sample_once()
    with pytest.raises(AttributeError):
        snap.time = 0  # type: ignore[misc]
    with pytest.raises(TypeError):
        snap.errors["x"] = "y"  # type: ignore[index]


class BrokenProcessSource:
    def sample_many(self, pids):
        raise RuntimeError("process table broke")


def test_a_failing_source_is_reported_and_the_others_still_sampled(make_tree, caplog):
    tree = make_tree("sleep")
    host = StubHost()
    host.fail = OSError("no /proc/stat")
    sampler = make_sampler(host=host)
    with caplog.at_level(logging.WARNING, logger="jupyter_torchlab.metrics"):
        for _ in range(3):
            snap = sampler.sample_once({"k": tree.pid})
    assert snap.host is None
    assert snap.errors == {"host": "OSError: no /proc/stat"}
    assert "k" in snap.trees
    assert len(snap.gpus) == 1
    assert len([r for r in caplog.records if "no /proc/stat" in r.getMessage()]) == 1

    host.fail = None
    assert sampler.sample_once({"k": tree.pid}).errors == {}

    broken = make_sampler(process=BrokenProcessSource())
    snap = broken.sample_once({"k": tree.pid})
    assert snap.trees == {}
    assert snap.errors == {"process": "RuntimeError: process table broke"}
    assert snap.host is not None  # the other sources still answered
    assert len(snap.gpus) == 1


def test_default_sources_sample_this_process():
    sampler = Sampler(enable_gpu=False)
    snap = sampler.sample_once({"me": os.getpid()})
    assert snap.host is not None
    assert snap.trees["me"].pid == os.getpid()
    assert isinstance(sampler._process, ProcessTreeSampler)


def test_close_shuts_nvml_down_and_a_later_tick_reinitialises_it():
    nvml = FakeNvml([device(0)])
    sampler = make_sampler(gpu=GpuSampler(nvml, environ={}))
    for run in (1, 2):
        assert len(sampler.sample_once().gpus) == 1
        sampler.close()
        assert (nvml.init_calls, nvml.shutdown_calls) == (run, run)


def test_a_tree_gets_its_gpu_utilisation_and_devices(make_tree):
    from .fake_nvml import sample

    trainer, idle = make_tree("sleep", "sleep"), make_tree("sleep")
    worker = trainer.pids("sleep")[0]
    gpu0 = device(0, compute=[proc(trainer.pid, GiB), proc(idle.pid, GiB)])
    gpu0["samples"] = [sample(trainer.pid, 10, 40), sample(worker, 10, 0)]
    gpu1 = device(1, compute=[proc(worker, GiB)], samples=[sample(worker, 10, 35)])
    sampler = make_sampler(gpu=GpuSampler(FakeNvml([gpu0, gpu1]), environ={}))
    snap = sampler.sample_once({"trainer": trainer.pid, "idle": idle.pid})
    assert snap.trees["trainer"].gpu_utilization == 75.0  # 40 on GPU 0, 35 on GPU 1
    assert snap.trees["trainer"].gpu_devices == (0, 1)
    assert snap.trees["idle"].gpu_utilization == 0.0  # holds memory, computes nothing
    assert snap.trees["idle"].gpu_devices == (0,)
    none = sampler.sample_once({"cpu": make_tree("sleep").pid}).trees["cpu"]
    assert (none.gpu_utilization, none.gpu_devices) == (None, ())
