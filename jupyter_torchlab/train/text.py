r"""Plain-text training progress: one rewritten line on a terminal, sparse plain lines in a log.

On a terminal the line is drawn by tqdm's ``status_printer`` (``\r``, the text, padding over a
longer previous line), the same writer as every tqdm bar.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import IO

from .._format import format_duration, format_rate
from .._rate import Rate
from .._terminal import is_tty
from .callbacks import Callback, FitState, as_number
from .history import epoch_line

__all__ = ["TextProgress"]


class TextProgress(Callback):
    r"""Print fit's progress as text, at most every ``interval`` seconds.

    On a terminal (``stream.isatty()``) one line is rewritten in place with ``\r``; on a pipe or
    log file a plain line is written every ``interval`` seconds (default 10 s there, 0.2 s on a
    terminal) with no control characters. Every finished epoch gets its own line either way.
    ``timer`` is injectable so tests can drive the throttle exactly.
    """

    def __init__(
        self,
        stream: IO[str] | None = None,
        *,
        interval: float | None = None,
        dynamic: bool | None = None,
        timer: Callable[[], float] = time.monotonic,
    ) -> None:
        self._stream = stream
        self._dynamic = dynamic
        self._interval = interval
        self._timer = timer
        self._next = 0.0
        self._epoch_start = 0.0
        self._printer: Callable[[str], None] | None = None  # tqdm's, for the stream it is on
        self._printer_stream: IO[str] | None = None
        self._live = False  # a live line is on a terminal's screen
        # batches per second for the ETA, a slow start (CUDA, compile, workers) left out
        self._rate = Rate(min_gap=0.02)

    @property
    def stream(self) -> IO[str]:
        """Return the stream written to (``sys.stdout`` at the time of writing by default)."""
        return self._stream if self._stream is not None else sys.stdout

    @property
    def dynamic(self) -> bool:
        """Return whether the line is rewritten in place (a terminal)."""
        return is_tty(self.stream) if self._dynamic is None else self._dynamic

    @property
    def interval(self) -> float:
        """Return the seconds between two progress lines."""
        if self._interval is not None:
            return self._interval
        return 0.2 if self.dynamic else 10.0

    def _write(self, text: str, *, final: bool) -> None:
        stream = self.stream
        if not self.dynamic:  # a pipe or a log: whole lines, no control characters
            stream.write(text + "\n")
            stream.flush()
            return
        if self._printer is None or self._printer_stream is not stream:
            # here: importing fit's text display stays cheap
            from tqdm.std import tqdm  # type: ignore[import-untyped]

            self._printer, self._printer_stream = tqdm.status_printer(stream), stream
        self._printer(text)
        self._live = not final
        if final:
            stream.write("\n")
            stream.flush()
            self._printer = None  # the next line starts on a fresh one

    def on_fit_start(self, state: FitState) -> None:
        """Start the throttle clock."""
        self._next = self._timer() + self.interval

    def on_epoch_start(self, state: FitState) -> None:
        """Remember when the epoch began (for speed and ETA)."""
        self._epoch_start = self._timer()
        self._rate.reset(0, self._epoch_start)

    def batch_line(self, state: FitState, now: float) -> str:
        """Return the progress line for the current batch."""
        elapsed = now - self._epoch_start
        parts = [f"epoch {state.epoch + 1}/{state.epochs}"]
        if state.batches:
            parts.append(
                f"batch {state.batch}/{state.batches} ({100 * state.batch / state.batches:.0f}%)"
            )
        else:
            parts.append(f"batch {state.batch}")
        loss = as_number(state.running_loss if state.running_loss is not None else state.loss)
        if loss is not None:
            parts.append(f"loss {loss:.4f}")
        acc = as_number(state.running_acc)
        if acc is not None:
            parts.append(f"acc {100 * acc:.1f}%")
        if elapsed > 0:
            parts.append(format_rate(state.images_per_s(self._rate.per_second(), elapsed), "img"))
            if state.batches and state.batch:
                eta = self._rate.eta(state.batches - state.batch)
                parts.append(f"ETA {format_duration(eta)}")
        return "  ".join(parts)

    def on_batch_end(self, state: FitState) -> None:
        """Print a line when the throttle allows; O(1) and sync-free otherwise."""
        now = self._timer()
        self._rate.mark(state.batch, now)
        if now < self._next:
            return
        self._next = now + self.interval
        self._write(self.batch_line(state, now), final=False)

    def on_epoch_end(self, state: FitState) -> None:
        """Print the finished epoch's metrics on their own line."""
        self._write(epoch_line(state.epoch_metrics, state.epochs), final=True)
        self._next = self._timer() + self.interval

    def on_fit_end(self, state: FitState) -> None:
        """Say how fit ended when it did not simply finish."""
        if state.status == "done":
            if self._live:
                self._write("", final=True)
            return
        self._write(f"training {state.status} at {state.where()}{state.stop_reason()}", final=True)
