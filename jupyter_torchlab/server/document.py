"""The snapshot document: what ``GET torchlab/api/metrics`` returns and the stream pushes.

One tick's :class:`~jupyter_torchlab.metrics.Snapshot`, joined with the registry view its
targets came from and the kernels' own usage replies, becomes one JSON document. Its shape is
the contract with the lab extension: ``labextension/src/types.ts`` mirrors it field by field, and
the Prometheus gauges are set from it. Built and encoded once per tick on the sampler thread.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

from jupyter_torchlab._series import COUNTERS
from jupyter_torchlab.metrics import HostSnapshot, ProcessTreeSnapshot, Snapshot

from .gpu_use import Flags
from .kernels import NOT_LOCAL, KernelInfo
from .usage import KernelUsage

__all__ = [
    "GPU_OFF",
    "PROCESS_GONE",
    "USAGE_OFF",
    "USAGE_STARTING",
    "build_document",
    "encode",
]

# every field of the host reading is public; GPUs list only device fields (no process lists)
_HOST_FIELDS = tuple(f.name for f in dataclasses.fields(HostSnapshot))
_GPU_FIELDS = (
    "index",
    "name",
    "uuid",
    "utilization_gpu",
    "utilization_memory",
    "memory_used",
    "memory_total",
    "temperature",
    "power_watts",
    "power_limit_watts",
    "source",
)
PROCESS_GONE = "kernel process has exited"
GPU_OFF = "GPU sampling is off (TorchlabExtension.gpu = False)"
USAGE_OFF = (
    NOT_LOCAL + " (asking it through usage_request is off: TorchlabExtension.usage_interval = 0)"
)
USAGE_STARTING = (
    "kernel is not a local process and the server still shows it as starting (no client has "
    "connected yet); it is asked for its CPU and memory once a client connects, because asking "
    "now would make the server mark it idle"
)


def build_document(
    snap: Snapshot,
    kernels: Mapping[str, KernelInfo],
    *,
    usage: Mapping[str, KernelUsage] | None = None,
    usage_off: bool = False,
    gpu_off: bool = False,
    errors: Mapping[str, str] | None = None,
    events: Sequence[Mapping[str, object]] | None = None,
    flags: Mapping[str, Flags] | None = None,
    gpu_actions: list[dict[str, Any]] | None = None,
    runs: Mapping[str, list[dict[str, Any]]] | None = None,
    memory_guard: Sequence[Mapping[str, Any]] | None = None,
    counts: Mapping[str, Mapping[str, int]] | None = None,
) -> dict[str, Any]:
    """Build the document of one tick.

    ``kernels``: the registry view the tick's targets were taken from. ``usage``: the replies
    of kernels that are not local processes, when this tick asked them (None: not asked);
    ``usage_off``: asking is configured off. ``gpu_off``: GPU sampling is configured off.
    ``errors``: the server's own failures this tick (listing kernels, asking them), joined with
    the sampler's. ``events``: recent kernel deaths (:mod:`.deaths`), oldest first.
    ``flags``: this tick's idle-holder and waiting-GPU flags (:mod:`.gpu_use`);
    ``gpu_actions``: recent warnings and shutdowns of idle GPU holders, oldest first.
    ``runs``: each kernel's runs (:mod:`.runs`), running first.
    ``memory_guard``: recent interrupts by the memory guard (:mod:`.memory_guard`), oldest first.
    ``counts``: events since the server started, by kind (those of ``_series.COUNTERS``) and label.
    """
    flags = flags or {}
    host = snap.host
    gpu_reason = snap.gpu_reason
    if gpu_off and gpu_reason is None:
        gpu_reason = GPU_OFF
    return {
        "time": snap.time,
        "host": None if host is None else {f: _plain(getattr(host, f, None)) for f in _HOST_FIELDS},
        "gpus": [{f: getattr(g, f, None) for f in _GPU_FIELDS} for g in snap.gpus],
        "gpu_reason": gpu_reason,
        "kernels": [
            _kernel_entry(
                info,
                snap.trees.get(kid),
                None if usage is None else usage.get(kid),
                usage_off=usage_off,
                usage_on=usage is not None and not usage_off,
                flags=flags.get(kid),
                utilization_reason=snap.gpu_utilization_reason,
                runs=None if runs is None else runs.get(kid),
            )
            for kid, info in kernels.items()
        ],
        "errors": {**snap.errors, **(errors or {})},
        "events": list(events or []),
        "gpu_actions": list(gpu_actions or []),
        "memory_guard": list(memory_guard or []),
        # since the server started: the totals of /metrics' torchlab_<kind>_total counters, so a
        # reader of this document alone (the hub service) can serve them too
        "counts": {kind: dict((counts or {}).get(kind) or {}) for kind in COUNTERS},
    }


def encode(doc: Mapping[str, Any]) -> bytes:
    """Return the document as compact JSON bytes (NaN and infinity become null)."""
    try:
        return json.dumps(doc, separators=(",", ":"), allow_nan=False).encode()
    except ValueError:  # a NaN or infinity somewhere: JSON has no spelling for it
        return json.dumps(_finite(doc), separators=(",", ":")).encode()


def _kernel_entry(
    info: KernelInfo,
    tree: ProcessTreeSnapshot | None,
    usage: KernelUsage | None,
    usage_off: bool = False,
    usage_on: bool = False,
    flags: Flags | None = None,
    utilization_reason: str | None = None,
    runs: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Build one kernel's entry; ``usage`` is what the kernel reported, if it was asked.

    ``usage_off``: asking kernels is configured off; ``usage_on``: this tick asked them. The tree
    was sampled for the pid in ``info`` (one registry view per tick), so it is this process's.
    """
    reason = info.reason
    if reason is None:
        reason = PROCESS_GONE if tree is None else tree.reason
    memory = None
    cpu_percent = None
    source = None
    usage_age = None
    if tree is not None:
        memory = tree.pss if tree.pss is not None else tree.rss
        cpu_percent = tree.cpu_percent
        source = "process"
    elif info.pid is None and info.reason == NOT_LOCAL:
        if usage_off:
            reason = USAGE_OFF
        elif usage is None and usage_on and info.execution_state == "starting":
            reason = USAGE_STARTING
        elif usage is not None:
            reason = usage.reason
            if usage.cpu_percent is not None or usage.memory is not None:
                cpu_percent, memory = usage.cpu_percent, usage.memory
                source, usage_age = "kernel", usage.age
    return {
        "id": info.id,
        "name": info.name,
        "execution_state": info.execution_state,
        # "executions": busy/idle from execute requests; "server": jupyter_server's last status
        # (a kernel whose messages this server does not see, such as one behind a gateway)
        "state_source": info.state_source,
        "last_activity": info.last_activity,
        "busy_since": info.busy_since,
        "connections": info.connections,
        "pid": info.pid,
        "cpu_percent": cpu_percent,
        "memory": memory,
        "gpu_memory": None if tree is None else tree.gpu_memory,
        # percent of one GPU's SMs the kernel kept busy, summed over gpu_devices (None: unknown)
        "gpu_utilization": None if tree is None else tree.gpu_utilization,
        "gpu_utilization_reason": (
            utilization_reason
            if tree is not None and tree.gpu_memory and tree.gpu_utilization is None
            else None
        ),
        "gpu_devices": [] if tree is None else list(tree.gpu_devices),
        "idle_since": info.idle_since,
        # idle for TorchlabExtension.gpu_idle_warn or longer while holding GPU memory:
        # {"seconds", "bytes", "cull_at" (only when gpu_idle_cull will shut it down)}
        "holding_idle": None if flags is None else flags.holding_idle,
        # busy, holding GPU memory, but the GPU mostly waits: {"seconds", "utilization"}
        "gpu_waiting": None if flags is None else flags.gpu_waiting,
        # the process is stopped (SIGSTOP, a debugger): its state and figures are frozen
        "stopped": None if tree is None else tree.stopped,
        "path": info.path,
        "reason": reason,
        # where cpu_percent and memory come from: "process" (/proc), "kernel" (usage_request)
        "source": source,
        "usage_age": usage_age,  # seconds since a kernel-reported figure arrived
        # its progress bars and fits, running first (:mod:`.runs`)
        "runs": runs or [],
    }


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value
