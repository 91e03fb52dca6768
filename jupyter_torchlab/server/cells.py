"""What each executed cell cost: wall time, CPU, peak memory and its change, peak GPU memory.

A cell's boundaries are its execute request's own ``status: busy`` and ``status: idle``, which
the registry's IOPub subscription hears (:class:`~.kernels.KernelRegistry`'s ``on_execution``
hook); queued cells each have their own pair. No code runs in the kernel for the host figures.

Which figures are exact and which are sampled (the record's ``exact`` lists the exact ones):

- ``wall_s``: exact, the difference of the kernel's own timestamps on those two messages.
- ``cpu_s`` (and ``cpu_percent``, its share of the wall time, 100 = one core): exact, the
  difference of the kernel tree's cumulative CPU seconds read at the start and the end (children
  reaped during the cell included).
- ``memory_start`` / ``memory_delta``: the tree's RSS when the cell started, and the change to
  its end. The server hears a cell start a few milliseconds after the kernel began it (more on
  a loaded machine), long enough for a cell to have touched part of a large allocation; so
  where the kernel ran nothing since the previous cell's end (read with the same counters, the
  moment that end was heard), that reading is the start: an idle kernel's memory does not move.
  A cell queued behind another (Run All) starts within milliseconds of that one's end, often
  before the server has heard it: where the start was read after the cell began (the kernel's
  own start time tells), its change and peak are not marked exact.
- ``peak_memory``: on Linux each process's peak RSS is reset at that baseline reading and read at
  the cell's end (:mod:`jupyter_torchlab.metrics.counters`): exact for a kernel of one process
  (the peak since the previous cell ended, which for an idle kernel is the cell's). With child
  processes it is the sum of their peaks (an upper bound), and never below the sampler's highest
  reading in between; where the reset is refused it is that highest reading (sampled).
- ``gpu_peak_memory``: exact where the kernel-side setup of jupyter_torchlab ran and torch used
  CUDA in the cell: torch's allocator peak, reset at the cell's start (no device sync), per
  device in ``gpu_devices``. Otherwise the highest NVML reading of the tree's GPU memory between
  start and end (sampled; None without a GPU reading).

The reads at the boundaries take a few /proc files per process; they run on one worker thread,
in order, off the event loop, except one: the moment a cell's end is heard, its members' peaks
are read and reset on the loop (two small /proc accesses a process, microseconds), since the
next cell (queued, or sent at once) starts within milliseconds and a reset the worker made
later would cut off the start of that cell's peak. Every kernel is measured from the moment the
registry watches it (at its start: a notebook's first cells, Run All at once, get their records
with no request first); with ``TorchlabExtension.cell_costs = False`` this class is not made and
nothing is measured. Records are kept per kernel (the newest :data:`KEPT`) and served by
``GET torchlab/api/cells``.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import deque
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any

from jupyter_torchlab._runtime_files import cells_path, read_cell_gpu
from jupyter_torchlab.metrics import ProcessTreeSnapshot, TreeCounters, read_counters, read_peaks

from .kernels import KernelInfo

__all__ = ["KEPT", "CellCosts"]

#: the records kept per kernel (the newest)
KEPT = 200


@dataclass
class _Running:
    msg_id: str
    start: float  # the kernel's time of the busy status
    baseline: TreeCounters | None  # memory at the start, peaks reset there
    cpu: float | None  # the tree's CPU seconds read when the start was heard
    sampled_peak: int = 0  # the sampler's highest tree RSS since the start
    sampled_gpu: int | None = None  # the sampler's highest tree GPU memory since the start
    # the start was read after the cell began (a queued cell starts within milliseconds of the
    # one before; the server hears both later): its peak and change are then not exact
    late: bool = False


class CellCosts:
    """Measure each cell of every kernel the registry watches; serve the records."""

    def __init__(
        self,
        view: Callable[[], Mapping[str, KernelInfo]],
        *,
        runtime_dir: str | None = None,
        log: logging.Logger | None = None,
        read: Callable[..., TreeCounters | None] = read_counters,
    ) -> None:
        self._view = view
        self._runtime_dir = runtime_dir
        self._log = log or logging.getLogger(__name__)
        self._read = read
        self._lock = threading.Lock()  # guards _running and _done (worker, sampler, loop)
        self._running: dict[str, dict[str, _Running]] = {}  # kernel id -> msg_id -> cell
        self._done: dict[str, deque[dict[str, Any]]] = {}
        # kernel id -> the reading at its last cell's end (peaks reset), while nothing ran since
        self._idle_from: dict[str, TreeCounters] = {}
        # kernel id -> the members of its tree at the last reading (whose peaks a cell's end
        # reads and resets at once, on the loop)
        self._members: dict[str, tuple[int, ...]] = {}
        self._waiters: dict[tuple[str, str], list[asyncio.Future[None]]] = {}
        self._pool: ThreadPoolExecutor | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._warned: set[str] = set()

    # --- event loop ---------------------------------------------------------------------------

    def on_execution(self, kid: str, msg_id: str, edge: str, when: float) -> None:
        """Take one execute request's start or end (the registry's hook, on the event loop)."""
        info = self._view().get(kid)
        pid = None if info is None else info.pid
        if self._pool is None:
            self._loop = asyncio.get_running_loop()
            self._pool = ThreadPoolExecutor(1, thread_name_prefix="torchlab-cells")
        if edge == "start":
            self._pool.submit(self._guard, self._start, kid, msg_id, when, pid)
            return
        # the ending cell's peak, read and reset now: a queued or quickly sent next cell starts
        # within milliseconds, and the worker could reset its peak after it began
        peaks = None
        if pid is not None:
            with self._lock:
                members = self._members.get(kid)
            if not members or members[0] != pid:
                members = (pid,)
            peaks = (members, *read_peaks(members))
        self._pool.submit(self._guard, self._end, kid, msg_id, when, pid, peaks)

    def records(self, kid: str) -> list[dict[str, Any]]:
        """Return the kept records of kernel ``kid``, oldest first."""
        with self._lock:
            return list(self._done.get(kid, ()))

    def find(self, kid: str, msg_id: str) -> dict[str, Any] | None:
        """Return the record of one execute request, None while it runs or if unknown."""
        with self._lock:
            for record in reversed(self._done.get(kid, ())):
                if record["msg_id"] == msg_id:
                    return record
        return None

    async def wait(self, kid: str, msg_id: str, timeout: float) -> dict[str, Any] | None:
        """Return the record of ``msg_id``, waiting up to ``timeout`` s for its end to be read."""
        record = self.find(kid, msg_id)
        if record is not None or timeout <= 0:
            return record
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault((kid, msg_id), []).append(future)
        try:
            await asyncio.wait_for(future, timeout)
        except asyncio.TimeoutError:
            pass
        finally:
            waiting = self._waiters.get((kid, msg_id), [])
            if future in waiting:
                waiting.remove(future)
            if not waiting:
                self._waiters.pop((kid, msg_id), None)
        return self.find(kid, msg_id)

    def forget(self, live: set[str]) -> None:
        """Drop what is kept for kernels that are gone."""
        with self._lock:
            for table in (self._running, self._done, self._idle_from, self._members):
                for kid in set(table) - live:
                    del table[kid]

    def close(self) -> None:
        """Stop the worker thread (what it is doing finishes)."""
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None

    def _resolve(self, kid: str, msg_id: str) -> None:
        for future in self._waiters.pop((kid, msg_id), []):
            if not future.done():
                future.set_result(None)

    # --- sampler thread -----------------------------------------------------------------------

    def observe(self, trees: Mapping[str, ProcessTreeSnapshot | None]) -> None:
        """Fold one tick's readings into the cells running now (the sampled figures)."""
        if not self._running:
            return
        with self._lock:
            for kid, cells in self._running.items():
                tree = trees.get(kid)
                if tree is None:
                    continue
                for cell in cells.values():
                    cell.sampled_peak = max(cell.sampled_peak, tree.rss)
                    if tree.gpu_memory is not None:
                        cell.sampled_gpu = max(cell.sampled_gpu or 0, tree.gpu_memory)

    # --- worker thread ------------------------------------------------------------------------

    def _start(self, kid: str, msg_id: str, when: float, pid: int | None) -> None:
        with self._lock:
            baseline = self._idle_from.pop(kid, None)
            others = bool(self._running.get(kid))
        if baseline is not None and (others or baseline.pids[0] != pid):
            baseline = None  # another cell ran since (a subshell's), or a new process
        now = None if pid is None else self._read(pid, reset_peak=baseline is None)
        if baseline is None:
            baseline = now
        late = baseline is not None and baseline.time > when
        cell = _Running(msg_id, when, baseline, None if now is None else now.cpu, late=late)
        with self._lock:
            self._running.setdefault(kid, {})[msg_id] = cell
            if now is not None:
                self._members[kid] = now.pids

    def _end(
        self,
        kid: str,
        msg_id: str,
        when: float,
        pid: int | None,
        peaks: tuple[tuple[int, ...], int | None, int | None, bool, float] | None = None,
    ) -> None:
        with self._lock:
            cell = self._running.get(kid, {}).pop(msg_id, None)
        end = None if pid is None else self._read(pid, reset_peak=peaks is None)
        if end is not None and peaks is not None:
            end = _with_peaks(end, *peaks)
        if end is not None:
            with self._lock:
                self._members[kid] = end.pids
        if cell is None:
            return  # its start was not heard (before the subscription, or a failed read)
        gpu = self._kernel_gpu(kid, msg_id)
        record = _record(kid, cell, when, end, gpu)
        with self._lock:
            self._done.setdefault(kid, deque(maxlen=KEPT)).append(record)
            if end is not None and end.peak_reset and not self._running.get(kid):
                self._idle_from[kid] = end  # the next cell's start, if nothing runs before it
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._resolve, kid, msg_id)

    def _kernel_gpu(self, kid: str, msg_id: str) -> dict[str, int] | None:
        """Return torch's allocator peak per device for this cell, from the kernel's file."""
        if self._runtime_dir is None:
            return None
        cells = read_cell_gpu(cells_path(self._runtime_dir, kid))
        return cells.get(msg_id)

    def _guard(self, fn: Callable[..., None], *args: Any) -> None:
        try:
            fn(*args)
        except Exception as e:  # noqa: BLE001 - a failed reading must not stop the next ones
            if fn.__name__ not in self._warned:
                self._warned.add(fn.__name__)
                self._log.warning("torchlab: measuring a cell failed (%r)", e)


