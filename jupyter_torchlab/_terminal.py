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
    r"""Write live lines that are redrawn in place on a terminal, and finished lines.

    One live line is redrawn with ``\r`` and padding (no escape sequences); several (nested
    progress bars) are erased and redrawn with ANSI cursor movement. ``dynamic=None`` decides
    from the stream: a terminal redraws, anything else gets whole lines and no control characters.
    """

    def __init__(self, stream: IO[str], *, dynamic: bool | None = None) -> None:
        self.stream = stream
        self.dynamic = is_tty(stream) if dynamic is None else dynamic
        self._width = 0  # characters of a single live line on screen, to pad over
        self._drawn = 0  # live lines on screen; the cursor is at the start of the first

    def live(self, text: str) -> None:
        """Show ``text`` as the live line (redrawn in place on a terminal, else a whole line)."""
        if self.dynamic:
            self.show([text])
        else:
            self.stream.write(text + "\n")
            self.stream.flush()

    def show(self, lines: list[str]) -> None:
        """Draw ``lines`` as the live block, in place of the one on screen (terminals only)."""
        if not self.dynamic or (not lines and not self._drawn):
            return
        if len(lines) <= 1 and self._drawn <= 1:
            text = lines[0] if lines else ""
            self._redraw(text, "")
            self._drawn = 1 if text else 0
        else:
            self._erase()
            self.stream.write("\n".join(lines))
            if len(lines) > 1:
                self.stream.write(f"\x1b[{len(lines) - 1}A")
            self.stream.write("\r")
            self._drawn = len(lines)
        self.stream.flush()

    def finish(self, text: str) -> None:
        """Write ``text`` as a finished line (it replaces the live line on a terminal)."""
        if self.dynamic and self._drawn <= 1:
            self._redraw(text, "\n")
            self._width = self._drawn = 0
        else:
            self._erase()
            self.stream.write(text + "\n")
        self.stream.flush()

    def clear(self) -> None:
        """Remove the live lines from a terminal (nothing to take back in a log)."""
        if self.dynamic and self._drawn:
            self._erase()
            self.stream.flush()

    def above(self, text: str, redraw: str | None = None) -> None:
        """Print ``text`` above the live line, then draw ``redraw`` as the live line again."""
        if self.dynamic:
            self._erase()
        self.stream.write(text if text.endswith("\n") else text + "\n")
        if redraw is not None and self.dynamic:
            self._redraw(redraw, "")
            self._drawn = 1 if redraw else 0
        self.stream.flush()

    @property
    def has_live_line(self) -> bool:
        """Return True while a live line is on a terminal's screen."""
        return self.dynamic and self._drawn > 0

    def _erase(self) -> None:
        if self._drawn == 1:
            self.stream.write("\r" + " " * self._width + "\r")
        elif self._drawn > 1:
            self.stream.write("\r" + "\x1b[2K\n" * (self._drawn - 1) + "\x1b[2K")
            self.stream.write(f"\x1b[{self._drawn - 1}A\r")
        self._drawn = self._width = 0

    def _redraw(self, text: str, end: str) -> None:
        pad = " " * max(0, self._width - len(text))
        self.stream.write("\r" + text + pad + end)
        self._width = len(text)
