"""``tl.monitor()``: this kernel's activity, its process tree, the host and the GPUs, live.

Threading (why it is safe on ipykernel 6 and 7): exactly one thread, the monitor's own daemon
thread, ticks the metrics :class:`~jupyter_torchlab.metrics.sampler.Sampler` and writes the
widget's traits; IPython's ``pre_run_cell``/``post_run_cell`` hooks (shell thread) only record
timestamps under a lock and wake that thread. ``close()`` stops and joins the thread before it
touches a widget, so no trait is ever written from two threads. Comm messages from a non-main
thread go through ipykernel's thread-safe IOPub; ipykernel 7 resolves their parent header from
the shell's last request through a context-variable fallback (ipykernel#1450, #1451), which is
all a ``comm_msg`` needs (the frontend routes it by comm id), so updates keep flowing while a cell
runs. The thread ticks the sampler itself (``sample_once`` with this kernel's pid): one thread
and one wake-up a second. The sparkline history below is the kernel process's one ring buffer.
"""

from __future__ import annotations

import atexit
import collections
import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .._format import format_bytes, format_duration, format_percent
from . import render
from ._frontend import close_tree, get_shell, replace, show, use_widgets

__all__ = ["KernelActivity", "KernelMonitor", "close_monitor", "monitor", "render_monitor"]

HISTORY_POINTS = 60
logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class KernelActivity:
    """Whether this kernel runs a cell, since when, and which."""

    busy: bool
    since: float  # unix time the state began (None-free: start time of the monitor if unknown)
    duration: float  # seconds in this state
    cell: str | None  # first line of the running (or last) cell
    cell_id: str | None = None


def _first_line(source: str | None, limit: int = 60) -> str | None:
    if not source:
        return None
    for line in source.splitlines():
        if line.strip():
            line = line.strip()
            return line if len(line) <= limit else line[: limit - 1] + "…"
    return None


def _clock(unix: float) -> str:
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


def _grid_html(rows: list[tuple[str, str, str]]) -> str:
    cells = []
    for label, value, spark in rows:
        cells.append(
            f'<div class="torchlab-monitor-label" style="{_LABEL_STYLE}" '
            f'title="{render.escape(label)}">{render.escape(label)}</div>'
            f'<div class="torchlab-monitor-value" style="{_VALUE_STYLE}">'
            f"{render.escape(value)}</div>"
            f'<div class="torchlab-monitor-spark" style="line-height:0">{spark}</div>'
        )
    return f'<div class="torchlab-monitor-grid" style="{_GRID_STYLE}">{"".join(cells)}</div>'


