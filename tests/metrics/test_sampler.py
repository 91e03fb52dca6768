from __future__ import annotations

import json
import logging
import math
import os
import subprocess
import sys
import threading
import time

import pytest

from jupyter_torchlab.metrics import (
    GpuSampler,
    HostSnapshot,
    ProcessTreeSampler,
    Sampler,
    Snapshot,
)
from jupyter_torchlab.metrics.sampler import _next_deadline

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
    sampler = make_sampler(targets=lambda: targets, gpu=GpuSampler(nvml, environ={}))
    snap = sampler.sample_once()

    assert set(snap.trees) == {"kernel-a", "kernel-b"}  # a vanished pid is simply absent
    assert snap.trees["kernel-a"].gpu_memory == 4 * GiB  # both pids, both devices
    assert snap.trees["kernel-a"].pids == (gpu_user.pid, worker)
    assert snap.trees["kernel-b"].gpu_memory == 0
    assert [g.index for g in snap.gpus] == [0, 1]
    assert snap.gpu_reason is None
    assert snap.errors == {}
    assert snap.host is not None
    assert snap.host.cpu_percent == 12.5


def test_gpu_memory_is_unknown_without_a_gpu_reading(make_tree):
    tree = make_tree("sleep")
    no_gpu = GpuSampler(
        FakeNvml([], init_error=error(NVML_ERROR_LIBRARY_NOT_FOUND)),
        environ={},
        torch_fallback=False,
    )
    snap = make_sampler(targets=lambda: {"k": tree.pid}, gpu=no_gpu).sample_once()
    assert snap.trees["k"].gpu_memory is None
    assert snap.gpus == ()
    assert "not found" in snap.gpu_reason
    snap = make_sampler(targets=lambda: {"k": tree.pid}, enable_gpu=False, gpu=None).sample_once()
    assert snap.trees["k"].gpu_memory is None
    assert snap.gpu_reason is None


def test_to_dict_is_json_ready(make_tree):
    tree = make_tree("sleep")
    sampler = make_sampler(
        host=StubHost(cpu_percent=math.nan),
        targets=lambda: {"k": tree.pid},
        extra=lambda: {"ratio": math.inf, "names": ("a", "b")},
    )
    data = sampler.sample_once().to_dict()
    text = json.dumps(data, allow_nan=False)  # raises on NaN/inf
    assert json.loads(text) == data
    assert data["host"]["cpu_percent"] is None
    assert data["host"]["per_cpu"] == [10.0, 15.0]
    assert data["host"]["load_avg"] == [0.5, 0.25, 0.125]
    assert data["gpus"][0]["name"] == "NVIDIA Fake 0"
    assert data["gpus"][0]["processes"] == []
    assert data["trees"]["k"]["pids"] == [tree.pid]
    assert data["extra"] == {"ratio": None, "names": ["a", "b"]}
    assert data["errors"] == {}
    assert set(data) == {"time", "host", "gpus", "gpu_reason", "trees", "errors", "extra"}


def test_snapshots_are_immutable():
    snap = make_sampler().sample_once()
    with pytest.raises(AttributeError):
        snap.time = 0  # type: ignore[misc]
    with pytest.raises(TypeError):
        snap.errors["x"] = "y"  # type: ignore[index]


def test_a_failing_source_is_reported_and_the_others_still_sampled(make_tree, caplog):
    tree = make_tree("sleep")
    host = StubHost()
    host.fail = OSError("no /proc/stat")

    def extra():
        raise RuntimeError("extra broke")

    sampler = make_sampler(host=host, targets=lambda: {"k": tree.pid}, extra=extra)
    with caplog.at_level(logging.WARNING, logger="jupyter_torchlab.metrics"):
        for _ in range(3):
            snap = sampler.sample_once()
    assert snap.host is None
    assert snap.errors == {
        "host": "OSError: no /proc/stat",
        "extra": "RuntimeError: extra broke",
    }
    assert "k" in snap.trees
    assert len(snap.gpus) == 1
    assert len([r for r in caplog.records if "no /proc/stat" in r.getMessage()]) == 1

    host.fail = None
    assert sampler.sample_once().errors == {"extra": "RuntimeError: extra broke"}


def test_failing_targets_are_reported():
    def targets():
        raise KeyError("kernel manager went away")

    snap = make_sampler(targets=targets).sample_once()
    assert snap.trees == {}
    assert "kernel manager went away" in snap.errors["targets"]


def test_history_is_bounded_and_windowed():
    clock = Clock()
    sampler = make_sampler(interval=1.0, history_seconds=5.0, clock=clock, wall=lambda: 7.0)
    assert sampler.latest() is None
    assert sampler.history() == []
    for _ in range(20):
        sampler.sample_once()
        clock.now += 1.0
    clock.now -= 1.0  # "now" is the last tick
    assert len(sampler.history()) == 6  # 5 s of 1 s ticks, both ends included
    assert len(sampler.history(2.0)) == 3
    assert len(sampler.history(0.0)) == 1
    assert sampler.history()[-1] is sampler.latest()
    assert sampler.latest().time == 7.0


