"""Below the traceback of an out-of-memory error: what holds the memory, and a Free memory button.

With ``jupyter_torchlab`` imported in a kernel, an IPython ``post_run_cell`` hook looks at the
cell's error. Only when torch is loaded and the error is an out-of-memory error does it build the
report (:mod:`jupyter_torchlab.train.oom`) and show it under IPython's own traceback: a widget
with a "Free memory" button where widgets can show, plain text elsewhere. A cell without an error
costs one attribute check.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from .._format import format_bytes
from .._runtime_files import read_kernels
from . import render
from ._frontend import close_tree, get_shell, register_hooks, replace, show, use_widgets

__all__ = ["install", "report_html"]


def install() -> bool:
    """Register the hook with the running IPython shell, once; return False without a shell."""
    return register_hooks(("post_run_cell", _post_run_cell))


def kernel_notebooks(connection_file: str | None = None) -> dict[int, str]:
    """Return the notebook (or kernel name) of each of the server's kernels, by pid."""
    return {
        pid: os.path.basename(kernel["path"]) if kernel["path"] else f"kernel {kernel['name']}"
        for pid, kernel in read_kernels(connection_file).items()
    }


def _post_run_cell(result: Any) -> None:
    error = getattr(result, "error_in_exec", None)
    if error is None or "torch" not in sys.modules:
        return
    from ..train.oom import build_report, is_out_of_memory

    if not is_out_of_memory(error):
        return
    shell = get_shell()
    namespace = getattr(shell, "user_ns", {}) if shell is not None else {}
    try:
        report = build_report(
            error, namespace, traceback=error.__traceback__, notebooks=kernel_notebooks()
        )
    except Exception as exc:  # noqa: BLE001 - the explanation must never add a second error
        print(f"(jupyter-torchlab could not explain this error: {exc})", file=sys.stderr)
        return
    if use_widgets():
        _show_widget(report, shell)
    else:
        print(report.text(), file=sys.stderr)


def report_html(report: Any, note: str = "") -> str:
    """Return the report as HTML (the widget's content and the record it leaves)."""
    e = render.escape
    figures = [
        ("asked for", report.requested),
        ("allocated", report.allocated),
        ("reserved", report.reserved),
        ("free", report.free),
        ("total", report.total),
    ]
    parts = [
        '<div class="torchlab-oom" style="border-left:3px solid #c9302c;padding:4px 8px">',
        f"<b>Out of memory on {e(report.device)}</b>: {e(report.message)}<br>",
        e(", ".join(f"{k} {format_bytes(v)}" for k, v in figures if v is not None)),
    ]
    if report.models:
        rows = [[h.name, h.kind, format_bytes(h.bytes)] for h in report.models]
        parts.append("<div><b>Held by models and optimizers</b></div>")
        parts.append(render.html_table(("name", "what", "memory"), rows))
    if report.tensors:
        rows = [
            [h.name, "" if h.shape is None else str(list(h.shape)), format_bytes(h.bytes)]
            for h in report.tensors
        ]
        parts.append("<div><b>Largest tensors on the device</b></div>")
        parts.append(render.html_table(("held by", "shape", "memory"), rows))
    if report.traceback_bytes:
        held = format_bytes(report.traceback_bytes)
        parts.append(f"<div>Held only by the saved traceback: <b>{e(held)}</b></div>")
    if report.processes:
        rows = [
            [str(pid), report.holder(pid, mine), format_bytes(used)]
            for pid, used, mine in report.processes
        ]
        parts.append("<div><b>Processes on this GPU</b></div>")
        parts.append(render.html_table(("pid", "who", "memory"), rows))
    if report.suggestions:
        items = "".join(f"<li>{e(s)}</li>" for s in report.suggestions)
        parts.append(f"<div><b>What to try</b></div><ul style='margin:2px 0'>{items}</ul>")
    if note:
        parts.append(f"<div><i>{e(note)}</i></div>")
    parts.append("</div>")
    return "".join(parts)


def _show_widget(report: Any, shell: Any) -> None:
    import ipywidgets as w

    html = report_html(report)
    body = w.HTML(html)
    button = w.Button(description="Free memory", button_style="danger")
    status = w.HTML("")
    box = w.VBox([body, w.HBox([button, status])])
    handle = show(box, report.text(), html)

    def free(_button: Any) -> None:
        from ..train.oom import free_memory

        freed = free_memory(shell)
        total = sum(v or 0 for v in freed.values())
        note = f"Free memory: {format_bytes(total)} given back" + (
            " (" + ", ".join(f"{d} {format_bytes(v)}" for d, v in freed.items()) + ")"
            if freed
            else ""
        )
        replace(handle, report_html(report, note), f"{report.text()}\n{note}")
        close_tree(box)

    button.on_click(free)
