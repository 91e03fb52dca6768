"""CPU and memory of a process tree: a kernel plus its DataLoader workers and compiler subprocesses.

How it stays cheap and right:

- CPU % never sleeps. It is the rate of the tree's cumulative CPU time between two samples: the
  sum, over members, of their own user+system time plus that of the children they already reaped.
  A worker that exits and is reaped by a tree member moves its time into its parent's, so
  short-lived compiler subprocesses and finished DataLoader workers are counted, not lost between
  ticks. The first sample of a tree reads 0.0; from the second on it is the usage in between
  (100 = one core).
- State is kept per tree across calls and a tree is identified by its root's (pid, create time):
  a reused pid starts a fresh tree instead of inheriting the old one's counters. On Linux the
  figures come straight from ``/proc/<pid>/stat`` (one read per process per tick); elsewhere from
  ``psutil.Process`` objects cached by (pid, create time).
- Children are found through ``/proc/<pid>/task/<tid>/children``: the main thread's every tick (it
  is what forks DataLoader workers), all threads' every few ticks. A child forked by another thread
  may so appear a few ticks late, but no CPU time is lost: it is counted, whole, once it is seen.
- Memory: ``rss`` sums resident sets and so counts pages shared by forked workers once per worker.
  ``pss`` (proportional set size, from ``/proc/<pid>/smaps_rollup``) splits each shared page among
  the processes sharing it, so the tree's sum is what it really costs. smaps_rollup walks the page
  tables (~0.1 ms for a small process, more for a big one), so it is re-read every ``pss_interval``
  seconds and, in between, moved by the change in RSS. ``pss`` is None unless readable for every
  process in the tree (another user's process, non-Linux).
- Processes that vanish, turn zombie or deny access mid-sample are skipped, not errors.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import psutil

from ._util import read_bytes

__all__ = ["STOPPED", "ProcessTreeSampler", "ProcessTreeSnapshot", "read_rss"]

#: the reason a stopped process is reported with (the pid and how to resume it follow)
STOPPED = "process stopped (SIGSTOP?): it runs nothing until it is resumed"


@dataclass(frozen=True)
class ProcessTreeSnapshot:
    """One reading of a process tree (the root and all its live descendants)."""

    pid: int  # the root
    cpu_percent: float  # sum over the tree, 100 = one core
    rss: int  # bytes, summed over the tree (counts shared pages once per process)
    pss: int | None  # bytes, summed over the tree; None unless readable for every process
    num_threads: int
    num_children: int  # live descendants of the root (all generations)
    pids: tuple[int, ...]  # root first
    gpu_memory: int | None = None  # bytes on GPUs, joined in by the Sampler
    # percent of one GPU's SMs the tree kept busy (summed over its devices); None: not reported
    gpu_utilization: float | None = None
    gpu_devices: tuple[int, ...] = ()  # indices of the GPUs the tree holds memory on
    reason: str | None = None  # why a figure is partial, e.g. processes that denied access
    # the root process is stopped (SIGSTOP, a debugger, the OOM reaper): it runs nothing until
    # it gets SIGCONT, so it cannot answer, and its CPU reads 0
    stopped: bool = False

    @property
    def memory(self) -> int:
        """Bytes the tree costs: PSS when known, else RSS."""
        return self.pss if self.pss is not None else self.rss

    @property
    def gpu_utilization_per_device(self) -> float | None:
        """The share averaged over the tree's GPUs: low means each of them waits."""
        if self.gpu_utilization is None:
            return None
        return self.gpu_utilization / max(1, len(self.gpu_devices))


@dataclass(frozen=True)
class _Member:
    start: float  # create time, in whatever unit the reader uses; identity with the pid
    cpu: float  # seconds: user + system + reaped children's user + system
    zombie: bool
    threads: int
    rss: int
    stopped: bool = False  # state T (SIGSTOP) or t (stopped by a tracer)


@dataclass
class _Tree:
    start: float
    last_cpu: float | None = None
    last_time: float = 0.0
    ticks: int = 0
    # pid -> create time of the members found by the last full thread scan, kept until the next
    # one so that children forked by other threads are not lost in between
    known: dict[int, float] = field(default_factory=dict)


@dataclass
class _Pss:
    pss: int
    rss: int  # the RSS read together with it, to move the estimate between reads
    due: float  # clock time of the next smaps_rollup read


