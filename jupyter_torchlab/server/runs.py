"""Every kernel's runs as the server knows them, read from the kernels' runs files on the tick.

A kernel publishes its progress bars and fits in one small file beside its connection file
(:func:`jupyter_torchlab._runtime_files.runs_file_name`, written by ``widgets/_runs.py``). Each
tick (sampler thread) :meth:`RunsWatch.observe` stats each live kernel's file and reads it only
when it changed, then joins every run to its kernel and notebook from the same registry view the
tick's document comes from (:class:`RunInfo`).

What only the server can know it adds itself:

- A kernel process that is gone leaves its running runs "running" in its file. A run whose
  process died (the restarter's death callback, or its process missing from a tick that sampled
  the others) becomes "failed" with :data:`KERNEL_DIED`; one whose process was replaced without
  a death (a restart asked for) becomes "failed" with :data:`KERNEL_RESTARTED`.
- A kernel's file keeps its ended runs only ten minutes (and a new process rewrites it), but a
  user who closed the laptop learns how training ended when a page next opens: every ended run
  read from a file, and those the server failed, are kept here while their kernel lives, for at
  most :data:`ENDED_SECONDS` (a day): the latest :data:`ENDED_KEPT` a kernel, of which those
  that ended more than :data:`RECENT_SECONDS` ago only :data:`OLD_KEPT` (the last to end, which
  includes the outer bar of the latest cell's loop). So an idle kernel's share of each document
  stays small: the stream sends every kernel's runs each tick.
- A kernel that leaves the registry (shut down) takes its runs with it, and its runs file is
  removed: the kernel id was this server's, so no other reader needs the file.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Container, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from jupyter_torchlab._runtime_files import (
    RunRecord,
    read_runs,
    remove_kernel_files,
    runs_path,
    runs_stamp,
)

from .kernels import KernelInfo

__all__ = [
    "ENDED_KEPT",
    "ENDED_SECONDS",
    "KERNEL_DIED",
    "KERNEL_RESTARTED",
    "OLD_KEPT",
    "RECENT_SECONDS",
    "RunInfo",
    "RunsWatch",
    "sort_runs",
]

KERNEL_DIED = "the kernel died"
KERNEL_RESTARTED = "the kernel restarted"
#: ended runs kept a kernel while it lives: this long after they ended, at most the latest this many
ENDED_SECONDS = 24 * 3600.0
ENDED_KEPT = 20
#: of those, the ones that ended longer ago than this (as long as kernels keep them): this many
RECENT_SECONDS = 600.0
OLD_KEPT = 5

#: a run as served: the kernel's record, its kernel and that kernel's notebook (None: none)
RunInfo = dict[str, Any]


def sort_runs(runs: Iterable[RunInfo]) -> list[RunInfo]:
    """Return runs running first (newest first), then ended, most recently ended first."""
    runs = list(runs)
    running = [r for r in runs if r.get("state") == "running"]
    ended = [r for r in runs if r.get("state") != "running"]
    running.sort(key=lambda r: r.get("started") or 0.0, reverse=True)
    ended.sort(key=lambda r: r.get("ended") or r.get("updated") or 0.0, reverse=True)
    return running + ended


@dataclass
class _Kernel:
    """What is known of one kernel's runs."""

    stat: tuple[int, int, int] | None = None  # the file's (mtime_ns, size, inode) when read
    pid: int | None = None  # the process that wrote the file read
    runs: list[RunRecord] = field(default_factory=list)  # that file's runs
    pids: set[int] = field(default_factory=set)  # processes the registry gave this kernel
    gone: dict[int, str] = field(default_factory=dict)  # processes that ended -> why
    kept: dict[str, RunRecord] = field(default_factory=dict)  # runs of ended processes


