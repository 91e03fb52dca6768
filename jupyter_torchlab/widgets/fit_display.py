"""``fit``'s notebook display: epoch and batch bars, an epoch table, a live loss curve.

Per batch it stores the loss tensor and counts a tqdm bar of its own that draws nothing: tqdm's
``update`` (its ``mininterval`` set to this display's share of the kernel's budget,
:mod:`._budget`, its dynamic ``miniters``) decides when fit's widgets refresh, and the bars' text
is tqdm's ``format_meter``. Its rate and ETA leave out a slow start
(:mod:`jupyter_torchlab._rate`). When fit ends, the widgets are replaced by a static record of the
result (HTML and text), so a saved notebook shows it without a kernel. Each refresh also
publishes the fit as one run to the Jupyter server (:mod:`._runs`), with the figures it just read.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from tqdm.std import tqdm as std_tqdm  # type: ignore[import-untyped]

from .._format import (
    format_bytes,
    format_duration,
    format_number,
    format_percent,
    format_rate,
    format_span,
)
from .._rate import Rate
from ..train.callbacks import Callback
from ..train.display import text_display
from ..train.history import EPOCH_HEADERS, epoch_cells
from . import _runs, render
from ._budget import get_budget
from ._frontend import close_tree, replace, show, use_widgets
from ._smoothing import Metrics, Series

__all__ = ["INPUT_BOUND", "FitProgress", "notebook_display"]

#: share of step time spent waiting for data above which the display says training is input-bound
INPUT_BOUND = 0.3


def _epoch_rows(history: Any) -> list[dict[str, Any]]:
    return list(getattr(history, "epochs", None) or [])


def _headers(rows: list[dict[str, Any]]) -> tuple[str, ...]:
    # the peak-memory column only where an accelerator measured one
    if any(r.get("peak_memory") is not None for r in rows):
        return (*EPOCH_HEADERS, "peak memory")
    return EPOCH_HEADERS


def _table_cells(row: dict[str, Any], headers: tuple[str, ...] = EPOCH_HEADERS) -> list[str]:
    cells = epoch_cells(row)
    return [cells[h] for h in headers]


def _text_table(rows: list[dict[str, Any]]) -> str:
    headers = _headers(rows)
    table = [list(headers)] + [_table_cells(r, headers) for r in rows]
    widths = [max(len(r[i]) for r in table) for i in range(len(headers))]
    return "\n".join("  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) for r in table)


class _Ticker(std_tqdm):
    """tqdm's counter and throttle, drawing nothing itself: each redraw it makes is fit's."""

    # fit refreshes at each epoch's end anyway; tqdm's monitor thread would redraw from a thread
    # of its own while the loop runs
    monitor_interval = 0

    def __init__(self, redraw: Callable[[], None], mininterval: float, timer: Callable[[], float]):
        self._redraw = redraw
        super().__init__(gui=True, mininterval=mininterval, total=None)
        self._time = timer
        self.start_t = self.last_print_t = timer()

    def display(self, msg: str | None = None, pos: int | None = None) -> bool:
        self._redraw()
        return True

    def clear(self, nolock: bool = False) -> None:
        """Nothing to clear (``tqdm.write`` clears the bars on its stream; this one draws none)."""


def _stats(n: int, total: int | None, elapsed: float, rate: float | None, extra: str | None) -> str:
    """Return ``n/total [elapsed<remaining, rate, extra]`` as tqdm formats it, for HTML.

    ``extra=None`` leaves the rate out (the epoch bar).
    """
    fmt = "{n_fmt}/{total_fmt} [{elapsed}<{remaining}" if total else "{n_fmt} [{elapsed}"
    fmt += "]" if extra is None else ", {rate_fmt}{postfix}]"
    text = std_tqdm.format_meter(
        n, total, elapsed, rate=rate, bar_format=fmt, postfix=extra or None
    )
    return render.escape(text)


class FitProgress(Callback):
    """``fit``'s notebook display: epoch and batch bars, an epoch table, a live loss curve.

    A :class:`~jupyter_torchlab.train.callbacks.Callback`; per batch it stores the loss tensor and
    counts, everything else happens at a refresh (shared kernel budget, see :mod:`._budget`).
    """

    def __init__(self, *, timer: Callable[[], float] | None = None) -> None:
        self._timer = timer or time.monotonic
        self._ticker: _Ticker | None = None
        self._state: Any = None
        #: batches per second for the ETA, a slow start (CUDA, compile, workers) left out
        self._rate = Rate()
        self._metrics = Metrics()
        self._loss_series = Series()
        self._n = 0
        self._handle: Any = None
        self._finished = False
        self._epoch_t0 = 0.0
        self._fit_t0 = 0.0
        self._last_epoch_end = 0.0
        #: seconds the latest finished epoch took, from the end of the one before (or fit's start)
        self._epoch_seconds: float | None = None
        self._device = ""
        self._run: _runs.Run | None = None

    def on_fit_start(self, state: Any) -> None:
        """Build and show the widgets."""
        import ipywidgets as w

        self._state = state
        share = get_budget().register(self)
        self._ticker = _Ticker(lambda: self._refresh(self._state), share, self._timer)
        self._fit_t0 = self._epoch_t0 = self._last_epoch_end = self._timer()
        self._device = state.device_label or str(state.device)
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
        self._run = _runs.start_run(
            kind="fit", desc="fit", unit="batch", started=time.time(), **self._run_fields(state)
        )

    def on_epoch_start(self, state: Any) -> None:
        """Reset the batch bar."""
        self._epoch_t0 = self._timer()
        # batches per second from this epoch's start: validation and worker start-up before it
        # are not part of the pace
        self._rate.reset(self._n, self._epoch_t0)
        with self._batch_bar.hold_sync():
            self._batch_bar.max = max(state.batches or 1, 1)
            self._batch_bar.value = 0
        self._epoch_stats.value = self._epoch_html(state)

    def on_batch_end(self, state: Any) -> None:
        """Count, keep the loss tensor, refresh when the budget allows (O(1), no device sync)."""
        if state.loss is not None:
            self._metrics.log({"loss": state.loss})
        self._n += 1
        self._state = state
        if self._ticker is not None:
            self._ticker.update()  # tqdm decides whether this batch refreshes

    def on_epoch_end(self, state: Any) -> None:
        """Add the epoch's row and move the epoch bar."""
        now = self._timer()
        self._epoch_seconds = now - self._last_epoch_end
        self._last_epoch_end = now
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
        get_budget().release(self)
        if self._ticker is not None:
            self._ticker.close()
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
        if self._run is not None:
            state_name = {"done": "finished", "stopped": "finished", "interrupted": "interrupted"}
            ended = state_name.get(state.status, "failed")
            error = _runs.error_line(state.error) if ended == "failed" else None
            self._run.end(ended, error, **self._run_fields(state))
            self._run = None

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
        self._rate.mark(self._n, now)
        self._flush_loss()
        if state.batches:
            self._batch_bar.value = min(state.batch, state.batches)
        self._batch_stats.value = self._batch_html(state, now)
        self._footer.value = self._footer_html(state)
        self._update_header(state)
        if self._run is not None:
            self._run.update(**self._run_fields(state, now))

    def _run_fields(self, state: Any, now: float | None = None) -> dict[str, Any]:
        """Return the published run's figures as of this refresh (numbers read already)."""
        now = self._timer() if now is None else now
        return _runs.fit_fields(
            state,
            rate=self._rate.per_second(),
            metrics=dict(self._metrics.smoothed),
            elapsed=now - self._fit_t0,
            epoch_elapsed=now - self._epoch_t0,
        )

    def _update_header(self, state: Any) -> None:
        """Advance the header's elapsed time (a message only when the shown second changes)."""
        html = self._header_html(state)
        if html != self._header.value:
            self._header.value = html

    def _status_text(self, state: Any) -> str:
        status = state.status
        where = state.where(of_epochs=True)
        if status == "running":
            return f"training on {self._device}"
        if status == "done":
            return f"done: {state.epochs - state.start_epoch} epochs on {self._device}"
        if status == "stopped":
            return f"stopped early at {where}"
        if status == "interrupted":
            return f"interrupted at {where}"
        if status == "out of memory":
            return f"out of memory at {where}{state.stop_reason()}"
        return f"failed at {where}{state.stop_reason()}"

    def _header_text(self, state: Any) -> str:
        elapsed = format_duration(self._timer() - self._fit_t0)
        return f"{self._status_text(state)} [{elapsed}]"

    def _header_html(self, state: Any) -> str:
        color = render.STATUS_COLORS.get(state.status, "#000")
        return f'<div><b style="color:{color}">{render.escape(self._header_text(state))}</b></div>'

    def _epoch_html(self, state: Any, done: int | None = None) -> str:
        done = state.epoch if done is None else done
        elapsed = self._timer() - self._fit_t0
        # at the pace of the latest epoch, not the average: the first carries the warm-up
        seconds = self._epoch_seconds
        eta = seconds * (state.epochs - done) if seconds is not None else None
        rate = (state.epochs - done) / eta if eta else None
        return f'<span style="white-space:nowrap">{_stats(done, state.epochs, elapsed, rate, None)}</span>'  # noqa: E501

    def _batch_html(self, state: Any, now: float) -> str:
        elapsed = now - self._epoch_t0
        rate = self._rate.per_second()
        images = state.images_per_s(rate, elapsed)
        parts = [_stats(state.batch, state.batches, elapsed, rate, format_rate(images, "img"))]
        loss = self._metrics.smoothed.get("loss")
        if loss is not None:
            parts.append(f"loss {render.escape(format_number(loss))}")
        return f'<span style="white-space:nowrap">{" ".join(parts)}</span>'

    def _table_html(self, state: Any) -> str:
        rows = _epoch_rows(state.history)
        if not rows:
            return ""
        headers = _headers(rows)
        return render.html_table(headers, [_table_cells(r, headers) for r in rows])

    def _data_share(self, state: Any) -> float | None:
        total = state.data_time + state.step_time
        return state.data_time / total if total > 0 else None

    def _footer_parts(self, state: Any) -> list[str]:
        parts = [f"device {self._device}"]
        peak = state.peak_memory
        if peak is not None:
            parts.append(f"peak memory {format_bytes(peak)}")
        share = self._data_share(state)
        if share is not None:
            parts.append(f"waiting for data {format_percent(share)} of step time")
        return parts

    def _hint(self, state: Any) -> str | None:
        share = self._data_share(state)
        device = getattr(state, "device", "cpu")
        on_gpu = not str(device).startswith("cpu")
        # the kernel monitor, when shown, measures the GPU's own share (NVML, per process); imported
        # here so that importing the package (the server does) does not load the monitor
        from .kernel_monitor import gpu_waiting

        waiting = gpu_waiting() if on_gpu else None
        if (share is None or share <= INPUT_BOUND) and waiting is None:
            return None
        # imported here, not at the top: the package root imports this module, and the server
        # extension (which loads the package) must not pay for torch; fit has imported it by now
        from ..train.fit.inputs import input_advice

        advice = input_advice(getattr(state, "loader", None), device)
        knobs = "; ".join(advice) if advice else "move data preparation out of __getitem__"
        who = "the GPU" if on_gpu else "the model"
        said = []
        if share is not None and share > INPUT_BOUND:
            said.append(f"{who} waits for data {format_percent(share)} of the time")
        if waiting is not None:
            subject = "" if said else "the GPU "
            said.append(
                f"{subject}stayed {waiting.utilization:.0f}% busy for "
                f"{format_span(waiting.seconds)}"
            )
        return f"Input-bound: {' and '.join(said)}. Try {knobs}."

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


def notebook_display() -> Callback:
    """Return fit's display for here: widgets in a notebook kernel, else the text display."""
    if use_widgets():
        return FitProgress()
    return text_display()
