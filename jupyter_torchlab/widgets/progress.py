"""``tl.progress``: tqdm's own bar with a notebook display that never floods it or syncs a device.

:class:`Progress` subclasses ``tqdm.asyncio.tqdm_asyncio`` (tqdm.auto's class outside a notebook),
so counting, throttling (``mininterval``, ``miniters``), smoothing, the ETA, ``write``, locks,
``async for``, ``gather``/``as_completed`` and everything in ``tqdm.contrib`` are tqdm's. It
overrides only the display side, as ``tqdm.notebook`` does:

- In a notebook kernel (:func:`._frontend.use_widgets`) a bar is one HTML widget drawn from
  tqdm's ``format_meter``. Its refreshes come out of the kernel's budget (:mod:`._budget`): a
  bar's ``mininterval`` is at least its share of it, and redraws asked for between two (a
  ``set_postfix_str`` or ``refresh`` per step) wait for the next. When the bar closes, the
  widget is replaced by a static HTML + text record that survives saving and export.
- Elsewhere the text is tqdm's own, byte for byte.
- ``set_postfix`` keeps what it is given as references: a tensor is read at the next redraw (all
  of them with one ``.tolist()``), then formatted by tqdm. ``log(**metrics)`` keeps a smoothed
  mean per metric the same way (:mod:`._smoothing`). Neither syncs the device per step.
- ``skip_warmup=True`` shows the rate and ETA of the recent pace with a slow start left out
  (:mod:`jupyter_torchlab._rate`, tqdm#967) instead of tqdm's moving average.
- ``status`` says how the bar ended: ``"done"``, ``"stopped"`` (a ``break``), ``"interrupted"``
  or ``"failed"``; a notebook record shows it.
- A notebook bar is also published to the Jupyter server (:mod:`._runs`) at each of its redraws
  and once at its end, with the figures that redraw read: the server shows it with no page open.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterable, Iterator, Mapping
from types import FrameType, TracebackType
from typing import IO, Any

import tqdm as _tqdm_package  # type: ignore[import-untyped]
from tqdm.asyncio import tqdm_asyncio  # type: ignore[import-untyped]
from tqdm.std import tqdm as std_tqdm  # type: ignore[import-untyped]

from .._rate import Rate
from . import _cell, _notes, _runs, render
from ._bar_views import WidgetView, record_html
from ._budget import get_budget
from ._frontend import use_widgets
from ._setup import set_up_in_kernel
from ._smoothing import Metrics, tensors_to_numbers

__all__ = ["Progress", "progress", "trange"]

_BAR = re.compile(r"\|?<bar/>\|?")
# frames of tqdm and of this module are not the user's loop (see _loop_frame)
_SKIP = (os.path.dirname(_tqdm_package.__file__), __file__)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _numbered(tb: TracebackType | None) -> TracebackType | None:
    """Return the traceback after ``tb``'s first entry (this frame) without line-less entries."""
    kept = []
    tb = tb.tb_next if tb is not None else None
    while tb is not None:
        if tb.tb_lineno is not None:
            kept.append(tb)
        tb = tb.tb_next
    rebuilt = None
    for entry in reversed(kept):
        rebuilt = TracebackType(rebuilt, entry.tb_frame, entry.tb_lasti, entry.tb_lineno)
    return rebuilt


def _loop_frame() -> FrameType | None:
    """Return the frame of the user's code that was iterating the bar."""
    frame: FrameType | None = sys._getframe(2)
    while frame is not None and frame.f_code.co_filename.startswith(_SKIP):
        frame = frame.f_back
    return frame


