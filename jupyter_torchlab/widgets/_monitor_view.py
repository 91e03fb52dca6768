"""What the kernel monitor shows: one reading as HTML and text (pure: tests use plain asserts).

Memory close to its limit (80%) shows amber and at it (95%) red, with words that say so, for the
kernel's tree against the container limit and for each GPU against its size.
"""

from __future__ import annotations

import collections
import os
import time
from dataclasses import dataclass
from typing import Any

from .._format import format_bytes, format_duration, format_percent, format_span
from .._runtime_files import DeathRecord
from . import render

__all__ = ["KernelActivity", "clock_time", "first_line", "render_monitor"]


@dataclass(frozen=True)
class KernelActivity:
    """Whether this kernel runs a cell, since when, and which."""

    busy: bool
    since: float  # unix time the state began (None-free: start time of the monitor if unknown)
    duration: float  # seconds in this state
    cell: str | None  # first line of the running (or last) cell
    cell_id: str | None = None


def first_line(source: str | None, limit: int = 60) -> str | None:
    if not source:
        return None
    for line in source.splitlines():
        if line.strip():
            line = line.strip()
            return line if len(line) <= limit else line[: limit - 1] + "…"
    return None


def clock_time(unix: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(unix))


#: theme variables (with light fallbacks) so the monitor reads well in dark themes too
_MONITOR_STYLE = (
    "font-size:var(--jp-ui-font-size1, 13px);color:var(--jp-content-font-color1, #222);"
    "line-height:1.4;max-width:100%;overflow:hidden"
)
#: label | value | sparkline, each column as wide as its content, packed to the left
_GRID_STYLE = (
    "display:grid;grid-template-columns:8em auto auto;justify-content:start;"
    "column-gap:0.8em;row-gap:1px;align-items:center"
)
_LABEL_STYLE = (
    "white-space:nowrap;overflow:hidden;text-overflow:ellipsis;"
    "color:var(--jp-content-font-color2, #555)"
)
_VALUE_STYLE = "text-align:left;font-variant-numeric:tabular-nums;overflow-wrap:anywhere"
#: a long explanation (why there is no GPU): its own smaller, muted line under the grid, wrapping
#: within the widget instead of widening the value column
_REASON_STYLE = (
    "font-size:var(--jp-ui-font-size0, 11px);"
    "color:var(--jp-content-font-color2, #666);white-space:normal;overflow-wrap:anywhere"
)


def _grid_html(rows: list[tuple[str, str, str]], levels: dict[str, str]) -> str:
    cells = []
    for label, value, spark in rows:
        level = levels.get(label, "ok")
        color = f";color:{render.PRESSURE_COLORS[level]};font-weight:600" if level != "ok" else ""
        cells.append(
            f'<div class="torchlab-monitor-label" style="{_LABEL_STYLE}" '
            f'title="{render.escape(label)}">{render.escape(label)}</div>'
            f'<div class="torchlab-monitor-value" data-pressure="{level}" '
            f'style="{_VALUE_STYLE}{color}">'
            f"{render.escape(value)}</div>"
            f'<div class="torchlab-monitor-spark" style="line-height:0">{spark}</div>'
        )
    return f'<div class="torchlab-monitor-grid" style="{_GRID_STYLE}">{"".join(cells)}</div>'


