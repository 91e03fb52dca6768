"""``fit``'s notebook display: epoch and batch bars, an epoch table, a live loss curve.

Per batch it stores the loss tensor and counts; everything else happens at a refresh, within the
kernel's shared refresh budget (:mod:`._budget`). Its rate and ETA leave out a slow start
(:mod:`jupyter_torchlab._rate`). When fit ends, the widgets are replaced by a static record of the
result (HTML and text), so a saved notebook shows it without a kernel.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .._format import (
    format_bytes,
    format_duration,
    format_number,
    format_percent,
    format_rate,
    format_span,
)
from ..train.callbacks import Callback
from ..train.display import text_display
from ..train.history import EPOCH_HEADERS, epoch_cells
from . import render
from ._budget import Throttle, get_budget
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
        self._last_epoch_end = 0.0
        #: seconds the latest finished epoch took, from the end of the one before (or fit's start)
        self._epoch_seconds: float | None = None
        self._device = ""

    def on_fit_start(self, state: Any) -> None:
        """Build and show the widgets."""
        import ipywidgets as w

        self._throttle = self._budget.throttle(self._timer)
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

    def on_epoch_start(self, state: Any) -> None:
        """Reset the batch bar."""
        self._epoch_t0 = self._timer()
        if self._throttle is not None:
            # batches per second from this epoch's start: validation and worker start-up before
            # it are not part of the pace
            self._throttle.rate.reset(self._n, self._epoch_t0)
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
        return (
            f'<span style="white-space:nowrap">{done}/{state.epochs} '
            f"[{format_duration(elapsed)} &lt; {format_duration(eta)}]</span>"
        )

    def _batch_html(self, state: Any, now: float) -> str:
        elapsed = now - self._epoch_t0
        total = f"/{state.batches}" if state.batches else ""
        eta = ""
        rate = self._throttle.rate.per_second() if self._throttle is not None else None
        if state.batches and rate:
            eta = f" &lt; {format_duration((state.batches - state.batch) / rate)}"
        images = state.images_per_s(rate, elapsed)
        parts = [
            f"{state.batch}{total} [{format_duration(elapsed)}{eta}, "
            f"{render.escape(format_rate(rate, 'it'))}, "
            f"{render.escape(format_rate(images, 'img'))}]"
        ]
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
        from .monitor import gpu_waiting

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
