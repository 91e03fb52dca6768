"""A process's memory cgroup: how many processes the OOM killer took there, and the memory limit.

A kernel killed for memory just vanishes. The kernel's memory cgroup counts those kills: cgroup v2
``memory.events`` (``oom_kill``, hierarchical: a kill in a child cgroup counts in its parents) and
v1 ``memory.oom_control`` (``oom_kill``). :func:`locate_memory_cgroup` finds a live process's
memory cgroup (its files stay readable after the process is gone); :func:`read_oom_kills` reads
the count and :func:`read_memory_limit` the limit that applies (the tightest of the cgroup's and
its ancestors'). A rise between two readings means the OOM killer struck in that cgroup in
between; :func:`process_leaving` tells whether a reading was taken before the process was killed.
For the server's memory guard, :func:`read_unreclaimable` reads the cgroup's charge that reclaim
cannot give back (usage minus file cache), :func:`read_members` the processes in it and
:func:`limit_is_own` whether the limit that applies is the cgroup's own. Reads never raise.
"""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass
from pathlib import Path

from ._util import read_bytes, read_text
from .host import _chain, _read_memory_limit

__all__ = [
    "MemoryCgroup",
    "limit_is_own",
    "locate_memory_cgroup",
    "parse_counts",
    "process_leaving",
    "read_members",
    "read_memory_limit",
    "read_oom_kills",
    "read_unreclaimable",
]

#: PF_EXITING in the flags of /proc/<pid>/stat: the process has begun to exit
_PF_EXITING = 0x4
_SIGKILL_PENDING = 1 << (signal.SIGKILL - 1)


@dataclass(frozen=True)
class MemoryCgroup:
    """Where a process's memory cgroup keeps its OOM-kill count and the limits over it."""

    oom_file: str  # memory.events (v2) or memory.oom_control (v1)
    version: int
    # memory.max (v2) or memory.limit_in_bytes (v1) of the cgroup and each ancestor that has one
    limit_files: tuple[str, ...] = ()
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


def read_oom_kills(cgroup: MemoryCgroup | None) -> int | None:
    """Return how many processes the OOM killer has killed in that cgroup (None: unknown)."""
    if cgroup is None:
        return None
    return parse_counts(read_text(cgroup.oom_file)).get("oom_kill")


def read_memory_limit(cgroup: MemoryCgroup | None) -> int | None:
    """Return the memory limit that applies to that cgroup in bytes (None: unlimited or unknown)."""
    if cgroup is None:
        return None
    return _read_memory_limit(cgroup.version, cgroup.limit_files)


def limit_is_own(cgroup: MemoryCgroup | None) -> bool:
    """Return whether the tightest limit over that cgroup is set on the cgroup itself."""
    if cgroup is None or not cgroup.limit_files:
        return False
    own = cgroup.limit_files[0]
    if os.path.dirname(own) != os.path.dirname(cgroup.oom_file):
        return False  # the cgroup has no limit file of its own (v2 without the controller there)
    limit = read_memory_limit(cgroup)
    return limit is not None and limit == _read_memory_limit(cgroup.version, (own,))


def read_members(cgroup: MemoryCgroup | None) -> set[int] | None:
    """Return the pids of the processes in that cgroup itself (None: unknown)."""
    if cgroup is None:
        return None
    text = read_text(os.path.join(os.path.dirname(cgroup.oom_file), "cgroup.procs"))
    if text is None:
        return None
    return {int(p) for p in text.split() if p.isdigit()}


def read_unreclaimable(cgroup: MemoryCgroup | None) -> int | None:
    """Return the cgroup's charge that reclaim cannot give back, in bytes (None: unknown).

    That is its usage (v1 ``memory.usage_in_bytes``, v2 ``memory.current``, both counting its
    sub-cgroups) minus the file cache on the LRU lists (``active_file`` + ``inactive_file`` of
    ``memory.stat``, the hierarchical ``total_*`` keys in v1): what is left is anonymous memory,
    shared memory and tmpfs (on the anonymous lists), and kernel memory, which the OOM killer
    frees by killing.
    """
    if cgroup is None:
        return None
    folder = os.path.dirname(cgroup.oom_file)
    usage_name, prefix = (
        ("memory.usage_in_bytes", "total_") if cgroup.version == 1 else ("memory.current", "")
    )
    try:
        usage = int((read_text(os.path.join(folder, usage_name)) or "").split()[0])
    except (ValueError, IndexError):
        return None
    stat = parse_counts(read_text(os.path.join(folder, "memory.stat")))
    cache = stat.get(prefix + "active_file", 0) + stat.get(prefix + "inactive_file", 0)
    return max(0, usage - cache)


def locate_memory_cgroup(
    pid: int,
    root: str | os.PathLike[str] = "/sys/fs/cgroup",
    proc: str | os.PathLike[str] = "/proc",
) -> MemoryCgroup | None:
    """Return ``pid``'s memory cgroup, or None where there is none."""
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
    candidates: list[tuple[list[Path], str, str, int, str]] = []
    if v1_path is not None:
        chain = _chain(base / "memory", v1_path)
        candidates.append((chain, "memory.oom_control", "memory.limit_in_bytes", 1, v1_path))
    if v2_path is not None:
        unified = base if (base / "cgroup.controllers").is_file() else base / "unified"
        candidates.append((_chain(unified, v2_path), "memory.events", "memory.max", 2, v2_path))
    for chain, oom_name, limit_name, version, path in candidates:
        # v2 charges a cgroup without the memory controller to its nearest ancestor with it
        for i, folder in enumerate(chain):
            if (folder / oom_name).is_file():
                limits = tuple(str(d / limit_name) for d in chain[i:] if (d / limit_name).is_file())
                return MemoryCgroup(str(folder / oom_name), version, limits, path.strip("/") == "")
    return None


def process_leaving(pid: int, proc: str | os.PathLike[str] = "/proc") -> bool:
    """Return whether ``pid`` is on its way out: killed, exiting, a zombie, or gone.

    The OOM killer counts a kill microseconds before it sends SIGKILL, so a count read just before
    this answers False was read before that process was killed. False where there is no /proc.
    """
    data = read_bytes(os.path.join(os.fspath(proc), str(pid), "stat"))
    if not data:
        return os.path.isdir(proc)
    # the command name (field 2) may hold spaces and parentheses: split after the last ")"
    fields = data[data.rfind(b")") + 2 :].split()
    try:
        state, flags, pending = fields[0], int(fields[6]), int(fields[28])
    except (IndexError, ValueError):
        return False
    # pending: the obsolete decimal signal mask of field 31, which still shows SIGKILL: a fatal
    # signal is added to every thread's own pending set as it is sent
    return state in (b"Z", b"X", b"x") or bool(flags & _PF_EXITING or pending & _SIGKILL_PENDING)
