"""Plain-text training progress: one rewritten line on a terminal, sparse plain lines in a log."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import IO, Any

from .callbacks import Callback, FitState

__all__ = ["TextProgress", "format_duration"]


def format_duration(seconds: float | None) -> str:
    """Format seconds as ``M:SS`` or ``H:MM:SS`` (``"?"`` when unknown)."""
    if seconds is None or seconds != seconds or seconds < 0:
        return "?"
    s = int(seconds + 0.5)
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    return f"{h}:{m:02d}:{sec:02d}" if h else f"{m}:{sec:02d}"


def _num(value: Any) -> float | None:
    # the one place a tensor becomes a number: only when a line is printed
    if value is None:
        return None
    return float(value.item()) if hasattr(value, "item") else float(value)


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
        self._width = 0

    @property
    def stream(self) -> IO[str]:
        """Return the stream written to (``sys.stdout`` at the time of writing by default)."""
        return self._stream if self._stream is not None else sys.stdout

    @property
    def dynamic(self) -> bool:
        """Return whether the line is rewritten in place (a terminal)."""
        if self._dynamic is not None:
            return self._dynamic
        isatty = getattr(self.stream, "isatty", None)
        try:
            return bool(isatty and isatty())
        except ValueError:  # closed stream
            return False

    @property
    def interval(self) -> float:
        """Return the seconds between two progress lines."""
        if self._interval is not None:
            return self._interval
        return 0.2 if self.dynamic else 10.0

    def _write(self, text: str, *, final: bool) -> None:
        if self.dynamic:
            pad = " " * max(0, self._width - len(text))
            self._width = 0 if final else len(text)
            self.stream.write("\r" + text + pad + ("\n" if final else ""))
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def on_fit_start(self, state: FitState) -> None:
        """Start the throttle clock."""
        self._next = self._timer() + self.interval

    def on_epoch_start(self, state: FitState) -> None:
        """Remember when the epoch began (for speed and ETA)."""
        self._epoch_start = self._timer()

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
        loss = _num(state.running_loss if state.running_loss is not None else state.loss)
        if loss is not None:
            parts.append(f"loss {loss:.4f}")
        acc = _num(state.running_acc)
        if acc is not None:
            parts.append(f"acc {100 * acc:.1f}%")
        if elapsed > 0:
            # samples counts this process's share; every process gets an equal one
            parts.append(f"{state.samples * state.world_size / elapsed:,.0f} img/s")
            if state.batches and state.batch:
                eta = elapsed * (state.batches - state.batch) / state.batch
                parts.append(f"ETA {format_duration(eta)}")
        return "  ".join(parts)

    def on_batch_end(self, state: FitState) -> None:
        """Print a line when the throttle allows; O(1) and sync-free otherwise."""
        now = self._timer()
        if now < self._next:
            return
        self._next = now + self.interval
        self._write(self.batch_line(state, now), final=False)

    def on_epoch_end(self, state: FitState) -> None:
        """Print the finished epoch's metrics on their own line."""
        m = state.epoch_metrics
        parts = [f"epoch {state.epoch + 1}/{state.epochs} done in {format_duration(m.get('time'))}"]
        for prefix in ("train", "val"):
            loss, acc = m.get(f"{prefix}_loss"), m.get(f"{prefix}_acc")
            if loss is not None:
                text = f"{prefix} loss {loss:.4f}"
                parts.append(text if acc is None else f"{text} acc {100 * acc:.1f}%")
        if m.get("images_per_s"):
            parts.append(f"{m['images_per_s']:,.0f} img/s")
        self._write("  ".join(parts), final=True)
        self._next = self._timer() + self.interval

    def on_fit_end(self, state: FitState) -> None:
        """Say how fit ended when it did not simply finish."""
        if state.status == "done":
            if self.dynamic and self._width:
                self._write("", final=True)
            return
        where = f"epoch {state.epoch + 1}, batch {state.batch}"
        reason = f": {state.error}" if state.status == "failed" and state.error else ""
        self._write(f"training {state.status} at {where}{reason}", final=True)
