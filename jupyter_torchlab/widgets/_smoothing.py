"""Logged values and loss curves kept in O(1) per step, and turned into numbers only at a refresh.

:class:`Metrics` holds what ``log``/``set_postfix`` receive: references only (tensors stay
tensors). Between two refreshes it keeps at most :data:`WINDOW_SAMPLES` values per metric, taken
at a stride that adapts to the log rate, so memory and refresh cost stay bounded; a refresh
converts them with one ``.tolist()`` (one device sync), averages them, and keeps an exponential
moving average of those window means (:data:`SMOOTHING` = weight of the newest window).
:class:`Series` bounds a sparkline's points however long a run is. (tqdm smooths the rate and
the ETA; this is about the values a loop logs, which tqdm would read at every step.)
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "SMOOTHING",
    "SPARK_POINTS",
    "WINDOW_SAMPLES",
    "Metrics",
    "Series",
    "tensors_to_numbers",
    "to_floats",
]

WINDOW_SAMPLES = 16
SMOOTHING = 0.3
SPARK_POINTS = 120


def _detach(value: Any) -> Any:
    detach = getattr(value, "detach", None)
    return detach() if detach is not None else value


def to_floats(values: list[Any]) -> list[float]:
    """Convert numbers and tensors to floats with at most one device sync."""
    tensors = [v for v in values if hasattr(v, "detach")]
    if not tensors:
        return [float(v) for v in values]
    import torch

    flat = torch.stack([t.detach().float().mean() for t in tensors]).tolist()
    it = iter(flat)
    return [next(it) if hasattr(v, "detach") else float(v) for v in values]


def tensors_to_numbers(values: list[Any]) -> list[Any]:
    """Replace the tensors among ``values`` by floats (one device sync for all); keep the rest."""
    if not any(hasattr(v, "detach") for v in values):
        return values
    floats = iter(to_floats([v for v in values if hasattr(v, "detach")]))
    return [next(floats) if hasattr(v, "detach") else v for v in values]


class Metrics:
    """Logged values: O(1) per log, converted and smoothed only at a refresh."""

    __slots__ = (
        "_flushed_at",
        "_next_sample",
        "_sampled_at",
        "_stride",
        "_window",
        "latest",
        "logs",
        "smoothed",
        "window_means",
    )

    def __init__(self) -> None:
        self.latest: dict[str, Any] = {}
        self.smoothed: dict[str, float] = {}
        #: mean of the values logged during the last refresh window (unsmoothed)
        self.window_means: dict[str, float] = {}
        self._window: dict[str, list[Any]] = {}
        self.logs = 0
        self._stride = 1
        self._next_sample = 1
        self._sampled_at = 0
        self._flushed_at = 0

    def log(self, metrics: dict[str, Any]) -> None:
        """Record the newest values (references only)."""
        self.latest.update(metrics)
        self.logs += 1
        if self.logs >= self._next_sample:
            self._sample()

    def _sample(self) -> None:
        for key, value in self.latest.items():
            values = self._window.setdefault(key, [])
            values.append(_detach(value))
            if len(values) >= 2 * WINDOW_SAMPLES:
                # many logs before the first refresh: keep every other value, sample half as often
                del values[::2]
                self._stride *= 2
        self._sampled_at = self.logs
        self._next_sample = self.logs + self._stride

    def flush(self) -> dict[str, float]:
        """Average the window, update the moving averages, and return them."""
        if not self.latest:
            return self.smoothed
        if self.logs > self._sampled_at:
            self._sample()  # the newest value always counts
        for key, values in self._window.items():
            if not values:
                continue
            floats = to_floats(values)
            mean = sum(floats) / len(floats)
            self.window_means[key] = mean
            old = self.smoothed.get(key)
            self.smoothed[key] = mean if old is None else SMOOTHING * mean + (1 - SMOOTHING) * old
            values.clear()
        # drop references so an autograd graph held by the last logged loss can be freed
        self.latest = {k: self.smoothed.get(k) for k in self.latest}
        per_window = self.logs - self._flushed_at
        self._flushed_at = self.logs
        self._stride = max(1, per_window // WINDOW_SAMPLES)
        self._next_sample = self.logs + self._stride
        return self.smoothed


class Series:
    """A bounded series for a sparkline: at most ``2 * max_points`` equal-size bucket means."""

    def __init__(self, max_points: int = SPARK_POINTS):
        self.max_points = max_points
        self.points: list[float] = []
        self.bucket = 1
        self._acc = 0.0
        self._k = 0

    def add(self, value: float) -> None:
        """Append one value (O(1) amortised)."""
        self._acc += value
        self._k += 1
        if self._k >= self.bucket:
            self.points.append(self._acc / self._k)
            self._acc, self._k = 0.0, 0
            if len(self.points) >= 2 * self.max_points:
                p = self.points
                self.points = [(p[i] + p[i + 1]) / 2 for i in range(0, len(p) - 1, 2)]
                self.bucket *= 2

    def values(self) -> list[float]:
        """Return the points, the partly filled last bucket included."""
        return self.points + ([self._acc / self._k] if self._k else [])
