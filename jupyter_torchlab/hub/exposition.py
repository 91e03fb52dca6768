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

from .collector import Round

__all__ = ["CONTENT_TYPE", "render"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

_SERVER = ("user", "server")
_KERNEL = (*_SERVER, "kernel_id", "kernel_name", "path")
_GPU = (*_SERVER, "gpu", "name", "uuid")
_RUN = (*_SERVER, "kernel", "path", "desc")

# name -> (help, labels): the service's two, then the server's own gauges, with its help texts
_SPECS: dict[str, tuple[str, tuple[str, ...]]] = {
    "torchlab_hub_server_up": ("1 if the server's snapshot was read in the last round", _SERVER),
    "torchlab_hub_server_collect_seconds": ("seconds asking the server took", _SERVER),
    "torchlab_sample_timestamp_seconds": ("Unix time of the latest torchlab sample", _SERVER),
    "torchlab_host_cpu_percent": ("Host CPU use, percent of the effective CPUs (0-100)", _SERVER),
    "torchlab_host_cpus": (
        "Effective CPUs: the cgroup CPU limit if set, else the CPU count",
        _SERVER,
    ),
    "torchlab_host_memory_used_bytes": ("Host (or cgroup) memory in use", _SERVER),
    "torchlab_host_memory_total_bytes": (
        "Host memory, or the cgroup memory limit if lower",
        _SERVER,
    ),
    "torchlab_kernels": ("Kernels this server runs", _SERVER),
    "torchlab_kernel_busy": ("1 while the kernel is executing, else 0", _KERNEL),
    "torchlab_kernel_busy_seconds": ("Seconds the kernel has been busy (0 when idle)", _KERNEL),
    "torchlab_kernel_cpu_percent": (
        "CPU use of the kernel's process tree, percent of one core",
        _KERNEL,
    ),
    "torchlab_kernel_memory_bytes": (
        "Memory of the kernel's process tree (PSS where readable, else RSS)",
        _KERNEL,
    ),
    "torchlab_kernel_gpu_memory_bytes": ("GPU memory used by the kernel's process tree", _KERNEL),
    "torchlab_kernel_gpu_utilization_percent": (
        "Share of one GPU's SMs the kernel's processes kept busy, summed over its GPUs",
        _KERNEL,
    ),
    "torchlab_kernel_idle_seconds": (
        "Seconds since the kernel last went idle (0 while busy or starting)",
        _KERNEL,
    ),
    "torchlab_kernel_idle_gpu_bytes": (
        "GPU memory held by a kernel idle for TorchlabExtension.gpu_idle_warn or longer "
        "(0 otherwise)",
        _KERNEL,
    ),
    "torchlab_kernel_usage_age_seconds": (
        "Age of the CPU and memory figures a non-local kernel reported through usage_request "
        "(only kernels measured that way have this series)",
        _KERNEL,
    ),
    "torchlab_run_progress_ratio": (
        "Share done of a running progress bar or fit (0-1; a fit: of all its epochs); "
        "only runs with a known total",
        _RUN,
    ),
    "torchlab_run_eta_seconds": (
        "Seconds a running progress bar or fit has left at its recent pace (a fit: all of it)",
        _RUN,
    ),
    "torchlab_run_items_per_second": (
        "Units a second of a running progress bar (a fit: batches a second)",
        _RUN,
    ),
    "torchlab_gpu_utilization_percent": ("GPU compute utilisation", _GPU),
    "torchlab_gpu_memory_used_bytes": ("GPU memory in use", _GPU),
    "torchlab_gpu_memory_total_bytes": ("GPU memory size", _GPU),
    "torchlab_gpu_temperature_celsius": ("GPU temperature", _GPU),
    "torchlab_gpu_power_watts": ("GPU power draw", _GPU),
}

# the server's counters, exposed as torchlab_<kind>_total, from the document's "counts" (since
# that server started: a restarted server starts again from 0, which rate() reads as a reset)
# kind -> (help, the label its counts are keyed by)
_COUNTERS: dict[str, tuple[str, str]] = {
    "kernel_deaths": (
        "Kernel processes that died, by cause: oom_killer, signal, exit, unknown",
        "reason",
    ),
    "kernel_idle_gpu_actions": (
        "Idle kernels holding GPU memory that TorchlabExtension.gpu_idle_cull warned (warned) "
        "or shut down (culled)",
        "action",
    ),
    "memory_guard_interrupts": (
        "Kernels interrupted by TorchlabExtension.memory_guard near their memory limit, by the "
        "memory compared: cgroup (the kernel's own cgroup's unreclaimable charge) or tree (its "
        "process tree)",
        "measure",
    ),
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
        for kind, (help_text, label) in _COUNTERS.items():
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
            desc = _unique(str(run.get("desc") or ""), named)
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
    for kind in _COUNTERS:
        for label, n in (counts.get(kind) or {}).items():
            put(f"torchlab_{kind}", (*who, str(label)), n)


def _unique(desc: str, named: set[str]) -> str:
    """Return ``desc``, numbered (``"train #2"``) if a running run of the kernel already has it.

    As the server numbers them, so a run's labels are the same on both endpoints.
    """
    label, n = desc, 1
    while label in named:
        n += 1
        label = f"{desc} #{n}"
    named.add(label)
    return label


def _nan_if_none(value: Any) -> Any:
    return math.nan if value is None else value
