"""Host CPU, memory and swap, measured against the container's own cgroup limits when it has them.

A pod limited to 2 CPUs and 4 GiB on a 96-CPU node should read "1 of 2 CPUs busy, 3 of 4 GiB",
not "1% of 96 CPUs, 3 of 500 GiB". So when a cgroup (v2 ``cpu.max``/``memory.max``, or v1
``cpu.cfs_quota_us``/``memory.limit_in_bytes``) or the CPU affinity mask limits us:

- ``cpu_limit`` is the effective number of CPUs and ``cpu_percent`` is the cgroup's own CPU usage
  as a share of it (from ``cpu.stat``/``cpuacct.usage``), so 100 means the quota is used up;
- ``memory_limit`` is the limit and ``memory_used`` the cgroup's working set (usage minus inactive
  file cache, which the kernel reclaims before it kills anything), so consumers use
  ``memory_limit`` as the 100% mark.

``per_cpu`` and ``load_avg`` always describe the host's cores: a cgroup has no per-core view.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from ._util import read_text

__all__ = ["CgroupLimits", "HostSampler", "HostSnapshot", "read_cgroup_limits"]

# cgroup v1 reports "no limit" as a page-aligned LONG_MAX (9223372036854771712); anything this large
# cannot be a real limit
_V1_UNLIMITED = 1 << 60


@dataclass(frozen=True)
class HostSnapshot:
    """One reading of the host (or container) CPU, memory and swap."""

    cpu_percent: float  # of the effective CPUs (cpu_limit when set, else cpu_count), 0-100
    cpu_count: int  # logical CPUs of the host
    cpu_limit: float | None  # effective CPUs from the cgroup quota / affinity, None when unlimited
    per_cpu: tuple[float, ...]  # host cores, 0-100 each
    load_avg: tuple[float, float, float]
    memory_total: int  # host physical memory, bytes
    memory_used: int  # bytes; the cgroup's working set when memory_limit is set
    memory_available: int  # bytes left before the 100% mark
    memory_limit: int | None  # cgroup limit in bytes, None when unlimited (or above memory_total)
    swap_total: int
    swap_used: int

    @property
    def memory_percent(self) -> float:
        """Memory used as a percentage of the limit when there is one, else of the host total."""
        mark = self.memory_limit if self.memory_limit is not None else self.memory_total
        return 100.0 * self.memory_used / mark if mark else 0.0


@dataclass(frozen=True)
class CgroupLimits:
    """What the cgroup we run in allows and uses; None where there is no limit or no file."""

    cpu_limit: float | None  # effective CPUs (quota / period)
    memory_limit: int | None  # bytes
    memory_used: int | None  # bytes, working set (usage minus inactive file cache)
    version: int | None  # 1, 2, or None when no cgroup filesystem was found
    cpu_usage: float | None = None  # cumulative CPU seconds of the cgroup, for a usage rate


def _own_paths(self_cgroup: str | os.PathLike[str] | None) -> dict[str, str]:
    """Map controller name ('' for v2) to our cgroup path, from a /proc/<pid>/cgroup file."""
    paths: dict[str, str] = {}
    text = read_text(os.fspath(self_cgroup)) if self_cgroup is not None else None
    for line in (text or "").splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, path = parts
        for name in controllers.split(","):
            paths[name] = path
    return paths


def _chain(base: Path, own: str | None) -> list[Path]:
    """Our cgroup dir and its ancestors up to ``base``, deepest first (just ``base`` if unknown)."""
    chain: list[Path] = []
    if own:
        rel = Path(own.lstrip("/"))
        # inside a cgroup namespace or a bind-mounted container cgroup the path does not exist
        # under base; the container's own cgroup is then base itself
        while rel.parts and not (base / rel).is_dir():
            rel = rel.parent
        while rel.parts:
            chain.append(base / rel)
            rel = rel.parent
    chain.append(base)
    return chain


def _read_int(path: Path) -> int | None:
    text = read_text(str(path))
    if text is None:
        return None
    try:
        return int(text.split()[0])
    except (ValueError, IndexError):
        return None


def _stat_value(path: Path, key: str) -> int | None:
    for line in (read_text(str(path)) or "").splitlines():
        name, _, value = line.partition(" ")
        if name == key:
            try:
                return int(value)
            except ValueError:
                return None
    return None


def _min(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return min(present) if present else None


def _v2_cpu_max(path: Path) -> float | None:
    text = read_text(str(path / "cpu.max"))
    if not text:
        return None
    quota, _, period = text.strip().partition(" ")
    if quota == "max":
        return None
    try:
        return int(quota) / int(period or "100000")
    except (ValueError, ZeroDivisionError):
        return None


def _v2_memory_max(path: Path) -> int | None:
    text = read_text(str(path / "memory.max"))
    if not text or text.strip() == "max":
        return None
    try:
        return int(text)
    except ValueError:
        return None


def _read_v2(base: Path, own: dict[str, str]) -> CgroupLimits:
    chain = _chain(base, own.get(""))
    cpu = _min([_v2_cpu_max(d) for d in chain])
    memory_limit = _min([_v2_memory_max(d) for d in chain])
    deepest = chain[0]
    used = _read_int(deepest / "memory.current")
    if used is not None:
        used -= _stat_value(deepest / "memory.stat", "inactive_file") or 0
    usage_usec = _stat_value(deepest / "cpu.stat", "usage_usec")
    return CgroupLimits(
        cpu_limit=cpu,
        memory_limit=int(memory_limit) if memory_limit is not None else None,
        memory_used=max(used, 0) if used is not None else None,
        version=2,
        cpu_usage=usage_usec / 1e6 if usage_usec is not None else None,
    )


def _v1_dir(base: Path, names: Sequence[str]) -> Path | None:
    for name in names:
        if (base / name).is_dir():
            return base / name
    return None


def _v1_cpu_quota(path: Path) -> float | None:
    quota = _read_int(path / "cpu.cfs_quota_us")
    period = _read_int(path / "cpu.cfs_period_us")
    if quota is None or quota <= 0 or not period:
        return None
    return quota / period


def _v1_memory_limit(path: Path) -> int | None:
    limit = _read_int(path / "memory.limit_in_bytes")
    return limit if limit is not None and limit < _V1_UNLIMITED else None


def _read_v1(base: Path, own: dict[str, str]) -> CgroupLimits:
    cpu_limit = memory_limit = memory_used = cpu_usage = None
    cpu_dir = _v1_dir(base, ("cpu", "cpu,cpuacct", "cpuacct,cpu"))
    if cpu_dir is not None:
        cpu_limit = _min([_v1_cpu_quota(d) for d in _chain(cpu_dir, own.get("cpu"))])
    acct_dir = _v1_dir(base, ("cpuacct", "cpu,cpuacct", "cpuacct,cpu"))
    if acct_dir is not None:
        usage_ns = _read_int(_chain(acct_dir, own.get("cpuacct"))[0] / "cpuacct.usage")
        cpu_usage = usage_ns / 1e9 if usage_ns is not None else None
    mem_dir = _v1_dir(base, ("memory",))
    if mem_dir is not None:
        chain = _chain(mem_dir, own.get("memory"))
        limit = _min([_v1_memory_limit(d) for d in chain])
        memory_limit = int(limit) if limit is not None else None
        usage = _read_int(chain[0] / "memory.usage_in_bytes")
        if usage is not None:
            # v1 memory.stat's total_* keys include sub-cgroups, like usage_in_bytes does
            usage -= _stat_value(chain[0] / "memory.stat", "total_inactive_file") or 0
            memory_used = max(usage, 0)
    version = 1 if (cpu_dir or mem_dir or acct_dir) is not None else None
    return CgroupLimits(cpu_limit, memory_limit, memory_used, version, cpu_usage)


def read_cgroup_limits(
    root: str | os.PathLike[str] = "/sys/fs/cgroup",
    self_cgroup: str | os.PathLike[str] | None = "/proc/self/cgroup",
) -> CgroupLimits:
    """Read the CPU and memory limits of our cgroup under ``root`` (v2 if mounted, else v1).

    ``self_cgroup`` is the /proc file naming our cgroup path; limits are the tightest along the path
    from it up to ``root``. Pass None to read ``root`` itself (a container's usual view).
    """
    base = Path(root)
    own = _own_paths(self_cgroup)
    if (base / "cgroup.controllers").is_file():
        return _read_v2(base, own)
    return _read_v1(base, own)


def _busy_and_total(t: Any) -> tuple[float, float]:
    """Return (busy, total) seconds of one ``psutil.cpu_times()`` entry."""
    values: dict[str, float] = t._asdict()
    total = sum(values.values())
    # Linux counts guest time inside user/nice too; subtracting avoids counting it twice
    total -= values.get("guest", 0.0) + values.get("guest_nice", 0.0)
    idle = values.get("idle", 0.0) + values.get("iowait", 0.0)
    return total - idle, total


def _percent(busy: float, total: float) -> float:
    if total <= 0:
        return 0.0
    return max(0.0, min(100.0, 100.0 * busy / total))


class HostSampler:
    """Read host CPU/memory/swap and cgroup limits; CPU % is the delta since the previous sample.

    Never blocks: the first ``sample()`` reports CPU use since the sampler was created.
    """

    def __init__(
        self,
        cgroup_root: str | os.PathLike[str] = "/sys/fs/cgroup",
        *,
        self_cgroup: str | os.PathLike[str] | None = "/proc/self/cgroup",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.cgroup_root = cgroup_root
        self.self_cgroup = self_cgroup
        self._clock = clock
        self.cpu_count = psutil.cpu_count() or 1
        self._last_times = self._cpu_times()
        self._last_cgroup = (clock(), read_cgroup_limits(cgroup_root, self_cgroup).cpu_usage)

    @staticmethod
    def _cpu_times() -> list[tuple[float, float]]:
        return [_busy_and_total(t) for t in psutil.cpu_times(percpu=True)]

    def _affinity_count(self) -> int | None:
        try:
            return len(os.sched_getaffinity(0))
        except (AttributeError, OSError):  # not on macOS / Windows
            return None

    def sample(self) -> HostSnapshot:
        """Take one reading."""
        now = self._clock()
        times = self._cpu_times()
        per_cpu = tuple(
            _percent(b1 - b0, t1 - t0)
            for (b0, t0), (b1, t1) in zip(self._last_times, times, strict=False)
        )
        busy = sum(b for b, _ in times) - sum(b for b, _ in self._last_times)
        total = sum(t for _, t in times) - sum(t for _, t in self._last_times)
        host_percent = _percent(busy, total)
        self._last_times = times

        limits = read_cgroup_limits(self.cgroup_root, self.self_cgroup)
        cpu_limit = limits.cpu_limit
        affinity = self._affinity_count()
        if affinity is not None and affinity < self.cpu_count:
            cpu_limit = min(cpu_limit, float(affinity)) if cpu_limit else float(affinity)
        if cpu_limit is not None and cpu_limit >= self.cpu_count:
            cpu_limit = None

        cpu_percent = host_percent
        last_clock, last_usage = self._last_cgroup
        if cpu_limit is not None and limits.cpu_usage is not None and last_usage is not None:
            elapsed = now - last_clock
            if elapsed > 0:
                used = max(limits.cpu_usage - last_usage, 0.0)
                cpu_percent = max(0.0, min(100.0, 100.0 * used / elapsed / cpu_limit))
        elif cpu_limit is not None:
            # no usage counter: the host figure rescaled is the best estimate we have
            cpu_percent = min(100.0, host_percent * self.cpu_count / cpu_limit)
        self._last_cgroup = (now, limits.cpu_usage)

        vm = psutil.virtual_memory()
        memory_used = vm.total - vm.available
        memory_available = int(vm.available)
        memory_limit = limits.memory_limit
        if memory_limit is not None and memory_limit >= vm.total:
            memory_limit = None
        if memory_limit is not None:
            if limits.memory_used is not None:
                memory_used = limits.memory_used
            memory_available = max(0, min(memory_limit - memory_used, int(vm.available)))

        swap = psutil.swap_memory()
        load = psutil.getloadavg()
        return HostSnapshot(
            cpu_percent=float(cpu_percent),
            cpu_count=self.cpu_count,
            cpu_limit=cpu_limit,
            per_cpu=per_cpu,
            load_avg=(float(load[0]), float(load[1]), float(load[2])),
            memory_total=int(vm.total),
            memory_used=int(memory_used),
            memory_available=memory_available,
            memory_limit=memory_limit,
            swap_total=int(swap.total),
            swap_used=int(swap.used),
        )
