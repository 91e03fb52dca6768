"""How many processes the out-of-memory killer took in a process's memory cgroup.

A kernel killed for memory just vanishes. The kernel's memory cgroup counts those kills: cgroup v2
``memory.events`` (``oom_kill``, hierarchical: a kill in a child cgroup counts in its parents) and
v1 ``memory.oom_control`` (``oom_kill``). :func:`locate` finds the counter of a live process's
cgroup (the file stays readable after the process is gone); :func:`read_count` reads it. A rise
between two readings means the OOM killer struck in that cgroup. Reads never raise.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ._util import read_text
from .host import _chain

__all__ = ["OomCounter", "locate", "parse_counts", "read_count"]


@dataclass(frozen=True)
class OomCounter:
    """Where a cgroup's OOM-kill count is: ``memory.events`` (v2) or ``memory.oom_control`` (v1)."""

    path: str
    version: int
    root: bool = False  # the root cgroup's (where v1 moves a process as it exits)


def parse_counts(text: str | None) -> dict[str, int]:
    """Parse ``key value`` lines (memory.events, memory.oom_control) into a dict."""
    counts: dict[str, int] = {}
    for line in (text or "").splitlines():
        key, _, value = line.strip().partition(" ")
        try:
            counts[key] = int(value)
        except ValueError:
            continue
    return counts


def read_count(counter: OomCounter | None) -> int | None:
    """Return how many processes the OOM killer has killed in that cgroup (None: unknown)."""
    if counter is None:
        return None
    return parse_counts(read_text(counter.path)).get("oom_kill")


def locate(
    pid: int,
    root: str | os.PathLike[str] = "/sys/fs/cgroup",
    proc: str | os.PathLike[str] = "/proc",
) -> OomCounter | None:
    """Return the OOM counter of ``pid``'s memory cgroup, or None where there is none."""
    base = Path(root)
    text = read_text(os.path.join(os.fspath(proc), str(pid), "cgroup"))
    v1_path = v2_path = None
    for line in (text or "").splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, path = parts
        if controllers == "":
            v2_path = path
        elif "memory" in controllers.split(","):
            v1_path = path
    candidates: list[tuple[Path, int, str]] = []
    if v1_path is not None:
        file = _chain(base / "memory", v1_path)[0] / "memory.oom_control"
        candidates.append((file, 1, v1_path))
    if v2_path is not None:
        unified = base if (base / "cgroup.controllers").is_file() else base / "unified"
        candidates.append((_chain(unified, v2_path)[0] / "memory.events", 2, v2_path))
    for file, version, path in candidates:
        if file.is_file():
            return OomCounter(str(file), version, root=path.strip("/") == "")
    return None
