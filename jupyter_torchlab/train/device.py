"""Choose the device to train on and describe it for display.

Accelerators are found by feature detection: ``torch.accelerator`` where this torch has it, else the
per-backend modules (CUDA, XPU, MPS). Nothing here initialises a GPU context beyond what
``torch.cuda.device_count()`` and friends already do.
"""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass
from typing import Any

import torch

from .. import _gpu_peaks
from .._format import format_bytes

__all__ = [
    "DeviceInfo",
    "allocated_memory",
    "available_devices",
    "describe_device",
    "device_label",
    "peak_memory",
    "pick_device",
    "reset_peak_memory",
]

# backends we know how to count, in the order "auto" prefers them when torch.accelerator is absent
_BACKENDS = ("cuda", "xpu", "mps")


def _count(kind: str) -> int:
    """Return how many devices of one backend torch can use here (0 when none or not built)."""
    if kind == "cuda":
        return torch.cuda.device_count() if torch.cuda.is_available() else 0
    if kind == "xpu":
        xpu = getattr(torch, "xpu", None)
        return xpu.device_count() if xpu is not None and xpu.is_available() else 0
    if kind == "mps":
        mps = getattr(torch.backends, "mps", None)
        return 1 if mps is not None and mps.is_available() else 0
    return 0


def available_devices() -> list[str]:
    """Return the device names torch can use here, accelerators first, ``"cpu"`` last."""
    names: list[str] = []
    for kind in _BACKENDS:
        n = _count(kind)
        if kind == "mps":
            names.extend(["mps"] * n)
        else:
            names.extend(f"{kind}:{i}" for i in range(n))
    names.append("cpu")
    return names


def _auto() -> torch.device:
    accel = getattr(torch, "accelerator", None)
    if accel is not None:
        if not accel.is_available():
            return torch.device("cpu")
        current = accel.current_accelerator()
        if current is None:
            return torch.device("cpu")
        if current.type == "mps":
            return torch.device("mps")
        return torch.device(current.type, accel.current_device_index())
    for kind in _BACKENDS:
        if _count(kind):
            return torch.device("mps") if kind == "mps" else torch.device(kind, 0)
    return torch.device("cpu")


def device_label(device: Any) -> str:
    """Return a short label for progress displays: ``cuda:0 (NVIDIA H100 80GB HBM3)``."""
    kind = getattr(device, "type", str(device))
    if kind == "cuda":
        try:
            return f"{device} ({torch.cuda.get_device_name(device)})"
        except Exception:  # noqa: BLE001 - a label must never break training
            return str(device)
    return str(device)


def peak_memory(device: torch.device) -> int | None:
    """Return the peak accelerator memory this process allocated on ``device``, or None.

    The caching allocator's own counter: reading it does not wait for the device.
    """
    if device.type != "cuda":
        return None
    try:
        return int(torch.cuda.max_memory_allocated(device))
    except Exception:  # noqa: BLE001 - a missing reading shows as n/a
        return None


def reset_peak_memory(device: torch.device) -> None:
    """Start measuring the peak of ``device``'s allocator anew (per epoch); no-op off CUDA.

    The peak so far is first carried (:mod:`jupyter_torchlab._gpu_peaks`), so the running
    cell's GPU peak still counts it. Both calls read the allocator's counters: no device sync.
    """
    if device.type == "cuda":
        try:
            index = device.index if device.index is not None else torch.cuda.current_device()
            _gpu_peaks.carry(index, int(torch.cuda.max_memory_allocated(index)))
            torch.cuda.reset_peak_memory_stats(index)
        except Exception:  # noqa: BLE001 - the peak then counts from earlier
            return


def allocated_memory(device: torch.device) -> int | None:
    """Return the bytes ``device``'s caching allocator has allocated now (None off CUDA)."""
    if device.type != "cuda":
        return None
    try:
        return int(torch.cuda.memory_allocated(device))
    except Exception:  # noqa: BLE001 - unknown
        return None


