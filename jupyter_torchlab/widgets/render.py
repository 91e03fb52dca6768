"""Pure rendering for the displays and the monitor: HTML, SVG (a bar's text line is tqdm's).

Nothing here imports ipywidgets, IPython or torch, and nothing reads a clock: every function maps
plain values to a string. Numbers, durations, rates and sizes come from
:mod:`jupyter_torchlab._format`, the one vocabulary every display shares.
"""

from __future__ import annotations

import html
import math
from collections.abc import Iterable, Sequence

__all__ = [
    "PRESSURE_COLORS",
    "STATUS_COLORS",
    "bar_html",
    "decimate",
    "escape",
    "html_table",
    "pressure",
    "sparkline_svg",
    "status_label",
]

#: colours of a finished or running display; "stopped" (a ``break``) is neutral, never red
STATUS_COLORS = {
    "running": "#2f7ed8",
    "done": "#3a9a4a",
    "stopped": "#8a8f98",
    "interrupted": "#d98a1c",
    "failed": "#c9302c",
    "out of memory": "#c9302c",
}


#: the share of a memory limit at which a display turns amber, then red
PRESSURE_WARN = 0.8
PRESSURE_DANGER = 0.95
PRESSURE_COLORS = {"warn": "#d98a1c", "danger": "#c9302c"}
PRESSURE_WORDS = {"warn": "close to the limit", "danger": "at the limit: the next step may fail"}


def pressure(used: float | None, limit: float | None) -> str:
    """Return "ok", "warn" (80% of the limit) or "danger" (95%) for a memory reading."""
    if used is None or not limit:
        return "ok"
    share = used / limit
    return "danger" if share >= PRESSURE_DANGER else "warn" if share >= PRESSURE_WARN else "ok"


def escape(value: object) -> str:
    """Return ``str(value)`` made safe for HTML text and attribute values."""
    return html.escape(str(value), quote=True)


def status_label(status: str, n_text: str) -> str:
    """Say how a bar ended: its status, with the count where it was interrupted."""
    return f"interrupted at {n_text}" if status == "interrupted" else status


def decimate(values: Sequence[float], max_points: int) -> list[float]:
    """Reduce ``values`` to at most ``max_points`` by averaging equal-width buckets.

    The first and last buckets keep the curve's ends; NaN and infinite values are dropped.
    """
    clean = [float(v) for v in values if v is not None and math.isfinite(v)]
    if max_points <= 0:
        return []
    if len(clean) <= max_points:
        return clean
    out = []
    step = len(clean) / max_points
    for i in range(max_points):
        lo = int(i * step)
        hi = max(int((i + 1) * step), lo + 1)
        bucket = clean[lo:hi]
        out.append(sum(bucket) / len(bucket))
    return out


def sparkline_svg(
    values: Sequence[float],
    *,
    width: int = 120,
    height: int = 24,
    max_points: int = 120,
    color: str = "#2f7ed8",
    lo: float | None = None,
    hi: float | None = None,
    title: str | None = None,
) -> str:
    """Return an inline SVG polyline of ``values`` (decimated to ``max_points``).

    ``lo``/``hi`` fix the vertical range (e.g. 0 and 100 for a percentage); otherwise the range of
    the data is used. An empty series draws an empty box of the same size, so layouts do not jump.
    """
    points = decimate(values, max_points)
    title_el = f"<title>{escape(title)}</title>" if title else ""
    head = (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{int(width)}" height="{int(height)}" '
        f'viewBox="0 0 {int(width)} {int(height)}" style="vertical-align:middle">{title_el}'
    )
    if not points:
        return head + "</svg>"
    low = min(points) if lo is None else lo
    high = max(points) if hi is None else hi
    span = high - low or 1.0
    pad = 1.0
    usable = height - 2 * pad
    if len(points) == 1:
        points = points * 2
    dx = (width - 1) / (len(points) - 1)
    coords = []
    for i, v in enumerate(points):
        y = pad + usable * (1 - (min(max(v, low), high) - low) / span)
        coords.append(f"{i * dx:.1f},{y:.1f}")
    return (
        head + f'<polyline fill="none" stroke="{escape(color)}" stroke-width="1.5" '
        f'points="{" ".join(coords)}"/></svg>'
    )


def bar_html(fraction: float | None, color: str, width: str = "12em") -> str:
    """Return a static CSS progress bar (used by the records that replace finished widgets)."""
    frac = 0.0 if fraction is None else min(max(fraction, 0.0), 1.0)
    return (
        f'<span style="display:inline-block;width:{escape(width)};height:0.8em;'
        f'background:#e3e5e8;border-radius:2px;vertical-align:middle;overflow:hidden">'
        f'<span style="display:block;height:100%;width:{frac * 100:.1f}%;'
        f'background:{escape(color)}"></span></span>'
    )


def html_table(
    headers: Sequence[str], rows: Iterable[Sequence[object]], *, raw_columns: Iterable[int] = ()
) -> str:
    """Return a compact HTML table; cells are escaped except those in ``raw_columns`` (SVG)."""
    raw = set(raw_columns)
    cell = "padding:1px 8px;text-align:right;font-variant-numeric:tabular-nums"
    out = ['<table style="border-collapse:collapse;font-size:90%">', "<thead><tr>"]
    out += [f'<th style="{cell}">{escape(h)}</th>' for h in headers]
    out.append("</tr></thead><tbody>")
    for row in rows:
        out.append("<tr>")
        for i, value in enumerate(row):
            text = str(value) if i in raw else escape(value)
            out.append(f'<td style="{cell}">{text}</td>')
        out.append("</tr>")
    out.append("</tbody></table>")
    return "".join(out)