_LINUX = sys.platform.startswith("linux") and os.path.exists("/proc/self/stat")
_CLK_TCK = os.sysconf("SC_CLK_TCK") if _LINUX else 100
_PAGE = os.sysconf("SC_PAGE_SIZE") if _LINUX else 4096


def read_rss(pids: Iterable[int]) -> int | None:
    """Return the summed resident set of these processes now (None: none is readable).

    One small read per process (``/proc/<pid>/statm``, psutil elsewhere): for a caller that
    watches one tree closely between samples, without the tree walk and CPU figures.
    """
    total, found = 0, False
    for pid in pids:
        if _LINUX:
            data = read_bytes(f"/proc/{pid}/statm")
            try:
                total += int(data.split()[1]) * _PAGE if data else 0
                found = found or bool(data)
            except (IndexError, ValueError):
                continue
        else:
            try:
                total += psutil.Process(pid).memory_info().rss
                found = True
            except (psutil.Error, OSError):
                continue
    return total if found else None


def _read_linux(pid: int) -> _Member | None:
    data = read_bytes(f"/proc/{pid}/stat")
    if not data:
        return None
    # the command name (field 2) may hold spaces and parentheses: split after the last ")"
    fields = data[data.rfind(b")") + 2 :].split()
    try:
        ticks = int(fields[11]) + int(fields[12]) + int(fields[13]) + int(fields[14])
        return _Member(
            start=float(fields[19]),
            cpu=ticks / _CLK_TCK,
            zombie=fields[0] in (b"Z", b"X"),
            threads=int(fields[17]),
            rss=int(fields[21]) * _PAGE,
            stopped=fields[0] in (b"T", b"t"),
        )
    except (IndexError, ValueError):
        return None


class _PsutilReader:
    """Portable member reads through ``psutil.Process`` objects cached by (pid, create time)."""

    def __init__(self) -> None:
        self._procs: dict[int, psutil.Process] = {}

    def __call__(self, pid: int) -> _Member | None:
        proc = self._procs.get(pid)
        try:
            if proc is None or not proc.is_running():
                proc = self._procs[pid] = psutil.Process(pid)
            with proc.oneshot():
                times = proc.cpu_times()
                cpu = times.user + times.system + times.children_user + times.children_system
                status = proc.status()
                if status == psutil.STATUS_ZOMBIE:
                    return _Member(proc.create_time(), cpu, True, 0, 0)
                stopped = status in (psutil.STATUS_STOPPED, psutil.STATUS_TRACING_STOP)
                return _Member(
                    proc.create_time(),
                    cpu,
                    False,
                    proc.num_threads(),
                    proc.memory_info().rss,
                    stopped,
                )
        except psutil.ZombieProcess:
            return None
        except psutil.Error:  # gone or access denied: skipped
            self._procs.pop(pid, None)
            return None

    def children(self, pid: int) -> list[int]:
        proc = self._procs.get(pid)
        try:
            return [c.pid for c in (proc or psutil.Process(pid)).children(recursive=True)]
        except psutil.Error:
            return []

    def prune(self, live: set[int]) -> None:
        for pid in set(self._procs) - live:
            del self._procs[pid]