def _with_peaks(
    end: TreeCounters,
    members: tuple[int, ...],
    peak: int | None,
    rss: int | None,
    reset: bool,
    at: float,
) -> TreeCounters:
    """Put what was read the moment the cell ended (peaks, then reset; RSS) into the reading.

    Members the tree gained since its last reading (a cell's new subprocess) were not in that
    read: theirs (their peak since they started) are read and reset here.
    """
    new = [p for p in end.pids if p not in members]
    if new:
        more, more_rss, more_reset, _ = read_peaks(new)
        peak = None if peak is None or more is None else peak + more
        rss = None if rss is None or more_rss is None else rss + more_rss
        reset = reset and more_reset
    return replace(end, peak=peak, peak_reset=reset, rss=end.rss if rss is None else rss, time=at)


def _record(
    kid: str,
    cell: _Running,
    when: float,
    end: TreeCounters | None,
    gpu: dict[str, int] | None,
) -> dict[str, Any]:
    """Build one cell's record (the shape the lab extension stores in the cell's metadata)."""
    wall = max(0.0, when - cell.start)
    exact = ["wall_s"]
    start = cell.baseline
    cpu_s = memory_start = memory_delta = None
    peak: int | None = cell.sampled_peak or None
    if cell.cpu is not None and end is not None:
        cpu_s = max(0.0, end.cpu - cell.cpu)
        exact.append("cpu_s")
    if start is not None and end is not None:
        memory_start, memory_delta = start.rss, end.rss - start.rss
        if not cell.late:
            exact.append("memory_delta")
        if start.peak_reset and end.peak is not None:
            peak = max(end.peak, peak or 0, start.rss, end.rss)
            if start.pids == end.pids == (start.pids[0],) and not cell.late:
                exact.append("peak_memory")
        else:
            peak = max(peak or 0, start.rss, end.rss)
    if gpu:
        gpu_peak: int | None = sum(gpu.values())
        exact.append("gpu_peak_memory")
    else:
        gpu_peak = cell.sampled_gpu
    return {
        "kernel_id": kid,
        "msg_id": cell.msg_id,
        "start": cell.start,
        "end": when,
        "wall_s": wall,
        "cpu_s": cpu_s,
        "cpu_percent": None if cpu_s is None or wall <= 0 else 100.0 * cpu_s / wall,
        "peak_memory": peak,
        "memory_start": memory_start,
        "memory_delta": memory_delta,
        "gpu_peak_memory": gpu_peak,
        "gpu_devices": dict(gpu) if gpu else None,
        "exact": exact,
    }
