"""A round as Prometheus text: one endpoint for the hub, ``user`` and ``server`` on every series.

Every ``torchlab_*`` series of the single-user server's own ``/metrics`` is here, with the same
name, help text, type and labels plus ``user`` and ``server`` (the gauges from the snapshot
document's fields, the ``_total`` counters from its ``counts``; the counters' ``_created``
samples are not), so a query written for one server works hub-wide with ``by (user)``; tests
check this against the server's exporter. Two are the service's own: ``torchlab_hub_server_up``
(1: its snapshot was read in the last round, 0: see the admin page for why) and
``torchlab_hub_server_collect_seconds``. The text is rendered once per round; a scrape writes
those bytes and computes nothing.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from jupyter_torchlab._series import COUNTERS, GAUGES, run_label

from .collector import Round

__all__ = ["CONTENT_TYPE", "render"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

_SERVER = ("user", "server")
# name -> (help, labels): the service's two, then every gauge of the server's own /metrics, with
# the server's help texts and labels after user and server
_SPECS: dict[str, tuple[str, tuple[str, ...]]] = {
    "torchlab_hub_server_up": ("1 if the server's snapshot was read in the last round", _SERVER),
    "torchlab_hub_server_collect_seconds": ("seconds asking the server took", _SERVER),
    **{name: (help_text, (*_SERVER, *labels)) for name, (help_text, labels) in GAUGES.items()},
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
        families: dict[str, GaugeMetricFamily | CounterMetricFamily] = {
            name: GaugeMetricFamily(name, help_text, labels=list(labels))
            for name, (help_text, labels) in _SPECS.items()
        }
        # the server's counters, from the document's "counts" (since that server started: a
        # restarted server starts again from 0, which rate() reads as a reset)
        for kind, (help_text, label) in COUNTERS.items():
            name = f"torchlab_{kind}"  # the family adds _total, as the server's counter does
            families[name] = CounterMetricFamily(name, help_text, labels=[*_SERVER, label])

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
        if k.get("source") == "kernel":
            put("torchlab_kernel_usage_age_seconds", labels, k.get("usage_age"))
        named: set[str] = set()
        for run in k.get("runs") or []:
            if run.get("state") != "running":
                continue
            desc = run_label(str(run.get("desc") or ""), named)
            rlabels = (*who, str(k.get("id")), str(k.get("path") or ""), desc)
            put("torchlab_run_progress_ratio", rlabels, run.get("fraction"))
            put("torchlab_run_eta_seconds", rlabels, run.get("eta"))
            put("torchlab_run_items_per_second", rlabels, run.get("rate"))
    for g in doc.get("gpus") or []:
        labels = (*who, str(g.get("index")), str(g.get("name") or ""), str(g.get("uuid") or ""))
        put("torchlab_gpu_utilization_percent", labels, g.get("utilization_gpu"))
        put("torchlab_gpu_memory_used_bytes", labels, g.get("memory_used"))
        put("torchlab_gpu_memory_total_bytes", labels, g.get("memory_total"))
        put("torchlab_gpu_temperature_celsius", labels, g.get("temperature"))
        put("torchlab_gpu_power_watts", labels, g.get("power_watts"))
    counts = doc.get("counts") or {}  # absent from servers older than the counts
    for kind in COUNTERS:
        for label, n in (counts.get(kind) or {}).items():
            put(f"torchlab_{kind}", (*who, str(label)), n)


def _nan_if_none(value: Any) -> Any:
    return math.nan if value is None else value
