"""Small helpers shared by the metrics modules: log-once and tolerant file reads."""

from __future__ import annotations

import logging
import threading

logger = logging.getLogger("jupyter_torchlab.metrics")


class LogOnce:
    """Log each distinct message once, so a failure that repeats every tick is not a flood."""

    def __init__(self, log: logging.Logger = logger, limit: int = 256) -> None:
        self._log = log
        self._seen: set[str] = set()
        self._limit = limit
        self._lock = threading.Lock()

    def __call__(self, level: int, message: str, *, exc_info: bool = False) -> bool:
        """Log ``message`` unless it was logged before; return whether it was logged now."""
        with self._lock:
            if message in self._seen:
                return False
            # a bounded set: a message carrying an ever-changing detail must not grow memory forever
            if len(self._seen) >= self._limit:
                self._seen.clear()
            self._seen.add(message)
        self._log.log(level, message, exc_info=exc_info)
        return True


def read_text(path: str) -> str | None:
    """Return the file's text, or None when it is missing or unreadable."""
    try:
        with open(path, encoding="ascii", errors="replace") as f:
            return f.read()
    except OSError:
        return None
