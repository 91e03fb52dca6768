"""Host, process-tree and GPU sampling: plain dataclasses, never raising, no Jupyter imports."""

from .counters import TreeCounters, read_counters, read_peaks
from .gpu import GpuProcess, GpuReading, GpuSampler, GpuSnapshot
from .host import CgroupLimits, HostSampler, HostSnapshot, read_cgroup_limits
from .memory_cgroup import (
    MemoryCgroup,
    limit_is_own,
    locate_memory_cgroup,
    process_leaving,
    read_members,
    read_memory_limit,
    read_oom_kills,
    read_unreclaimable,
)
from .process import ProcessTreeSampler, ProcessTreeSnapshot, read_rss
from .sampler import Sampler, Snapshot
from .starvation import STARVED_BELOW, GpuStarvation, Starved
from .ticker import Ticker

__all__ = [
    "STARVED_BELOW",
    "CgroupLimits",
    "GpuProcess",
    "GpuReading",
    "GpuSampler",
    "GpuSnapshot",
    "GpuStarvation",
    "HostSampler",
    "HostSnapshot",
    "MemoryCgroup",
    "ProcessTreeSampler",
    "ProcessTreeSnapshot",
    "Sampler",
    "Snapshot",
    "Starved",
    "Ticker",
    "TreeCounters",
    "limit_is_own",
    "locate_memory_cgroup",
    "process_leaving",
    "read_cgroup_limits",
    "read_counters",
    "read_members",
    "read_memory_limit",
    "read_oom_kills",
    "read_peaks",
    "read_rss",
    "read_unreclaimable",
]
