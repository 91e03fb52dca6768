"""One refresh budget per kernel, shared by every live progress display.

Each display may refresh at most every ``active / rate`` seconds, where ``active`` is the number of
live displays; so all displays together send at most ``rate`` refreshes a second, whatever the
iteration rate, and none starves (an outer epoch bar still refreshes while an inner bar is busy).
A display's interval is its tqdm ``mininterval``: tqdm's own counting and dynamic ``miniters``
decide, cheaply, when that much time has passed (:mod:`.progress`, :mod:`.fit_display`).
"""

from __future__ import annotations

import os
import threading
import weakref

__all__ = ["ENV_RATE", "RefreshBudget", "get_budget", "set_refresh_rate"]

#: environment variable that sets the default refreshes per second for the whole kernel
ENV_RATE = "JUPYTER_TORCHLAB_REFRESH_RATE"
DEFAULT_RATE = 4.0


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

    def __init__(self, rate: float = DEFAULT_RATE) -> None:
        self._displays: weakref.WeakSet[object] = weakref.WeakSet()
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

    def register(self, display: object) -> float:
        """Count ``display`` as live; return its refresh interval (its share of the budget)."""
        with self._lock:
            self._displays.add(display)
        return self.interval()

    def release(self, display: object) -> None:
        """Stop counting ``display`` as live (it finished)."""
        with self._lock:
            self._displays.discard(display)


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
