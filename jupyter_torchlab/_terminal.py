r"""Text output that behaves on a terminal and in a log: a line rewritten in place, or plain lines.

On a terminal a progress line is redrawn with ``\r`` (padded over the previous, longer one); on a
pipe or a log file each line is written whole, with no control characters, so logs read cleanly.
Shared by fit's text display, ``tl.progress`` in text mode and the command line.
"""

from __future__ import annotations

from typing import IO

__all__ = ["LineWriter", "is_tty"]


def is_tty(stream: object) -> bool:
    """Return True when ``stream`` is an open terminal (False for pipes, files, closed streams)."""
    isatty = getattr(stream, "isatty", None)
    if isatty is None:
        return False
    try:
        return bool(isatty())
    except ValueError:  # a closed stream
        return False


class LineWriter:
    r"""Write one live line that is redrawn in place on a terminal, and finished lines.

    ``dynamic=None`` decides from the stream (a terminal redraws; anything else gets whole lines).
    """

    def __init__(self, stream: IO[str], *, dynamic: bool | None = None) -> None:
        self.stream = stream
        self.dynamic = is_tty(stream) if dynamic is None else dynamic
        self._width = 0  # characters of the live line on screen, to pad over

    def live(self, text: str) -> None:
        """Show ``text`` as the live line (redrawn in place on a terminal, else a whole line)."""
        if self.dynamic:
            self._redraw(text, "")
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def finish(self, text: str) -> None:
        """Write ``text`` as a finished line (it replaces the live line on a terminal)."""
        if self.dynamic:
            self._redraw(text, "\n")
            self._width = 0
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def clear(self) -> None:
        """Remove the live line from a terminal (nothing to take back in a log)."""
        if self.dynamic and self._width:
            self._redraw("", "\r")
            self._width = 0
            self.stream.flush()

    def above(self, text: str, redraw: str | None = None) -> None:
        """Print ``text`` above the live line, then draw ``redraw`` as the live line again."""
        if self.dynamic and self._width:
            self._redraw("", "\r")
            self._width = 0
        self.stream.write(text if text.endswith("\n") else text + "\n")
        if redraw is not None and self.dynamic:
            self._redraw(redraw, "")
        self.stream.flush()

    @property
    def has_live_line(self) -> bool:
        """Return True while a live line is on a terminal's screen."""
        return self.dynamic and self._width > 0

    def _redraw(self, text: str, end: str) -> None:
        pad = " " * max(0, self._width - len(text))
        self.stream.write("\r" + text + pad + end)
        self._width = len(text)
