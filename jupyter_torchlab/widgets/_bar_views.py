r"""How a ``tl.progress`` bar is drawn: one HTML widget in a notebook, text lines elsewhere.

:class:`BarState` is a snapshot of one bar, plain numbers only. A widget view draws it as one HTML
widget (one comm message per refresh) and leaves a static record of the final state; lines that
``write`` prints go above the cell's running widget bars (:mod:`._notes`). Text views
share one :class:`TextBoard` per stream: on a terminal the live bars are redrawn in place (one
line with ``\r``; nested bars, by ``position``, on lines of their own), and ``write`` prints
above them; on a pipe or log each bar writes a whole line every few seconds, no control
characters, as tqdm does.
"""

from __future__ import annotations

import os
import string
import sys
import weakref
from dataclasses import dataclass
from typing import IO, Any

from .._format import format_count, format_duration, format_rate
from .._terminal import LineWriter
from . import _notes, render
from ._frontend import close_tree, replace, show

__all__ = ["ENV_LOG_INTERVAL", "BarState", "TextBoard", "TextView", "WidgetView"]

#: seconds between two lines when the text display writes to a pipe or a log file
ENV_LOG_INTERVAL = "JUPYTER_TORCHLAB_LOG_INTERVAL"
DEFAULT_LOG_INTERVAL = 10.0
BAR_WIDTH = 20


@dataclass
class BarState:
    """What a view shows: a snapshot of one bar."""

    n: float
    total: float | None
    elapsed: float
    rate: float | None
    desc: str | None
    unit: str
    postfix: str = ""  # formatted already ("loss=0.25, lr=0.01")
    status: str = "running"
    now: float = 0.0
    unit_scale: bool | float = False
    unit_divisor: int = 1000
    desc_raw: bool = False  # set_description_str: no ": " after the description
    bar_format: str | None = None

    def fraction(self) -> float | None:
        """Return the done fraction, or None when the total is unknown."""
        return min(self.n / self.total, 1.0) if self.total else None

    def remaining(self) -> float | None:
        """Return the seconds left at the recent pace, or None when not known."""
        if self.status != "running" or not self.total or not self.rate:
            return None
        return max(self.total - self.n, 0) / self.rate

    def _scaled(self, value: float) -> str:
        if self.unit_scale:
            factor = 1 if self.unit_scale is True else float(self.unit_scale)
            return format_count(value * factor, scale=True, divisor=self.unit_divisor)
        return format_count(value, separators=False)  # plain digits, as tqdm prints counts

    def fields(self) -> dict[str, Any]:
        """Return the named fields a ``bar_format`` string may use (tqdm's names)."""
        frac = self.fraction()
        rate = self.rate
        if rate is not None and self.unit_scale and self.unit_scale is not True:
            rate = rate * float(self.unit_scale)
        rate_fmt = format_rate(rate, self.unit, divisor=self.unit_divisor)
        remaining = self.remaining()
        desc = self.desc or ""
        prefix = desc if self.desc_raw or not desc else f"{desc}: "
        n_fmt = self._scaled(self.n)
        total_fmt = self._scaled(self.total) if self.total else "?"
        percentage = 100 * frac if frac is not None else 0.0
        l_bar = f"{prefix}{int(percentage):3d}%|" if frac is not None else prefix
        status = f" {render.status_label(self.status, n_fmt)}" if self.status != "running" else ""
        running = self.status == "running" and bool(self.total)
        timing = render.timing(self.elapsed, remaining, rate_fmt, eta=running)
        post = f" {self.postfix}" if self.postfix else ""
        counts = f" {n_fmt}/{total_fmt}" if self.total else f"{n_fmt}{self.unit}"
        return {
            "n": self.n,
            "n_fmt": n_fmt,
            "total": self.total,
            "total_fmt": total_fmt,
            "percentage": percentage,
            "elapsed": format_duration(self.elapsed),
            "elapsed_s": self.elapsed,
            "remaining": format_duration(remaining),
            "remaining_s": remaining,
            "rate": rate,
            "rate_fmt": rate_fmt,
            "rate_noinv": rate,
            "rate_noinv_fmt": rate_fmt,
            "rate_inv": (1 / rate) if rate else None,
            "rate_inv_fmt": format_rate(1 / rate if rate else None, self.unit),
            "postfix": f", {self.postfix}" if self.postfix else "",
            "unit": self.unit,
            "unit_divisor": self.unit_divisor,
            "desc": desc,
            "prefix": prefix,
            "l_bar": l_bar,
            "bar": _Bar(frac),
            "r_bar": f"|{counts} {timing}{post}{status}" if self.total else f" {timing}{post}",
            "eta": remaining,
        }

    def line(self) -> str:
        """Return the plain-text line (also the widget's text/plain)."""
        if self.bar_format:
            try:
                return _Formatter().format(self.bar_format, **self.fields())
            except (KeyError, ValueError, IndexError, AttributeError, TypeError):
                pass  # a format we cannot fill: the standard line, rather than an error per refresh
        return render.progress_line(
            n=self.n,
            total=self.total,
            elapsed=self.elapsed,
            rate=self.rate,
            desc=self.desc,
            unit=self.unit,
            postfix=self.postfix,
            status=self.status,
            n_fmt=self._scaled(self.n),
            total_fmt=self._scaled(self.total) if self.total else None,
            rate_fmt=self.fields()["rate_fmt"],
            desc_raw=self.desc_raw,
        )

    def stats_html(self) -> str:
        """Return the numbers next to the bar, as HTML."""
        f = self.fields()
        if self.total:
            tail = f" &lt; {f['remaining']}" if self.status == "running" else ""
            parts = [f"{f['n_fmt']}/{f['total_fmt']}"]
        else:
            tail = ""
            parts = [f"{f['n_fmt']} {render.escape(self.unit)}"]
        parts.append(f"[{f['elapsed']}{tail}, {render.escape(f['rate_fmt'])}]")
        if self.postfix:
            parts.append(render.escape(self.postfix))
        if self.status != "running":
            label = render.status_label(self.status, f["n_fmt"])
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