def render_monitor(
    snapshot: Any | None,
    activity: KernelActivity,
    history: dict[str, collections.deque[float]] | None = None,
) -> tuple[str, str]:
    """Return (html, text) for one monitor reading; pure, so tests feed it plain objects."""
    history = history or {}
    rows: list[tuple[str, str, str]] = []  # label, value, sparkline svg

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
        rows.append(
            (
                # the model name goes with the value: the label column is narrow and fixed
                f"GPU {gpu.index}",
                f"{gpu.name + ', ' if gpu.name else ''}{util} busy, {mem}{share}",
                spark(f"gpu{gpu.index}"),
            )
        )
    reason = None
    if snapshot is not None and not gpus and snapshot.gpu_reason:
        reason = snapshot.gpu_reason
        rows.append(("GPU", "none", ""))

    state = "busy" if activity.busy else "idle"
    if activity.busy:
        cell = f" on {activity.cell}" if activity.cell else ""
        headline = f"busy for {format_duration(activity.duration)}{cell}"
    else:
        headline = f"idle since {_clock(activity.since)} ({format_duration(activity.duration)})"
    color = (
        "var(--jp-warn-color0, #d98a1c)" if activity.busy else "var(--jp-success-color0, #3a9a4a)"
    )
    html = (
        f'<div class="torchlab-monitor" data-state="{state}" style="{_MONITOR_STYLE}">'
        f'<div style="margin-bottom:2px"><b>kernel {os.getpid()}</b>: <b style="color:{color}">'
        f"{render.escape(headline)}</b></div>"
        + _grid_html(rows)
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


class KernelMonitor:
    """One kernel monitor: a widget refreshed by one background thread."""

    def __init__(
        self,
        *,
        sampler: Any | None = None,
        interval: float = 1.0,
        timer: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ):
        import ipywidgets as w

        if sampler is None:
            from ..metrics.sampler import Sampler

            sampler = Sampler()
        self.sampler = sampler
        self._targets = {"kernel": os.getpid()}
        self.interval = interval
        self._timer, self._wall = timer, wall
        self._lock = threading.Lock()
        now, unix = timer(), wall()
        self._busy = False
        self._since = (now, unix)
        self._cell: str | None = None
        self._cell_id: str | None = None
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._history: dict[str, collections.deque[float]] = collections.defaultdict(
            lambda: collections.deque(maxlen=HISTORY_POINTS)
        )
        self._snapshot: Any | None = None
        self._handles: list[Any] = []
        self._text = "kernel monitor"
        self.closed = False
        #: the last error of the updater thread, if any (logged once; it keeps running)
        self.error: Exception | None = None
        self._html = w.HTML(render_monitor(None, self.activity())[0])
        self._button = w.Button(description="Stop monitor", layout=w.Layout(width="auto"))
        self._button.on_click(lambda _b: self.close())
        self._box = w.VBox([self._html, self._button])
        self._shell = get_shell()
        if self._shell is not None:
            self._shell.events.register("pre_run_cell", self._pre_run_cell)
            self._shell.events.register("post_run_cell", self._post_run_cell)
            # monitor() is called from a running cell, whose pre_run_cell has already fired
            self._busy = True
        self._thread = threading.Thread(target=self._run, name="torchlab-monitor", daemon=True)
        atexit.register(self._at_exit)

    # --- hooks (shell thread): record under the lock, never touch widgets -------------------

    def _pre_run_cell(self, info: Any) -> None:
        with self._lock:
            self._busy = True
            self._since = (self._timer(), self._wall())
            self._cell = _first_line(getattr(info, "raw_cell", None))
            self._cell_id = getattr(info, "cell_id", None)
        self._wake.set()

    def _post_run_cell(self, result: Any) -> None:
        with self._lock:
            self._busy = False
            self._since = (self._timer(), self._wall())
        self._wake.set()

    def activity(self) -> KernelActivity:
        """Return the kernel's current activity."""
        with self._lock:
            t0, unix = self._since
            return KernelActivity(self._busy, unix, self._timer() - t0, self._cell, self._cell_id)

    # --- the one writer thread ---------------------------------------------------------------

    def start(self) -> None:
        """Start the updater thread."""
        if not self._thread.is_alive() and not self.closed:
            self._thread.start()

    def _run(self) -> None:
        next_sample = self._timer()
        last = ""
        while not self._stop.is_set():
            if self._html.comm is None:  # closed by the frontend or by close_all()
                break
            self._wake.clear()  # before reading state: a cell event from now on wakes us again
            now = self._timer()
            try:
                if now >= next_sample:
                    next_sample = now + self.interval
                    self._sample()
                html, self._text = render_monitor(self._snapshot, self.activity(), self._history)
                if html != last:
                    self._html.value = html
                    last = html
            except Exception as exc:  # noqa: BLE001 - a monitor that dies silently shows stale data
                if self.error is None:
                    logger.warning(
                        "kernel monitor: %s: %s (it keeps trying)", type(exc).__name__, exc
                    )
                self.error = exc
            self._wake.wait(timeout=max(next_sample - self._timer(), 0.05))

    def _sample(self) -> None:
        snap = self.sampler.sample_once(self._targets)
        self._snapshot = snap
        tree = snap.trees.get("kernel")
        if tree is not None:
            self._history["kernel_cpu"].append(tree.cpu_percent)
        if snap.host is not None:
            self._history["host_cpu"].append(snap.host.cpu_percent)
        for gpu in snap.gpus:
            if gpu.utilization_gpu is not None:
                self._history[f"gpu{gpu.index}"].append(gpu.utilization_gpu)

    # --- display and lifetime ---------------------------------------------------------------

    def display(self) -> None:
        """Show the widget (again) in the current cell's output."""
        self._handles.append(show(self._box, self._text))

    def close(self) -> None:
        """Stop the thread, leave a static record where the widget was, and close it."""
        if self.closed:
            return
        self.closed = True
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout=5)
        atexit.unregister(self._at_exit)
        if self._shell is not None:
            for event, fn in (
                ("pre_run_cell", self._pre_run_cell),
                ("post_run_cell", self._post_run_cell),
            ):
                with contextlib.suppress(ValueError):
                    self._shell.events.unregister(event, fn)
        close = getattr(self.sampler, "close", None)
        if close is not None:
            close()
        html, text = render_monitor(self._snapshot, self.activity(), self._history)
        note = f"monitor stopped at {_clock(self._wall())}"
        for handle in self._handles:
            try:
                replace(handle, f"{html}<div><i>{note}</i></div>", f"{text}\n{note}")
            except Exception:  # noqa: BLE001 - at kernel shutdown IOPub may already be gone
                break
        close_tree(self._box)

    def _at_exit(self) -> None:
        """Stop the thread at interpreter exit; IOPub may be gone, so send nothing."""
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout=2)

    @property
    def thread(self) -> threading.Thread:
        """Return the updater thread (for tests and diagnostics)."""
        return self._thread


_current: KernelMonitor | None = None
_current_lock = threading.Lock()


def monitor(*, interval: float = 1.0) -> None:
    """Display this kernel's monitor (one per kernel: calling again shows the same one again).

    Outside a notebook kernel, print one plain-text reading instead.
    """
    global _current
    if not use_widgets():
        from ..metrics.sampler import Sampler

        sampler, targets = Sampler(), {"kernel": os.getpid()}
        try:
            sampler.sample_once(targets)
            time.sleep(0.5)  # CPU shares need two readings
            snap = sampler.sample_once(targets)
        finally:
            sampler.close()
        print(render_monitor(snap, KernelActivity(True, time.time(), 0.0, None))[1])
        return
    with _current_lock:
        if _current is None or _current.closed:
            _current = KernelMonitor(interval=interval)
            _current.start()
        current = _current
    current.display()


def close_monitor() -> None:
    """Stop this kernel's monitor if one is running."""
    global _current
    with _current_lock:
        current, _current = _current, None
    if current is not None:
        current.close()
