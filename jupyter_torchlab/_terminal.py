"""Whether a stream is a terminal: a line redrawn in place there, whole lines in a pipe or a log.

The drawing itself is tqdm's (its ``status_printer``); this only decides, for fit's text display
and the command line.
"""

from __future__ import annotations

__all__ = ["is_tty"]


def is_tty(stream: object) -> bool:
    """Return True when ``stream`` is an open terminal (False for pipes, files, closed streams)."""
    isatty = getattr(stream, "isatty", None)
    if isatty is None:
        return False
    try:
        return bool(isatty())
    except ValueError:  # a closed stream
        return False
