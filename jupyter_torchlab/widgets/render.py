"""Pure formatting for the progress displays and the monitor: numbers, durations, SVG, HTML.

Nothing here imports ipywidgets, IPython or torch, and nothing reads a clock: every function maps
plain values to a string, so the text and widget displays share one tested vocabulary.
"""

from __future__ import annotations

import html
import math
from collections.abc import Iterable, Sequence

__all__ = [
    "STATUS_COLORS",
    "bar_html",
    "decimate",
    "escape",
    "format_bytes",
    "format_interval",
    "format_metrics",
    "format_number",
    "format_percent",
    "format_rate",
    "html_table",
    "progress_line",
    "sparkline_svg",
]

#: colours of a finished or running display; "stopped" (a ``break``) is neutral, never red
STATUS_COLORS = {
    "running": "#2f7ed8",
    "done": "#3a9a4a",
    "stopped": "#8a8f98",
    "interrupted": "#d98a1c",
    "failed": "#c9302c",
}


def escape(value: object) -> str:
    """Return ``str(value)`` made safe for HTML text and attribute values."""
    return html.escape(str(value), quote=True)


def format_interval(seconds: float | None) -> str:
    """Format a duration like tqdm: ``65 -> "01:05"``, ``6160 -> "1:42:40"``, None -> ``"?"``."""
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        return "?"
    total = int(seconds)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours:d}:{minutes:02d}:{secs:02d}"
    return f"{minutes:02d}:{secs:02d}"


def format_bytes(n: float | None) -> str:
    """Format a byte count with binary units: ``1536 -> "1.5 KiB"``, None -> ``"n/a"``."""
    if n is None:
        return "n/a"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            if unit == "B":
                return f"{int(value)} B"
            return f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def format_number(value: float | None) -> str:
    """Format a metric compactly: 4 significant digits, scientific when tiny or huge."""
    if value is None:
        return "n/a"
    if isinstance(value, bool) or (isinstance(value, int) and abs(value) < 10**6):
        return str(int(value))
    v = float(value)
    if not math.isfinite(v):
        return str(v)
    if v == 0:
        return "0"
    if 1e-3 <= abs(v) < 1e5:
        return f"{v:.4g}"
    return f"{v:.3e}"


def format_rate(per_second: float | None, unit: str = "it") -> str:
    """Format a rate, switching to seconds per unit when slower than one a second."""
    if per_second is None or not math.isfinite(per_second) or per_second <= 0:
        return f"?{unit}/s"
    if per_second >= 1:
        if per_second >= 1e6:
            return f"{per_second / 1e6:.2f}M{unit}/s"
        if per_second >= 1e3:
            return f"{per_second / 1e3:.2f}k{unit}/s"
        return f"{per_second:.2f}{unit}/s"
    return f"{1 / per_second:.2f}s/{unit}"


def format_percent(fraction: float | None, digits: int = 0) -> str:
    """Format a fraction 0..1 as a percentage: ``0.4567 -> "46%"``; None -> ``"n/a"``."""
    if fraction is None or not math.isfinite(fraction):
        return "n/a"
    return f"{fraction * 100:.{digits}f}%"


def format_metrics(metrics: dict[str, float]) -> str:
    """Format ``{"loss": 0.5}`` as ``"loss=0.5"``, in insertion order."""
    return ", ".join(f"{k}={format_number(v)}" for k, v in metrics.items())


def progress_line(
    *,
    n: int,
    total: int | None,
    elapsed: float,
    rate: float | None,
    desc: str | None = None,
    unit: str = "it",
    metrics: dict[str, float] | None = None,
    status: str = "running",
    width: int = 20,
) -> str:
    """Return one plain-ASCII progress line (no control characters), like tqdm's."""
    parts = []
    if desc:
        parts.append(f"{desc}:")
    if total:
        frac = min(max(n / total, 0.0), 1.0)
        filled = int(frac * width)
        pct = f"{int(frac * 100)}%"  # floor, like tqdm: 100% only when done
        parts.append(f"{pct:>4} |{'#' * filled}{'.' * (width - filled)}|")
        parts.append(f"{n}/{total}")
        remaining = (total - n) / rate if rate and n <= total and status == "running" else None
        eta = f"<{format_interval(remaining)}" if status == "running" else ""
        parts.append(f"[{format_interval(elapsed)}{eta}, {format_rate(rate, unit)}]")
    else:
        parts.append(f"{n}{unit}")
        parts.append(f"[{format_interval(elapsed)}, {format_rate(rate, unit)}]")
    if metrics:
        parts.append(format_metrics(metrics))
    if status != "running":
        parts.append(status if status != "interrupted" else f"interrupted at {n}")
    return " ".join(parts)


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
