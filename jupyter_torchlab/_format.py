"""One vocabulary for what a user reads: durations, rates, sizes, counts, percentages, metrics.

Every display (the widgets, the text output, the command line) formats through these functions,
and labextension/src/format.ts follows the same rules (a table of cases, labextension/test/
format-cases.json, is checked against both), so one elapsed time or one size reads the same
everywhere. A running clock reads like a stopwatch (:func:`format_duration`, "3:05"); a span in
a sentence reads in words (:func:`format_span`, "idle for 3 min 05 s"). Pure functions of plain
values: no imports beyond the standard library, no clock.
"""

from __future__ import annotations

import math

__all__ = [
    "MISSING",
    "format_bytes",
    "format_change",
    "format_count",
    "format_duration",
    "format_elapsed",
    "format_eta",
    "format_metrics",
    "format_number",
    "format_percent",
    "format_rate",
    "format_span",
    "quote",
]

#: what a number that is not known reads as (the text displays; the lab panel shows a dash)
MISSING = "n/a"

_BYTE_UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")
_SI_PREFIXES = ("", "k", "M", "G", "T", "P", "E", "Z", "Y")


def _known(value: float | None) -> bool:
    return value is not None and isinstance(value, int | float) and math.isfinite(value)


def format_duration(seconds: float | None) -> str:
    """Format seconds like a stopwatch: ``5 -> "0:05"``, ``6160 -> "1:42:40"``, None -> ``"?"``.

    Whole seconds, rounded down: a stopwatch never shows a second that has not passed.
    """
    if not _known(seconds) or seconds < 0:  # type: ignore[operator]
        return "?"
    total = int(seconds)  # type: ignore[arg-type]
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours:d}:{minutes:02d}:{secs:02d}"
    return f"{minutes:d}:{secs:02d}"


def format_span(seconds: float) -> str:
    """Format a span of time for a sentence: ``45 -> "45 s"``, ``185 -> "3 min 05 s"``, 1 h 12 min.

    Rounded to the nearest second (half up, as the lab extension's ``formatSpan``).
    """
    total = max(0, math.floor(seconds + 0.5)) if _known(seconds) else 0
    if total < 60:
        return f"{total} s"
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes:02d} min"
    return f"{minutes} min {secs:02d} s"


def format_eta(seconds: float | None) -> str:
    """Format the time left of a run for a glance: ``45 -> "45 s"``, ``719 -> "12 min"``.

    Whole minutes from a minute on (an estimate has no seconds to offer); None -> ``"?"``. The
    lab extension's status bar and run list read ``formatEta``, the same rule.
    """
    if not _known(seconds) or seconds < 0:  # type: ignore[operator]
        return "?"
    total = math.floor(seconds + 0.5)  # type: ignore[operator]
    if total < 60:
        return f"{total} s"
    minutes = math.floor(total / 60 + 0.5)
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def format_bytes(n: float | None) -> str:
    """Format a byte count in binary units: ``1536 -> "1.5 KiB"``, ``16 GiB -> "16 GiB"``.

    One decimal while it carries information (below 10 of a unit), none above; None -> "n/a".
    """
    if not _known(n):
        return MISSING
    value = float(n)  # type: ignore[arg-type]
    unit = 0
    while abs(value) >= 1024 and unit < len(_BYTE_UNITS) - 1:
        value /= 1024
        unit += 1
    if unit == 0:
        return f"{int(value)} B"
    text = f"{value:.1f}" if abs(value) < 9.95 else f"{value:.0f}"
    return f"{text} {_BYTE_UNITS[unit]}"


def format_elapsed(seconds: float) -> str:
    """Format how long something took, to the precision that matters: a cell's time.

    ``0.004 -> "4 ms"``, ``2.03 -> "2.0 s"``, ``45 -> "45 s"``, and from a minute on as
    :func:`format_span` (``133 -> "2 min 13 s"``).
    """
    value = max(0.0, float(seconds)) if _known(seconds) else 0.0
    ms = math.floor(value * 1000 + 0.5)
    if ms < 1000:
        return f"{ms} ms"
    tenths = math.floor(value * 10 + 0.5)
    if tenths < 100:
        return f"{tenths // 10}.{tenths % 10} s"
    if value < 59.5:
        return f"{math.floor(value + 0.5)} s"
    return format_span(value)


