"""``WS torchlab/api/stream``: every new snapshot document, pushed to each subscriber.

One sampler serves every subscriber: each gets the same cached bytes (no re-encoding), and a slow
client loses old snapshots instead of growing a buffer (each snapshot is complete on its own).
"""

from __future__ import annotations

from collections import deque
from typing import Any

from jupyter_core.utils import ensure_async

# new in jupyter_server 2.13 (load_failure.JUPYTER_SERVER_FLOOR): on an older server this import
# fails, before anything starts, and the extension reports it with "upgrade jupyter_server"
from jupyter_server.auth.decorator import ws_authenticated
from jupyter_server.base.handlers import JupyterHandler
from jupyter_server.base.websocket import WebSocketMixin
from tornado import web
from tornado.ioloop import IOLoop
from tornado.iostream import StreamClosedError
from tornado.websocket import WebSocketClosedError, WebSocketHandler

from .monitor import ServerMonitor

__all__ = ["AUTH_RESOURCE", "STREAM_QUEUE", "StreamHandler"]

#: the authorizer's resource name for every torchlab route
AUTH_RESOURCE = "torchlab"

# snapshots waiting for one slow WebSocket client; older ones are dropped (each is complete)
STREAM_QUEUE = 4


class StreamHandler(WebSocketMixin, WebSocketHandler, JupyterHandler):
    """``WS torchlab/api/stream``: every new snapshot, the latest one first."""

    auth_resource = AUTH_RESOURCE

    def initialize(self, monitor: ServerMonitor) -> None:
        """Take the ServerMonitor to subscribe to."""
        self.monitor = monitor
        self._queue: deque[bytes] = deque(maxlen=STREAM_QUEUE)
        self._sending = False

    def set_default_headers(self) -> None:
        """Skip JupyterHandler's HTML headers, which mean nothing to a WebSocket."""

    async def pre_get(self) -> None:
        """Authorize the (already authenticated) user to read torchlab metrics."""
        allowed = await ensure_async(
            self.authorizer.is_authorized(self, self.current_user, "read", AUTH_RESOURCE)
        )
        if not allowed:
            raise web.HTTPError(403, "not authorized to read torchlab metrics")

    @ws_authenticated
    async def get(self, *args: Any, **kwargs: Any) -> None:
        """Authorize, then upgrade to a WebSocket."""
        await self.pre_get()
        await super().get(*args, **kwargs)

    def open(self, *args: Any, **kwargs: Any) -> None:
        """Subscribe and send the latest snapshot at once."""
        super().open(*args, **kwargs)
        self.monitor.add_subscriber(self)
        latest = self.monitor.latest()
        if latest is not None:
            self.push(latest)

    def on_message(self, message: str | bytes) -> None:
        """Ignore client messages: the stream is one-way."""

    def on_close(self) -> None:
        """Unsubscribe."""
        self.monitor.remove_subscriber(self)
        self._queue.clear()
        if self.ping_callback is not None:
            self.ping_callback.stop()

    def push(self, data: bytes) -> None:
        """Queue a snapshot; a slow client loses old snapshots instead of growing a buffer."""
        self._queue.append(data)
        if not self._sending:
            self._sending = True
            IOLoop.current().add_callback(self._drain)

    def close(self, code: int | None = None, reason: str | None = None) -> None:
        """Close, tolerating a connection that is already gone."""
        self.monitor.remove_subscriber(self)
        if self.ws_connection is not None:
            super().close(code, reason)

    async def _drain(self) -> None:
        try:
            while self._queue and self.ws_connection is not None:
                # a text frame with the cached UTF-8 bytes: no re-encoding per subscriber
                await self.write_message(self._queue.popleft(), binary=False)
        except (WebSocketClosedError, StreamClosedError):
            self.monitor.remove_subscriber(self)
            self._queue.clear()
        finally:
            self._sending = False
