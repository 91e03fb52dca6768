"""Which progress display ``fit(progress=True)`` uses: handed in, never registered by an import.

The display in use is the module default, which the kernel-side setup of the package root sets to
the notebook display (widgets in a kernel, text elsewhere), unless a temporary override is in
force: :func:`use_display` sets one for a stretch of work (``tl.launch``'s workers send events to
the notebook instead of drawing). Without either, fit prints text.

The override is a :class:`~contextvars.ContextVar`, so a nested ``use_display`` restores the outer
display when it ends, and threads or tasks that override theirs change no one else's. The default
is a plain module global: it does not depend on the kernel carrying a context across cells (which
ipykernel has not always done for cells that ``await``), and a thread started with a fresh context
sees it too.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from contextvars import ContextVar

from .callbacks import Callback

__all__ = [
    "PROGRESS_ENV",
    "DisplayFactory",
    "current_display",
    "resolve_progress",
    "set_default_display",
    "text_display",
    "use_display",
]

#: environment variable choosing the progress display: "text", "widget", or unset to detect
PROGRESS_ENV = "JUPYTER_TORCHLAB_PROGRESS"

DisplayFactory = Callable[[], Callback]


def text_display() -> Callback:
    """Return the plain-text display (terminals, logs, scripts)."""
    from .text import TextProgress

    return TextProgress()


_DISPLAY: ContextVar[DisplayFactory | None] = ContextVar("jupyter_torchlab_display", default=None)
_default: DisplayFactory | None = None


def current_display() -> DisplayFactory:
    """Return the factory of the display in use here (the text display when none was set)."""
    return _DISPLAY.get() or _default or text_display


def set_default_display(factory: DisplayFactory | None) -> None:
    """Make ``factory`` the display everywhere no override is in force (None: back to text)."""
    global _default
    _default = factory


@contextlib.contextmanager
def use_display(factory: DisplayFactory | None) -> Iterator[None]:
    """Use ``factory`` for ``fit(progress=True)`` inside the ``with`` block (None: text)."""
    token = _DISPLAY.set(factory)
    try:
        yield
    finally:
        _DISPLAY.reset(token)


def resolve_progress(progress: bool | Callback | DisplayFactory) -> Callback | None:
    """Turn fit's ``progress=`` argument into the callback to show, or None for no display.

    ``True``: the display in use (:func:`current_display`); ``False``: none; a
    :class:`Callback`: that one; a factory (a class or function returning a Callback): a new one.
    """
    if progress is True:
        return current_display()()
    if progress is False or progress is None:
        return None
    if isinstance(progress, Callback):
        return progress
    if callable(progress):
        made = progress()
        if isinstance(made, Callback):
            return made
        raise TypeError(
            f"progress={progress!r} returned {type(made).__name__}, not a Callback: pass a "
            "Callback, a function that returns one, or True/False"
        )
    raise TypeError(
        f"progress must be True, False, a Callback or a function returning one; got "
        f"{type(progress).__name__}"
    )