def render_monitor(
    snapshot: Any | None,
    activity: KernelActivity,
    history: dict[str, collections.deque[float]] | None = None,
    last_death: DeathRecord | None = None,
    gpu_waiting: Any | None = None,
) -> tuple[str, str]:
    """Return (html, text) for one monitor reading; pure, so tests feed it plain objects.

    ``last_death``: how the kernel before this one (same kernel id, before a restart) ended, as
    the server explained it. ``gpu_waiting``: the kernel is busy but has kept its GPU mostly
    idle for a while (a :class:`~jupyter_torchlab.metrics.starvation.Starved`).
    """
    history = history or {}
    rows: list[tuple[str, str, str]] = []  # label, value, sparkline svg
    levels: dict[str, str] = {}  # label -> memory pressure ("warn", "danger")

    def spark(key: str, hi: float = 100.0) -> str:
        values = history.get(key)
        return (
            render.sparkline_svg(list(values), width=90, height=16, lo=0, hi=hi) if values else ""
        )

    tree = snapshot.trees.get("kernel") if snapshot is not None else None
    host = snapshot.host if snapshot is not None else None
    if tree is not None:
        cores = (host.cpu_limit or host.cpu_count) if host is not None else None
        cpu = f"{tree.cpu_percent:.0f}% of one core"
        if cores:
            cpu += f" ({tree.cpu_percent / cores:.0f}% of {cores:g} CPUs)"
        mem_used = tree.pss if tree.pss is not None else tree.rss
        mem = format_bytes(mem_used)
        if host is not None:
            mark = host.memory_limit or host.memory_total
            which = "limit" if host.memory_limit else "total"
            pct = format_percent(mem_used / mark)
            mem += f" of {format_bytes(mark)} {which} ({pct})"
            levels["kernel memory"] = level = render.pressure(mem_used, mark)
            if level != "ok":
                mem += f", {render.PRESSURE_WORDS[level]}"
        procs = f", {tree.num_children} child processes" if tree.num_children else ""
        rows.append(
            ("kernel CPU", cpu + procs, spark("kernel_cpu", hi=max(100.0, 100 * (cores or 1))))
        )
        rows.append(("kernel memory", mem, ""))
    if host is not None:
        cores = host.cpu_limit or host.cpu_count
        limit = " (container limit)" if host.cpu_limit else ""
        rows.append(
            ("host CPU", f"{host.cpu_percent:.0f}% of {cores:g} CPUs{limit}", spark("host_cpu"))
        )
        mark = host.memory_limit or host.memory_total
        limit = " (container limit)" if host.memory_limit else ""
        rows.append(
            (
                "host memory",
                f"{format_bytes(host.memory_used)} of {format_bytes(mark)}{limit}",
                "",
            )
        )
    gpus = snapshot.gpus if snapshot is not None else ()
    pids = set(tree.pids) if tree is not None else set()
    for gpu in gpus:
        util = "n/a" if gpu.utilization_gpu is None else f"{gpu.utilization_gpu:.0f}%"
        mem = f"{format_bytes(gpu.memory_used)} of {format_bytes(gpu.memory_total)}"
        mine = sum((p.memory_used or 0) for p in gpu.processes if p.pid in pids)
        if not gpu.processes and tree is not None and tree.gpu_memory and len(gpus) == 1:
            mine = tree.gpu_memory
        share = f", this kernel {format_bytes(mine)}" if mine else ""
        level = render.pressure(gpu.memory_used, gpu.memory_total)
        if level != "ok":
            levels[f"GPU {gpu.index}"] = level
            share += f", {render.PRESSURE_WORDS[level]}"
        rows.append(
            (
                # the model name goes with the value: the label column is narrow and fixed
                f"GPU {gpu.index}",
                f"{gpu.name + ', ' if gpu.name else ''}{util} busy, {mem}{share}",
                spark(f"gpu{gpu.index}"),
            )
        )
    if gpu_waiting is not None and activity.busy:
        levels["GPU waits"] = "warn"
        rows.append(
            (
                "GPU waits",
                f"busy, but this kernel kept its GPU only "
                f"{gpu_waiting.utilization:.0f}% busy for {format_span(gpu_waiting.seconds)}: "
                "it is probably waiting for data (more DataLoader workers, pin_memory=True, the "
                "data in memory, a larger batch)",
                "",
            )
        )
    if last_death is not None:
        when = clock_time(float(last_death.get("time") or 0))
        levels["last restart"] = "danger" if last_death.get("cause") == "oom_killer" else "warn"
        how = str(last_death.get("reason") or "died")
        # "killed by ..." reads after "was"; "exited with ..." and "died; ..." stand alone
        verb = "was " if how.startswith("killed") else ""
        rows.append(("last restart", f"at {when} the kernel {verb}{how}", ""))
    reason = None
    if snapshot is not None and not gpus and snapshot.gpu_reason:
        reason = snapshot.gpu_reason
        rows.append(("GPU", "none", ""))

    state = "busy" if activity.busy else "idle"
    if activity.busy:
        cell = f" on {activity.cell}" if activity.cell else ""
        headline = f"busy for {format_duration(activity.duration)}{cell}"
    else:
        headline = f"idle since {clock_time(activity.since)} ({format_duration(activity.duration)})"
    color = (
        "var(--jp-warn-color0, #d98a1c)" if activity.busy else "var(--jp-success-color0, #3a9a4a)"
    )
    html = (
        f'<div class="torchlab-monitor" data-state="{state}" style="{_MONITOR_STYLE}">'
        f'<div style="margin-bottom:2px"><b>kernel {os.getpid()}</b>: <b style="color:{color}">'
        f"{render.escape(headline)}</b></div>"
        + _grid_html(rows, levels)
        + (
            # indented in the grid's font size, so it lines up with the values
            '<div style="padding-left:8.8em;margin-top:1px">'
            f'<div class="torchlab-monitor-reason" style="{_REASON_STYLE}">'
            f"{render.escape(reason)}</div></div>"
            if reason
            else ""
        )
        + "</div>"
    )
    lines = [f"kernel {os.getpid()}: {headline}"] + [f"  {a}: {b}" for a, b, _ in rows]
    if reason:
        lines[-1] += f" ({reason})"
    text = "\n".join(lines)
    return html, text
