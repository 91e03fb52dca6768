"""What ``tl.progress`` learns when a notebook cell ends.

An iterated bar cannot tell a ``break`` from an exception in the loop's body: both close it. So
a bar closed that way first says "stopped", and when the cell then ends with an exception that
passed through the loop's frame it is corrected to "interrupted" or "failed"; only then is the
bar's end published to the server (:mod:`._runs`). The cell's end also ends what ``tqdm.write``
placed above its bars (:mod:`._notes`).
"""

from __future__ import annotations

import weakref
from types import FrameType
from typing import Any

from . import _notes
from ._frontend import register_hooks

__all__ = ["drawn", "hook_shell", "pending"]

# bars closed by a ``break``-like GeneratorExit in the current cell: if the cell then fails with
# an exception that passed through the loop's frame, it was no break (see ``_post_run_cell``)
# (held strongly until the cell ends: a bar iterated without a name is garbage once closed)
pending: list[tuple[Any, FrameType]] = []
# bars that drew in the current cell: one still open when the cell ends with an exception is
# ended with it (a bar iterated in a comprehension or a generator expression is never closed:
# the traceback IPython keeps holds its suspended generator)
drawn: weakref.WeakSet[Any] = weakref.WeakSet()


def _post_run_cell(result: Any) -> None:
    _notes.end_cell()
    error = getattr(result, "error_in_exec", None)
    closed = list(pending)
    pending.clear()
    still_open = [bar for bar in drawn if bar.status == "running"]
    drawn.clear()
    if error is not None:
        status = "interrupted" if isinstance(error, KeyboardInterrupt) else "failed"
        for bar in still_open:
            bar._end_with_cell(status, error)
        frames = set()
        tb = error.__traceback__
        while tb is not None:
            frames.add(id(tb.tb_frame))
            tb = tb.tb_next
        for bar, frame in closed:
            if id(frame) in frames:
                bar._relabel(status, error)
    for bar, _ in closed:
        bar._end_run()  # published once, as it ended for good


def hook_shell() -> None:
    """Register the cell-end hook with the running IPython shell, once."""
    register_hooks(("post_run_cell", _post_run_cell))