def format_change(n: float | None) -> str:
    """Format a change of size with its sign: ``1.2 GiB more -> "+1.2 GiB"``, ``"-12 MiB"``."""
    if not _known(n):
        return MISSING
    return ("-" if n < 0 else "+") + format_bytes(abs(n))  # type: ignore[arg-type,operator]


def format_count(
    n: float, *, scale: bool = False, divisor: int = 1000, separators: bool = True
) -> str:
    """Format a count: ``12345 -> "12,345"``; with ``scale``, SI-style ``"12.3k"``.

    ``divisor`` is the step between prefixes (1000, or 1024 for bytes-like units);
    ``separators=False`` gives plain digits (``"12345"``, ``"2.5"``), as progress bars print counts.
    """
    if not _known(n):
        return "?"
    if not scale:
        if not separators:
            return str(int(n)) if float(n).is_integer() else f"{n:g}"
        if float(n).is_integer():
            return f"{int(n):,}"
        return f"{n:,.2f}"
    value = float(n)
    for prefix in _SI_PREFIXES:
        if abs(value) < 999.5 or prefix == _SI_PREFIXES[-1]:
            if not prefix:
                return f"{value:.0f}" if value.is_integer() else f"{value:.2f}"
            # three significant digits, as tqdm's unit_scale shows them
            if abs(value) < 9.995:
                return f"{value:.2f}{prefix}"
            if abs(value) < 99.95:
                return f"{value:.1f}{prefix}"
            return f"{value:.0f}{prefix}"
        value /= divisor
    raise AssertionError("unreachable")


def format_rate(
    per_second: float | None, unit: str = "it", *, scale: bool = True, divisor: int = 1000
) -> str:
    """Format a rate: ``12.345 -> "12.35it/s"``, ``2500, "img" -> "2.50kimg/s"``.

    Slower than one per second it flips to seconds per unit (``0.25 -> "4.00s/it"``); unknown or
    zero reads ``"?it/s"``. ``scale=False`` keeps the plain number (``"2500.00img/s"``).
    """
    if not _known(per_second) or per_second <= 0:  # type: ignore[operator]
        return f"?{unit}/s"
    value = float(per_second)  # type: ignore[arg-type]
    if value < 1:
        return f"{1 / value:.2f}s/{unit}"
    if not scale:
        return f"{value:.2f}{unit}/s"
    prefix = ""
    for prefix in _SI_PREFIXES:
        if value < 999.995 or prefix == _SI_PREFIXES[-1]:
            break
        value /= divisor
    return f"{value:.2f}{prefix}{unit}/s"


def format_percent(fraction: float | None, digits: int = 0) -> str:
    """Format a fraction 0..1 as a percentage: ``0.4567 -> "46%"``; None -> ``"n/a"``."""
    if not _known(fraction):
        return MISSING
    return f"{fraction * 100:.{digits}f}%"  # type: ignore[operator]


def format_number(value: float | None) -> str:
    """Format a metric compactly: 4 significant digits, scientific when tiny or huge."""
    if value is None:
        return MISSING
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


def format_metrics(metrics: dict[str, float], sep: str = ", ") -> str:
    """Format ``{"loss": 0.5}`` as ``"loss=0.5"``, in insertion order."""
    return sep.join(f"{k}={format_number(v)}" for k, v in metrics.items())


#: the most characters of what a user sent that an error message (and so a log) repeats
QUOTE_LIMIT = 200


def quote(value: object, limit: int = QUOTE_LIMIT) -> str:
    """Return ``repr(value)``, cut to about ``limit`` characters with the full length said."""
    text = repr(value)
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text):,} characters)"
