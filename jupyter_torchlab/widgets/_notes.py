"""What ``tqdm.write`` prints in a notebook: one text output just above the cell's running bars.

A cell's output area only grows at the bottom and a bar stays where it was displayed, so a plain
``print`` lands below the bars. To print above them, the first line takes the place of the
topmost running bar (that display is updated to the text) and the running bars are displayed
again below it; later lines update that text in place, one message each, while the same bar is
the topmost. A block holds at most :data:`MAX_LINES` lines, so an update stays small; the line
after that starts a new block the same way. Everything is forgotten when the cell ends: a write
in a later cell goes to that cell's output as usual.
"""

from __future__ import annotations

from typing import Any, Protocol

__all__ = ["MAX_LINES", "add", "end_cell", "remove", "write"]

#: lines per text block; past it a new block starts (the message per line stays small)
MAX_LINES = 200


class Placed(Protocol):
    """A running widget bar: its display, and a way to display it again at the bottom."""

    handle: Any

    def show_again(self) -> None: ...


class _Block:
    def __init__(self, anchor: Placed) -> None:
        self.anchor = anchor
        self.handle = anchor.handle  # the topmost bar's place, taken over
        self.chunks: list[str] = []
        self.lines = 0

    def add(self, text: str) -> None:
        self.chunks.append(text)
        self.lines += text.count("\n") or 1
        shown = "".join(self.chunks)
        self.handle.update({"text/plain": shown[:-1] if shown.endswith("\n") else shown}, raw=True)


_live: list[Placed] = []  # this cell's running widget bars, in display order
_block: _Block | None = None


def add(view: Placed) -> None:
    """Count ``view`` among this cell's running bars (it was just displayed, at the bottom)."""
    _live.append(view)


def remove(view: Placed) -> None:
    """Stop counting ``view`` (it finished)."""
    if view in _live:
        _live.remove(view)


def write(text: str) -> bool:
    """Show ``text`` above this cell's running bars; return False when none is running."""
    global _block
    if not _live:
        return False
    block = _block
    if block is None or block.anchor is not _live[0] or block.lines >= MAX_LINES:
        block = _block = _Block(_live[0])
        for view in _live[1:]:
            view.handle.update({"text/plain": ""}, raw=True)  # leaves no trace in the notebook
        for view in _live:
            view.show_again()
    block.add(text)
    return True


def end_cell() -> None:
    """Forget the cell's bars and text (bars still running are no longer "above" anything)."""
    global _block
    _live.clear()
    _block = None