def test_subscribers_get_each_snapshot_and_a_failing_one_is_logged(caplog):
    sampler = make_sampler()
    got: list[Snapshot] = []

    def broken(snapshot: Snapshot) -> None:
        raise ValueError("boom")

    sampler.subscribe(broken)
    unsubscribe = sampler.subscribe(got.append)
    with caplog.at_level(logging.ERROR, logger="jupyter_torchlab.metrics"):
        first = sampler.sample_once()
        second = sampler.sample_once()
    assert got == [first, second]
    assert len([r for r in caplog.records if "boom" in r.getMessage()]) == 1
    unsubscribe()
    unsubscribe()  # twice is harmless
    sampler.sample_once()
    assert len(got) == 2


def test_start_stop_is_fast_and_leaves_no_thread():
    sampler = make_sampler(interval=60.0)
    first = threading.Event()
    sampler.subscribe(lambda snap: first.set())
    start = time.monotonic()
    sampler.start()
    sampler.start()  # idempotent
    assert first.wait(5), "the first tick happens at once, not after an interval"
    assert sampler.running
    sampler.stop()
    # stop wakes the 60 s wait instead of sleeping through it
    assert time.monotonic() - start < 1.0
    assert not sampler.running
    assert sampler.latest() is not None
    sampler.stop()  # twice is harmless


def test_thread_survives_a_failing_subscriber_and_keeps_ticking():
    sampler = make_sampler(interval=0.01)
    calls: list[int] = []
    enough = threading.Event()

    def flaky(snapshot: Snapshot) -> None:
        calls.append(1)
        if len(calls) >= 3:
            enough.set()
        raise RuntimeError("subscriber bug")

    sampler.subscribe(flaky)
    sampler.start()
    try:
        assert enough.wait(10)
        assert sampler.running
    finally:
        sampler.stop()


def test_stop_from_a_subscriber_does_not_deadlock():
    sampler = make_sampler(interval=0.01)
    stopped = threading.Event()

    def stop_now(snapshot: Snapshot) -> None:
        sampler.stop()
        stopped.set()

    sampler.subscribe(stop_now)
    sampler.start()
    assert stopped.wait(5)
    sampler._thread.join(5)  # the thread ends by itself after its own stop()
    sampler.stop()
    assert not sampler.running


def test_ticks_stay_on_a_fixed_grid():
    assert _next_deadline(0.0, 1.0, now=0.3) == 1.0  # time spent sampling does not shift ticks
    assert _next_deadline(1.0, 1.0, now=1.999) == 2.0
    assert _next_deadline(0.0, 1.0, now=1.0) == 2.0
    assert _next_deadline(0.0, 1.0, now=3.5) == 4.0  # overran: skip missed ticks, stay on grid
    deadline = 0.0
    for _ in range(1000):
        deadline = _next_deadline(deadline, 0.1, now=deadline + 0.05)
    assert deadline == pytest.approx(100.0)  # no accumulated drift


def test_invalid_arguments_say_what_is_wrong():
    with pytest.raises(ValueError, match="interval"):
        Sampler(interval=0, host=StubHost(), enable_gpu=False)
    with pytest.raises(ValueError, match="history_seconds"):
        Sampler(history_seconds=-1, host=StubHost(), enable_gpu=False)


def test_a_running_sampler_does_not_hang_interpreter_exit():
    code = (
        "from jupyter_torchlab.metrics import Sampler\n"
        "import os\n"
        "s = Sampler(interval=0.05, targets=lambda: {'me': os.getpid()})\n"
        "s.start()\n"
        "assert s.history(5) is not None\n"
        "print('started', flush=True)\n"
    )
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0, done.stderr
    assert "started" in done.stdout


def test_default_sources_sample_this_process():
    sampler = Sampler(targets=lambda: {"me": os.getpid()}, enable_gpu=False)
    snap = sampler.sample_once()
    assert snap.host is not None
    assert snap.trees["me"].pid == os.getpid()
    assert isinstance(sampler._process, ProcessTreeSampler)


def test_stopping_shuts_nvml_down_and_a_restart_reinitialises_it():
    nvml = FakeNvml([device(0)])
    sampler = make_sampler(interval=60.0, gpu=GpuSampler(nvml, environ={}))
    for run in (1, 2):
        ticked = threading.Event()
        unsubscribe = sampler.subscribe(lambda snap, ticked=ticked: ticked.set())
        sampler.start()
        assert ticked.wait(5)
        sampler.stop()
        unsubscribe()
        assert (nvml.init_calls, nvml.shutdown_calls) == (run, run)
