"""``tl.progress``: a tqdm-like bar that never syncs the device and never floods the frontend.

Per iteration a bar does one integer add and one compare (see :mod:`._budget`); ``log(**metrics)``
stores references (tensors stay tensors). Everything else, Python numbers included, happens at a
refresh, and refreshes of all displays together are capped per kernel (:func:`set_refresh_rate`).

Logged values are kept and smoothed by :class:`._smoothing.Metrics` (O(1) per log, one device
sync per refresh); the rate and ETA come from the refresh throttle's pace, which leaves out a slow
start (:mod:`jupyter_torchlab._rate`).

When a bar finishes, its widget is replaced in the notebook by a static HTML + text record of the
final state (so saved, reopened and exported notebooks show the result), and the widget is closed.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from types import FrameType, TracebackType
from typing import IO, Any, Generic, TypeVar

from .._format import format_duration, format_metrics, format_rate
from .._terminal import LineWriter
from . import render
from ._budget import Throttle, get_budget
from ._frontend import close_tree, get_shell, replace, show, use_widgets
from ._smoothing import Metrics

__all__ = ["ENV_LOG_INTERVAL", "Progress", "progress"]

T = TypeVar("T")

#: seconds between two lines when the text display writes to a pipe or a log file
ENV_LOG_INTERVAL = "JUPYTER_TORCHLAB_LOG_INTERVAL"
DEFAULT_LOG_INTERVAL = 10.0


@dataclass
class BarState:
    """What a view shows: a snapshot of one bar."""

    n: int
    total: int | None
    elapsed: float
    rate: float | None
    desc: str | None
    unit: str
    metrics: dict[str, float] = field(default_factory=dict)
    status: str = "running"
    now: float = 0.0

    def fraction(self) -> float | None:
        """Return the done fraction, or None when the total is unknown."""
        return min(self.n / self.total, 1.0) if self.total else None

    def line(self) -> str:
        """Return the plain-text line (also the widget's text/plain)."""
        return render.progress_line(
            n=self.n,
            total=self.total,
            elapsed=self.elapsed,
            rate=self.rate,
            desc=self.desc,
            unit=self.unit,
            metrics=self.metrics,
            status=self.status,
        )

    def stats_html(self) -> str:
        """Return the numbers next to the bar, as HTML."""
        parts = []
        if self.total:
            parts.append(f"{self.n}/{self.total}")
            eta = None
            if self.status == "running" and self.rate:
                eta = max(self.total - self.n, 0) / self.rate
            tail = f" &lt; {format_duration(eta)}" if self.status == "running" else ""
            parts.append(
                f"[{format_duration(self.elapsed)}{tail}, "
                f"{render.escape(format_rate(self.rate, self.unit))}]"
            )
        else:
            parts.append(f"{self.n} {render.escape(self.unit)}")
            parts.append(
                f"[{format_duration(self.elapsed)}, "
                f"{render.escape(format_rate(self.rate, self.unit))}]"
            )
        if self.metrics:
            parts.append(render.escape(format_metrics(self.metrics)))
        if self.status != "running":
            label = f"interrupted at {self.n}" if self.status == "interrupted" else self.status
            color = render.STATUS_COLORS.get(self.status, "#000")
            parts.append(f'<b style="color:{color}">{render.escape(label)}</b>')
        return " ".join(parts)

    def record_html(self) -> str:
        """Return the bar as HTML: the live widget's value, and the record left at the end."""
        color = render.STATUS_COLORS.get(self.status, "#888")
        desc = f"<b>{render.escape(self.desc)}</b> " if self.desc else ""
        frac = self.fraction()
        if frac is None and self.status == "running":
            bar = ""  # unknown total: counts and rate only
        else:
            bar = render.bar_html(frac if frac is not None else 1.0, color) + " "
        pct = f"{int(frac * 100)}% " if frac is not None else ""  # floor: 100% only when done
        return (
            f'<div class="torchlab-progress" data-status="{render.escape(self.status)}" '
            f'style="font-family:monospace;font-size:90%">{desc}{bar}{pct}{self.stats_html()}</div>'
        )


class _View:
    def refresh(self, state: BarState) -> None:
        raise NotImplementedError

    def finish(self, state: BarState, leave: bool) -> None:
        raise NotImplementedError

    def relabel(self, state: BarState, leave: bool) -> None:
        """Show a corrected final status (text output cannot be taken back: do nothing)."""


class _WidgetView(_View):
    """One HTML widget drawing the bar, replaced by the same markup, static, at the end.

    One widget (three comms with its layout and style) rather than an IntProgress plus labels:
    a refresh is then one comm message, and the live view and the record look alike.
    """

    def __init__(self, state: BarState):
        import ipywidgets as w

        self._box = w.HTML(state.record_html())
        self._handle = show(self._box, state.line())

    def refresh(self, state: BarState) -> None:
        self._box.value = state.record_html()

    def finish(self, state: BarState, leave: bool) -> None:
        self.relabel(state, leave)
        close_tree(self._box)

    def relabel(self, state: BarState, leave: bool) -> None:
        if leave:
            replace(self._handle, state.record_html(), state.line())
        else:
            self._handle.update({"text/plain": ""}, raw=True)


class _TextView(_View):
    """Show one CR-updated line on a terminal; on a pipe or log, a plain line every N seconds."""

    def __init__(self, state: BarState, file: IO[str] | None = None, interval: float | None = None):
        self._out = LineWriter(file if file is not None else sys.stderr)
        if interval is None:
            interval = float(os.environ.get(ENV_LOG_INTERVAL, DEFAULT_LOG_INTERVAL))
        self._interval = interval
        self._last_print = state.now
        if self._out.dynamic:
            self._out.live(state.line())

    def refresh(self, state: BarState) -> None:
        if self._out.dynamic:
            self._out.live(state.line())
        elif state.now - self._last_print >= self._interval:
            self._last_print = state.now
            self._out.live(state.line())

    def finish(self, state: BarState, leave: bool) -> None:
        if leave:
            self._out.finish(state.line())
        else:
            self._out.clear()


# bars closed by a ``break``-like GeneratorExit in the current cell: if the cell then fails with
# an exception that passed through the loop's frame, it was no break (see ``_post_run_cell``)
# (held strongly until the cell ends: a bar iterated without a name is garbage once closed)
_pending: list[tuple[Progress[Any], FrameType]] = []
_hooked = False


def _post_run_cell(result: Any) -> None:
    error = getattr(result, "error_in_exec", None)
    pending = list(_pending)
    _pending.clear()
    if error is None:
        return
    frames = set()
    tb = error.__traceback__
    while tb is not None:
        frames.add(id(tb.tb_frame))
        tb = tb.tb_next
    status = "interrupted" if isinstance(error, KeyboardInterrupt) else "failed"
    for bar, frame in pending:
        if id(frame) in frames:
            bar._relabel(status)


def _hook_shell() -> None:
    global _hooked
    shell = get_shell()
    if _hooked or shell is None:
        return
    shell.events.register("post_run_cell", _post_run_cell)
    _hooked = True


class Progress(Generic[T]):
    """A progress display: an iterator, a context manager, or driven by :meth:`update`."""

    def __init__(
        self,
        iterable: Iterable[T] | None = None,
        total: int | None = None,
        desc: str | None = None,
        unit: str = "it",
        leave: bool = True,
        *,
        file: IO[str] | None = None,
        widget: bool | None = None,
        timer: Callable[[], float] | None = None,
        log_interval: float | None = None,
    ):
        if total is None and iterable is not None:
            try:
                total = len(iterable)  # type: ignore[arg-type]
            except (TypeError, AttributeError):
                total = None
        if total is not None and total < 0:
            raise ValueError(f"total must be >= 0, got {total}")
        self._iterable = iterable
        self.total = total
        self.desc = desc
        self.unit = unit
        self.leave = leave
        self.n = 0
        self.status = "running"
        self.error: BaseException | None = None
        self._metrics = Metrics()
        budget = get_budget()
        self._timer = timer or budget.timer
        self._throttle: Throttle = budget.throttle(self._timer)
        self.start_t = self._timer()
        self._final_rate: float | None = None
        self._finished = False
        state = self._state()
        use_widget = use_widgets() if widget is None else widget
        self._view: _View = (
            _WidgetView(state) if use_widget else _TextView(state, file, log_interval)
        )
        if use_widget:
            _hook_shell()

    # --- counting (hot path) ---------------------------------------------------------------

    def __iter__(self) -> Iterator[T]:
        if self._iterable is None:
            raise TypeError(
                "this progress bar has no iterable: pass one (progress(data)) or call update(n)"
            )
        throttle = self._throttle
        try:
            for obj in self._iterable:
                yield obj
                n = self.n + 1
                if n >= throttle.next_check and throttle.due(n):
                    self.n = n
                    self.refresh()
                # end the loop body with an unconditional statement: CPython 3.11 otherwise
                # gives the loop's backward jump no line number, and a KeyboardInterrupt raised
                # there (where signals are checked) breaks IPython's traceback formatting
                self.n = n
        except GeneratorExit:
            # the loop stopped asking: a ``break`` or an exception in its body (sorted out after
            # the cell by _post_run_cell); the caller's frame is the loop's frame
            self._finish("stopped", frame=sys._getframe(1))
            raise
        except KeyboardInterrupt:
            self._finish("interrupted")
            raise
        except BaseException as exc:
            self._finish("failed", exc)
            raise
        self._finish("done")

    def __len__(self) -> int:
        if self.total is None:
            raise TypeError("this progress bar has no known total")
        return self.total

    def update(self, n: int = 1) -> None:
        """Advance by ``n`` steps."""
        self.n += n
        if self.n >= self._throttle.next_check and self._throttle.due(self.n):
            self.refresh()

    def log(self, **metrics: Any) -> None:
        """Record metrics (numbers or tensors, never synced here); shown from the next refresh."""
        self._metrics.log(metrics)

    # --- display ---------------------------------------------------------------------------

    @property
    def metrics(self) -> dict[str, float]:
        """Return the smoothed metrics as of the last refresh."""
        return dict(self._metrics.smoothed)

    @property
    def elapsed(self) -> float:
        """Return seconds since the bar started."""
        return self._timer() - self.start_t

    def _state(self) -> BarState:
        now = self._timer()
        return BarState(
            n=self.n,
            total=self.total,
            elapsed=now - self.start_t,
            rate=self._rate,
            desc=self.desc,
            unit=self.unit,
            metrics=dict(self._metrics.smoothed),
            status=self.status,
            now=now,
        )

    @property
    def _rate(self) -> float | None:
        if self._final_rate is not None:
            return self._final_rate
        return self._throttle.rate.per_second()

    def refresh(self) -> None:
        """Redraw now (normally the refresh budget decides when)."""
        if self._finished:
            return
        self._throttle.rate.mark(self.n, self._timer())
        self._metrics.flush()
        self._view.refresh(self._state())

    def _finish(
        self, status: str, error: BaseException | None = None, frame: FrameType | None = None
    ) -> None:
        if self._finished:
            return
        self._finished = True
        self.status = status
        self.error = error
        self._throttle.release()
        elapsed = self._timer() - self.start_t
        # a finished bar shows its average pace, like tqdm's final line
        self._final_rate = self.n / elapsed if elapsed > 0 and self.n else self._rate
        self._metrics.flush()
        self._view.finish(self._state(), self.leave)
        if frame is not None and isinstance(self._view, _WidgetView):
            _pending.append((self, frame))

    def _relabel(self, status: str) -> None:
        self.status = status
        self._view.relabel(self._state(), self.leave)

    def close(self) -> None:
        """Finish the bar: "done" when the total was reached (or unknown), else "stopped"."""
        done = self.total is None or self.n >= self.total
        self._finish("done" if done else "stopped")

    def __enter__(self) -> Progress[T]:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.close()
        elif issubclass(exc_type, KeyboardInterrupt):
            self._finish("interrupted", exc)
        else:
            self._finish("failed", exc)

    def __repr__(self) -> str:
        return f"<Progress {self._state().line()}>"


def progress(
    iterable: Iterable[T] | None = None,
    total: int | None = None,
    desc: str | None = None,
    unit: str = "it",
    leave: bool = True,
    **kwargs: Any,
) -> Progress[T]:
    """Show progress over ``iterable`` (or up to ``total`` with ``update``) as a widget or text.

    ``bar.log(loss=loss)`` takes numbers or tensors without syncing the device. Use it as an
    iterator (``for x in progress(data)``), a context manager, or call ``update(n)``.
    Keyword-only extras: ``widget`` (force widget or text; default: detect), ``file`` (text
    output, default stderr), ``log_interval`` (seconds between lines on a pipe), ``timer``.
    """
    return Progress(iterable, total=total, desc=desc, unit=unit, leave=leave, **kwargs)
