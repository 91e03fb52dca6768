"""Host, process-tree and GPU sampling: plain dataclasses, never raising, no Jupyter imports."""

from .gpu import GpuProcess, GpuReading, GpuSampler, GpuSnapshot
from .host import CgroupLimits, HostSampler, HostSnapshot, read_cgroup_limits
from .process import ProcessTreeSampler, ProcessTreeSnapshot
from .sampler import Sampler, Snapshot
from .ticker import Ticker

__all__ = [
    "CgroupLimits",
    "GpuProcess",
    "GpuReading",
    "GpuSampler",
    "GpuSnapshot",
    "HostSampler",
    "HostSnapshot",
    "ProcessTreeSampler",
    "ProcessTreeSnapshot",
    "Sampler",
    "Snapshot",
    "Ticker",
    "read_cgroup_limits",
]