class _Bar:
    """The bar of a ``bar_format``: ``{bar}`` is 20 characters wide, ``{bar:10}`` ten."""

    def __init__(self, fraction: float | None) -> None:
        self.fraction = fraction

    def __format__(self, spec: str) -> str:
        width = int(spec) if spec.isdigit() else BAR_WIDTH
        frac = min(max(self.fraction or 0.0, 0.0), 1.0)
        filled = int(frac * width)
        return "#" * filled + "." * (width - filled)


class _Formatter(string.Formatter):
    def format_field(self, value: Any, format_spec: str) -> str:
        if value is None:
            return "?"
        return super().format_field(value, format_spec)


class View:
    """How one bar is drawn."""

    def refresh(self, state: BarState) -> None:
        raise NotImplementedError

    def finish(self, state: BarState, leave: bool) -> None:
        raise NotImplementedError

    def relabel(self, state: BarState, leave: bool) -> None:
        """Show a corrected final status (text output cannot be taken back: do nothing)."""

    def clear(self) -> None:
        """Remove the bar from a terminal until it is redrawn (nothing elsewhere)."""


class WidgetView(View):
    """One HTML widget drawing the bar, replaced by the same markup, static, at the end.

    One widget (three comms with its layout and style) rather than an IntProgress plus labels:
    a refresh is then one comm message, and the live view and the record look alike.
    """

    def __init__(self, state: BarState):
        import ipywidgets as w

        self._box = w.HTML(state.record_html())
        self._state = state
        self.handle = show(self._box, state.line())
        _notes.add(self)

    def refresh(self, state: BarState) -> None:
        self._state = state
        self._box.value = state.record_html()

    def show_again(self) -> None:
        """Display the bar again at the bottom of the cell (``tqdm.write`` took its place)."""
        self.handle = show(self._box, self._state.line())

    def finish(self, state: BarState, leave: bool) -> None:
        _notes.remove(self)
        self.relabel(state, leave)
        close_tree(self._box)

    def relabel(self, state: BarState, leave: bool) -> None:
        if leave:
            replace(self.handle, state.record_html(), state.line())
        else:
            self.handle.update({"text/plain": ""}, raw=True)


_BOARDS: weakref.WeakKeyDictionary[Any, TextBoard] = weakref.WeakKeyDictionary()


class TextBoard:
    """The live text bars of one stream, and the lines written above them."""

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream
        self.lines = LineWriter(stream)  # the one live-line writer (shared with fit's text)
        self.tty = self.lines.dynamic
        self.views: list[TextView] = []

    @classmethod
    def of(cls, stream: IO[str]) -> TextBoard:
        """Return the board of ``stream`` (one per stream, so nested bars share it)."""
        try:
            board = _BOARDS.get(stream)
            if board is None:
                board = _BOARDS[stream] = cls(stream)
            return board
        except TypeError:  # a stream that cannot be weakly referenced: a board of its own
            return cls(stream)

    def add(self, view: TextView) -> None:
        """Start drawing ``view`` among the live bars, ordered by position."""
        self.views.append(view)
        self.views.sort(key=lambda v: v.position)

    def draw(self) -> None:
        """Redraw the live bars in place (terminals only)."""
        self.lines.show([v.text for v in self.views if v.text is not None])

    def remove(self, view: TextView, final: str | None) -> None:
        """Stop drawing ``view``; ``final`` is printed above the others to stay (leave=True)."""
        if view in self.views:
            self.views.remove(view)
        if self.tty:
            if final is not None:
                self.lines.above(final)
            else:
                self.lines.clear()
            self.draw()
        elif final is not None:
            self.stream.write(final + "\n")
            self.stream.flush()

    def clear(self) -> None:
        """Take the live bars off the terminal (they come back at the next draw)."""
        self.lines.clear()


class TextView(View):
    """A bar on a :class:`TextBoard`: redrawn in place on a terminal, a line every N s on a pipe."""

    def __init__(
        self,
        state: BarState,
        file: IO[str] | None = None,
        interval: float | None = None,
        position: int | None = None,
    ):
        self.board = TextBoard.of(file if file is not None else sys.stderr)
        if interval is None:
            interval = float(os.environ.get(ENV_LOG_INTERVAL, DEFAULT_LOG_INTERVAL))
        self._interval = interval
        self._last_print = state.now
        self.position = len(self.board.views) if position is None else abs(int(position))
        self.text: str | None = state.line()
        self.board.add(self)
        self.board.draw()

    def refresh(self, state: BarState) -> None:
        self.text = state.line()
        if self.board.tty:
            self.board.draw()
        elif state.now - self._last_print >= self._interval:
            self._last_print = state.now
            self.board.stream.write(self.text + "\n")
            self.board.stream.flush()

    def finish(self, state: BarState, leave: bool) -> None:
        self.text = None
        self.board.remove(self, state.line() if leave else None)

    def clear(self) -> None:
        self.board.clear()
