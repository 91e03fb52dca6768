"""``tl.progress``: a tqdm-like bar that never syncs the device and never floods the frontend.

Per iteration a bar does one integer add and one compare (see :mod:`._budget`); ``log(**metrics)``
stores references (tensors stay tensors). Everything else, Python numbers included, happens at a
refresh, and refreshes of all displays together are capped per kernel (:func:`set_refresh_rate`).

Smoothing: between two refreshes ``log`` keeps at most :data:`WINDOW_SAMPLES` values per metric,
taken at a stride that adapts to the log rate (so memory and refresh cost stay O(1) per log);
a refresh converts them with one ``.tolist()`` (one device sync), averages them, and shows an
exponential moving average of those window means (``SMOOTHING`` = weight of the newest window).

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

from ..train.callbacks import Callback
from . import render
from ._budget import Throttle, get_budget
from ._frontend import close_tree, get_shell, replace, show, use_widgets

__all__ = ["ENV_LOG_INTERVAL", "FitProgress", "Progress", "fit_progress_factory", "progress"]

T = TypeVar("T")

#: seconds between two lines when the text display writes to a pipe or a log file
ENV_LOG_INTERVAL = "JUPYTER_TORCHLAB_LOG_INTERVAL"
DEFAULT_LOG_INTERVAL = 10.0
WINDOW_SAMPLES = 16
SMOOTHING = 0.3


def _detach(value: Any) -> Any:
    detach = getattr(value, "detach", None)
    return detach() if detach is not None else value


def _to_floats(values: list[Any]) -> list[float]:
    """Convert numbers and tensors to floats with at most one device sync."""
    tensors = [v for v in values if hasattr(v, "detach")]
    if not tensors:
        return [float(v) for v in values]
    import torch

    flat = torch.stack([t.detach().float().mean() for t in tensors]).tolist()
    it = iter(flat)
    return [next(it) if hasattr(v, "detach") else float(v) for v in values]


class Metrics:
    """Logged values: O(1) per log, converted and smoothed only at a refresh."""

    __slots__ = (
        "_flushed_at",
        "_next_sample",
        "_sampled_at",
        "_stride",
        "_window",
        "latest",
        "logs",
        "smoothed",
        "window_means",
    )

    def __init__(self) -> None:
        self.latest: dict[str, Any] = {}
        self.smoothed: dict[str, float] = {}
        #: mean of the values logged during the last refresh window (unsmoothed)
        self.window_means: dict[str, float] = {}
        self._window: dict[str, list[Any]] = {}
        self.logs = 0
        self._stride = 1
        self._next_sample = 1
        self._sampled_at = 0
        self._flushed_at = 0

    def log(self, metrics: dict[str, Any]) -> None:
        """Record the newest values (references only)."""
        self.latest.update(metrics)
        self.logs += 1
        if self.logs >= self._next_sample:
            self._sample()

    def _sample(self) -> None:
        for key, value in self.latest.items():
            values = self._window.setdefault(key, [])
            values.append(_detach(value))
            if len(values) >= 2 * WINDOW_SAMPLES:
                # many logs before the first refresh: keep every other value, sample half as often
                del values[::2]
                self._stride *= 2
        self._sampled_at = self.logs
        self._next_sample = self.logs + self._stride

    def flush(self) -> dict[str, float]:
        """Average the window, update the moving averages, and return them."""
        if not self.latest:
            return self.smoothed
        if self.logs > self._sampled_at:
            self._sample()  # the newest value always counts
        for key, values in self._window.items():
            if not values:
                continue
            floats = _to_floats(values)
            mean = sum(floats) / len(floats)
            self.window_means[key] = mean
            old = self.smoothed.get(key)
            self.smoothed[key] = mean if old is None else SMOOTHING * mean + (1 - SMOOTHING) * old
            values.clear()
        # drop references so an autograd graph held by the last logged loss can be freed
        self.latest = {k: self.smoothed.get(k) for k in self.latest}
        per_window = self.logs - self._flushed_at
        self._flushed_at = self.logs
        self._stride = max(1, per_window // WINDOW_SAMPLES)
        self._next_sample = self.logs + self._stride
        return self.smoothed


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
            tail = f" &lt; {render.format_interval(eta)}" if self.status == "running" else ""
            parts.append(
                f"[{render.format_interval(self.elapsed)}{tail}, "
                f"{render.escape(render.format_rate(self.rate, self.unit))}]"
            )
        else:
            parts.append(f"{self.n} {render.escape(self.unit)}")
            parts.append(
                f"[{render.format_interval(self.elapsed)}, "
                f"{render.escape(render.format_rate(self.rate, self.unit))}]"
            )
        if self.metrics:
            parts.append(render.escape(render.format_metrics(self.metrics)))
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
        self._file = file if file is not None else sys.stderr
        isatty = getattr(self._file, "isatty", None)
        self._tty = bool(isatty and isatty())
        if interval is None:
            interval = float(os.environ.get(ENV_LOG_INTERVAL, DEFAULT_LOG_INTERVAL))
        self._interval = interval
        self._last_print = state.now
        self._width = 0
        if self._tty:
            self._write_tty(state.line())

    def _write_tty(self, line: str, end: str = "") -> None:
        pad = " " * max(self._width - len(line), 0)
        self._width = len(line)
        self._file.write("\r" + line + pad + end)
        self._file.flush()

    def refresh(self, state: BarState) -> None:
        if self._tty:
            self._write_tty(state.line())
        elif state.now - self._last_print >= self._interval:
            self._last_print = state.now
            self._file.write(state.line() + "\n")
            self._file.flush()

    def finish(self, state: BarState, leave: bool) -> None:
        if self._tty:
            if leave:
                self._write_tty(state.line(), "\n")
            else:
                self._write_tty("", "\r")
        elif leave:
            self._file.write(state.line() + "\n")
            self._file.flush()


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
        self._rate: float | None = None
        self._rate_mark = (self.start_t, 0)
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

    def _update_rate(self, now: float, final: bool = False) -> None:
        t0, n0 = self._rate_mark
        if final:
            elapsed = now - self.start_t
            self._rate = self.n / elapsed if elapsed > 0 and self.n else self._rate
            return
        if now > t0 and self.n > n0:
            inst = (self.n - n0) / (now - t0)
            old = self._rate
            self._rate = inst if old is None else SMOOTHING * inst + (1 - SMOOTHING) * old
            self._rate_mark = (now, self.n)

    def refresh(self) -> None:
        """Redraw now (normally the refresh budget decides when)."""
        if self._finished:
            return
        self._update_rate(self._timer())
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
        self._update_rate(self._timer(), final=True)
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


# --- fit's display ----------------------------------------------------------------------------

#: share of step time spent waiting for data above which the display says training is input-bound
INPUT_BOUND = 0.3
SPARK_POINTS = 120


class Series:
    """A bounded series for a sparkline: at most ``2 * max_points`` equal-size bucket means."""

    def __init__(self, max_points: int = SPARK_POINTS):
        self.max_points = max_points
        self.points: list[float] = []
        self.bucket = 1
        self._acc = 0.0
        self._k = 0

    def add(self, value: float) -> None:
        """Append one value (O(1) amortised)."""
        self._acc += value
        self._k += 1
        if self._k >= self.bucket:
            self.points.append(self._acc / self._k)
            self._acc, self._k = 0.0, 0
            if len(self.points) >= 2 * self.max_points:
                p = self.points
                self.points = [(p[i] + p[i + 1]) / 2 for i in range(0, len(p) - 1, 2)]
                self.bucket *= 2

    def values(self) -> list[float]:
        """Return the points, the partly filled last bucket included."""
        return self.points + ([self._acc / self._k] if self._k else [])


def _peak_memory(device: Any) -> int | None:
    """Return peak accelerator memory allocated by this process (no device sync), or None."""
    if getattr(device, "type", None) != "cuda":
        return None
    try:
        import torch

        return int(torch.cuda.max_memory_allocated(device))
    except Exception:  # noqa: BLE001 - a missing reading shows as n/a
        return None


def _epoch_rows(history: Any) -> list[dict[str, Any]]:
    return list(getattr(history, "epochs", None) or [])


_TABLE_HEADERS = ("epoch", "train loss", "val loss", "val acc", "time", "images/s")


def _table_cells(row: dict[str, Any]) -> list[str]:
    def num(key: str) -> str:
        value = row.get(key)
        return "" if value is None else render.format_number(value)

    acc = row.get("val_acc")
    ips = row.get("images_per_s")
    return [
        str(row.get("epoch", "")),  # fit's history counts epochs from 1
        num("train_loss"),
        num("val_loss"),
        "" if acc is None else render.format_percent(acc, 1),
        render.format_interval(row.get("time")),
        "" if ips is None else f"{ips:,.0f}",
    ]


def _text_table(rows: list[dict[str, Any]]) -> str:
    table = [list(_TABLE_HEADERS)] + [_table_cells(r) for r in rows]
    widths = [max(len(r[i]) for r in table) for i in range(len(_TABLE_HEADERS))]
    return "\n".join("  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) for r in table)


class FitProgress(Callback):
    """``fit``'s notebook display: epoch and batch bars, an epoch table, a live loss curve.

    A :class:`~jupyter_torchlab.train.callbacks.Callback`; per batch it stores the loss tensor and
    counts, everything else happens at a refresh (shared kernel budget, see :mod:`._budget`).
    """

    def __init__(self, *, timer: Callable[[], float] | None = None) -> None:
        budget = get_budget()
        self._budget = budget
        self._timer = timer or budget.timer
        self._throttle: Throttle | None = None
        self._metrics = Metrics()
        self._loss_series = Series()
        self._n = 0
        self._handle: Any = None
        self._finished = False
        self._epoch_t0 = 0.0
        self._fit_t0 = 0.0
        self._rate: float | None = None
        self._rate_mark = (0.0, 0)
        self._device = ""

    def on_fit_start(self, state: Any) -> None:
        """Build and show the widgets."""
        import ipywidgets as w

        self._throttle = self._budget.throttle(self._timer)
        self._fit_t0 = self._epoch_t0 = self._timer()
        from ..train.device import device_label  # fit is running, so torch is loaded already

        self._device = device_label(state.device)
        world = getattr(state, "world_size", 1)
        if world > 1:
            self._device += f", {world} processes"
        first = state.start_epoch
        self._header = w.HTML(self._header_html(state))

        # the bars give way first when the output is narrow; the numbers stay on one line
        def bar_layout() -> Any:
            return w.Layout(width="auto", flex="0 1 240px", min_width="60px")

        def stats_layout() -> Any:
            return w.Layout(flex="1 0 auto", margin="0 0 0 8px")

        self._epoch_bar = w.IntProgress(
            value=first, min=0, max=max(state.epochs, 1), layout=bar_layout()
        )
        self._epoch_stats = w.HTML(self._epoch_html(state), layout=stats_layout())
        self._batch_bar = w.IntProgress(
            value=0, min=0, max=max(state.batches or 1, 1), layout=bar_layout()
        )
        self._batch_stats = w.HTML("", layout=stats_layout())
        self._table = w.HTML(self._table_html(state))
        self._footer = w.HTML(self._footer_html(state))
        self._box = w.VBox(
            [
                self._header,
                w.HBox(
                    [
                        w.HTML("<b>epochs</b>", layout=w.Layout(width="5em", flex="0 0 auto")),
                        self._epoch_bar,
                        self._epoch_stats,
                    ]
                ),
                w.HBox(
                    [
                        w.HTML("<b>batches</b>", layout=w.Layout(width="5em", flex="0 0 auto")),
                        self._batch_bar,
                        self._batch_stats,
                    ]
                ),
                self._table,
                self._footer,
            ]
        )
        self._handle = show(self._box, f"training on {self._device}")

    def on_epoch_start(self, state: Any) -> None:
        """Reset the batch bar."""
        self._epoch_t0 = self._timer()
        self._rate_mark = (self._epoch_t0, 0)
        self._rate = None
        with self._batch_bar.hold_sync():
            self._batch_bar.max = max(state.batches or 1, 1)
            self._batch_bar.value = 0
        self._epoch_stats.value = self._epoch_html(state)

    def on_batch_end(self, state: Any) -> None:
        """Count, keep the loss tensor, refresh when the budget allows (O(1), no device sync)."""
        if state.loss is not None:
            self._metrics.log({"loss": state.loss})
        self._n += 1
        throttle = self._throttle
        if throttle is not None and self._n >= throttle.next_check and throttle.due(self._n):
            self._refresh(state)

    def on_epoch_end(self, state: Any) -> None:
        """Add the epoch's row and move the epoch bar."""
        self._refresh(state)
        self._epoch_bar.value = min(state.epoch + 1, self._epoch_bar.max)
        self._epoch_stats.value = self._epoch_html(state, done=state.epoch + 1)
        self._table.value = self._table_html(state)
        self._update_header(state)

    def on_fit_end(self, state: Any) -> None:
        """Replace the widgets by a static record of the result and close them."""
        if self._finished or self._handle is None:
            return
        self._finished = True
        if self._throttle is not None:
            self._throttle.release()
        self._flush_loss()
        rows = _epoch_rows(state.history)
        html = (
            f'<div class="torchlab-fit" data-status="{render.escape(state.status)}">'
            f"{self._header_html(state)}{self._table_html(state)}{self._footer_html(state)}</div>"
        )
        text = "\n".join(
            [
                self._header_text(state),
                _text_table(rows) if rows else "(no finished epoch)",
                self._footer_text(state),
            ]
        )
        replace(self._handle, html, text)
        close_tree(self._box)

    # rendering

    def _flush_loss(self) -> None:
        before = self._metrics.logs
        self._metrics.flush()
        mean = self._metrics.window_means.get("loss")
        if mean is not None and before:
            self._loss_series.add(mean)
            self._metrics.window_means.clear()

    def _refresh(self, state: Any) -> None:
        now = self._timer()
        t0, n0 = self._rate_mark
        if now > t0 and state.batch > n0:
            inst = (state.batch - n0) / (now - t0)
            self._rate = (
                inst if self._rate is None else (SMOOTHING * inst + (1 - SMOOTHING) * self._rate)
            )
            self._rate_mark = (now, state.batch)
        self._flush_loss()
        if state.batches:
            self._batch_bar.value = min(state.batch, state.batches)
        self._batch_stats.value = self._batch_html(state, now)
        self._footer.value = self._footer_html(state)
        self._update_header(state)

    def _update_header(self, state: Any) -> None:
        """Advance the header's elapsed time (a message only when the shown second changes)."""
        html = self._header_html(state)
        if html != self._header.value:
            self._header.value = html

    def _status_text(self, state: Any) -> str:
        status = state.status
        where = f"epoch {state.epoch + 1}/{state.epochs}, batch {state.batch}"
        if status == "running":
            return f"training on {self._device}"
        if status == "done":
            return f"done: {state.epochs - state.start_epoch} epochs on {self._device}"
        if status == "stopped":
            return f"stopped early at {where}"
        if status == "interrupted":
            return f"interrupted at {where}"
        error = f": {type(state.error).__name__}: {state.error}" if state.error else ""
        return f"failed at {where}{error}"

    def _header_text(self, state: Any) -> str:
        elapsed = render.format_interval(self._timer() - self._fit_t0)
        return f"{self._status_text(state)} [{elapsed}]"

    def _header_html(self, state: Any) -> str:
        color = render.STATUS_COLORS.get(state.status, "#000")
        return f'<div><b style="color:{color}">{render.escape(self._header_text(state))}</b></div>'

    def _epoch_html(self, state: Any, done: int | None = None) -> str:
        done = state.epoch if done is None else done
        elapsed = self._timer() - self._fit_t0
        ran = done - state.start_epoch
        eta = elapsed / ran * (state.epochs - done) if ran > 0 else None
        return (
            f'<span style="white-space:nowrap">{done}/{state.epochs} '
            f"[{render.format_interval(elapsed)} &lt; {render.format_interval(eta)}]</span>"
        )

    def _batch_html(self, state: Any, now: float) -> str:
        elapsed = now - self._epoch_t0
        total = f"/{state.batches}" if state.batches else ""
        eta = ""
        if state.batches and self._rate:
            eta = f" &lt; {render.format_interval((state.batches - state.batch) / self._rate)}"
        # samples counts this process's share; every process gets an equal one
        images = state.samples * getattr(state, "world_size", 1) / elapsed if elapsed > 0 else None
        parts = [
            f"{state.batch}{total} [{render.format_interval(elapsed)}{eta}, "
            f"{render.escape(render.format_rate(self._rate, 'it'))}, "
            f"{render.escape(render.format_rate(images, 'img'))}]"
        ]
        loss = self._metrics.smoothed.get("loss")
        if loss is not None:
            parts.append(f"loss {render.escape(render.format_number(loss))}")
        return f'<span style="white-space:nowrap">{" ".join(parts)}</span>'

    def _table_html(self, state: Any) -> str:
        rows = _epoch_rows(state.history)
        if not rows:
            return ""
        return render.html_table(_TABLE_HEADERS, [_table_cells(r) for r in rows])

    def _data_share(self, state: Any) -> float | None:
        total = state.data_time + state.step_time
        return state.data_time / total if total > 0 else None

    def _footer_parts(self, state: Any) -> list[str]:
        parts = [f"device {self._device}"]
        peak = _peak_memory(state.device)
        if peak is not None:
            parts.append(f"peak memory {render.format_bytes(peak)}")
        share = self._data_share(state)
        if share is not None:
            parts.append(f"waiting for data {render.format_percent(share)} of step time")
        return parts

    def _hint(self, state: Any) -> str | None:
        share = self._data_share(state)
        if share is None or share <= INPUT_BOUND:
            return None
        return (
            "Training is input-bound: the model waits for the data loader. Try "
            "DataLoader(num_workers=2 or more, pin_memory=True, persistent_workers=True), "
            "or move data preparation out of __getitem__."
        )

    def _footer_text(self, state: Any) -> str:
        lines = [" | ".join(self._footer_parts(state))]
        if (hint := self._hint(state)) is not None:
            lines.append(hint)
        return "\n".join(lines)

    def _footer_html(self, state: Any) -> str:
        losses = self._loss_series.values()
        spark = ""
        if losses:
            spark = (
                "loss "
                + render.sparkline_svg(losses, width=160, height=28, title="training loss")
                + " "
            )
        html = f"<div>{spark}{render.escape(' · '.join(self._footer_parts(state)))}</div>"
        if (hint := self._hint(state)) is not None:
            html += f'<div style="color:#b36b00">{render.escape(hint)}</div>'
        return html


def fit_progress_factory() -> Any:
    """Return fit's display: widgets in a notebook kernel, else the text display."""
    if use_widgets():
        return FitProgress()
    from ..train.text import TextProgress

    return TextProgress()
