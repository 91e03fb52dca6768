"""``tl.progress``: a drop-in for tqdm that never syncs the device and never floods the frontend.

``from jupyter_torchlab.tqdm import tqdm, trange`` replaces ``from tqdm.auto import tqdm, trange``
(``tl.progress`` is the same class). It takes tqdm's constructor parameters and offers its
methods; what it does differently is the reason to switch:

- Per iteration a bar does one integer add and one compare (see :mod:`._budget`).
  ``set_postfix(loss=loss)`` and ``log(loss=loss)`` store references: tensors stay tensors and
  become numbers only at a refresh, with one device sync (:mod:`._smoothing`). tqdm users write
  ``loss.item()``, which waits for the GPU every step.
- Refreshes of all displays of a kernel together are capped (:func:`set_refresh_rate`): a
  notebook gets a few messages a second, not one per step. ``set_description(refresh=True)``
  shows the new text at once when the count has not moved since the last redraw (a description
  set at the top of a slow loop's body), else at the next refresh; ``set_postfix`` values show at
  the next refresh (which comes as the loop moves on), so tensors are read once per refresh.
- The rate and ETA leave out a slow start (CUDA initialisation, ``torch.compile``, DataLoader
  workers starting): :mod:`jupyter_torchlab._rate`.

Honoured tqdm parameters: ``disable``, ``initial``, ``unit``, ``unit_scale``, ``unit_divisor``,
``postfix``, ``leave``, ``position`` (nested bars in text mode), ``mininterval``/``maxinterval``
(bounds on this bar's share of the refresh budget), ``delay``, ``bar_format`` (text mode), ``file``;
``disable=None`` disables text bars on a non-terminal, as tqdm does (a notebook's widget shows);
``total=float("inf")`` is an unknown total, as in tqdm.
Accepted and ignored (the drawing is ours): ``ncols``, ``nrows``, ``ascii``, ``dynamic_ncols``,
``colour``, ``smoothing``, ``miniters``, ``write_bytes``, ``lock_args``, ``gui``.

When a bar finishes, its widget is replaced in the notebook by a static HTML + text record of the
final state (so saved, reopened and exported notebooks show the result), and the widget is closed.
(Nearly 500 lines: tqdm's API is one class, and it stays in one place; the drawing is in
:mod:`._bar_views`, the smoothing in :mod:`._smoothing`.)
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from types import FrameType, TracebackType
from typing import IO, Any, Generic, TypeVar

from .._terminal import is_tty
from . import _cell, _notes
from ._bar_views import ENV_LOG_INTERVAL, BarState, TextBoard, TextView, View, WidgetView
from ._budget import Throttle, get_budget
from ._frontend import use_widgets
from ._smoothing import Metrics, postfix_text

__all__ = ["ENV_LOG_INTERVAL", "Progress", "progress", "trange"]

T = TypeVar("T")


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


class Progress(Generic[T]):
    """A progress bar: an iterator, a context manager, or driven by :meth:`update`, like tqdm."""

    def __init__(
        self,
        iterable: Iterable[T] | None = None,
        desc: str | None = None,
        total: float | None = None,
        leave: bool | None = True,
        file: IO[str] | None = None,
        ncols: int | None = None,
        mininterval: float = 0.1,
        maxinterval: float = 10.0,
        miniters: float | None = None,
        ascii: bool | str | None = None,
        disable: bool | None = False,
        unit: str = "it",
        unit_scale: bool | float = False,
        dynamic_ncols: bool = False,
        smoothing: float = 0.3,
        bar_format: str | None = None,
        initial: float = 0,
        position: int | None = None,
        postfix: Mapping[str, Any] | str | None = None,
        unit_divisor: int = 1000,
        write_bytes: bool = False,
        lock_args: Any = None,
        nrows: int | None = None,
        colour: str | None = None,
        delay: float = 0.0,
        gui: bool = False,
        *,
        widget: bool | None = None,
        timer: Callable[[], float] | None = None,
        log_interval: float | None = None,
    ):
        # tl.progress(data, 100, "train") from before the tqdm order: a number is never a desc
        if _is_number(desc):
            desc, total = (total if isinstance(total, str) else None), desc
        if isinstance(leave, str):  # the old fourth positional parameter was unit
            unit, leave = leave, True
        if total is None and iterable is not None:
            try:
                total = len(iterable)  # type: ignore[arg-type]
            except (TypeError, AttributeError):
                total = None
        if total == float("inf"):
            total = None  # tqdm: an infinite total is an unknown one
        if total is not None and total < 0:
            raise ValueError(f"total must be >= 0, got {total}")
        if not (isinstance(unit_divisor, int | float) and unit_divisor > 0):
            raise ValueError(f"unit_divisor must be a positive number, got {unit_divisor!r}")
        self._iterable = iterable
        self.total = total
        self.desc = desc
        self._desc_raw = False
        self.unit = unit
        self.unit_scale = unit_scale
        self.unit_divisor = int(unit_divisor)
        self.bar_format = bar_format
        self.position = position
        # tqdm: leave=None keeps only a top-level bar
        self.leave = (not position) if leave is None else bool(leave)
        self.initial = initial
        self.n = initial
        self.status = "running"
        self.error: BaseException | None = None
        self._use_widget = use_widgets() if widget is None else widget
        if disable is None:  # tqdm: off where text would go to a pipe or a log file
            disable = not self._use_widget and not is_tty(file if file is not None else sys.stderr)
        self.disable = bool(disable)
        self._finished = False
        if self.disable:
            return  # nothing is counted, drawn or timed
        self._metrics = Metrics()
        self._postfix: dict[str, Any] = {}
        self._postfix_str = ""
        budget = get_budget()
        self._timer = timer or budget.timer
        self._throttle: Throttle = budget.throttle(self._timer)
        self._throttle.min_interval = max(0.0, float(mininterval or 0.0))
        self._throttle.max_interval = float(maxinterval) if maxinterval else float("inf")
        self.start_t = self._timer()
        self._throttle.rate.reset(int(initial), self.start_t)
        self._final_rate: float | None = None
        self._delay = max(0.0, float(delay or 0.0))
        self._file = file
        self._log_interval = log_interval
        self._view: View | None = None
        self._drawn_n: float = initial  # the count at the last redraw
        self._redrawn = False  # a description was shown since, without the budget
        if isinstance(postfix, Mapping):
            self.set_postfix(postfix, refresh=False)
        elif postfix is not None:
            self._postfix_str = str(postfix)
        if not self._delay:
            self._show()

    def _show(self) -> None:
        state = self._state()
        if self._use_widget:
            self._view = WidgetView(state)
            _cell.hook_shell()
        else:
            self._view = TextView(state, self._file, self._log_interval, self.position)

    # --- counting (hot path) ---------------------------------------------------------------

    def __iter__(self) -> Iterator[T]:
        if self._iterable is None:
            raise TypeError(
                "this progress bar has no iterable: pass one (progress(data)) or call update(n)"
            )
        if self.disable:
            return iter(self._iterable)  # no counting at all: as fast as the bare loop
        return self._iterate(self._iterable)

    def _iterate(self, iterable: Iterable[T]) -> Iterator[T]:
        throttle = self._throttle
        try:
            for obj in iterable:
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
            # the cell by :mod:`._cell`); the caller's frame is the loop's frame
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
        return int(self.total)

    def __bool__(self) -> bool:
        # as tqdm: a bar is true when it has work ahead of it, not by its length alone (len()
        # of a generator's bar would raise)
        if self.total is not None:
            return self.total > 0
        if self._iterable is None:
            raise TypeError("bool() of a progress bar with neither an iterable nor a total")
        return bool(self._iterable)

    @property
    def iterable(self) -> Iterable[T] | None:
        """Return what the bar iterates over (None for a bar driven by :meth:`update`)."""
        return self._iterable

    def update(self, n: float = 1) -> bool | None:
        """Advance by ``n`` steps (refreshing when the budget allows)."""
        if self.disable:
            return None
        self.n += n
        if self.n >= self._throttle.next_check and self._throttle.due(self.n):
            self.refresh()
            return True
        return None

    def log(self, **metrics: Any) -> None:
        """Record metrics (numbers or tensors, never synced here), smoothed over each refresh."""
        if not self.disable:
            self._metrics.log(metrics)

    def set_postfix(
        self,
        ordered_dict: Mapping[str, Any] | Iterable[tuple[str, Any]] | None = None,
        refresh: bool = True,
        **kwargs: Any,
    ) -> None:
        """Show these values after the bar (tensors stay tensors until the next refresh)."""
        if self.disable:
            return
        if ordered_dict:
            kwargs = {**dict(ordered_dict), **kwargs}  # a mapping or (key, value) pairs, as tqdm
        # references only (no detach, no copy: this runs every step); a tensor's value is read at
        # the refresh, with the others at once, and the references are dropped then
        self._postfix = kwargs
        self._postfix_str = ""

    def set_postfix_str(self, s: str = "", refresh: bool = True) -> None:
        """Show ``s`` after the bar, as is."""
        if not self.disable:
            self._postfix = {}
            self._postfix_str = str(s)

    def set_description(self, desc: str | None = None, refresh: bool = True) -> None:
        """Set the description shown before the bar (followed by ``:``)."""
        self.desc = desc or None
        self._desc_raw = False
        if refresh:
            self._show_text_now()

    def set_description_str(self, desc: str | None = None, refresh: bool = True) -> None:
        """Set the text shown before the bar, as is."""
        self.desc = desc or None
        self._desc_raw = True
        if refresh:
            self._show_text_now()

    def _show_text_now(self) -> None:
        """Redraw a new description at once if the count has not moved since the last redraw.

        That is a description set at the top of a loop body (``for epoch in bar:
        bar.set_description(...)``): the bar was just redrawn for the new item, and with slow
        steps the next budgeted refresh would come a whole step late. At most once per budgeted
        refresh, and with the postfix as last shown (no tensor is read here).
        """
        if self.disable or self._finished or self._view is None:
            return
        if self.n == self._drawn_n and not self._redrawn:
            self._redrawn = True
            self._view.refresh(self._state())

    def reset(self, total: float | None = None) -> None:
        """Start counting again from 0 (with a new ``total`` if given), in the same display."""
        self.n = 0
        if total is not None:
            self.total = total
        if self.disable:
            return
        self.start_t = self._timer()
        self._throttle.rate.reset(0, self.start_t)
        self._final_rate = None
        self.status = "running"
        self.refresh()

    def clear(self, nolock: bool = False) -> None:
        """Take the bar off a terminal until its next refresh (a widget stays)."""
        if not self.disable and self._view is not None:
            self._view.clear()

    _lock: Any = None

    @classmethod
    def get_lock(cls) -> Any:
        """Return the lock that tqdm's helpers (``tqdm.contrib.concurrent``) hand to workers."""
        if cls._lock is None:
            cls._lock = threading.RLock()
        return cls._lock

    @classmethod
    def set_lock(cls, lock: Any) -> None:
        """Set the lock :meth:`get_lock` returns."""
        cls._lock = lock

    def display(self, msg: str | None = None, pos: int | None = None) -> None:
        """Redraw now, as tqdm's ``display`` (``msg`` and ``pos`` unused: the drawing is ours)."""
        self.refresh()

    @classmethod
    def write(
        cls, s: str, file: IO[str] | None = None, end: str = "\n", nolock: bool = False
    ) -> None:
        """Print ``s`` above the running bars without breaking them (tqdm.write).

        On a terminal the live text bars are taken off, the line printed, the bars drawn again
        below it. In a notebook cell with running widget bars, the line (for stdout or stderr)
        goes into a text output just above them (see :mod:`._notes`).
        """
        to_cell = file is None or file is sys.stdout or file is sys.stderr
        if to_cell and _notes.write(f"{s}{end}"):
            return
        stream = file if file is not None else sys.stdout
        # text bars draw on stderr by default: take them off the terminal around the line
        boards = {TextBoard.of(stream), TextBoard.of(sys.stderr)}
        live = [board for board in boards if board.tty and board.views]
        for board in live:
            board.clear()
        stream.write(f"{s}{end}")
        stream.flush()
        for board in live:
            board.draw()

    # --- display ---------------------------------------------------------------------------

    @property
    def metrics(self) -> dict[str, float]:
        """Return the smoothed logged metrics as of the last refresh."""
        return {} if self.disable else dict(self._metrics.smoothed)

    @property
    def postfix(self) -> str:
        """Return the postfix as shown at the last refresh."""
        return "" if self.disable else self._shown_postfix

    @property
    def elapsed(self) -> float:
        """Return seconds since the bar started."""
        return 0.0 if self.disable else self._timer() - self.start_t

    @property
    def format_dict(self) -> dict[str, Any]:
        """Return the bar's figures under tqdm's names (``n``, ``total``, ``rate``, ...)."""
        if self.disable:
            return {"n": self.n, "total": self.total, "elapsed": 0.0, "rate": None}
        return {
            "n": self.n,
            "total": self.total,
            "elapsed": self.elapsed,
            "ncols": None,
            "nrows": None,
            "prefix": self.desc or "",
            "ascii": False,
            "unit": self.unit,
            "unit_scale": self.unit_scale,
            "rate": self._rate,
            "bar_format": self.bar_format,
            "postfix": self._shown_postfix,
            "unit_divisor": self.unit_divisor,
            "initial": self.initial,
            "colour": None,
        }

    _shown_postfix = ""

    def _format_postfix(self) -> str:
        text, self._postfix = postfix_text(self._postfix, self._postfix_str, self._metrics.flush())
        return text

    def _state(self) -> BarState:
        now = self._timer()
        return BarState(
            n=self.n,
            total=self.total,
            elapsed=now - self.start_t,
            rate=self._rate,
            desc=self.desc,
            unit=self.unit,
            postfix=self._shown_postfix,
            status=self.status,
            now=now,
            unit_scale=self.unit_scale,
            unit_divisor=self.unit_divisor,
            desc_raw=self._desc_raw,
            bar_format=self.bar_format,
        )

    @property
    def _rate(self) -> float | None:
        if self._final_rate is not None:
            return self._final_rate
        return self._throttle.rate.per_second()

    def refresh(self, nolock: bool = False, lock_args: Any = None) -> None:
        """Redraw now (normally the refresh budget decides when)."""
        if self.disable or self._finished:
            return
        now = self._timer()
        self._throttle.rate.mark(int(self.n), now)
        if self._view is None:
            if now - self.start_t < self._delay:
                return
            self._show()
        self._shown_postfix = self._format_postfix()
        assert self._view is not None
        self._drawn_n, self._redrawn = self.n, False
        self._view.refresh(self._state())

    def _finish(
        self, status: str, error: BaseException | None = None, frame: FrameType | None = None
    ) -> None:
        if self.disable or self._finished:
            return
        self._finished = True
        self.status = status
        self.error = error
        self._throttle.release()
        elapsed = self._timer() - self.start_t
        counted = self.n - self.initial
        # a finished bar shows its average pace, like tqdm's final line
        self._final_rate = counted / elapsed if elapsed > 0 and counted else self._rate
        self._shown_postfix = self._format_postfix()
        if self._view is None:
            if elapsed < self._delay:
                return  # finished before it was due to appear: nothing to show, as tqdm
            self._show()
        assert self._view is not None
        self._view.finish(self._state(), self.leave)
        if frame is not None and isinstance(self._view, WidgetView):
            _cell.pending.append((self, frame))

    def _relabel(self, status: str) -> None:
        self.status = status
        if self._view is not None:
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
        if self.disable:
            return f"<Progress disabled n={self.n}>"
        return f"<Progress {self._state().line()}>"


#: ``tl.progress``: the bar class itself, like ``tqdm.tqdm``
progress = Progress


def trange(*args: int, **kwargs: Any) -> Progress[int]:
    """Return ``progress(range(*args), **kwargs)``, like tqdm's ``trange``."""
    return Progress(range(*args), **kwargs)
