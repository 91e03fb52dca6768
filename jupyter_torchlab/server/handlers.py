"""Thin handlers: read the request, ask the Monitor or the TutorialWriter, write JSON.

Every route is authenticated: REST with ``@web.authenticated`` + ``@authorized`` on the
``torchlab`` resource, the WebSocket with jupyter_server's ``ws_authenticated`` and the same
authorizer. Metric reads do not count as user activity, so an open monitor never keeps an idle
server from being culled.
"""

from __future__ import annotations

import json
import math
from collections import deque
from typing import Any

from jupyter_core.utils import ensure_async
from jupyter_server.auth.decorator import authorized, ws_authenticated
from jupyter_server.base.handlers import APIHandler, JupyterHandler
from jupyter_server.base.websocket import WebSocketMixin
from jupyter_server.utils import url_escape, url_path_join
from tornado import web
from tornado.ioloop import IOLoop
from tornado.iostream import StreamClosedError
from tornado.websocket import WebSocketClosedError, WebSocketHandler

from .app import Monitor, TutorialWriter

AUTH_RESOURCE = "torchlab"

# snapshots waiting for one slow WebSocket client; older ones are dropped (each is complete)
STREAM_QUEUE = 4


class _MonitorHandler(APIHandler):
    auth_resource = AUTH_RESOURCE
    # polling a monitor is not user activity (it would defeat idle culling)
    _track_activity = False

    def initialize(self, monitor: Monitor) -> None:
        """Take the Monitor to read from."""
        self.monitor = monitor

    def set_default_headers(self) -> None:
        super().set_default_headers()
        self.set_header("Cache-Control", "no-store")


class MetricsHandler(_MonitorHandler):
    """``GET torchlab/api/metrics``: the latest snapshot."""

    @web.authenticated
    @authorized
    async def get(self) -> None:
        """Write the cached JSON of the latest snapshot."""
        data = self.monitor.latest() or await self.monitor.wait_latest(
            timeout=max(5.0, 5 * self.monitor.interval)
        )
        if data is None:
            raise web.HTTPError(503, "no sample yet: the torchlab sampler has not produced one")
        self.finish(data)


class HistoryHandler(_MonitorHandler):
    """``GET torchlab/api/metrics/history?seconds=N``: snapshots of the last N seconds."""

    @web.authenticated
    @authorized
    def get(self) -> None:
        """Write the cached JSON of the snapshots in the window."""
        self.finish(self.monitor.history(_seconds(self.get_argument("seconds", None))))


class TutorialHandler(APIHandler):
    """``POST torchlab/api/tutorial {"dir": ...}``: copy the tutorial under a fresh name."""

    auth_resource = AUTH_RESOURCE

    def initialize(self, writer: TutorialWriter) -> None:
        """Take the service that does the copying."""
        self.writer = writer

    @web.authenticated
    @authorized
    async def post(self) -> None:
        """Copy the tutorial into the requested directory."""
        body = self.get_json_body() or {}
        if not isinstance(body, dict):
            raise web.HTTPError(400, 'the body must be a JSON object like {"dir": "notebooks"}')
        path = await self.writer.copy(body.get("dir", ""))
        self.set_status(201)
        self.set_header(
            "Location", url_path_join(self.base_url, "api", "contents", url_escape(path))
        )
        self.finish(json.dumps({"path": path}))


class StreamHandler(WebSocketMixin, WebSocketHandler, JupyterHandler):
    """``WS torchlab/api/stream``: every new snapshot, the latest one first."""

    auth_resource = AUTH_RESOURCE

    def initialize(self, monitor: Monitor) -> None:
        """Take the Monitor to subscribe to."""
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


def _seconds(raw: str | None) -> float | None:
    """Parse ``?seconds=``: None (everything kept) or a positive number of seconds."""
    if raw is None or raw == "":
        return None
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value <= 0:
        raise web.HTTPError(
            400, f"seconds must be a positive number of seconds, e.g. ?seconds=60; got {raw!r}"
        )
    return value


def make_handlers(
    monitor: Monitor, writer: TutorialWriter
) -> list[tuple[str, Any, dict[str, Any]]]:
    """Return the URL table (patterns relative to base_url)."""
    return [
        (r"/torchlab/api/metrics", MetricsHandler, {"monitor": monitor}),
        (r"/torchlab/api/metrics/history", HistoryHandler, {"monitor": monitor}),
        (r"/torchlab/api/stream", StreamHandler, {"monitor": monitor}),
        (r"/torchlab/api/tutorial", TutorialHandler, {"writer": writer}),
    ]