def pick_device(prefer: str | torch.device | None = "auto") -> torch.device:
    """Return the device to train on: the best accelerator for ``"auto"``, else the one asked for.

    ``prefer`` may be ``"auto"`` (or None), ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``,
    ``"xpu"`` or a :class:`torch.device`. A device that is not here raises :class:`ValueError`
    naming the ones that are.
    """
    if prefer is None or (isinstance(prefer, str) and prefer.strip().lower() == "auto"):
        return _auto()
    try:
        dev = torch.device(prefer.strip().lower() if isinstance(prefer, str) else prefer)
    except (RuntimeError, TypeError) as err:
        raise ValueError(
            f"{prefer!r} is not a device name; use 'auto' or one of: "
            f"{', '.join(available_devices())}"
        ) from err
    if dev.type == "cpu":
        return torch.device("cpu")
    if dev.type not in _BACKENDS:
        raise ValueError(
            f"device type {dev.type!r} is not supported for training here; "
            f"available: {', '.join(available_devices())}"
        )
    n = _count(dev.type)
    if n == 0:
        raise ValueError(
            f"{dev.type.upper()} was asked for but is not available to this torch "
            f"({torch.__version__}); available: {', '.join(available_devices())}. "
            "Use pick_device('auto') to take the best device that is here."
        )
    if dev.type == "mps":
        return torch.device("mps")
    index = dev.index if dev.index is not None else 0
    if index >= n:
        raise ValueError(
            f"{dev.type}:{index} is out of range: this machine has {n} {dev.type.upper()} "
            f"device{'s' if n != 1 else ''}; available: {', '.join(available_devices())}"
        )
    return torch.device(dev.type, index)


@dataclass(frozen=True)
class DeviceInfo:
    """What a device is, for display: ``str(info)`` is one readable line."""

    device: str  # "cuda:0", "mps", "cpu"
    name: str
    memory_total: int | None  # bytes; host RAM for the CPU
    capability: str | None  # "9.0" (CUDA compute capability), "AVX2" (CPU vector ISA), ...
    count: int  # devices of this type (CPU: usable threads)

    def __str__(self) -> str:
        parts = [f"{self.device}: {self.name}"]
        if self.memory_total:
            parts.append(format_bytes(self.memory_total))
        if self.capability:
            label = "compute capability " if self.device.startswith("cuda") else ""
            parts.append(f"{label}{self.capability}")
        if self.device == "cpu":
            parts.append(f"{self.count} threads")
        return ", ".join(parts)

    def as_dict(self) -> dict[str, Any]:
        """Return the fields as a plain dict."""
        return {
            "device": self.device,
            "name": self.name,
            "memory_total": self.memory_total,
            "capability": self.capability,
            "count": self.count,
        }


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "CPU"


def _host_memory() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None


def describe_device(device: str | torch.device | None = None) -> DeviceInfo:
    """Describe a device (default: ``pick_device()``) by name, memory and capability."""
    dev = pick_device(device)
    if dev.type == "cpu":
        capability = None
        cpu_backend = getattr(torch.backends, "cpu", None)
        if cpu_backend is not None and hasattr(cpu_backend, "get_cpu_capability"):
            capability = cpu_backend.get_cpu_capability()
        return DeviceInfo("cpu", _cpu_name(), _host_memory(), capability, torch.get_num_threads())
    if dev.type == "cuda":
        props = torch.cuda.get_device_properties(dev)
        return DeviceInfo(
            str(dev),
            props.name,
            int(props.total_memory),
            f"{props.major}.{props.minor}",
            torch.cuda.device_count(),
        )
    if dev.type == "xpu":
        xprops = torch.xpu.get_device_properties(dev)
        return DeviceInfo(
            str(dev),
            str(getattr(xprops, "name", "Intel XPU")),
            getattr(xprops, "total_memory", None),
            None,
            torch.xpu.device_count(),
        )
    # mps: unified memory; torch reports the recommended working-set size where it can
    memory = None
    mps = getattr(torch, "mps", None)
    if mps is not None and hasattr(mps, "recommended_max_memory"):
        try:
            memory = int(mps.recommended_max_memory())
        except RuntimeError:
            memory = None
    return DeviceInfo("mps", f"Apple GPU (Metal, {platform.machine()})", memory, None, 1)
