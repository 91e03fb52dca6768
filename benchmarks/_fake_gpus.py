"""Fake GPUs for the benchmarks: the tests' fake NVML with live processes and per-process samples.

Every device lists the given processes as compute processes (1 GiB each) and, on each
``nvmlDeviceGetProcessUtilization`` call, returns what a driver keeps since the last reading:
one sample per process every 1/6 s of the last second, as real drivers keep them. In
:class:`OlderFakeNvml` the call is missing, as in bindings without it (and as if the sampler never
asked, as before it did): the baseline for what the per-process queries add.

Also a launcher: ``python benchmarks/_fake_gpus.py N [jupyter server arguments]`` runs a Jupyter
server whose NVML is N such devices, listing the server's child processes (its kernels).
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.metrics.fake_nvml import FakeNvml, device, proc

GIB = 2**30
SAMPLES_PER_SECOND = 6


class LiveFakeNvml(FakeNvml):
    """``devices`` fake GPUs whose processes are ``pids()``, re-read every ``refresh`` seconds."""

    def __init__(
        self,
        devices: int,
        pids: Callable[[], list[int]],
        *,
        refresh: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__([device(i) for i in range(devices)])
        self._pids = pids
        self._refresh = refresh
        self._clock = clock
        self._listed: list[Any] = []
        self._listed_at = float("-inf")

    def _processes(self) -> list[Any]:
        now = self._clock()
        if now - self._listed_at >= self._refresh:
            self._listed = [proc(pid, GIB) for pid in self._pids()]
            self._listed_at = now
        return self._listed

    def nvmlDeviceGetComputeRunningProcesses(self, handle: dict[str, Any]) -> list[Any]:
        return self._processes()

    def nvmlDeviceGetGraphicsRunningProcesses(self, handle: dict[str, Any]) -> list[Any]:
        return []

    def nvmlDeviceGetProcessUtilization(self, handle: dict[str, Any], last_seen: int) -> list[Any]:
        now_us = int(self._clock() * 1e6)
        step = 1_000_000 // SAMPLES_PER_SECOND
        first = max(last_seen + 1, now_us - 1_000_000)
        stamps = range(first + step - 1, now_us + 1, step)
        return [
            SimpleNamespace(
                pid=p.pid, timeStamp=stamp, smUtil=40 + p.pid % 50, memUtil=5, encUtil=0, decUtil=0
            )
            for p in self._processes()
            for stamp in stamps
        ]


class _Missing:
    """A class attribute that reads as missing (AttributeError), like an absent pynvml call."""

    def __get__(self, obj: object, owner: type | None = None) -> Any:
        raise AttributeError("nvmlDeviceGetProcessUtilization")


class OlderFakeNvml(LiveFakeNvml):
    """The same GPUs through a pynvml without per-process utilisation."""

    nvmlDeviceGetProcessUtilization = _Missing()  # type: ignore[assignment]


def children_of(pid: int) -> Callable[[], list[int]]:
    import psutil

    parent = psutil.Process(pid)
    return lambda: [child.pid for child in parent.children()]


def serve(argv: list[str]) -> None:
    """Run ``jupyter server`` with ``argv[0]`` fake GPUs in place of pynvml."""
    devices, rest = int(argv[0]), argv[1:]
    sys.modules["pynvml"] = LiveFakeNvml(devices, children_of(os.getpid()))  # type: ignore[assignment]
    from jupyter_server.serverapp import main

    sys.argv = ["jupyter-server", *rest]
    main()


if __name__ == "__main__":
    serve(sys.argv[1:])
