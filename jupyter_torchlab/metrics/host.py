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
from collections.abc import Callable, Iterable, Sequence
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


def _int(text: str | None) -> int | None:
    try:
        return int(text.split()[0]) if text else None
    except (ValueError, IndexError):
        return None


def _stat_value(path: str | None, key: str) -> int | None:
    text = read_text(path) if path else None
    for line in (text or "").splitlines():
        name, _, value = line.partition(" ")
        if name == key:
            return _int(value)
    return None


def _min(values: Iterable[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return min(present) if present else None


def _existing(paths: Iterable[Path]) -> list[str]:
    return [str(p) for p in paths if p.is_file()]


def _v2_cpu_max(text: str | None) -> float | None:
    quota, _, period = (text or "max").strip().partition(" ")
    if quota == "max":
        return None
    try:
        return int(quota) / int(period or "100000")
    except (ValueError, ZeroDivisionError):
        return None


def _v2_memory_max(text: str | None) -> int | None:
    return None if text is None or text.strip() == "max" else _int(text)


def _v1_quota(quota: int | None, period: int | None) -> float | None:
    return quota / period if quota is not None and quota > 0 and period else None


def _v1_limit(limit: int | None) -> int | None:
    return limit if limit is not None and limit < _V1_UNLIMITED else None


def _read_memory_limit(version: int | None, files: Iterable[str]) -> int | None:
    """Return the tightest limit in v2 ``memory.max`` or v1 ``memory.limit_in_bytes`` files."""
    if version == 2:
        limit = _min(_v2_memory_max(read_text(f)) for f in files)
    else:
        limit = _min(_v1_limit(_int(read_text(f))) for f in files)
    return int(limit) if limit is not None else None


class _CgroupFiles:
    """The cgroup files that matter to us, located once; ``read()`` then only reads values."""

    def __init__(self, root: str | os.PathLike[str], self_cgroup: str | os.PathLike[str] | None):
        base = Path(root)
        own = _own_paths(self_cgroup)
        self.version: int | None = None
        self.cpu_max: list[str] = []  # v2: cpu.max along the chain
        self.memory_max: list[str] = []  # v2 memory.max / v1 memory.limit_in_bytes
        self.cfs: list[tuple[str, str]] = []  # v1: (cfs_quota_us, cfs_period_us) along the chain
        self.usage: str | None = None  # memory.current / memory.usage_in_bytes
        self.memory_stat: str | None = None
        self.inactive_key = "inactive_file"
        self.cpu_stat: str | None = None  # v2 cpu.stat (usage_usec)
        self.cpuacct: str | None = None  # v1 cpuacct.usage (ns)
        if (base / "cgroup.controllers").is_file():
            self.version = 2
            chain = _chain(base, own.get(""))
            self.cpu_max = _existing(d / "cpu.max" for d in chain)
            self.memory_max = _existing(d / "memory.max" for d in chain)
            self.usage = str(chain[0] / "memory.current")
            self.memory_stat = str(chain[0] / "memory.stat")
            self.cpu_stat = str(chain[0] / "cpu.stat")
            return
        cpu_dir = _v1_dir(base, ("cpu", "cpu,cpuacct", "cpuacct,cpu"))
        acct_dir = _v1_dir(base, ("cpuacct", "cpu,cpuacct", "cpuacct,cpu"))
        mem_dir = _v1_dir(base, ("memory",))
        if cpu_dir is None and acct_dir is None and mem_dir is None:
            return
        self.version = 1
        if cpu_dir is not None:
            for d in _chain(cpu_dir, own.get("cpu")):
                if (d / "cpu.cfs_quota_us").is_file():
                    self.cfs.append((str(d / "cpu.cfs_quota_us"), str(d / "cpu.cfs_period_us")))
        if acct_dir is not None:
            self.cpuacct = str(_chain(acct_dir, own.get("cpuacct"))[0] / "cpuacct.usage")
        if mem_dir is not None:
            chain = _chain(mem_dir, own.get("memory"))
            self.memory_max = _existing(d / "memory.limit_in_bytes" for d in chain)
            self.usage = str(chain[0] / "memory.usage_in_bytes")
            self.memory_stat = str(chain[0] / "memory.stat")
            # v1 memory.stat's total_* keys include sub-cgroups, as usage_in_bytes does
            self.inactive_key = "total_inactive_file"

    def read(self) -> CgroupLimits:
        if self.version == 2:
            cpu_limit = _min(_v2_cpu_max(read_text(f)) for f in self.cpu_max)
            usage_usec = _stat_value(self.cpu_stat, "usage_usec")
            cpu_usage = usage_usec / 1e6 if usage_usec is not None else None
        else:
            cpu_limit = _min(_v1_quota(_int(read_text(q)), _int(read_text(p))) for q, p in self.cfs)
            usage_ns = _int(read_text(self.cpuacct)) if self.cpuacct else None
            cpu_usage = usage_ns / 1e9 if usage_ns is not None else None
        memory_limit = _read_memory_limit(self.version, self.memory_max)
        used = _int(read_text(self.usage)) if self.usage else None
        if used is not None:
            # the working set: inactive file cache is dropped before anything is OOM-killed
            used = max(0, used - (_stat_value(self.memory_stat, self.inactive_key) or 0))
        return CgroupLimits(
            cpu_limit=cpu_limit,
            memory_limit=memory_limit,
            memory_used=used,
            version=self.version,
            cpu_usage=cpu_usage,
        )


def _v1_dir(base: Path, names: Sequence[str]) -> Path | None:
    for name in names:
        if (base / name).is_dir():
            return base / name
    return None


def read_cgroup_limits(
    root: str | os.PathLike[str] = "/sys/fs/cgroup",
    self_cgroup: str | os.PathLike[str] | None = "/proc/self/cgroup",
) -> CgroupLimits:
    """Read the CPU and memory limits of our cgroup under ``root`` (v2 if mounted, else v1).

    ``self_cgroup`` is the /proc file naming our cgroup path; limits are the tightest along the path
    from it up to ``root``. Pass None to read ``root`` itself (a container's usual view).
    """
    return _CgroupFiles(root, self_cgroup).read()


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


def _memory() -> tuple[int, int, int, int]:
    """Return (total, available, swap total, swap used) in bytes."""
    # one read of /proc/meminfo instead of psutil's two reads plus /proc/vmstat (for swap
    # counters we do not report); psutil elsewhere and on kernels without MemAvailable
    text = read_text("/proc/meminfo")
    if text:
        kib: dict[str, int] = {}
        for line in text.splitlines():
            name, _, rest = line.partition(":")
            if name in ("MemTotal", "MemAvailable", "SwapTotal", "SwapFree"):
                kib[name] = int(rest.split()[0])
        if len(kib) == 4:
            swap_total = kib["SwapTotal"] * 1024
            return (
                kib["MemTotal"] * 1024,
                kib["MemAvailable"] * 1024,
                swap_total,
                swap_total - kib["SwapFree"] * 1024,
            )
    vm, swap = psutil.virtual_memory(), psutil.swap_memory()
    return int(vm.total), int(vm.available), int(swap.total), int(swap.used)


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
        # cgroup files are located once; a process does not move between cgroups in practice
        self._cgroup = _CgroupFiles(cgroup_root, self_cgroup)
        self._last_cgroup = (clock(), self._cgroup.read().cpu_usage)

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

        limits = self._cgroup.read()
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

        total, available, swap_total, swap_used = _memory()
        memory_used = total - available
        memory_available = available
        memory_limit = limits.memory_limit
        if memory_limit is not None and memory_limit >= total:
            memory_limit = None
        if memory_limit is not None:
            if limits.memory_used is not None:
                memory_used = limits.memory_used
            memory_available = max(0, min(memory_limit - memory_used, available))

        load = psutil.getloadavg()
        return HostSnapshot(
            cpu_percent=float(cpu_percent),
            cpu_count=self.cpu_count,
            cpu_limit=cpu_limit,
            per_cpu=per_cpu,
            load_avg=(float(load[0]), float(load[1]), float(load[2])),
            memory_total=total,
            memory_used=int(memory_used),
            memory_available=memory_available,
            memory_limit=memory_limit,
            swap_total=swap_total,
            swap_used=swap_used,
        )
