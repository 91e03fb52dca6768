"""A stand-in for ``pynvml`` implementing the calls the metrics use, raising pynvml's real errors.

Devices are plain dicts; a field whose value is an ``NVMLError`` instance raises it when read, so a
test can make any single call fail the way a real driver does.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pynvml
from pynvml import (
    NVML_ERROR_DRIVER_NOT_LOADED,
    NVML_ERROR_GPU_IS_LOST,
    NVML_ERROR_LIBRARY_NOT_FOUND,
    NVML_ERROR_NOT_FOUND,
    NVML_ERROR_NOT_SUPPORTED,
    NVML_TEMPERATURE_GPU,
    NVMLError,
)

__all__ = [
    "NVML_ERROR_DRIVER_NOT_LOADED",
    "NVML_ERROR_GPU_IS_LOST",
    "NVML_ERROR_LIBRARY_NOT_FOUND",
    "NVML_ERROR_NOT_FOUND",
    "NVML_ERROR_NOT_SUPPORTED",
    "FakeNvml",
    "device",
    "error",
    "proc",
    "sample",
]


def error(code: int) -> NVMLError:
    """Return the exception pynvml raises for ``code`` (e.g. NVMLError_GpuIsLost)."""
    return NVMLError(code)


def device(index: int, **overrides: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "name": f"NVIDIA Fake {index}",
        "uuid": f"GPU-{index:08d}-aaaa-bbbb-cccc-{index:012d}",
        "util": SimpleNamespace(gpu=50 + index, memory=10 + index),
        "memory": SimpleNamespace(used=(index + 1) << 30, total=80 << 30, free=0),
        "temperature": 40 + index,
        "power": 150_000 + index,  # milliwatts
        "power_limit": 700_000,
        "compute": [],
        "graphics": [],
        # per-process utilisation samples (see sample()), or an error; many GPUs do not report them
        "samples": error(NVML_ERROR_NOT_SUPPORTED),
    }
    fields.update(overrides)
    return fields


def proc(pid: int, used: int | None) -> Any:
    return SimpleNamespace(pid=pid, usedGpuMemory=used)


def sample(pid: int, stamp: int, sm: int, mem: int = 0) -> Any:
    """One of NVML's per-process utilisation samples (timeStamp in microseconds)."""
    return SimpleNamespace(pid=pid, timeStamp=stamp, smUtil=sm, memUtil=mem, encUtil=0, decUtil=0)


class FakeNvml:
    """The subset of pynvml that GpuSampler calls."""

    NVMLError = NVMLError
    NVML_TEMPERATURE_GPU = NVML_TEMPERATURE_GPU

    def __init__(self, devices: list[dict[str, Any]], init_error: NVMLError | None = None):
        self.devices = devices
        self.init_error = init_error
        self.init_calls = 0
        self.shutdown_calls = 0
        self.mig: dict[str, tuple[int, dict[str, Any]]] = {}  # MIG uuid -> (parent, device)

    def _get(self, handle: dict[str, Any], key: str) -> Any:
        value = handle[key]
        if isinstance(value, NVMLError):
            raise value
        return value

    def nvmlInit(self) -> None:
        self.init_calls += 1
        if self.init_error is not None:
            raise self.init_error

    def nvmlShutdown(self) -> None:
        self.shutdown_calls += 1

    def nvmlDeviceGetCount(self) -> int:
        return len(self.devices)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> dict[str, Any]:
        handle = self.devices[index]
        if isinstance(handle.get("handle"), NVMLError):
            raise handle["handle"]
        return handle

    def nvmlDeviceGetHandleByUUID(self, uuid: bytes) -> dict[str, Any]:
        key = uuid.decode()
        if key not in self.mig:
            raise error(pynvml.NVML_ERROR_NOT_FOUND)
        return self.mig[key][1]

    def nvmlDeviceGetDeviceHandleFromMigDeviceHandle(self, handle: dict[str, Any]) -> Any:
        for parent, mig in self.mig.values():
            if mig is handle:
                return self.devices[parent]
        raise error(pynvml.NVML_ERROR_INVALID_ARGUMENT)

    def nvmlDeviceGetIndex(self, handle: dict[str, Any]) -> int:
        return next(i for i, d in enumerate(self.devices) if d is handle)

    def nvmlDeviceGetName(self, handle: dict[str, Any]) -> str:
        return self._get(handle, "name")

    def nvmlDeviceGetUUID(self, handle: dict[str, Any]) -> str:
        return self._get(handle, "uuid")

    def nvmlDeviceGetUtilizationRates(self, handle: dict[str, Any]) -> Any:
        return self._get(handle, "util")

    def nvmlDeviceGetMemoryInfo(self, handle: dict[str, Any]) -> Any:
        return self._get(handle, "memory")

    def nvmlDeviceGetTemperature(self, handle: dict[str, Any], sensor: int) -> int:
        assert sensor == NVML_TEMPERATURE_GPU
        return self._get(handle, "temperature")

    def nvmlDeviceGetPowerUsage(self, handle: dict[str, Any]) -> int:
        return self._get(handle, "power")

    def nvmlDeviceGetEnforcedPowerLimit(self, handle: dict[str, Any]) -> int:
        return self._get(handle, "power_limit")

    def nvmlDeviceGetComputeRunningProcesses(self, handle: dict[str, Any]) -> list[Any]:
        return self._get(handle, "compute")

    def nvmlDeviceGetGraphicsRunningProcesses(self, handle: dict[str, Any]) -> list[Any]:
        return self._get(handle, "graphics")

    def nvmlDeviceGetProcessUtilization(self, handle: dict[str, Any], last_seen: int) -> list[Any]:
        samples = self._get(handle, "samples")
        newer = [s for s in samples if s.timeStamp > last_seen]
        if not newer:  # what the driver says when it has nothing since last_seen
            raise NVMLError(NVML_ERROR_NOT_FOUND)
        return newer
