"""A round as Prometheus text: one endpoint for the hub, ``user`` and ``server`` on every series.

The per-server names and meanings are those of the single-user server's own ``/metrics``
(``torchlab_kernel_busy``, ``torchlab_gpu_memory_used_bytes``, ...), so a query written for one
server works hub-wide with ``by (user)``. Two are the service's own: ``torchlab_hub_server_up``
(1: its snapshot was read in the last round, 0: see the admin page for why) and
``torchlab_hub_server_collect_seconds``. The text is rendered once per round; a scrape writes
those bytes and computes nothing.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric

from .collector import Round

__all__ = ["CONTENT_TYPE", "render"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

_SERVER = ("user", "server")
_KERNEL = (*_SERVER, "kernel_id", "kernel_name", "path")
_GPU = (*_SERVER, "gpu", "name", "uuid")

# name -> (help, labels)
_SPECS: dict[str, tuple[str, tuple[str, ...]]] = {
    "torchlab_hub_server_up": ("1 if the server's snapshot was read in the last round", _SERVER),
    "torchlab_hub_server_collect_seconds": ("seconds asking the server took", _SERVER),
    "torchlab_sample_timestamp_seconds": ("unix time of the server's latest sample", _SERVER),
    "torchlab_host_cpu_percent": ("host CPU use, percent of all cores", _SERVER),
    "torchlab_host_cpus": ("CPUs available (cgroup limit or count)", _SERVER),
    "torchlab_host_memory_used_bytes": ("host memory in use", _SERVER),
    "torchlab_host_memory_total_bytes": ("host memory (or the cgroup limit)", _SERVER),
    "torchlab_kernels": ("kernels the server runs", _SERVER),
    "torchlab_kernel_busy": ("1 while the kernel executes code", _KERNEL),
    "torchlab_kernel_busy_seconds": ("seconds the current run of executions has lasted", _KERNEL),
    "torchlab_kernel_cpu_percent": ("kernel process tree CPU (100 = one core)", _KERNEL),
    "torchlab_kernel_memory_bytes": ("kernel process tree memory (PSS or RSS)", _KERNEL),
    "torchlab_kernel_gpu_memory_bytes": ("GPU memory held by the kernel's processes", _KERNEL),
    "torchlab_kernel_gpu_utilization_percent": ("the kernel's share of its GPUs", _KERNEL),
    "torchlab_kernel_idle_seconds": ("seconds since the kernel went idle (0 unless idle)", _KERNEL),
    "torchlab_kernel_idle_gpu_bytes": ("GPU memory of a kernel flagged idle too long", _KERNEL),
    "torchlab_gpu_utilization_percent": ("GPU utilisation", _GPU),
    "torchlab_gpu_memory_used_bytes": ("GPU memory used", _GPU),
    "torchlab_gpu_memory_total_bytes": ("GPU memory", _GPU),
    "torchlab_gpu_temperature_celsius": ("GPU temperature", _GPU),
    "torchlab_gpu_power_watts": ("GPU power draw", _GPU),
}


def render(rnd: Round | None) -> bytes:
    """Return the Prometheus text for a round (no series before the first)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_RoundCollector(rnd))
    return generate_latest(registry)


class _RoundCollector:
    def __init__(self, rnd: Round | None) -> None:
        self.rnd = rnd

    def collect(self) -> Iterator[Metric]:
        families = {
            name: GaugeMetricFamily(name, help_text, labels=list(labels))
            for name, (help_text, labels) in _SPECS.items()
        }

        def put(name: str, labels: tuple[str, ...], value: Any) -> None:
            if value is None or isinstance(value, bool) or not isinstance(value, int | float):
                return
            families[name].add_metric(list(labels), float(value))

        for result in self.rnd.results if self.rnd else ():
            # the hub's full name ("alice/", "alice/gpu"): never empty, as Prometheus drops
            # an empty label and a default server would have none
            who = (result.target.user, f"{result.target.user}/{result.target.server}")
            doc = result.document
            put("torchlab_hub_server_up", who, 0 if doc is None else 1)
            put("torchlab_hub_server_collect_seconds", who, result.seconds)
            if doc is not None:
                _server_series(doc, who, put)
        yield from families.values()


def _server_series(doc: dict[str, Any], who: tuple[str, str], put: Any) -> None:
    now = doc.get("time")
    put("torchlab_sample_timestamp_seconds", who, now)
    host = doc.get("host") or {}
    put("torchlab_host_cpu_percent", who, _nan_if_none(host.get("cpu_percent")))
    put("torchlab_host_cpus", who, host.get("cpu_limit") or host.get("cpu_count"))
    put("torchlab_host_memory_used_bytes", who, _nan_if_none(host.get("memory_used")))
    total, limit = host.get("memory_total"), host.get("memory_limit")
    put("torchlab_host_memory_total_bytes", who, min(total, limit) if total and limit else total)
    kernels = doc.get("kernels") or []
    put("torchlab_kernels", who, len(kernels))
    for k in kernels:
        labels = (*who, str(k.get("id")), str(k.get("name") or ""), str(k.get("path") or ""))
        busy = k.get("execution_state") == "busy"
        since, idle_since = k.get("busy_since"), k.get("idle_since")
        put("torchlab_kernel_busy", labels, 1 if busy else 0)
        busy_for = max(0.0, now - since) if busy and since is not None and now else 0.0
        put("torchlab_kernel_busy_seconds", labels, busy_for)
        put("torchlab_kernel_cpu_percent", labels, k.get("cpu_percent"))
        put("torchlab_kernel_memory_bytes", labels, k.get("memory"))
        # 0 rather than no series: "no GPU memory" is a reading, and dashboards sum it
        put("torchlab_kernel_gpu_memory_bytes", labels, k.get("gpu_memory") or 0)
        put("torchlab_kernel_gpu_utilization_percent", labels, k.get("gpu_utilization"))
        idle_for = max(0.0, now - idle_since) if idle_since is not None and now else 0.0
        put("torchlab_kernel_idle_seconds", labels, idle_for)
        put("torchlab_kernel_idle_gpu_bytes", labels, (k.get("holding_idle") or {}).get("bytes", 0))
    for g in doc.get("gpus") or []:
        labels = (*who, str(g.get("index")), str(g.get("name") or ""), str(g.get("uuid") or ""))
        put("torchlab_gpu_utilization_percent", labels, g.get("utilization_gpu"))
        put("torchlab_gpu_memory_used_bytes", labels, g.get("memory_used"))
        put("torchlab_gpu_memory_total_bytes", labels, g.get("memory_total"))
        put("torchlab_gpu_temperature_celsius", labels, g.get("temperature"))
        put("torchlab_gpu_power_watts", labels, g.get("power_watts"))


def _nan_if_none(value: Any) -> Any:
    return math.nan if value is None else value
