"""A process tree's cumulative counters at one moment: CPU seconds, memory, and its peak memory.

Read at a cell's start and end (not every tick), so what lies between is exact, not sampled:

- CPU seconds are the tree's cumulative user + system time, with the time of children its
  members already reaped (a finished DataLoader worker, a compiler subprocess): the difference of
  two readings is every CPU second the tree spent in between.
- Peak memory: Linux keeps each process's peak resident set (``VmHWM`` in ``/proc/PID/status``)
  and lets the process's owner reset it to the current RSS (``5`` into ``/proc/PID/clear_refs``,
  Linux 4.0+). Reset at the start and read at the end, it is that process's exact peak in
  between. A tree's figure is the sum of its members' peaks: exact for a tree of one process,
  an upper bound for several (their peaks need not coincide). Where the reset is refused (another
  user's process, not Linux) ``peak_reset`` is False and the caller falls back to sampling.

Reads never raise: a process that is gone reads as None, a member that vanishes is skipped.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass

import psutil

from ._util import read_bytes
from .process import _LINUX, _read_linux

__all__ = ["TreeCounters", "read_counters", "read_peaks"]


@dataclass(frozen=True)
class TreeCounters:
    """One reading of a tree's counters."""

    time: float  # unix time of the reading
    cpu: float  # seconds, cumulative over the tree (reaped children included)
    rss: int  # bytes, summed over the live members
    # bytes: the sum of the members' VmHWM up to this reading (before its reset); None where it
    # cannot be read
    peak: int | None
    pids: tuple[int, ...]  # root first
    peak_reset: bool = False  # the peak of every member was reset by this reading


def read_counters(pid: int, *, reset_peak: bool = False) -> TreeCounters | None:
    """Read the tree rooted at ``pid``; ``reset_peak``: then reset each member's peak to now.

    ``peak`` is read before the reset: one reading both ends a stretch and starts the next.
    """
    if not _LINUX:
        return _read_psutil(pid)
    root = _read_linux(pid)
    if root is None or root.zombie:
        return None
    pids = [pid, *_descendants(pid)]
    cpu, rss = root.cpu, root.rss
    alive = [pid]
    for child in pids[1:]:
        info = _read_linux(child)
        if info is None:
            continue
        cpu += info.cpu
        if not info.zombie:
            alive.append(child)
            rss += info.rss
    peak: int | None = 0
    reset = reset_peak
    for member in alive:
        hwm = _hwm(member)  # the peak up to now, before any reset
        peak = None if hwm is None or peak is None else peak + hwm
        if reset_peak:
            reset = _reset_peak(member) and reset
    return TreeCounters(time.time(), cpu, rss, peak, tuple(alive), reset)


def read_peaks(
    pids: Sequence[int], *, reset: bool = True
) -> tuple[int | None, int | None, bool, float]:
    """Return (the sum of these processes' peaks, of their RSS, whether each peak was reset, when).

    One /proc read (and one write to reset) per process and no tree walk: cheap enough to run
    the moment a cell ends, before the next one can start, where :func:`read_counters` would
    run later.
    """
    if not _LINUX:
        return None, None, False, time.time()
    peak: int | None = 0
    rss: int | None = 0
    done = reset
    for member in pids:
        hwm, now = _status_memory(member)
        peak = None if hwm is None or peak is None else peak + hwm
        rss = None if now is None or rss is None else rss + now
        if reset:
            done = _reset_peak(member) and done
    return peak, rss, done, time.time()


def _descendants(pid: int) -> list[int]:
    """Return every descendant of ``pid`` (all threads' children, all generations)."""
    found: list[int] = []
    todo = [pid]
    while todo:
        parent = todo.pop()
        try:
            tids = os.listdir(f"/proc/{parent}/task")
        except OSError:
            continue
        for tid in tids:
            for child in (read_bytes(f"/proc/{parent}/task/{tid}/children") or b"").split():
                if child.isdigit() and int(child) not in found:
                    found.append(int(child))
                    todo.append(int(child))
    return found


def _reset_peak(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return False
    return True


def _hwm(pid: int) -> int | None:
    return _status_memory(pid)[0]


def _status_memory(pid: int) -> tuple[int | None, int | None]:
    """Return (VmHWM, VmRSS) of a process in bytes (None: not readable)."""
    data = read_bytes(f"/proc/{pid}/status")
    found: dict[bytes, int] = {}
    for line in (data or b"").splitlines():
        if line.startswith((b"VmHWM:", b"VmRSS:")):
            with contextlib.suppress(IndexError, ValueError):
                found[line[:6]] = int(line.split()[1]) * 1024
    return found.get(b"VmHWM:"), found.get(b"VmRSS:")


def _read_psutil(pid: int) -> TreeCounters | None:
    """Elsewhere: CPU and RSS through psutil; no peak."""
    try:
        proc = psutil.Process(pid)
        members = [proc, *proc.children(recursive=True)]
    except psutil.Error:
        return None
    cpu, rss, alive = 0.0, 0, []
    for member in members:
        try:
            with member.oneshot():
                t = member.cpu_times()
                cpu += t.user + t.system + t.children_user + t.children_system
                rss += member.memory_info().rss
            alive.append(member.pid)
        except psutil.Error:
            continue
    if not alive or alive[0] != pid:
        return None
    return TreeCounters(time.time(), cpu, rss, None, tuple(alive), False)
