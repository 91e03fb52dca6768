"""One refresh budget per kernel, shared by every live progress display.

Each display may refresh at most every ``active / rate`` seconds, where ``active`` is the number of
live displays; so all displays together send at most ``rate`` refreshes a second, whatever the
iteration rate, and none starves (an outer epoch bar still refreshes while an inner bar is busy).

Reading the clock costs ~45 ns in CPython, counting ~25 ns, so a display reads the clock only
every ``stride`` iterations: the per-iteration cost when not refreshing is one integer add and one
compare. ``stride`` adapts so that the clock is read about every :data:`CHECK_PERIOD` seconds,
capped at :data:`MAX_STRIDE`: a loop that suddenly slows down (fast warm-up, slow steps) is then
looked at again after at most 64 of its new, slow steps, while the clock read amortises to under
1 ns per iteration in a tight loop.
"""

from __future__ import annotations

import os
import threading
import time
import weakref
from collections.abc import Callable

from .._rate import Rate

__all__ = ["ENV_RATE", "RefreshBudget", "Throttle", "get_budget", "set_refresh_rate"]

#: environment variable that sets the default refreshes per second for the whole kernel
ENV_RATE = "JUPYTER_TORCHLAB_REFRESH_RATE"
DEFAULT_RATE = 4.0
#: how often (seconds) a display looks at the clock; small next to the refresh interval
CHECK_PERIOD = 0.02
MAX_STRIDE = 64


def _rate_from_env() -> float:
    raw = os.environ.get(ENV_RATE)
    if not raw:
        return DEFAULT_RATE
    try:
        rate = float(raw)
    except ValueError:
        rate = -1.0
    if not rate > 0:
        raise ValueError(
            f"{ENV_RATE}={raw!r} is not a positive number of refreshes per second; "
            f"set it to e.g. 4 or unset it"
        )
    return rate


class RefreshBudget:
    """Share ``rate`` refreshes per second between the live displays of this process."""

    def __init__(self, rate: float = DEFAULT_RATE, timer: Callable[[], float] = time.monotonic):
        self.timer = timer
        self._displays: weakref.WeakSet[Throttle] = weakref.WeakSet()
        self._lock = threading.Lock()
        self.rate = DEFAULT_RATE
        self.set_rate(rate)

    def set_rate(self, rate: float) -> None:
        """Set the total refreshes per second (all displays together)."""
        if not (isinstance(rate, int | float) and rate > 0):
            raise ValueError(f"refresh rate must be a positive number per second, got {rate!r}")
        self.rate = float(rate)

    @property
    def active(self) -> int:
        """Return the number of live displays sharing the budget."""
        return max(1, len(self._displays))

    def interval(self) -> float:
        """Return the minimum seconds between two refreshes of one display."""
        return self.active / self.rate

    def throttle(self, timer: Callable[[], float] | None = None) -> Throttle:
        """Return a new :class:`Throttle` registered as a live display (``timer`` for tests)."""
        t = Throttle(self, timer or self.timer)
        with self._lock:
            self._displays.add(t)
        return t

    def release(self, throttle: Throttle) -> None:
        """Stop counting ``throttle`` as live (its display finished)."""
        with self._lock:
            self._displays.discard(throttle)


class Throttle:
    """Decide, cheaply and often, whether one display should refresh now."""

    __slots__ = (
        "__weakref__",
        "_budget",
        "_last_check_n",
        "_last_check_t",
        "_timer",
        "last_refresh",
        "max_interval",
        "min_interval",
        "next_check",
        "rate",
        "refreshes",
        "stride",
    )

    def __init__(self, budget: RefreshBudget, timer: Callable[[], float]):
        self._budget = budget
        self._timer = timer
        now = timer()
        self.last_refresh = now
        self._last_check_t = now
        self._last_check_n: float = 0
        self.stride = 1
        #: the caller compares its counter with this before calling :meth:`due`
        self.next_check: float = 1
        self.refreshes = 0
        #: the display's pace from the counter at each clock read (warm-up left out)
        self.rate = Rate(0, now)
        #: bounds one display puts on its share of the budget (tqdm's mininterval/maxinterval)
        self.min_interval = 0.0
        self.max_interval = float("inf")

    def due(self, n: float) -> bool:
        """Read the clock (the counter reached ``next_check``); return True if a refresh is due."""
        now = self._timer()
        dt = now - self._last_check_t
        done = n - self._last_check_n
        if dt > 0 and done > 0:
            # aim for one clock read every CHECK_PERIOD; grow at most 2x so a loop that slows
            # down after a fast start is not left unchecked for long
            ideal = int(done * CHECK_PERIOD / dt)
            self.stride = max(1, min(ideal, self.stride * 2, MAX_STRIDE))
        self._last_check_t = now
        self._last_check_n = n
        self.next_check = n + self.stride
        self.rate.mark(n, now)
        interval = min(max(self._budget.interval(), self.min_interval), self.max_interval)
        if now - self.last_refresh >= interval:
            self.last_refresh = now
            self.refreshes += 1
            return True
        return False

    def now(self) -> float:
        """Return the throttle clock's time."""
        return self._timer()

    def release(self) -> None:
        """Stop counting this display as live."""
        self._budget.release(self)


_budget: RefreshBudget | None = None
_budget_lock = threading.Lock()


def get_budget() -> RefreshBudget:
    """Return this kernel's refresh budget (created on first use from the environment)."""
    global _budget
    if _budget is None:
        with _budget_lock:
            if _budget is None:
                _budget = RefreshBudget(_rate_from_env())
    return _budget


def set_refresh_rate(rate: float) -> None:
    """Set how many times a second all progress displays of this kernel refresh, together."""
    get_budget().set_rate(rate)
