"""The admin page: a :class:`.view.HubView` as one HTML document (no script; it reloads itself)."""

from __future__ import annotations

import time
from collections.abc import Iterable
from datetime import datetime, timezone
from html import escape

from jupyter_torchlab._format import MISSING, format_bytes, format_duration, format_span

from .view import GpuRow, HubView, KernelRow, ServerRow

__all__ = ["render_page"]

_STYLE = """
body{font:14px system-ui,sans-serif;margin:1.5em;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em}
th,td{border-bottom:1px solid #ddd;padding:.3em .7em;text-align:left;vertical-align:top}
th{background:#f4f4f4} td.n{text-align:right;font-variant-numeric:tabular-nums}
tr.holder td{background:#fff3e0} .busy{color:#1565c0;font-weight:600}
.unreachable,.error{color:#b71c1c} .muted{color:#777}
"""


def render_page(view: HubView, *, refresh: float, user: str, now: float | None = None) -> str:
    """Return the page for ``view`` (it reloads every ``refresh`` seconds)."""
    now = time.time() if now is None else now
    when = MISSING
    if view.time is not None:  # the round's start, machine-readable: how fresh every row is
        stamp = datetime.fromtimestamp(view.time, timezone.utc).isoformat(timespec="milliseconds")
        when = f'<time id="collected" datetime="{stamp}">{format_span(now - view.time)} ago</time>'
    took = MISSING if view.round_seconds is None else f"{view.round_seconds * 1000:.0f} ms"
    error = f'<p class="error" id="error">{escape(view.error)}</p>' if view.error else ""
    holders = sum(k.idle_gpu_holder for k in view.kernels)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="refresh" content="{max(2, round(refresh))}">
<title>torchlab: kernels and GPUs on this hub</title><style>{_STYLE}</style></head>
<body>
<h1>Kernels and GPUs on this hub</h1>
<p class="muted">Signed in as {escape(user)}. Collected {when} (the round took {took}).
{holders} idle kernel(s) holding GPU memory.</p>
{error}
<h2>Kernels</h2>
{
        _table(
            "kernels",
            ["User", "Server", "Notebook", "State", "CPU", "Memory", "GPU memory", "GPUs"],
            (_kernel(k) for k in view.kernels),
            "no kernels running",
        )
    }
<h2>GPUs</h2>
{
        _table(
            "gpus",
            ["GPU", "Seen on", "Use", "Memory", "Temperature", "Held by"],
            (_gpu_cells(g) for g in view.gpus),
            "no GPUs reported",
        )
    }
<h2>Servers</h2>
{
        _table(
            "servers",
            ["User", "Server", "Status", "Kernels", "Hub last activity", "Asked in"],
            (_server_cells(s) for s in view.servers),
            "no user servers running",
        )
    }
</body></html>
"""


def _table(ident: str, heads: list[str], rows: Iterable[str], empty: str) -> str:
    body = "".join(rows) or f'<tr><td colspan="{len(heads)}" class="muted">{empty}</td></tr>'
    head = "".join(f"<th>{escape(h)}</th>" for h in heads)
    return f'<table id="{ident}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _kernel(k: KernelRow) -> str:
    state = k.state if k.state_seconds is None else f"{k.state} {format_duration(k.state_seconds)}"
    cpu = MISSING if k.cpu_percent is None else f"{k.cpu_percent:.0f}%"
    cls = ' class="holder"' if k.idle_gpu_holder else ""
    cells = [
        (k.user, ""),
        (k.server or "(default)", ""),
        (k.notebook or f"({k.name}, no notebook)", ""),
        (state, f' class="{escape(k.state)}"'),
        (cpu, ' class="n"'),
        (format_bytes(k.memory), ' class="n"'),
        (format_bytes(k.gpu_memory) if k.gpu_memory else "-", ' class="n"'),
        (", ".join(k.gpus) or "-", ""),
    ]
    tds = "".join(f"<td{attr}>{escape(text)}</td>" for text, attr in cells)
    return (
        f'<tr{cls} data-user="{escape(k.user)}" data-server="{escape(k.server)}" '
        f'data-state="{escape(k.state)}" data-kernel="{escape(k.kernel_id)}">{tds}</tr>'
    )


def _gpu_cells(g: GpuRow) -> str:
    use = MISSING if g.utilization is None else f"{g.utilization:.0f}%"
    mem = f"{format_bytes(g.memory_used)} / {format_bytes(g.memory_total)}"
    temp = MISSING if g.temperature is None else f"{g.temperature:.0f} °C"
    cells = [f"{g.index}: {g.name}", g.host_of, use, mem, temp, "; ".join(g.holders) or "-"]
    return (
        f'<tr data-uuid="{escape(g.uuid)}">'
        + "".join(f"<td>{escape(c)}</td>" for c in cells)
        + "</tr>"
    )


def _server_cells(s: ServerRow) -> str:
    status = s.status if not s.reason else f"{s.status}: {s.reason}"
    cells = [
        (s.user, ""),
        (s.server or "(default)", ""),
        (status, f' class="{escape(s.status)}"'),
        (str(s.kernels), ' class="n"'),
        (s.hub_last_activity or MISSING, ""),
        (f"{s.collect_seconds * 1000:.0f} ms", ' class="n"'),
    ]
    tds = "".join(f"<td{attr}>{escape(text)}</td>" for text, attr in cells)
    return (
        f'<tr data-user="{escape(s.user)}" data-server="{escape(s.server)}" '
        f'data-status="{escape(s.status)}">{tds}</tr>'
    )
