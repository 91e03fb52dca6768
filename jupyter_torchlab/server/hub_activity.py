"""A kernel that is executing counts as the server's activity (what JupyterHub's culler reads).

jupyter_server's ``last_activity`` (what jupyterhub-singleuser reports to the hub, and so what
jupyterhub-idle-culler compares with its timeout) moves with requests and kernel messages. A cell
that trains quietly for an hour sends none, so the culler would stop a server in the middle of
its work. jupyter_server counts every setting whose name ends in ``_last_activity``; while any
kernel is busy by our one reading of it (execute requests, :mod:`.executions`), this keeps
``torchlab_busy_last_activity`` at now. Idle kernels, and reading metrics, move nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, MutableMapping
from datetime import datetime, timezone
from typing import Any

from tornado.ioloop import PeriodicCallback

__all__ = ["SETTING", "BusyActivity"]

#: the web_app setting jupyter_server's last_activity() reads (its name must end in _last_activity)
SETTING = "torchlab_busy_last_activity"


class BusyActivity:
    """Every ``interval`` seconds, record now as activity if a kernel is executing."""

    def __init__(
        self,
        view: Callable[[], Mapping[str, Any]],
        settings: MutableMapping[str, Any],
        interval: float = 5.0,
        clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
    ) -> None:
        self._view = view
        self._settings = settings
        self._clock = clock
        self._timer = PeriodicCallback(self._tick, interval * 1000)

    def start(self) -> None:
        """Check now and then every interval (on the event loop)."""
        self.check()
        self._timer.start()

    def stop(self) -> None:
        """Stop checking; the last recorded activity stays."""
        self._timer.stop()

    def _tick(self) -> None:
        self.check()

    def check(self) -> bool:
        """Record now as activity if any kernel is busy; return whether one was."""
        busy = any(info.execution_state == "busy" for info in self._view().values())
        if busy:
            self._settings[SETTING] = self._clock()
        return busy
