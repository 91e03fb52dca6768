"""``torchlab_*`` gauges on the server's existing ``/metrics``, set from the sampler thread.

Kernels that are not local processes carry the figures they report through usage_request in the
same ``torchlab_kernel_cpu_percent``/``torchlab_kernel_memory_bytes`` series (no extra label, so
existing series and dashboards keep working); ``torchlab_kernel_usage_age_seconds`` exists only for
them and says how fresh those figures are.

A scrape only reads values that the sampler already set: nothing is computed on the event loop.
The gauges live in prometheus_client's default registry (the one jupyter_server serves), are
created once per process, and are shared if the extension is loaded again in the same process.
"""

from __future__ import annotations

import contextlib
import math
import threading
from collections.abc import Mapping
from typing import Any

from prometheus_client import REGISTRY, Counter, Gauge

from jupyter_torchlab._series import COUNTERS, GAUGES, run_label

__all__ = ["PrometheusExporter"]

_lock = threading.Lock()
_gauges: dict[str, Gauge] = {}
_DEATHS = "kernel_deaths"  # exposed as torchlab_kernel_deaths_total
_IDLE_ACTIONS = "kernel_idle_gpu_actions"  # exposed with _total
_GUARD = "memory_guard_interrupts"  # exposed with _total
_counters: dict[str, Counter] = {}


def _counter(kind: str) -> Counter:
    """Create the counter of a kind once per process (reusing a registered one)."""
    name = f"torchlab_{kind}"
    with _lock:
        if name not in _counters:
            existing = getattr(REGISTRY, "_names_to_collectors", {})
            found = existing.get(name) or existing.get(name + "_total")
            help_text, label = COUNTERS[kind]
            _counters[name] = (
                found if isinstance(found, Counter) else Counter(name, help_text, (label,))
            )
        return _counters[name]


def _shared_gauges() -> dict[str, Gauge]:
    """Create the gauges once per process; reuse ones already in the default registry."""
    with _lock:
        if not _gauges:
            # private, but the only way to find a collector registered by an earlier import
            existing = getattr(REGISTRY, "_names_to_collectors", {})
            for name, (help_text, labels) in GAUGES.items():
                found = existing.get(name)
                if isinstance(found, Gauge):
                    _gauges[name] = found
                else:
                    _gauges[name] = Gauge(name, help_text, labels)
        return _gauges


