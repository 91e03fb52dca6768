"""Host, process-tree and GPU sampling: plain dataclasses, never raising, no Jupyter imports."""

from .gpu import GpuProcess, GpuReading, GpuSampler, GpuSnapshot
from .host import CgroupLimits, HostSampler, HostSnapshot, read_cgroup_limits
from .memory_cgroup import (
    MemoryCgroup,
    locate_memory_cgroup,
    process_leaving,
    read_memory_limit,
    read_oom_kills,
)
from .process import ProcessTreeSampler, ProcessTreeSnapshot
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
    "locate_memory_cgroup",
    "process_leaving",
    "read_cgroup_limits",
    "read_memory_limit",
    "read_oom_kills",
]
