"""Run a function on a daemon thread at a fixed rate: the optional thread behind sampling.

Ticks stay on a fixed grid (the time a tick takes does not shift the next one); ticks missed
while one overran are skipped, not run back to back. ``stop()`` wakes the wait at once, and the
thread is stopped at interpreter exit before modules it uses are torn down. A tick that raises
is logged once and the thread keeps ticking.
"""

from __future__ import annotations

import atexit
import logging
import math
import threading
import time
from collections.abc import Callable

from ._util import LogOnce, logger

__all__ = ["Ticker"]


def next_deadline(deadline: float, interval: float, now: float) -> float:
    """Return the next tick time on the fixed grid ``deadline + k * interval`` that is after now.

    Ticks stay on the grid (no drift from the time sampling takes); ticks missed while a tick
    overran are skipped rather than run back to back.
    """
    deadline += interval
    if deadline <= now:
        deadline += math.ceil((now - deadline) / interval) * interval
        if deadline <= now:
            deadline += interval
    return deadline


class Ticker:
    """Call ``tick()`` every ``interval`` seconds on a daemon thread; the first call at once."""

    def __init__(
        self,
        tick: Callable[[], object],
        interval: float,
        *,
        name: str = "torchlab-ticker",
        on_stop: Callable[[], object] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not interval > 0:
            raise ValueError(f"interval must be a positive number of seconds, got {interval!r}")
        self.interval = float(interval)
        self._tick = tick
        self._name = name
        self._on_stop = on_stop  # runs on the thread once it leaves its loop
        self._clock = clock
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._log_once = LogOnce(logger)

    @property
    def running(self) -> bool:
        """Whether the thread is alive."""
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        """Start the thread (a no-op while it runs)."""
        with self._lock:
            if self.running:
                return
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
            self._thread.start()
        atexit.register(self.stop)

    def stop(self, timeout: float = 2.0) -> bool:
        """Wake the thread and wait up to ``timeout`` s for it to end; return whether it ended.

        Safe to call from ``tick()`` itself (it then returns at once; the thread ends after the
        tick) and more than once.
        """
        self._stop.set()
        atexit.unregister(self.stop)
        thread = self._thread
        if thread is None:
            return True
        if thread is threading.current_thread():
            return False
        thread.join(timeout)
        return not thread.is_alive()

    def _run(self) -> None:
        deadline = self._clock()
        try:
            while not self._stop.is_set():
                try:
                    self._tick()
                except Exception:  # noqa: BLE001 - a failing tick must not end the thread
                    self._log_once(logging.ERROR, f"{self._name}: a tick failed", exc_info=True)
                deadline = next_deadline(deadline, self.interval, self._clock())
                if self._stop.wait(max(0.0, deadline - self._clock())):
                    break
        finally:
            if self._on_stop is not None:
                try:
                    self._on_stop()
                except Exception:  # noqa: BLE001 - logged; the thread is ending anyway
                    self._log_once(logging.ERROR, f"{self._name}: stopping failed", exc_info=True)
