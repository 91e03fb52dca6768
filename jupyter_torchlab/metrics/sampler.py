"""One tick of sampling: host, GPUs and the given process trees, as one immutable :class:`Snapshot`.

:meth:`Sampler.sample_once` is driven by its user, who knows the targets of that tick: the server
takes one view of its kernels per tick and passes their pids; the kernel monitor passes its own
pid. The sampler keeps only what its sources need between ticks (CPU times, NVML handles); it
holds no history, no subscribers and no thread. :class:`~.ticker.Ticker` runs a tick on a
thread at a fixed rate for whoever wants one.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields, is_dataclass, replace
from types import MappingProxyType
from typing import Any

from ._util import LogOnce, logger
from .gpu import GpuReading, GpuSampler, GpuSnapshot
from .host import HostSampler, HostSnapshot
from .process import ProcessTreeSampler, ProcessTreeSnapshot

__all__ = ["Sampler", "Snapshot"]

_EMPTY: Mapping[str, Any] = MappingProxyType({})


def _jsonable(value: Any) -> Any:
    """Convert dataclasses, mappings and tuples to plain JSON types; NaN and inf become None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if value is None or isinstance(value, (str, int, bool)):
        return value
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: _jsonable(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset, deque)):
        return [_jsonable(v) for v in value]
    return str(value)


@dataclass(frozen=True)
class Snapshot:
    """Everything sampled in one tick. Immutable; ``to_dict()`` gives its JSON form."""

    time: float  # unix wall time
    host: HostSnapshot | None
    gpus: tuple[GpuSnapshot, ...]
    gpu_reason: str | None
    trees: Mapping[str, ProcessTreeSnapshot]  # target key -> tree, gpu_memory joined in
    errors: Mapping[str, str]  # source -> message, for sources that failed this tick
    # why a tree's gpu_utilization is None while it holds GPU memory (None: reported everywhere)
    gpu_utilization_reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """Return plain dicts/lists/numbers (tuples as lists, NaN as None), ready for json.dumps."""
        result: dict[str, Any] = _jsonable(self)
        return result


class Sampler:
    """Sample the host, the GPUs and given process trees, one tick per :meth:`sample_once`."""

    def __init__(
        self,
        *,
        host: HostSampler | None = None,
        process: ProcessTreeSampler | None = None,
        gpu: GpuSampler | None = None,
        enable_gpu: bool = True,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self._host = host if host is not None else HostSampler(clock=clock)
        self._process = process if process is not None else ProcessTreeSampler(clock=clock)
        self._gpu = gpu if gpu is not None else (GpuSampler(clock=clock) if enable_gpu else None)
        self._wall = wall
        self._tick_lock = threading.Lock()  # sources keep state: one tick at a time
        self._log_once = LogOnce(logger)

    def close(self) -> None:
        """Release the GPU source (NVML is shut down; a later tick initialises it again)."""
        if self._gpu is not None:
            with self._tick_lock:
                self._gpu.close()

    def _failed(self, errors: dict[str, str], source: str, err: BaseException) -> None:
        message = f"{type(err).__name__}: {err}"
        errors[source] = message
        self._log_once(
            logging.WARNING, f"metrics source {source!r} failed: {message}", exc_info=True
        )

    def sample_once(self, targets: Mapping[str, int] = _EMPTY) -> Snapshot:
        """Sample every source now for ``targets`` (key -> root pid) and return the snapshot.

        Never raises for a failing source: its error is in ``snapshot.errors`` and logged once.
        A target whose process is gone is simply absent from ``snapshot.trees``.
        """
        with self._tick_lock:
            return self._sample(targets)

    def _sample(self, targets: Mapping[str, int]) -> Snapshot:
        errors: dict[str, str] = {}
        time_now = self._wall()

        host: HostSnapshot | None = None
        try:
            host = self._host.sample()
        except Exception as err:  # noqa: BLE001 - recorded in errors["host"] and logged once
            self._failed(errors, "host", err)

        reading: GpuReading | None = None
        if self._gpu is not None:
            try:
                reading = self._gpu.sample()
            except Exception as err:  # noqa: BLE001 - recorded in errors["gpu"] and logged once
                self._failed(errors, "gpu", err)

        trees: dict[str, ProcessTreeSnapshot] = {}
        try:
            by_pid = self._process.sample_many(targets.values())
            gpu_by_pid = self._gpu_memory_by_pid(reading)
            for key, pid in targets.items():
                tree = by_pid.get(pid)
                if tree is None:
                    continue  # the process is gone: it simply is not in this snapshot
                if gpu_by_pid is not None:
                    used = [gpu_by_pid[p] for p in tree.pids if p in gpu_by_pid]
                    gpu_memory = sum(used) if used else 0
                    tree = replace(tree, gpu_memory=gpu_memory, **_gpu_share(reading, tree.pids))
                trees[key] = tree
        except Exception as err:  # noqa: BLE001 - recorded in errors["process"] and logged once
            self._failed(errors, "process", err)

        return Snapshot(
            time=time_now,
            host=host,
            gpus=reading.gpus if reading is not None else (),
            gpu_reason=reading.reason if reading is not None else None,
            trees=MappingProxyType(trees),
            errors=MappingProxyType(errors),
            gpu_utilization_reason=reading.utilization_reason if reading is not None else None,
        )

    @staticmethod
    def _gpu_memory_by_pid(reading: GpuReading | None) -> dict[int, int] | None:
        """Return pid -> GPU bytes over all devices, or None when it cannot be known."""
        if reading is None or not reading.gpus or not reading.process_memory_known:
            return None
        totals: dict[int, int] = {}
        for gpu in reading.gpus:
            for proc in gpu.processes:
                if proc.memory_used is not None:
                    totals[proc.pid] = totals.get(proc.pid, 0) + proc.memory_used
        return totals


def _gpu_share(reading: GpuReading | None, pids: tuple[int, ...]) -> dict[str, Any]:
    """Return the tree's GPU utilisation (percent of one GPU, summed) and the GPUs it uses."""
    if reading is None:
        return {}
    members = set(pids)
    devices: list[int] = []
    total = 0.0
    known = True
    for gpu in reading.gpus:
        mine = [p for p in gpu.processes if p.pid in members]
        if not mine:
            continue
        devices.append(gpu.index)
        for p in mine:
            if p.utilization is None:
                known = False
            else:
                total += p.utilization
    return {"gpu_utilization": total if known and devices else None, "gpu_devices": tuple(devices)}