class RunsWatch:
    """Read each kernel's runs file when it changes; keep what the server adds."""

    def __init__(self, runtime_dir: str, *, wall: Callable[[], float] = time.time) -> None:
        self._dir = runtime_dir
        self._wall = wall
        self._lock = threading.Lock()  # _kernels: the sampler thread vs death callbacks
        self._kernels: dict[str, _Kernel] = {}
        self._every: list[RunInfo] = []  # every kernel's runs as of the last tick, sorted

    # --- sampler thread -----------------------------------------------------------------------

    def observe(
        self, kernels: Mapping[str, KernelInfo], alive: Container[str] | None = None
    ) -> dict[str, list[RunInfo]]:
        """Return each kernel's runs (running first) after reading the files that changed.

        ``alive``: the kernels whose process this tick found (None: not known, e.g. sampling
        failed); a kernel with a local pid that is not in it has died.
        """
        now = self._wall()
        out: dict[str, list[RunInfo]] = {}
        with self._lock:
            for kid in set(self._kernels) - set(kernels):
                del self._kernels[kid]
                remove_kernel_files(self._dir, kid)  # its cells file too
            for kid, info in kernels.items():
                k = self._kernels.setdefault(kid, _Kernel())
                if info.pid is not None:
                    for old in k.pids - {info.pid}:
                        k.gone.setdefault(old, KERNEL_RESTARTED)
                    k.pids.add(info.pid)
                    if alive is not None and kid not in alive:
                        k.gone.setdefault(info.pid, KERNEL_DIED)
                self._read(kid, k, now)
                out[kid] = self._runs(k, info, now)
            self._every = sort_runs(run for runs in out.values() for run in runs)
        return out

    def every(self, state: str | None = None) -> list[RunInfo]:
        """Return every kernel's runs as of the last tick, running first (only ``state``'s)."""
        runs = self._every
        return runs if state is None else [r for r in runs if r.get("state") == state]

    def _read(self, kid: str, k: _Kernel, now: float) -> None:
        path = runs_path(self._dir, kid)
        stat = runs_stamp(path)
        if stat is None:
            return  # none yet (or removed): what was read stays
        if stat == k.stat:
            return
        found = read_runs(path)
        if found is None:
            return  # foreign or torn (not ours: ours are atomic): read again when it changes
        k.stat = stat
        if k.pid is not None and found["pid"] != k.pid:
            # a new process: the one before ended; its runs stay here, not in the new file
            k.gone.setdefault(k.pid, KERNEL_RESTARTED)
            self._keep(k, k.runs, k.gone[k.pid], now)
        k.pid, k.runs = found["pid"], found["runs"]
        for run in k.runs:
            if run["state"] != "running":
                k.kept[run["id"]] = run  # the file drops it after ten minutes: not the server

    def _runs(self, k: _Kernel, info: KernelInfo, now: float) -> list[RunInfo]:
        reason = k.gone.get(k.pid) if k.pid is not None else None
        if reason is not None:
            self._keep(k, k.runs, reason, now)
        for rid in [r for r, run in k.kept.items() if now - (run["ended"] or now) > ENDED_SECONDS]:
            del k.kept[rid]
        if len(k.kept) > OLD_KEPT:
            latest = sorted(k.kept.values(), key=lambda r: r["ended"] or r["updated"], reverse=True)
            old = 0
            for i, run in enumerate(latest):
                old += now - (run["ended"] or run["updated"]) > RECENT_SECONDS
                if i >= ENDED_KEPT or old > OLD_KEPT:
                    del k.kept[run["id"]]
        # the file's ended runs are in kept (those past the bounds are not served again)
        running = (r for r in k.runs if r["state"] == "running" and r["id"] not in k.kept)
        runs = [*k.kept.values(), *running]
        return sort_runs({**r, "kernel_id": info.id, "path": info.path} for r in runs)

    @staticmethod
    def _keep(k: _Kernel, runs: list[RunRecord], reason: str, now: float) -> None:
        """Keep ``runs`` of a process that ended; its running ones failed for ``reason``."""
        for run in runs:
            if run["id"] in k.kept:
                continue
            if run["state"] == "running":
                run = RunRecord(**run)  # a copy: the file's record stays as it was read
                run["state"], run["error"], run["ended"], run["eta"] = "failed", reason, now, None
            k.kept[run["id"]] = run

    # --- event loop ---------------------------------------------------------------------------

    def kernel_died(self, kid: str, pid: int | None) -> None:
        """Mark the running runs of kernel ``kid``'s process ``pid`` (None: its latest) failed."""
        with self._lock:
            k = self._kernels.get(kid)
            if k is None:
                return
            pid = pid if pid is not None else k.pid
            if pid is not None:
                k.gone[pid] = KERNEL_DIED

    def close(self) -> None:
        """Forget every kernel (their files stay: the kernels may outlive this extension)."""
        with self._lock:
            self._kernels.clear()
