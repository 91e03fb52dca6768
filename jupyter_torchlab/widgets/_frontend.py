"""Decide whether a widget can show here, and publish displays that survive the kernel.

Like ``tqdm.autonotebook``: widgets only in an IPython *kernel* (a frontend renders them) with
ipywidgets importable; everywhere else (a script, a terminal IPython, a pipe) the text display.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from typing import Any

from ..train.display import PROGRESS_ENV

__all__ = ["ENV_MODE", "get_shell", "in_kernel", "use_widgets"]

#: "text" forces the text display (e.g. headless runs), "widget" forces widgets, unset = detect
ENV_MODE = PROGRESS_ENV


def get_shell() -> Any | None:
    """Return the running IPython shell, or None (without importing IPython)."""
    if "IPython" not in sys.modules:
        return None
    from IPython import get_ipython

    return get_ipython()


# (event, callback) pairs registered with the shell by register_hooks
_registered: set[tuple[str, Any]] = set()


def register_hooks(*hooks: tuple[str, Any]) -> bool:
    """Register ``(event, callback)`` pairs with the running IPython shell, each once.

    Return False without a shell (a script, a terminal): nothing is registered then.
    """
    shell = get_shell()
    if shell is None:
        return False
    for hook in hooks:
        if hook not in _registered:
            shell.events.register(*hook)
            _registered.add(hook)
    return True


def in_kernel() -> bool:
    """Return True inside an IPython kernel (Jupyter, nbclient), False in a terminal or script."""
    shell = get_shell()
    if shell is None:
        return False
    config = getattr(shell, "config", None) or {}
    return "IPKernelApp" in config or type(shell).__name__ == "ZMQInteractiveShell"


def use_widgets() -> bool:
    """Return True when a progress display should be an ipywidget rather than text."""
    mode = os.environ.get(ENV_MODE, "").strip().lower()
    if mode == "text":
        return False
    available = importlib.util.find_spec("ipywidgets") is not None
    if mode == "widget":
        return available
    return available and in_kernel()


def show(widget: Any, text: str, html: str | None = None) -> Any:
    """Display ``widget`` with ``text`` (and ``html``) as fallbacks; return the display handle.

    A frontend that renders widgets shows the widget; one that does not (a notebook saved without
    widget state, nbconvert, a plain terminal client) shows the HTML or the text.
    """
    from IPython.display import display

    bundle = dict(widget._repr_mimebundle_())
    bundle["text/plain"] = text
    if html is not None:
        bundle["text/html"] = html
    return display(bundle, raw=True, display_id=True)


def replace(handle: Any, html: str, text: str) -> None:
    """Replace a displayed widget by a static record that outlives the kernel."""
    handle.update({"text/html": html, "text/plain": text}, raw=True)


def close_tree(widget: Any) -> None:
    """Close ``widget``, its children, and their Layout and Style models (no comm left open)."""
    seen: set[int] = set()

    def walk(w: Any) -> None:
        if id(w) in seen or w is None:
            return
        seen.add(id(w))
        for child in getattr(w, "children", ()) or ():
            walk(child)
        for name in ("layout", "style"):
            sub = getattr(w, name, None)
            if sub is not None and hasattr(sub, "close"):
                walk(sub)
        w.close()

    walk(widget)
