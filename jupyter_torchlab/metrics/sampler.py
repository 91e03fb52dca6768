"""One background thread that samples host, process trees and GPUs into immutable snapshots.

Readers never touch psutil or NVML: ``latest()`` and ``history()`` return snapshots already taken,
so a request or a widget refresh costs a lookup, not a /proc scan or a sampling interval.
"""

from __future__ import annotations

import atexit
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
    extra: Mapping[str, Any]

    def to_dict(self) -> dict[str, Any]:
        """Return plain dicts/lists/numbers (tuples as lists, NaN as None), ready for json.dumps."""
        result: dict[str, Any] = _jsonable(self)
        return result


def _next_deadline(deadline: float, interval: float, now: float) -> float:
    """Return the next tick time on the fixed grid ``deadline + k * interval`` that is after now.

    Ticks stay on the grid (no drift from the time sampling takes); ticks missed while a tick
    overran are skipped rather than run back to back.
    """
    deadline += interval
    if deadline <= now:
        deadline += math.ceil((now - deadline) / interval) * interval
        if deadline <= now:
            deadline += interval
    return deadline


class Sampler:
    """Sample on a daemon thread every ``interval`` s and keep ``history_seconds`` of snapshots."""

    def __init__(
        self,
        interval: float = 1.0,
        history_seconds: float = 600.0,
        targets: Callable[[], Mapping[str, int]] | None = None,
        host: HostSampler | None = None,
        process: ProcessTreeSampler | None = None,
        gpu: GpuSampler | None = None,
        enable_gpu: bool = True,
        extra: Callable[[], Mapping[str, Any]] | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        if not interval > 0:
            raise ValueError(f"interval must be a positive number of seconds, got {interval!r}")
        if not history_seconds >= 0:
            raise ValueError(f"history_seconds must be >= 0, got {history_seconds!r}")
        self.interval = float(interval)
        self.history_seconds = float(history_seconds)
        self._targets = targets
        self._host = host if host is not None else HostSampler(clock=clock)
        self._process = process if process is not None else ProcessTreeSampler(clock=clock)
        self._gpu = gpu if gpu is not None else (GpuSampler(clock=clock) if enable_gpu else None)
        self._extra = extra
        self._clock = clock
        self._wall = wall
        # one more than the window so history(history_seconds) is full right after a tick
        maxlen = max(1, math.ceil(self.history_seconds / self.interval) + 1)
        self._history: deque[tuple[float, Snapshot]] = deque(maxlen=maxlen)
        self._subscribers: list[Callable[[Snapshot], None]] = []
        self._lock = threading.Lock()  # history and subscribers
        self._tick_lock = threading.Lock()  # sources keep state: one tick at a time
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._log_once = LogOnce(logger)

    # -- lifecycle --------------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        """Whether the sampling thread is alive."""
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        """Start the sampling thread (a no-op when it runs); the first tick happens at once."""
        with self._lock:
            if self.running:
                return
            self._stop.clear()
            self._thread = threading.Thread(
                target=self._run, name="torchlab-metrics-sampler", daemon=True
            )
            self._thread.start()
        # stop before the interpreter tears down modules the thread may be using
        atexit.register(self.stop)

    def stop(self, timeout: float = 2.0) -> None:
        """Wake the thread, wait up to ``timeout`` s for it to end, and close the GPU source."""
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
        if thread is None or not thread.is_alive():
            self._thread = None
            if self._gpu is not None:
                with self._tick_lock:
                    self._gpu.close()
        atexit.unregister(self.stop)

    def _run(self) -> None:
        deadline = self._clock()
        while not self._stop.is_set():
            try:
                self.sample_once()
            except Exception:  # noqa: BLE001 - sources are caught one by one; this is a last resort
                self._log_once(logging.ERROR, "metrics sampler tick failed", exc_info=True)
            deadline = _next_deadline(deadline, self.interval, self._clock())
            if self._stop.wait(max(0.0, deadline - self._clock())):
                break
        if self._gpu is not None:
            # also when stop() came from a subscriber, which cannot join its own thread
            with self._tick_lock:
                self._gpu.close()

    # -- sampling ---------------------------------------------------------------------------------

    def _failed(self, errors: dict[str, str], source: str, err: BaseException) -> None:
        message = f"{type(err).__name__}: {err}"
        errors[source] = message
        self._log_once(
            logging.WARNING, f"metrics source {source!r} failed: {message}", exc_info=True
        )

    def sample_once(self) -> Snapshot:
        """Sample every source now, store and publish the snapshot, and return it."""
        with self._tick_lock:
            snapshot = self._sample()
            stamp = self._clock()
        with self._lock:
            self._history.append((stamp, snapshot))
            subscribers = list(self._subscribers)
        for fn in subscribers:
            try:
                fn(snapshot)
            except Exception as err:  # noqa: BLE001 - a broken subscriber must not stop the thread
                name = getattr(fn, "__qualname__", repr(fn))
                self._log_once(
                    logging.ERROR, f"metrics subscriber {name} raised {err!r}", exc_info=True
                )
        return snapshot

    def _sample(self) -> Snapshot:
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

        targets: Mapping[str, int] = {}
        if self._targets is not None:
            try:
                targets = dict(self._targets())
            except Exception as err:  # noqa: BLE001 - recorded in errors["targets"], logged once
                self._failed(errors, "targets", err)

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
                    tree = replace(tree, gpu_memory=gpu_memory)
                trees[key] = tree
        except Exception as err:  # noqa: BLE001 - recorded in errors["process"] and logged once
            self._failed(errors, "process", err)

        extra: Mapping[str, Any] = _EMPTY
        if self._extra is not None:
            try:
                extra = MappingProxyType(dict(self._extra()))
            except Exception as err:  # noqa: BLE001 - recorded in errors["extra"], logged once
                self._failed(errors, "extra", err)

        return Snapshot(
            time=time_now,
            host=host,
            gpus=reading.gpus if reading is not None else (),
            gpu_reason=reading.reason if reading is not None else None,
            trees=MappingProxyType(trees),
            errors=MappingProxyType(errors),
            extra=extra,
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

    # -- reading ----------------------------------------------------------------------------------

    def latest(self) -> Snapshot | None:
        """Return the newest snapshot (None before the first tick); never samples."""
        with self._lock:
            return self._history[-1][1] if self._history else None

    def history(self, seconds: float | None = None) -> list[Snapshot]:
        """Return snapshots of the last ``seconds`` (all kept when None), oldest first."""
        with self._lock:
            items = list(self._history)
        if seconds is None:
            return [snap for _, snap in items]
        since = self._clock() - seconds
        return [snap for stamp, snap in items if stamp >= since]

    def subscribe(self, fn: Callable[[Snapshot], None]) -> Callable[[], None]:
        """Call ``fn(snapshot)`` on the sampler thread after each tick; return an unsubscribe."""
        with self._lock:
            self._subscribers.append(fn)

        def unsubscribe() -> None:
            with self._lock:
                if fn in self._subscribers:
                    self._subscribers.remove(fn)

        return unsubscribe
