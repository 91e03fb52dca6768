"""The ``torchlab_*`` Prometheus series, one catalogue: name, help text and labels.

The single-user server exposes them on its ``/metrics`` (:mod:`.server.prometheus`); the hub
service exposes the same series for every server, with ``user`` and ``server`` put first in the
labels (:mod:`.hub.exposition`), so a query written for one server works hub-wide. Both number a
kernel's running runs alike (:func:`run_label`). Imports nothing (the hub service may not import
the server).
"""

from __future__ import annotations

__all__ = ["COUNTERS", "GAUGES", "GPU_LABELS", "KERNEL_LABELS", "RUN_LABELS", "run_label"]

# path: the notebook (or console) the kernel belongs to, "" when it has no session; bounded by
# the number of kernels (a renamed notebook replaces its series)
KERNEL_LABELS = ("kernel_id", "kernel_name", "path")
GPU_LABELS = ("gpu", "name", "uuid")
# a running progress bar or fit (:mod:`.server.runs`): its kernel, notebook and description;
# bounded by the running runs (an ended run's series is removed)
RUN_LABELS = ("kernel", "path", "desc")

#: name -> (help, labels): the gauges
GAUGES: dict[str, tuple[str, tuple[str, ...]]] = {
    "torchlab_sample_timestamp_seconds": ("Unix time of the latest torchlab sample", ()),
    "torchlab_host_cpu_percent": ("Host CPU use, percent of the effective CPUs (0-100)", ()),
    "torchlab_host_cpus": ("Effective CPUs: the cgroup CPU limit if set, else the CPU count", ()),
    "torchlab_host_memory_used_bytes": ("Host (or cgroup) memory in use", ()),
    "torchlab_host_memory_total_bytes": ("Host memory, or the cgroup memory limit if lower", ()),
    "torchlab_kernels": ("Kernels this server runs", ()),
    "torchlab_kernel_busy": ("1 while the kernel is executing, else 0", KERNEL_LABELS),
    "torchlab_kernel_busy_seconds": (
        "Seconds the kernel has been busy (0 when idle)",
        KERNEL_LABELS,
    ),
    "torchlab_kernel_cpu_percent": (
        "CPU use of the kernel's process tree, percent of one core",
        KERNEL_LABELS,
    ),
    "torchlab_kernel_memory_bytes": (
        "Memory of the kernel's process tree (PSS where readable, else RSS)",
        KERNEL_LABELS,
    ),
    "torchlab_kernel_gpu_memory_bytes": (
        "GPU memory used by the kernel's process tree",
        KERNEL_LABELS,
    ),
    "torchlab_kernel_gpu_utilization_percent": (
        "Share of one GPU's SMs the kernel's processes kept busy, summed over its GPUs",
        KERNEL_LABELS,
    ),
    "torchlab_kernel_idle_seconds": (
        "Seconds since the kernel last went idle (0 while busy or starting)",
        KERNEL_LABELS,
    ),
    "torchlab_kernel_idle_gpu_bytes": (
        "GPU memory held by a kernel idle for TorchlabExtension.gpu_idle_warn or longer "
        "(0 otherwise)",
        KERNEL_LABELS,
    ),
    "torchlab_kernel_usage_age_seconds": (
        "Age of the CPU and memory figures a non-local kernel reported through usage_request "
        "(only kernels measured that way have this series)",
        KERNEL_LABELS,
    ),
    "torchlab_run_progress_ratio": (
        "Share done of a running progress bar or fit (0-1; a fit: of all its epochs); "
        "only runs with a known total",
        RUN_LABELS,
    ),
    "torchlab_run_eta_seconds": (
        "Seconds a running progress bar or fit has left at its recent pace (a fit: all of it)",
        RUN_LABELS,
    ),
    "torchlab_run_items_per_second": (
        "Units a second of a running progress bar (a fit: batches a second)",
        RUN_LABELS,
    ),
    "torchlab_gpu_utilization_percent": ("GPU compute utilisation", GPU_LABELS),
    "torchlab_gpu_memory_used_bytes": ("GPU memory in use", GPU_LABELS),
    "torchlab_gpu_memory_total_bytes": ("GPU memory size", GPU_LABELS),
    "torchlab_gpu_temperature_celsius": ("GPU temperature", GPU_LABELS),
    "torchlab_gpu_power_watts": ("GPU power draw", GPU_LABELS),
}

#: kind -> (help, the label its counts are keyed by): the counters, each exposed as
#: ``torchlab_<kind>_total``; the snapshot document's ``counts`` holds them by the same kinds
COUNTERS: dict[str, tuple[str, str]] = {
    "kernel_deaths": (
        "Kernel processes that died, by cause: oom_killer, signal, exit, unknown",
        "reason",
    ),
    "kernel_idle_gpu_actions": (
        "Idle kernels holding GPU memory that TorchlabExtension.gpu_idle_cull warned (warned) "
        "or shut down (culled)",
        "action",
    ),
    # by measure, not by kernel: kernel ids are new with every kernel, so a per-kernel counter
    # would grow without bound; the events (GET torchlab/api/events) name each kernel
    "memory_guard_interrupts": (
        "Kernels interrupted by TorchlabExtension.memory_guard near their memory limit, by the "
        "memory compared: cgroup (the kernel's own cgroup's unreclaimable charge) or tree (its "
        "process tree)",
        "measure",
    ),
}


def run_label(desc: str, named: set[str]) -> str:
    """Return a running run's ``desc`` label, numbered (``"train #2"``) if the kernel has it twice.

    ``named`` holds the labels given so far to that kernel's running runs. Both endpoints
    number a kernel's runs this way, so a run's labels are the same on each.
    """
    label, n = desc, 1
    while label in named:
        n += 1
        label = f"{desc} #{n}"
    named.add(label)
    return label
