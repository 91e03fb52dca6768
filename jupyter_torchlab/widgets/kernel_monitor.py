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
from typing import Any

from .._runtime_files import DeathRecord, read_deaths
from ..metrics.starvation import GpuStarvation, Starved
from ._frontend import close_tree, get_shell, replace, show, use_widgets
from ._monitor_view import KernelActivity, clock_time, first_line, render_monitor

__all__ = ["KernelActivity", "KernelMonitor", "close_monitor", "monitor", "render_monitor"]

HISTORY_POINTS = 60
logger = logging.getLogger(__name__)


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
        self._last_death = previous_death()
        # busy while its GPU mostly waits (for data?): the low-utilisation stretch so far
        self._starvation = GpuStarvation()
        self._gpu_waiting: Starved | None = None
        self._html = w.HTML(render_monitor(None, self.activity(), last_death=self._last_death)[0])
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
            self._cell = first_line(getattr(info, "raw_cell", None))
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
                html, self._text = render_monitor(
                    self._snapshot,
                    self.activity(),
                    self._history,
                    self._last_death,
                    gpu_waiting=self._gpu_waiting,
                )
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
        self._gpu_waiting = self._starvation.observe(
            "kernel",
            busy=self.activity().busy,
            gpu_memory=tree.gpu_memory if tree is not None else None,
            utilization=tree.gpu_utilization_per_device if tree is not None else None,
            now=snap.time,
        )
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
        html, text = render_monitor(
            self._snapshot, self.activity(), self._history, self._last_death
        )
        note = f"monitor stopped at {clock_time(self._wall())}"
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


#: a death this long (seconds) before this process started is what it was started after
RESTART_WINDOW = 120.0


def previous_death(
    connection_file: str | None = None, started: float | None = None
) -> DeathRecord | None:
    """Return how this kernel's previous process died, if the server wrote it down.

    A kernel restarted after a death keeps its kernel id, so the server's record names it. Only
    a death shortly before this process started (``started``, unix time; this process's start by
    default) counts: a kernel restarted by hand an hour later was not restarted because of it.
    """
    found = read_deaths(connection_file)
    if found is None:
        return None
    kernel_id, events = found
    if started is None:
        started = _process_start()
    mine = [
        e
        for e in events
        if e.get("kernel_id") == kernel_id
        and started - RESTART_WINDOW <= float(e.get("time") or 0) <= started + 5
    ]
    return mine[-1] if mine else None


def _process_start() -> float:
    import psutil

    try:
        return float(psutil.Process().create_time())
    except psutil.Error:
        return time.time()


_current: KernelMonitor | None = None
_current_lock = threading.Lock()


def gpu_waiting() -> Starved | None:
    """Return how long this kernel's GPU has stayed nearly idle while busy, if the monitor runs."""
    current = _current
    return current._gpu_waiting if current is not None else None


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
        activity = KernelActivity(True, time.time(), 0.0, None)
        print(render_monitor(snap, activity, last_death=previous_death())[1])
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
