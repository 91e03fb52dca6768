"""Steps per second for a rate and an ETA that leave out a slow start.

The first steps of a training loop are often far slower than the rest: CUDA initialises on the
first batch, ``torch.compile`` compiles, DataLoader workers start. An average since the start
then overstates the remaining time for minutes. :class:`Rate` keeps the last few
``(steps, time)`` marks, drops leading segments that ran at under a third of the pace that
followed them (the warm-up), and reports the pace over the rest. Pure: the caller supplies the
times (an injected clock in tests).
"""

from __future__ import annotations

from collections import deque

__all__ = ["Rate"]

#: marks kept; older ones fall off, so the rate follows the recent pace of the loop
MARKS = 16
#: a leading segment this many times slower than what followed it counts as warm-up
WARMUP_FACTOR = 3.0


class Rate:
    """Estimate steps per second from ``(n, t)`` marks, ignoring a slow start."""

    __slots__ = ("_marks", "min_gap")

    def __init__(
        self, n: float = 0, t: float | None = None, *, marks: int = MARKS, min_gap: float = 0.0
    ) -> None:
        self._marks: deque[tuple[float, float]] = deque(maxlen=marks)
        #: marks closer than this to the previous one are skipped (callers that mark every step)
        self.min_gap = min_gap
        if t is not None:
            self._marks.append((n, t))

    def mark(self, n: float, t: float) -> None:
        """Record that ``n`` steps were done at time ``t`` (later marks must not go back)."""
        marks = self._marks
        if marks:
            last_n, last_t = marks[-1]
            if n < last_n or t < last_t:  # a reset: start over from here
                marks.clear()
            elif n == last_n or t - last_t < self.min_gap:
                return  # no progress, or too soon: the next mark measures the whole stretch
        marks.append((n, t))

    def reset(self, n: float = 0, t: float | None = None) -> None:
        """Forget every mark (a new epoch, a reset bar); optionally start at ``(n, t)``."""
        self._marks.clear()
        if t is not None:
            self._marks.append((n, t))

    def per_second(self) -> float | None:
        """Return the recent pace in steps per second, warm-up left out (None: not known yet)."""
        marks = list(self._marks)
        while len(marks) >= 3:
            (n0, t0), (n1, t1), (nk, tk) = marks[0], marks[1], marks[-1]
            first = (n1 - n0) / (t1 - t0) if t1 > t0 else float("inf")
            rest = (nk - n1) / (tk - t1) if tk > t1 else float("inf")
            if first * WARMUP_FACTOR >= rest:
                break
            marks.pop(0)  # the first segment was a slow start
        if len(marks) < 2:
            return None
        (n0, t0), (nk, tk) = marks[0], marks[-1]
        if tk <= t0 or nk <= n0:
            return None
        return (nk - n0) / (tk - t0)

    def eta(self, remaining: float) -> float | None:
        """Return seconds for ``remaining`` more steps at the recent pace (None: not known)."""
        rate = self.per_second()
        if rate is None or remaining < 0:
            return None
        return remaining / rate
