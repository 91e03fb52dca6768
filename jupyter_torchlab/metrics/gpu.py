"""NVIDIA GPUs through NVML (``nvidia-ml-py``), with this process' PyTorch allocator as a fallback.

Reads never raise. Each call returns a :class:`GpuReading`: the devices that could be read, and a
``reason`` saying, in words a user can act on, why something is missing. No library, no driver, a
lost GPU, a field the device does not support, a container that cannot see host PIDs: all of these
are a partial reading plus a reason. One hint per distinct problem is logged.

- NVML is imported and initialised on first use, once. After a failed initialisation it is retried
  with a growing delay (10 s doubling to 10 min), never on every tick.
- Every field is read on its own: a "Not Supported" temperature leaves that field None and the rest
  is still read.
- Only the devices ``CUDA_VISIBLE_DEVICES`` makes visible are reported (indices, ``GPU-`` UUID
  prefixes, and, best effort, ``MIG-`` UUIDs), under their NVML index as nvidia-smi shows it.
- Per-process memory merges compute and graphics processes by pid.
- Without NVML, when ``torch`` is already imported in this process and has already initialised CUDA
  (or MPS is available), this process' allocator figures are reported with ``source="torch"``.
  torch is never imported and CUDA never initialised here: doing so would cost seconds, hold GPU
  memory and break ``fork()`` in the user's process.

Why one module of this size: every NVML call of the package goes through it, so initialisation,
backoff, per-field error handling and device visibility are decided in one place (the design's
rule that GPU reads have one home); splitting it would spread those decisions.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ._util import LogOnce

__all__ = ["GpuProcess", "GpuReading", "GpuSampler", "GpuSnapshot"]

# NVML return codes (stable C API values; also pynvml.NVML_ERROR_*)
_NO_PERMISSION = 4
_DRIVER_NOT_LOADED = 9
_LIBRARY_NOT_FOUND = 12
_GPU_IS_LOST = 15
_LIB_RM_VERSION_MISMATCH = 18
_NOT_SUPPORTED = 3
_NOT_FOUND = 6
UTILIZATION_UNSUPPORTED = (
    "per-process GPU utilisation is not reported by this GPU or driver (NVML: Not Supported); "
    "GPU memory per kernel is still shown"
)

_INIT_HINTS = {
    _LIBRARY_NOT_FOUND: (
        "NVIDIA driver library (libnvidia-ml) not found: no NVIDIA driver is installed, or this "
        "container was started without GPU access (e.g. `docker run --gpus all`)"
    ),
    _DRIVER_NOT_LOADED: (
        "NVIDIA driver is not loaded: check `nvidia-smi`; the kernel module may need loading "
        "(or a reboot after a driver update)"
    ),
    _NO_PERMISSION: "no permission to open the NVIDIA devices (/dev/nvidia*): check their access",
    _LIB_RM_VERSION_MISMATCH: (
        "NVIDIA driver/library version mismatch (driver updated without reboot): reboot or reload "
        "the nvidia kernel module"
    ),
    _GPU_IS_LOST: "a GPU fell off the bus (NVML: GPU is lost): check `dmesg`; it needs a reset",
}


@dataclass(frozen=True)
class GpuProcess:
    """GPU memory held by one process on one device."""

    pid: int
    memory_used: int | None  # bytes; None where the driver does not say (e.g. Windows WDDM)
    kind: str  # "compute", "graphics", "compute+graphics", or "torch"
    # percent of the GPU's SMs this process kept busy since the previous reading (NVML's
    # per-process samples); None where the driver does not report them
    utilization: float | None = None


@dataclass(frozen=True)
class GpuSnapshot:
    """One reading of one GPU; any numeric field is None when it could not be read."""

    index: int  # NVML index (as nvidia-smi shows it); torch's device index for source="torch"
    name: str | None
    uuid: str | None
    utilization_gpu: float | None  # percent
    utilization_memory: float | None  # percent of time the memory controller was busy
    memory_used: int | None  # bytes
    memory_total: int | None  # bytes
    temperature: float | None  # degrees C
    power_watts: float | None
    power_limit_watts: float | None
    source: str  # "nvml" or "torch" (this process' allocator only)
    processes: tuple[GpuProcess, ...] = ()
    memory_allocated: int | None = None  # source="torch": bytes in live tensors (used = reserved)


@dataclass(frozen=True)
class GpuReading:
    """The visible GPUs that could be read, and why anything is missing (None when nothing is)."""

    gpus: tuple[GpuSnapshot, ...]
    reason: str | None
    # False when per-process GPU memory cannot be trusted to be complete (process lists not
    # readable, or PIDs from another PID namespace): a tree's GPU memory is then unknown, not 0
    process_memory_known: bool = True
    # why per-process GPU utilisation is missing (None: every device reported it)
    utilization_reason: str | None = None


class _Lost(Exception):
    """The device stopped answering mid-read."""


def _code(err: BaseException) -> int | None:
    value = getattr(err, "value", None)
    return value if isinstance(value, int) else None


def _text(value: Any) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


class GpuSampler:
    """Read the visible GPUs (NVML first, this process' torch allocator as fallback)."""

    def __init__(
        self,
        nvml: Any = None,
        enabled: bool = True,
        torch_fallback: bool = True,
        *,
        environ: Mapping[str, str] | None = None,
        clock: Callable[[], float] = time.monotonic,
        retry_after: float = 10.0,
        max_retry_after: float = 600.0,
    ) -> None:
        self.enabled = enabled
        self.torch_fallback = torch_fallback
        self._nvml = nvml
        self._environ = environ if environ is not None else os.environ
        self._clock = clock
        self._retry_after = retry_after
        self._max_retry_after = max_retry_after
        self._delay = retry_after
        self._next_try = float("-inf")
        self._initialised = False
        self._init_reason: str | None = None
        self._devices: list[tuple[int, Any]] | None = None  # (index, handle) of visible devices
        self._visible_reason: str | None = None
        self._unreadable: list[str] = []
        self._util_seen: dict[int, int] = {}  # device index -> newest sample's timestamp (µs)
        self._util_reason: dict[int, str] = {}  # device index -> why utilisation is missing
        self._log_once = LogOnce()

    # -- NVML lifecycle ---------------------------------------------------------------------------

    def _ensure_nvml(self) -> bool:
        if self._initialised:
            return True
        now = self._clock()
        if now < self._next_try:
            return False
        try:
            if self._nvml is None:
                self._nvml = importlib.import_module("pynvml")
            self._nvml.nvmlInit()
        except ImportError:
            self._fail(
                now, "nvidia-ml-py is not installed: `pip install nvidia-ml-py`", logging.INFO
            )
            return False
        except Exception as err:  # noqa: BLE001 - an NVMLError or a broken install: never raise
            # no library on a machine without a GPU is normal: say so quietly
            level = logging.INFO if _code(err) == _LIBRARY_NOT_FOUND else logging.WARNING
            self._fail(now, self._describe(err), level)
            return False
        self._initialised = True
        self._init_reason = None
        self._delay = self._retry_after
        return True

    def _fail(self, now: float, reason: str, level: int) -> None:
        self._init_reason = reason
        self._next_try = now + self._delay
        self._delay = min(self._delay * 2, self._max_retry_after)
        self._log_once(level, f"GPU metrics: {reason}")

    def close(self) -> None:
        """Shut NVML down if this sampler started it."""
        if self._initialised:
            self._initialised = False
            self._devices = None
            try:
                self._nvml.nvmlShutdown()
            except Exception as err:  # noqa: BLE001 - shutting down is best effort
                self._log_once(logging.DEBUG, f"GPU metrics: nvmlShutdown failed: {_text(err)}")

    # -- reading ----------------------------------------------------------------------------------

    def sample(self) -> GpuReading:
        """Read every visible GPU; never raises."""
        if not self.enabled:
            return GpuReading((), "GPU monitoring is turned off")
        if self._ensure_nvml():
            try:
                return self._sample_nvml()
            except Exception as err:  # noqa: BLE001 - a bug or odd driver must not stop sampling
                self._log_once(logging.WARNING, f"GPU metrics: NVML read failed: {_text(err)}")
                return GpuReading((), f"NVML read failed: {_text(err)}", False)
        reason = self._init_reason
        if self.torch_fallback:
            gpus = self._torch_gpus()
            if gpus:
                return GpuReading(gpus, f"{reason}; showing this process' PyTorch allocator only")
        return GpuReading((), reason)

    def _visible(self) -> list[tuple[int, Any]]:
        """Resolve CUDA_VISIBLE_DEVICES to (NVML index, handle) pairs, as CUDA would."""
        nvml = self._nvml
        count = nvml.nvmlDeviceGetCount()
        value = self._environ.get("CUDA_VISIBLE_DEVICES")
        self._visible_reason = None
        self._unreadable = []
        if value is None:
            pairs = [(i, self._handle_at(i)) for i in range(count)]
            return [(i, h) for i, h in pairs if h is not None]
        uuids: list[str | None] | None = None
        devices: list[tuple[int, Any]] = []
        for raw in value.split(","):
            token = raw.strip()
            handle = index = None
            if token.lstrip("-").isdigit():
                if 0 <= int(token) < count:
                    index = int(token)
                    handle = self._handle_at(index)
            elif token.startswith("GPU-"):
                if uuids is None:
                    uuids = [self._uuid_at(i) for i in range(count)]
                matches = [i for i, u in enumerate(uuids) if u and u.startswith(token)]
                if len(matches) == 1:
                    index = matches[0]
                    handle = self._handle_at(index)
            elif token.startswith("MIG-"):
                index, handle = self._mig(token)
            if handle is None or index is None:
                # CUDA ignores the invalid entry and every one after it
                if token:
                    self._visible_reason = (
                        f"CUDA_VISIBLE_DEVICES entry {token!r} matches no GPU; it and the "
                        "entries after it are ignored, as CUDA does"
                    )
                break
            if all(h != handle for _, h in devices):
                devices.append((index, handle))
        if not devices and not self._visible_reason:
            self._visible_reason = f"CUDA_VISIBLE_DEVICES={value!r} hides every GPU"
        return devices

    def _handle_at(self, index: int) -> Any:
        """Return the device handle, or None (with the reason kept) when it cannot be opened."""
        try:
            return self._nvml.nvmlDeviceGetHandleByIndex(index)
        except Exception as err:  # noqa: BLE001 - one bad device must not hide the others
            self._unreadable.append(f"GPU {index}: {self._describe(err)}")
            return None

    def _uuid_at(self, index: int) -> str | None:
        try:
            return _text(self._nvml.nvmlDeviceGetUUID(self._nvml.nvmlDeviceGetHandleByIndex(index)))
        except Exception:  # noqa: BLE001 - an unreadable device simply matches no UUID
            return None

    def _mig(self, token: str) -> tuple[int | None, Any]:
        nvml = self._nvml
        try:
            handle = nvml.nvmlDeviceGetHandleByUUID(token.encode())
        except Exception:  # noqa: BLE001 - unknown MIG UUID: an invalid entry, as for CUDA
            return None, None
        try:
            parent = nvml.nvmlDeviceGetDeviceHandleFromMigDeviceHandle(handle)
            return int(nvml.nvmlDeviceGetIndex(parent)), handle
        except Exception:  # noqa: BLE001 - the parent's index is cosmetic
            return 0, handle

    def _sample_nvml(self) -> GpuReading:
        reasons: list[str] = []
        if self._devices is None:
            try:
                self._devices = self._visible()
            except Exception as err:  # noqa: BLE001 - reported as the reading's reason
                reason = self._describe(err)
                self._log_once(logging.WARNING, f"GPU metrics: {reason}")
                return GpuReading((), reason, False)
            if self._unreadable:
                reasons.extend(self._unreadable)
                # a device that could not be opened may come back (after a reset): retry next tick
                devices, self._devices = self._devices, None
            else:
                devices = self._devices
        else:
            devices = self._devices
        if self._visible_reason:
            reasons.append(self._visible_reason)
        gpus = []
        known = True
        util_reasons: set[str] = set()
        for index, handle in devices:
            snap, processes_read, problem = self._device(index, handle)
            gpus.append(snap)
            if snap.processes and any(p.utilization is None for p in snap.processes):
                util_reasons.add(self._util_reason.get(index) or UTILIZATION_UNSUPPORTED)
            known = known and processes_read
            if problem:
                reasons.append(problem)
                # a lost GPU may come back after a reset with new handles: look again next tick
                self._devices = None
        pids = [p.pid for g in gpus for p in g.processes]
        if pids and not any(os.path.exists(f"/proc/{pid}") for pid in pids) and _has_proc():
            known = False
            reasons.append(
                "GPU processes have PIDs outside this container's PID namespace, so GPU memory "
                "cannot be attributed to kernels (run the container with --pid=host)"
            )
        for reason in reasons:
            self._log_once(logging.WARNING, f"GPU metrics: {reason}")
        util_reason = "; ".join(sorted(util_reasons)) or None
        return GpuReading(tuple(gpus), "; ".join(reasons) or None, known, util_reason)

    def _process_utilization(self, index: int, handle: Any) -> dict[int, float] | None:
        """Return pid -> mean SM utilisation since the last reading (None: not reported)."""
        since = self._util_seen.get(index, 0)
        try:
            samples = self._nvml.nvmlDeviceGetProcessUtilization(handle, since)
        except AttributeError:  # an nvidia-ml-py without the call
            self._util_reason[index] = UTILIZATION_UNSUPPORTED
            return None
        except Exception as err:
            code = _code(err)
            if code == _GPU_IS_LOST:
                raise _Lost from err
            if code == _NOT_FOUND:
                return {}  # no sample since the last reading: nothing ran on the GPU
            self._util_reason[index] = (
                UTILIZATION_UNSUPPORTED
                if code == _NOT_SUPPORTED
                else f"per-process GPU utilisation could not be read: {_text(err)}"
            )
            return None
        # a driver keeps about six samples per process per second: this loop runs per sample,
        # per device, per tick, so it stays plain (benchmarks/bench_sampler.py --fake-gpus)
        sums: dict[int, float] = {}
        counts: dict[int, int] = {}
        newest = since
        for sample in samples or ():
            stamp = sample.timeStamp
            if stamp <= since:
                continue
            if stamp > newest:
                newest = stamp
            pid = sample.pid
            if pid in sums:
                sums[pid] += sample.smUtil
                counts[pid] += 1
            else:
                sums[pid] = sample.smUtil
                counts[pid] = 1
        self._util_seen[index] = int(newest)
        self._util_reason.pop(index, None)
        return {int(pid): float(total) / counts[pid] for pid, total in sums.items()}

    @staticmethod
    def _describe(err: BaseException) -> str:
        code = _code(err)
        hint = _INIT_HINTS.get(code) if code is not None else None
        return hint or f"NVML error: {_text(err)}"

    def _device(self, index: int, handle: Any) -> tuple[GpuSnapshot, bool, str | None]:
        """Read one device field by field; return (snapshot, processes readable, problem)."""
        nvml = self._nvml

        def get(fn_name: str, *args: Any) -> Any:
            try:
                return getattr(nvml, fn_name)(handle, *args)
            except Exception as err:  # each field fails on its own
                if _code(err) == _GPU_IS_LOST:
                    raise _Lost from err
                # Not Supported / No Permission / an older driver without the call: field is None
                return None

        values: dict[str, Any] = {}
        problem = None
        processes: dict[int, GpuProcess] = {}
        processes_read = False
        try:
            values["name"] = get("nvmlDeviceGetName")
            values["uuid"] = get("nvmlDeviceGetUUID")
            util = get("nvmlDeviceGetUtilizationRates")
            if util is not None:
                values["utilization_gpu"] = float(util.gpu)
                values["utilization_memory"] = float(util.memory)
            mem = get("nvmlDeviceGetMemoryInfo")
            if mem is not None:
                values["memory_used"] = int(mem.used)
                values["memory_total"] = int(mem.total)
            temp = get("nvmlDeviceGetTemperature", getattr(nvml, "NVML_TEMPERATURE_GPU", 0))
            values["temperature"] = float(temp) if temp is not None else None
            power = get("nvmlDeviceGetPowerUsage")
            values["power_watts"] = power / 1000.0 if power is not None else None
            limit = get("nvmlDeviceGetEnforcedPowerLimit")
            values["power_limit_watts"] = limit / 1000.0 if limit is not None else None
            for kind, fn_name in (
                ("compute", "nvmlDeviceGetComputeRunningProcesses"),
                ("graphics", "nvmlDeviceGetGraphicsRunningProcesses"),
            ):
                listed = get(fn_name)
                if listed is None:
                    continue
                processes_read = True
                for p in listed:
                    used = getattr(p, "usedGpuMemory", None)
                    prev = processes.get(p.pid)
                    if prev is None:
                        processes[p.pid] = GpuProcess(int(p.pid), used, kind)
                    else:
                        # one CUDA context shows in both lists with the same memory: keep one
                        best = max(
                            (m for m in (prev.memory_used, used) if m is not None), default=None
                        )
                        processes[p.pid] = GpuProcess(prev.pid, best, "compute+graphics")
            if processes:
                util = self._process_utilization(index, handle)
                if util is not None:
                    processes = {
                        pid: GpuProcess(pid, p.memory_used, p.kind, util.get(pid, 0.0))
                        for pid, p in processes.items()
                    }
        except _Lost:
            problem = (
                f"GPU {index} fell off the bus (NVML: GPU is lost): check `nvidia-smi` and "
                "`dmesg`; it needs a reset or reboot"
            )
        snap = GpuSnapshot(
            index=index,
            name=_text(values["name"]) if values.get("name") is not None else None,
            uuid=_text(values["uuid"]) if values.get("uuid") is not None else None,
            utilization_gpu=values.get("utilization_gpu"),
            utilization_memory=values.get("utilization_memory"),
            memory_used=values.get("memory_used"),
            memory_total=values.get("memory_total"),
            temperature=values.get("temperature"),
            power_watts=values.get("power_watts"),
            power_limit_watts=values.get("power_limit_watts"),
            source="nvml",
            processes=tuple(sorted(processes.values(), key=lambda p: p.pid)),
        )
        return snap, processes_read and problem is None, problem

    # -- torch fallback ---------------------------------------------------------------------------

    def _torch_gpus(self) -> tuple[GpuSnapshot, ...]:
        torch = sys.modules.get("torch")
        if torch is None:
            return ()
        gpus: list[GpuSnapshot] = []
        pid = os.getpid()
        try:
            cuda = getattr(torch, "cuda", None)
            # is_initialized() first: is_available() itself may start the driver in this process
            if cuda is not None and cuda.is_initialized():
                for i in range(cuda.device_count()):
                    props = cuda.get_device_properties(i)
                    reserved = int(cuda.memory_reserved(i))
                    uuid = getattr(props, "uuid", None)
                    gpus.append(
                        _torch_snapshot(
                            i,
                            str(props.name),
                            f"GPU-{uuid}" if uuid is not None else None,
                            reserved,
                            int(props.total_memory),
                            int(cuda.memory_allocated(i)),
                            pid,
                        )
                    )
            mps_backend = getattr(getattr(torch, "backends", None), "mps", None)
            mps = getattr(torch, "mps", None)
            if mps is not None and mps_backend is not None and mps_backend.is_available():
                total = getattr(mps, "recommended_max_memory", None)
                gpus.append(
                    _torch_snapshot(
                        0,
                        "Apple MPS",
                        None,
                        int(mps.driver_allocated_memory()),
                        int(total()) if total is not None else None,
                        int(mps.current_allocated_memory()),
                        pid,
                    )
                )
        except Exception as err:  # noqa: BLE001 - torch internals vary by version and build
            self._log_once(logging.INFO, f"GPU metrics: torch allocator figures unavailable: {err}")
            return ()
        return tuple(gpus)


def _torch_snapshot(
    index: int,
    name: str,
    uuid: str | None,
    reserved: int,
    total: int | None,
    allocated: int,
    pid: int,
) -> GpuSnapshot:
    return GpuSnapshot(
        index=index,
        name=name,
        uuid=uuid,
        utilization_gpu=None,
        utilization_memory=None,
        memory_used=reserved,
        memory_total=total,
        temperature=None,
        power_watts=None,
        power_limit_watts=None,
        source="torch",
        processes=(GpuProcess(pid, reserved, "torch"),),
        memory_allocated=allocated,
    )


def _has_proc() -> bool:
    return os.path.exists("/proc/self")