class ProcessTreeSampler:
    """Sample process trees by root pid, keeping per-tree state between calls."""

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.monotonic,
        pss_interval: float = 15.0,
        full_scan_every: int = 5,
    ) -> None:
        self._clock = clock
        self.pss_interval = pss_interval
        self.full_scan_every = max(1, full_scan_every)
        self._trees: dict[int, _Tree] = {}
        self._pss: dict[tuple[int, float], _Pss] = {}
        self._psutil = _PsutilReader()
        self._linux = _LINUX and os.path.exists(
            f"/proc/self/task/{threading.get_native_id()}/children"
        )
        self._rollup = _LINUX and os.path.exists("/proc/self/smaps_rollup")

    def forget(self, pid: int) -> None:
        """Drop the cached state of the tree rooted at ``pid``."""
        self._trees.pop(pid, None)

    def sample_many(self, pids: Iterable[int]) -> dict[int, ProcessTreeSnapshot | None]:
        """Sample several trees and forget every tree not among them."""
        wanted = list(dict.fromkeys(pids))
        result = {pid: self.sample(pid) for pid in wanted}
        for pid in set(self._trees) - set(wanted):
            del self._trees[pid]
        live = {p for snap in result.values() if snap is not None for p in snap.pids}
        for key in [k for k in self._pss if k[0] not in live]:
            del self._pss[key]
        if not self._linux:
            self._psutil.prune(live)
        return result

    def _read(self, pid: int) -> _Member | None:
        return _read_linux(pid) if self._linux else self._psutil(pid)

    def sample(self, pid: int) -> ProcessTreeSnapshot | None:
        """Sample the tree rooted at ``pid``; None when that process is gone (or a zombie)."""
        now = self._clock()
        root = self._read(pid)
        if root is None or root.zombie:
            self._trees.pop(pid, None)
            return None
        tree = self._trees.get(pid)
        if tree is None or tree.start != root.start:
            tree = self._trees[pid] = _Tree(start=root.start)

        full = tree.ticks % self.full_scan_every == 0
        tree.ticks += 1
        members = self._descendants(pid, tree, full)
        starts = {pid: root.start}
        cpu_total = root.cpu
        rss_total, threads = root.rss, root.threads
        pss_total: int | None = self._pss_of(pid, root, now)
        alive = [pid]
        for member in members[1:]:
            info = self._read(member)
            if info is None:
                continue  # vanished (or access denied) between listing and reading
            if tree.known.get(member, info.start) != info.start:
                continue  # a remembered child died and its pid went to an unrelated process
            starts[member] = info.start
            # a zombie's times still count so the total does not dip until its parent reaps it
            cpu_total += info.cpu
            if info.zombie:
                continue
            alive.append(member)
            rss_total += info.rss
            threads += info.threads
            pss = self._pss_of(member, info, now)
            pss_total = None if pss is None or pss_total is None else pss_total + pss

        if full:
            tree.known = starts
        cpu_percent = 0.0
        if tree.last_cpu is not None and now > tree.last_time:
            # clamp: a member leaving the tree (re-parented) takes its past time with it
            cpu_percent = max(0.0, 100.0 * (cpu_total - tree.last_cpu) / (now - tree.last_time))
        tree.last_cpu, tree.last_time = cpu_total, now

        reason = None
        if root.stopped:
            reason = f"{STOPPED} (kill -CONT {pid} resumes it)"
        elif pss_total is None:
            reason = "PSS not readable for every process in the tree: memory is RSS"
        return ProcessTreeSnapshot(
            pid=pid,
            cpu_percent=cpu_percent,
            rss=rss_total,
            pss=pss_total,
            num_threads=threads,
            num_children=len(alive) - 1,
            pids=tuple(alive),
            reason=reason,
            stopped=root.stopped,
        )

    def _descendants(self, root: int, tree: _Tree, full: bool) -> list[int]:
        """Return the root pid and its descendants, breadth first."""
        if not self._linux:
            return [root, *self._psutil.children(root)]
        found = [root]
        seen = {root}
        if not full:
            # children seen by the last full scan whose parent is not the main thread
            for pid in tree.known:
                if pid not in seen:
                    seen.add(pid)
                    found.append(pid)
        i = 0
        while i < len(found):
            parent = found[i]
            i += 1
            if full:
                try:
                    tids = os.listdir(f"/proc/{parent}/task")
                except OSError:
                    continue
            else:
                tids = [str(parent)]
            for tid in tids:
                for token in (read_bytes(f"/proc/{parent}/task/{tid}/children") or b"").split():
                    child = int(token)
                    if child not in seen:
                        seen.add(child)
                        found.append(child)
        return found

    def _pss_of(self, pid: int, info: _Member, now: float) -> int | None:
        """Return the process' PSS in bytes (re-read every pss_interval), or None if unreadable."""
        if not self._rollup:
            return None
        key = (pid, info.start)
        cached = self._pss.get(key)
        if cached is not None and now < cached.due:
            # between reads, private growth shows in RSS one for one: move PSS with it
            return max(0, cached.pss + info.rss - cached.rss)
        data = read_bytes(f"/proc/{pid}/smaps_rollup")
        rss = pss = None
        for line in (data or b"").splitlines():
            if line.startswith(b"Rss:"):
                rss = int(line.split()[1]) * 1024
            elif line.startswith(b"Pss:"):
                pss = int(line.split()[1]) * 1024
                break
        if rss is None or pss is None:
            self._pss.pop(key, None)
            return None
        # spread re-reads over time (by pid) so trees started together do not all re-read at once
        spread = 0.75 + 0.5 * ((pid * 2654435761) % 1024) / 1024
        self._pss[key] = _Pss(pss=pss, rss=rss, due=now + self.pss_interval * spread)
        return pss
