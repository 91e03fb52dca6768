"""How a ``tl.progress`` bar shows in a notebook: one HTML widget, then a record that outlives it.

The text around the bar is tqdm's (``format_meter`` split at the bar, as ``tqdm.notebook`` does);
this module only lays it out as HTML. One widget (three comms with its layout and style) rather
than an IntProgress plus labels: a redraw is one comm message, and the live view and the record
look alike. Lines that ``write`` prints go above the cell's running bars (:mod:`._notes`).
"""

from __future__ import annotations

from typing import Any

from . import _notes, render
from ._frontend import close_tree, replace, show

__all__ = ["WidgetView", "record_html"]


def record_html(
    left: str, right: str, fraction: float | None, status: str, n: float, *, bar: bool = True
) -> str:
    """Return a bar as HTML: tqdm's text left and right of a CSS bar, and how it ended."""
    color = render.STATUS_COLORS.get(status, "#888")
    shown = render.bar_html(1.0 if fraction is None else fraction, color) if bar else ""
    end = ""
    if status != "running":
        label = render.status_label(status, f"{n:g}")
        end = f' <b style="color:{color}">{render.escape(label)}</b>'
    return (
        f'<div class="torchlab-progress" data-status="{render.escape(status)}" '
        f'style="font-family:monospace;font-size:90%;white-space:pre">'
        f"{render.escape(left)}{shown}{render.escape(right)}{end}</div>"
    )


class WidgetView:
    """One HTML widget drawing the bar, replaced by the same markup, static, at the end."""

    def __init__(self, html: str, text: str) -> None:
        import ipywidgets as w

        self._box = w.HTML(html)
        self._text = text
        self.handle: Any = show(self._box, text)
        _notes.add(self)

    def refresh(self, html: str, text: str) -> None:
        """Show the bar's new state (one comm message)."""
        self._text = text
        self._box.value = html

    def show_again(self) -> None:
        """Display the bar again at the bottom of the cell (``tqdm.write`` took its place)."""
        self.handle = show(self._box, self._text)

    def finish(self, html: str, text: str, leave: bool) -> None:
        """Leave the record (or nothing, ``leave=False``) in the widget's place and close it."""
        _notes.remove(self)
        self.relabel(html, text, leave)
        close_tree(self._box)

    def relabel(self, html: str, text: str, leave: bool) -> None:
        """Replace what the bar left with this final state."""
        if leave:
            replace(self.handle, html, text)
        else:
            self.handle.update({"text/plain": ""}, raw=True)
