"""Accelerator memory: fit's measurements, the device's figures, and giving memory back.

fit records, per device, the memory its model and optimizer take before a step and the peak a
batch size reaches (:func:`record_fit_memory`); an out-of-memory report turns that into the batch
size that fits. :func:`device_stats` and :func:`gpu_processes` are the default providers of an
out-of-memory report. :func:`free_memory` (``tl.free_memory()``) releases what a failed cell
still holds.
"""

from __future__ import annotations

import gc
import sys
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

__all__ = [
    "FitMemory",
    "device_stats",
    "free_memory",
    "gpu_processes",
    "last_fit_memory",
    "record_fit_memory",
]


@dataclass(frozen=True)
class FitMemory:
    """What fit measured: memory before the first step and at its peak, for a batch size."""

    device: str
    batch_size: int
    baseline: int  # bytes allocated with the model and optimizer in place, before a step
    peak: int | None  # the allocator's peak while training at that batch size (None: it failed)
    failed_at: int | None = None  # the smallest batch size that ran out of memory since
    amp: bool = False  # fit trained in mixed precision (bf16/fp16 autocast)
    model: int | None = None  # id() of the model fit trained (a measurement is the model's)

    @property
    def too_big(self) -> int | None:
        """Return the smallest batch size known not to fit (None: none failed)."""
        if self.failed_at is not None:
            return self.failed_at
        return self.batch_size if self.peak is None else None


_last_fit: dict[str, FitMemory] = {}


def record_fit_memory(memory: FitMemory) -> None:
    """Remember fit's latest measurement for its device (the batch-size suggestion reads it)."""
    _last_fit[memory.device] = memory


def last_fit_memory(device: str) -> FitMemory | None:
    """Return fit's latest measurement on ``device``, if any."""
    return _last_fit.get(device)


def device_stats(device: torch.device) -> dict[str, int | None]:
    """Return allocated, reserved, total and free bytes of ``device`` (None where unknown)."""
    stats: dict[str, int | None] = {
        "allocated": None,
        "reserved": None,
        "total": None,
        "free": None,
    }
    if device.type == "cuda" and torch.cuda.is_available():
        index = device.index if device.index is not None else torch.cuda.current_device()
        stats["allocated"] = int(torch.cuda.memory_allocated(index))
        stats["reserved"] = int(torch.cuda.memory_reserved(index))
        free, total = torch.cuda.mem_get_info(index)
        stats["free"], stats["total"] = int(free), int(total)
    elif device.type == "xpu" and _xpu_available():
        index = device.index if device.index is not None else torch.xpu.current_device()
        stats["allocated"] = int(torch.xpu.memory_allocated(index))
        stats["reserved"] = int(torch.xpu.memory_reserved(index))
        if hasattr(torch.xpu, "mem_get_info"):  # newer torch only
            free, total = torch.xpu.mem_get_info(index)
            stats["free"], stats["total"] = int(free), int(total)
    elif device.type == "mps" and hasattr(torch, "mps"):
        stats["allocated"] = int(torch.mps.current_allocated_memory())
        stats["reserved"] = int(torch.mps.driver_allocated_memory())
    return stats


def _xpu_available() -> bool:
    xpu = getattr(torch, "xpu", None)
    return xpu is not None and bool(xpu.is_available())


def gpu_processes(device: torch.device) -> list[tuple[int, int]]:
    """Return (pid, bytes) of the processes NVML sees on ``device`` (empty where it cannot)."""
    if device.type != "cuda":
        return []
    from ...metrics.gpu import GpuSampler

    sampler = GpuSampler(torch_fallback=False)
    try:
        reading = sampler.sample()
    finally:
        sampler.close()
    index = device.index or 0
    for gpu in reading.gpus:
        if gpu.index == index or len(reading.gpus) == 1:
            return [(p.pid, p.memory_used or 0) for p in gpu.processes]
    return []


def free_memory(shell: Any = None) -> dict[str, int | None]:
    """Give back the memory a failed cell still holds; return bytes freed on each device.

    Clears the exception Python and IPython keep (``sys.last_*``, the shell's saved traceback,
    the last output), runs the garbage collector and empties the caching allocator. ``shell``
    defaults to the running IPython shell, if any.
    """
    if shell is None:
        ipython = sys.modules.get("IPython")
        shell = ipython.get_ipython() if ipython is not None else None
    before = _reserved()
    for name in ("last_type", "last_value", "last_traceback", "last_exc"):
        if hasattr(sys, name):
            setattr(sys, name, None)
    if shell is not None:
        # the failed cell's result keeps its exception, and IPython's traceback formatter the
        # traceback it printed last: both keep every frame of the failed step alive
        result = getattr(shell, "last_execution_result", None)
        if result is not None and hasattr(result, "error_in_exec"):
            result.error_in_exec = None
        formatter = getattr(shell, "InteractiveTB", None)
        if formatter is not None and hasattr(formatter, "tb"):
            formatter.tb = None
        user_ns = getattr(shell, "user_ns", {})
        for name in ("_", "__", "___"):
            if isinstance(user_ns.get(name), torch.Tensor | nn.Module):
                user_ns[name] = None
    gc.collect()
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.empty_cache()
    if _xpu_available():
        torch.xpu.empty_cache()
    if hasattr(torch, "mps") and torch.backends.mps.is_available():
        torch.mps.empty_cache()
    after = _reserved()
    return {dev: (before[dev] - after.get(dev, 0)) for dev in before}


def _reserved() -> dict[str, int]:
    reserved: dict[str, int] = {}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for i in range(torch.cuda.device_count()):
            reserved[f"cuda:{i}"] = int(torch.cuda.memory_reserved(i))
    return reserved