class PrometheusExporter:
    """Copy each snapshot document into the gauges; drop label sets of vanished kernels and GPUs."""

    def __init__(self) -> None:
        self._gauges = _shared_gauges()
        self._deaths = _counter(_DEATHS)
        self._idle_actions = _counter(_IDLE_ACTIONS)
        self._guard = _counter(_GUARD)
        self._labels: dict[str, set[tuple[str, ...]]] = {name: set() for name in GAUGES}

    def update(self, doc: Mapping[str, Any]) -> None:
        """Set every gauge from one snapshot document (the JSON of GET torchlab/api/metrics)."""
        seen: dict[str, set[tuple[str, ...]]] = {name: set() for name in GAUGES}

        def put(name: str, value: Any, labels: tuple[str, ...] = ()) -> None:
            if value is None:
                return
            gauge = self._gauges[name]
            (gauge.labels(*labels) if labels else gauge).set(float(value))
            if labels:
                seen[name].add(labels)

        now = doc.get("time")
        put("torchlab_sample_timestamp_seconds", now)
        host = doc.get("host") or {}
        put("torchlab_host_cpu_percent", _nan_if_none(host.get("cpu_percent")))
        put("torchlab_host_cpus", host.get("cpu_limit") or host.get("cpu_count"))
        put("torchlab_host_memory_used_bytes", _nan_if_none(host.get("memory_used")))
        total = host.get("memory_total")
        limit = host.get("memory_limit")
        put("torchlab_host_memory_total_bytes", min(total, limit) if total and limit else total)

        kernels = doc.get("kernels") or []
        put("torchlab_kernels", len(kernels))
        for k in kernels:
            klabels = (str(k["id"]), str(k.get("name") or ""), str(k.get("path") or ""))
            busy = k.get("execution_state") == "busy"
            since = k.get("busy_since")
            put("torchlab_kernel_busy", 1.0 if busy else 0.0, klabels)
            busy_for = max(0.0, now - since) if busy and since is not None and now else 0.0
            put("torchlab_kernel_busy_seconds", busy_for, klabels)
            put("torchlab_kernel_cpu_percent", k.get("cpu_percent"), klabels)
            put("torchlab_kernel_memory_bytes", k.get("memory"), klabels)
            put("torchlab_kernel_gpu_memory_bytes", k.get("gpu_memory"), klabels)
            put("torchlab_kernel_gpu_utilization_percent", k.get("gpu_utilization"), klabels)
            idle_since = k.get("idle_since")
            idle_for = max(0.0, now - idle_since) if idle_since is not None and now else 0.0
            put("torchlab_kernel_idle_seconds", idle_for, klabels)
            holding = k.get("holding_idle") or {}
            put("torchlab_kernel_idle_gpu_bytes", holding.get("bytes", 0), klabels)
            if k.get("source") == "kernel":
                put("torchlab_kernel_usage_age_seconds", k.get("usage_age"), klabels)

        for k in kernels:
            named: set[str] = set()
            for run in k.get("runs") or []:
                if run.get("state") != "running":
                    continue
                desc = run_label(str(run.get("desc") or ""), named)
                rlabels = (str(k["id"]), str(k.get("path") or ""), desc)
                put("torchlab_run_progress_ratio", run.get("fraction"), rlabels)
                put("torchlab_run_eta_seconds", run.get("eta"), rlabels)
                put("torchlab_run_items_per_second", run.get("rate"), rlabels)

        for g in doc.get("gpus") or []:
            labels = (str(g.get("index")), str(g.get("name") or ""), str(g.get("uuid") or ""))
            put("torchlab_gpu_utilization_percent", g.get("utilization_gpu"), labels)
            put("torchlab_gpu_memory_used_bytes", g.get("memory_used"), labels)
            put("torchlab_gpu_memory_total_bytes", g.get("memory_total"), labels)
            put("torchlab_gpu_temperature_celsius", g.get("temperature"), labels)
            put("torchlab_gpu_power_watts", g.get("power_watts"), labels)

        for name, labelsets in self._labels.items():
            for gone in labelsets - seen[name]:
                self._remove(name, gone)
        self._labels = seen

    def count_death(self, cause: str) -> None:
        """Count one kernel death (``torchlab_kernel_deaths_total{reason=cause}``)."""
        self._deaths.labels(cause).inc()

    def count_idle_action(self, action: str) -> None:
        """Count one warning or shutdown (``torchlab_kernel_idle_gpu_actions_total{action}``)."""
        self._idle_actions.labels(action).inc()

    def count_guard_interrupt(self, measure: str) -> None:
        """Count one guard interrupt (``torchlab_memory_guard_interrupts_total{measure}``)."""
        self._guard.labels(measure).inc()

    def close(self) -> None:
        """Remove every label set this exporter set, and blank the unlabelled gauges."""
        for name, labelsets in self._labels.items():
            for labels in labelsets:
                self._remove(name, labels)
        self._labels = {name: set() for name in GAUGES}
        for name, (_, labels) in GAUGES.items():
            if not labels:
                self._gauges[name].set(math.nan)

    def _remove(self, name: str, labels: tuple[str, ...]) -> None:
        # KeyError: already gone (another exporter in this process removed it)
        with contextlib.suppress(KeyError):
            self._gauges[name].remove(*labels)


def _nan_if_none(value: Any) -> float:
    return math.nan if value is None else float(value)