class Progress(tqdm_asyncio):
    """tqdm's bar (``tqdm.asyncio``'s class) with a rate-budgeted notebook widget and lazy tensors.

    Takes tqdm's parameters in tqdm's order, and three of its own, by keyword: ``widget`` (None:
    a widget in a notebook kernel, text elsewhere), ``timer`` (a clock for tests) and
    ``skip_warmup`` (rate and ETA from the recent pace, a slow start left out).
    """

    # defaults for a bar whose __init__ stopped early (tqdm's __del__ still closes it)
    status = "running"
    error: BaseException | None = None
    _widget = False
    _view: WidgetView | None = None
    _metrics: Metrics | None = None
    _pending: tuple[Any, dict[str, Any]] | None = None
    _postfix: Any = None
    _recent: Rate | None = None
    _closing = False
    _run: _runs.Run | None = None
    _postfix_numbers: dict[str, float] | None = None
    _drawn: dict[str, Any] = {}  # noqa: RUF012 - replaced, never changed: tqdm's figures at the last redraw
    _view_text = ""
    mininterval: float  # tqdm's, set by its __init__
    iterable: Any

    def __init__(
        self,
        iterable: Iterable[Any] | None = None,
        desc: Any = None,
        total: Any = None,
        leave: Any = True,
        *args: Any,
        widget: bool | None = None,
        timer: Any = None,
        skip_warmup: bool = False,
        **kwargs: Any,
    ) -> None:
        set_up_in_kernel()  # the tqdm drop-in uses no tl.* name: its first bar sets up the kernel
        # tl.progress(data, 100, "train") from before tqdm's order: a number is never a desc
        if _is_number(desc):
            desc, total = (total if isinstance(total, str) else None), desc
        if isinstance(leave, str):  # the old fourth positional parameter was unit
            kwargs["unit"], leave = leave, True
        self._widget = use_widgets() if widget is None else bool(widget)
        self._drawn_n: float = 0
        self._redrawn = False
        self._last_draw = float("-inf")
        if self._widget:
            kwargs["gui"] = True  # tqdm draws no text: the display is ours (as tqdm.notebook)
            if kwargs.get("disable") is None:
                kwargs["disable"] = False  # None is about text on a pipe; a widget shows
        if skip_warmup:
            self._recent = Rate()
        # tqdm_asyncio's __init__ calls iter() on a plain iterable at once, for ``async for``: a
        # DataLoader would start its workers there and again for the loop. It gets no iterable
        # (the total is taken from len() here, as tqdm would), and the iterator for ``async for``
        # is made when that asks for it (__getattr__)
        lazy = not (hasattr(iterable, "__anext__") or hasattr(iterable, "__aiter__"))
        if lazy and total is None and iterable is not None:
            try:
                total = len(iterable)  # type: ignore[arg-type]
            except (TypeError, AttributeError):
                total = None
        super().__init__(None if lazy else iterable, desc, total, leave, *args, **kwargs)
        self.iterable = iterable
        if self.disable:
            return
        if timer is not None:
            self._time = timer
            self.start_t = self.last_print_t = timer()
        if self._recent is not None:
            self._recent.reset(self.n, self.start_t)
        if self._widget:
            share = get_budget().register(self)  # this bar's share of the kernel's refreshes
            self.mininterval = min(max(self.mininterval, share), self.maxinterval or float("inf"))
            if self.delay <= 0:
                self._draw(force=True)

    # --- the loop -------------------------------------------------------------------------

    def __getattr__(self, name: str) -> Any:
        if name == "iterable_next" and self.__dict__.get("iterable") is not None:
            iterable = self.iterable  # a plain iterable under ``async for``: its iterator, now
            step = iterable.__next__ if hasattr(iterable, "__next__") else iter(iterable).__next__
            self.iterable_next = step
            return step
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def __iter__(self) -> Any:
        if self.disable:  # nothing counted or drawn: the iterable's own iterator, no generator
            return iter(self.iterable)
        return self._iterate(super().__iter__())

    @staticmethod
    def _iterate(steps: Iterator[Any]) -> Iterator[Any]:
        try:
            yield from steps
        except KeyboardInterrupt as exc:
            # CPython 3.11 gives the backward jump of tqdm's loop no line number; a Ctrl-C that
            # lands there breaks IPython's traceback formatting ("Unexpected exception
            # formatting exception"). The same interrupt, without line-less entries:
            raise exc.with_traceback(_numbered(exc.__traceback__)) from exc.__cause__

    def log(self, **metrics: Any) -> None:
        """Record metrics (numbers or tensors, not read here), shown smoothed after the postfix."""
        if self.disable:
            return
        if self._metrics is None:
            self._metrics = Metrics()
        self._metrics.log(metrics)

    @property
    def metrics(self) -> dict[str, float]:
        """Return the smoothed logged metrics as of the last redraw."""
        return dict(self._metrics.smoothed) if self._metrics is not None else {}

    # --- the postfix: references until shown ----------------------------------------------

    def set_postfix(
        self,
        ordered_dict: Mapping[str, Any] | Iterable[tuple[str, Any]] | None = None,
        refresh: bool | None = True,
        **kwargs: Any,
    ) -> None:
        """Show these values after the bar; tensors stay tensors until the next redraw."""
        self._pending = (ordered_dict and dict(ordered_dict), kwargs)
        # a widget shows it at the next budgeted redraw; a text bar redraws now as tqdm's does,
        # unless that would read a tensor (the loop then waits for nothing)
        if refresh and not self._widget and not self.disable:
            values = [*kwargs.values(), *(self._pending[0] or {}).values()]
            if not any(hasattr(v, "detach") for v in values):
                self.refresh()

    @property
    def postfix(self) -> Any:
        """Return the postfix text, as tqdm's (tensors given to set_postfix are read here)."""
        if self._pending is not None:
            self._format_pending()
        return self._postfix

    @postfix.setter
    def postfix(self, value: Any) -> None:
        self._pending = None
        self._postfix = value
        self._postfix_numbers = None

    def _format_pending(self) -> None:
        assert self._pending is not None
        ordered, kwargs = self._pending
        ordered = ordered or {}
        keys = [*ordered, *kwargs]
        values = tensors_to_numbers([*ordered.values(), *kwargs.values()])
        numbers = dict(zip(keys, values, strict=True))
        # tqdm's own formatting (format_num, its key order): numbers now, references dropped
        std_tqdm.set_postfix(
            self,
            {k: numbers[k] for k in ordered},
            refresh=False,
            **{k: numbers[k] for k in kwargs},
        )
        # the numbers as numbers, for the published run (read here, with the redraw's read)
        self._postfix_numbers = {k: float(v) for k, v in numbers.items() if _is_number(v)}

    @property
    def format_dict(self) -> dict[str, Any]:
        """Return tqdm's figures, the logged metrics joined to the postfix."""
        d = super().format_dict
        if self._metrics is not None and self._metrics.smoothed:
            logged = ", ".join(
                f"{k}={self.format_num(v)}" for k, v in self._metrics.smoothed.items()
            )
            d["postfix"] = f"{d['postfix']}, {logged}" if d.get("postfix") else logged
        if self._recent is not None and not self._closing:
            rate = self._recent.per_second()
            if rate:
                d["rate"] = rate
        return d

    # --- descriptions: shown for the step they were set in --------------------------------

    def set_description(self, desc: str | None = None, refresh: bool | None = True) -> None:
        """Set the description (``desc: ``); a widget shows it at once at the top of a step."""
        super().set_description(desc, refresh=bool(refresh) and not self._widget)
        if refresh and self._widget:
            self._show_description()

    def set_description_str(self, desc: str | None = None, refresh: bool | None = True) -> None:
        """Set the description as is; a widget shows it at once at the top of a step."""
        super().set_description_str(desc, refresh=bool(refresh) and not self._widget)
        if refresh and self._widget:
            self._show_description()

    def _show_description(self) -> None:
        """Redraw now when the count has not moved since the last redraw, else when budgeted.

        That is a description set at the top of a loop body (``for epoch in bar:
        bar.set_description(...)``): the bar was just redrawn for the new item, and with slow
        steps the next budgeted redraw would come a whole step late. Once per redraw.
        """
        if self.disable:
            return
        if self.n == self._drawn_n and not self._redrawn:
            self._redrawn = True
            self._draw(force=True)
        else:
            self.refresh()

    # --- drawing --------------------------------------------------------------------------

    def display(self, msg: str | None = None, pos: int | None = None) -> bool | None:
        """Draw the bar: tqdm's text line, or the widget (within the kernel's budget)."""
        if self._metrics is not None:
            self._metrics.flush()  # one read of the logged tensors per redraw
        if self._recent is not None:
            self._recent.mark(self.n, self._time())
        if not self._widget:
            return super().display(msg, pos)
        return self._draw()

    def _draw(self, force: bool = False) -> bool:
        now = self._time()
        # tqdm's update() refreshes at most every mininterval; other redraws asked for in
        # between (set_postfix_str, refresh, write) wait for the next one
        if not force and now - self._last_draw < 0.9 * self.mininterval:
            return False
        if force and self._metrics is not None:
            self._metrics.flush()
        self._last_draw = now
        self._drawn_n, self._redrawn = self.n, False
        html, text = self._record()
        if self._view is None:
            self._view = WidgetView(html, text)
            _cell.hook_shell()
        else:
            self._view.refresh(html, text)
        _cell.drawn.add(self)
        self._publish(text)
        return True

    def _publish(self, text: str, end: bool = False) -> None:
        """Hand the figures this redraw read to the server's record of the bar (:mod:`._runs`)."""
        metrics = {**(self._postfix_numbers or {}), **(self.metrics if self._metrics else {})}
        fields = _runs.meter_fields(self._drawn, str(self.desc or ""), metrics, text)
        leave = getattr(self, "_leave", True)
        status = self.status if end else None
        self._run = _runs.publish(self._run, fields, status, self.error, leave)

    def _end_run(self) -> None:
        """Publish how the bar ended (once: at close, or at the cell's end when that decides)."""
        if self._run is not None:
            self._publish(self._view_text, end=True)

    def _record(self) -> tuple[str, str]:
        """Return the bar as HTML and as text, both from tqdm's format_meter."""
        d = self._drawn = self.format_dict
        text = self.format_meter(**d)
        d["bar_format"] = (d["bar_format"] or "{l_bar}<bar/>{r_bar}").replace("{bar}", "<bar/>")
        meter = self.format_meter(**d)
        left, right = _BAR.split(meter, maxsplit=1) if "<bar/>" in meter else ("", meter)
        total = d["total"]
        fraction = None if not total else min(max(self.n / total, 0.0), 1.0)
        if self.status != "running":
            text = f"{text} {render.status_label(self.status, f'{self.n:g}')}"
        self._view_text = text
        has_bar = "<bar/>" in meter and (fraction is not None or self.status != "running")
        return record_html(left, right, fraction, self.status, self.n, bar=has_bar), text

    def clear(self, nolock: bool = False) -> None:
        """Take the bar off a terminal until its next redraw (a widget stays)."""
        if not self._widget:
            super().clear(nolock)

    def reset(self, total: float | None = None) -> None:
        """Count again from 0 (with a new ``total`` if given) in the same display."""
        self.status, self.error = "running", None
        if self._recent is not None and not self.disable:
            self._recent.reset(0, self._time())
        super().reset(total)

    # --- the end ----------------------------------------------------------------------------

    def close(self) -> None:
        """Finish the bar; how it ended (``status``) comes from the exception being handled."""
        if getattr(self, "disable", True):
            return
        exc = sys.exc_info()[1]
        frame = None
        ended_with = getattr(self, "_ended_with", None)
        if ended_with is not None:  # the cell ended with an exception and left the bar open
            self.status, self.error = ended_with
        elif exc is None or isinstance(exc, StopIteration | StopAsyncIteration):
            done = self.total is None or self.n >= self.total
            self.status = "done" if done else "stopped"
        elif isinstance(exc, GeneratorExit):
            # a ``break`` or an exception in the loop's body closed the iterator: corrected, for a
            # widget, when the cell ends with an exception that passed through that loop
            self.status, frame = "stopped", _loop_frame()
        else:
            self.error = exc
            self.status = "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"
        self._closing = True  # the final line shows the average rate, as tqdm's
        leave = abs(getattr(self, "pos", 0)) == 0 if self.leave is None else self.leave
        super().close()
        if not self._widget:
            return
        get_budget().release(self)
        view = self._view
        if view is None:
            return  # never shown (delay): nothing to leave
        if self._metrics is not None:
            self._metrics.flush()
        html, text = self._record()
        self._leave = leave
        view.finish(html, text, leave)
        if frame is not None:
            _cell.pending.append((self, frame))  # the cell's end decides, then publishes
        else:
            self._end_run()

    def _end_with_cell(self, status: str, error: BaseException) -> None:
        """Close a bar its cell's exception left open (a comprehension's: never closed)."""
        if not getattr(self, "disable", True):
            self._ended_with = (status, error)
            self.close()

    def _relabel(self, status: str, error: BaseException | None = None) -> None:
        """Correct the final status (the cell ended with an exception through the loop)."""
        self.status = status
        self.error = error
        if self._view is not None:
            html, text = self._record()
            self._view.relabel(html, text, getattr(self, "_leave", True))

    @classmethod
    def write(
        cls, s: str, file: IO[str] | None = None, end: str = "\n", nolock: bool = False
    ) -> None:
        """Print ``s`` above the running bars (tqdm.write; in a notebook above the cell's bars)."""
        to_cell = file is None or file is sys.stdout or file is sys.stderr
        if to_cell and _notes.write(f"{s}{end}"):
            return
        super().write(s, file, end, nolock)


#: ``tl.progress``: the bar class itself, like ``tqdm.tqdm``
progress = Progress


def trange(*args: int, **kwargs: Any) -> Progress:
    """Return ``progress(range(*args), **kwargs)``, like tqdm's ``trange``."""
    return Progress(range(*args), **kwargs)
