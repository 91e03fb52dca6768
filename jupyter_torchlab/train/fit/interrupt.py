"""Ctrl-C at a batch boundary: no optimizer step is ever cut in half by Jupyter's interrupt."""

from __future__ import annotations

import signal
import threading
from typing import Any

__all__ = ["DeferredInterrupt"]


class DeferredInterrupt:
    """Hold the first SIGINT until the running batch ends; a second one interrupts at once."""

    def __init__(self) -> None:
        self.requested = False
        self._old: Any = None

    def _handler(self, signum: int, frame: Any) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __enter__(self) -> DeferredInterrupt:
        # only where Python's own handler is active (plain Python, ipykernel during a cell)
        if (
            threading.current_thread() is threading.main_thread()
            and signal.getsignal(signal.SIGINT) is signal.default_int_handler
        ):
            self._old = signal.signal(signal.SIGINT, self._handler)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._old is not None:
            signal.signal(signal.SIGINT, self._old)
            self._old = None
