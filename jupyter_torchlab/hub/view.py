"""A round as the admin page's rows: every server, every kernel (idle GPU holders first), every GPU.

Pure: a :class:`.collector.Round` in, plain dataclasses out (the page renders them, ``api/view``
serves them as JSON, the tests assert on them).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .collector import Round

__all__ = ["GpuRow", "HubView", "KernelRow", "ServerRow", "build_view"]


@dataclass(frozen=True)
class ServerRow:
    """One user server: read, or why not."""

    user: str
    server: str
    status: str  # "ok", "unreachable" or "starting"
    reason: str | None
    kernels: int
    hub_last_activity: str | None  # what the hub (and its culler) counts, ISO 8601
    collect_seconds: float
    sample_age: float | None  # seconds between the server's sample and this round


@dataclass(frozen=True)
class KernelRow:
    """One kernel of one user server."""

    user: str
    server: str
    kernel_id: str
    name: str
    notebook: str
    state: str  # busy, idle, starting, ... ("stopped" while its process is stopped)
    state_seconds: float | None  # busy for / idle for
    cpu_percent: float | None
    memory: float | None
    gpu_memory: float
    gpus: tuple[str, ...]  # the names of the GPUs it holds memory on
    idle_gpu_holder: bool  # idle while holding GPU memory: first on the page
    flagged: bool  # the server's gpu_idle_warn flagged it (holding_idle)


@dataclass(frozen=True)
class GpuRow:
    """One GPU (one row per device, however many servers see it)."""

    uuid: str
    index: int | None
    name: str
    host_of: str  # the first server that reported it ("user/server")
    utilization: float | None
    memory_used: float | None
    memory_total: float | None
    temperature: float | None
    holders: tuple[str, ...]  # "user/server: notebook (state)"


@dataclass(frozen=True)
class HubView:
    """Everything the admin page shows for one round."""

    time: float | None
    round_seconds: float | None
    error: str | None
    servers: tuple[ServerRow, ...] = ()
    kernels: tuple[KernelRow, ...] = ()
    gpus: tuple[GpuRow, ...] = field(default_factory=tuple)


def build_view(rnd: Round | None) -> HubView:
    """Lay out a round: servers by user, kernels with idle GPU holders first, GPUs by uuid."""
    if rnd is None:
        return HubView(None, None, "no collection round has finished yet")
    servers: list[ServerRow] = []
    kernels: list[KernelRow] = []
    gpus: dict[str, GpuRow] = {}
    for result in rnd.results:
        t, doc = result.target, result.document
        status = "ok" if doc is not None else ("unreachable" if t.ready else "starting")
        sample_age = None
        if doc is not None and isinstance(doc.get("time"), int | float):
            sample_age = max(0.0, rnd.time - doc["time"])
        servers.append(
            ServerRow(
                t.user,
                t.server,
                status,
                result.reason,
                len(doc.get("kernels") or []) if doc else 0,
                t.last_activity,
                result.seconds,
                sample_age,
            )
        )
        if doc is None:
            continue
        gpu_names = {g.get("index"): str(g.get("name") or "") for g in doc.get("gpus") or []}
        rows = [
            _kernel_row(t.user, t.server, k, doc.get("time"), gpu_names) for k in doc["kernels"]
        ]
        kernels.extend(rows)
        for g in doc.get("gpus") or []:
            key = str(g.get("uuid") or f"{t.user}/{t.server}#{g.get('index')}")
            row = gpus.get(key) or GpuRow(
                key,
                g.get("index"),
                str(g.get("name") or ""),
                f"{t.user}/{t.server}",
                g.get("utilization_gpu"),
                g.get("memory_used"),
                g.get("memory_total"),
                g.get("temperature"),
                (),
            )
            holders = tuple(
                f"{r.user}/{r.server}: {r.notebook or r.name} ({r.state})"
                for r, k in zip(rows, doc["kernels"], strict=True)
                if g.get("index") in (k.get("gpu_devices") or ())
            )
            gpus[key] = GpuRow(**{**row.__dict__, "holders": row.holders + holders})
    kernels.sort(key=_kernel_order)
    servers.sort(key=lambda s: (s.status == "ok", s.user, s.server))
    return HubView(
        rnd.time,
        rnd.seconds,
        rnd.error,
        tuple(servers),
        tuple(kernels),
        tuple(sorted(gpus.values(), key=lambda g: (g.host_of, g.index or 0))),
    )


def _kernel_row(
    user: str, server: str, k: dict[str, Any], now: Any, gpu_names: dict[Any, str]
) -> KernelRow:
    state = "stopped" if k.get("stopped") else str(k.get("execution_state") or "unknown")
    since = k.get("busy_since") if state == "busy" else k.get("idle_since")
    seconds = None
    if isinstance(since, int | float) and isinstance(now, int | float):
        seconds = max(0.0, now - since)
    gpu_memory = float(k.get("gpu_memory") or 0)
    return KernelRow(
        user=user,
        server=server,
        kernel_id=str(k.get("id")),
        name=str(k.get("name") or ""),
        notebook=str(k.get("path") or ""),
        state=state,
        state_seconds=seconds if state in ("busy", "idle") else None,
        cpu_percent=k.get("cpu_percent"),
        memory=k.get("memory"),
        gpu_memory=gpu_memory,
        gpus=tuple(gpu_names.get(i, str(i)) for i in k.get("gpu_devices") or ()),
        idle_gpu_holder=state == "idle" and gpu_memory > 0,
        flagged=bool(k.get("holding_idle")),
    )


def _kernel_order(r: KernelRow) -> tuple[Any, ...]:
    rank = 0 if r.idle_gpu_holder else 1 if r.state == "busy" else 2
    return (rank, not r.flagged, -r.gpu_memory, -(r.state_seconds or 0), r.user, r.server)
