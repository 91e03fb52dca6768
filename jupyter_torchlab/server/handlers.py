"""Thin REST handlers: read the request, ask the ServerMonitor or the TutorialWriter, write JSON.

Every route is authenticated: REST with ``@web.authenticated`` + ``@authorized`` on the
``torchlab`` resource, the WebSocket (:mod:`.stream`) with jupyter_server's ``ws_authenticated``
and the same authorizer. Metric reads do not count as user activity, so an open monitor never
keeps an idle server from being culled. The URL table is at the bottom.
"""

from __future__ import annotations

import json
import math
from typing import Any

from jupyter_server.auth.decorator import authorized
from jupyter_server.base.handlers import APIHandler
from jupyter_server.utils import url_escape, url_path_join
from tornado import web

from jupyter_torchlab._format import quote
from jupyter_torchlab._runtime_files import RUN_STATES

from .hub_auth import HubReadable
from .monitor import ServerMonitor
from .stream import AUTH_RESOURCE, StreamHandler
from .tutorial_copy import TutorialWriter


class _MonitorHandler(APIHandler):
    auth_resource = AUTH_RESOURCE
    # polling a monitor is not user activity (it would defeat idle culling)
    _track_activity = False

    def initialize(self, monitor: ServerMonitor) -> None:
        """Take the ServerMonitor to read from."""
        self.monitor = monitor

    def set_default_headers(self) -> None:
        super().set_default_headers()
        self.set_header("Cache-Control", "no-store")


class MetricsHandler(HubReadable, _MonitorHandler):
    """``GET torchlab/api/metrics``: the latest snapshot (also for the hub service's token)."""

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
        seconds = _number(
            self.get_argument("seconds", None),
            "seconds",
            means="a positive number of seconds",
            example="60",
            positive=True,
        )
        self.finish(self.monitor.history(seconds))


class EventsHandler(_MonitorHandler):
    """``GET torchlab/api/events?since=T``: kernels that died, and why (oldest first)."""

    @web.authenticated
    @authorized
    def get(self) -> None:
        """Write the kept kernel deaths (those after unix time ``since`` when given)."""
        since = _number(
            self.get_argument("since", None),
            "since",
            means="a unix time in seconds",
            example="1764259200",
        )
        self.finish(self.monitor.events(since))


class RunsHandler(_MonitorHandler):
    """``GET torchlab/api/runs?state=S``: every kernel's runs, running first, then latest ended."""

    @web.authenticated
    @authorized
    def get(self) -> None:
        """Write the runs of the latest tick (only those in ``state`` when given)."""
        state = self.get_argument("state", None) or None
        if state is not None and state not in RUN_STATES:
            raise web.HTTPError(
                400,
                f"state must be one of {', '.join(RUN_STATES)}, e.g. ?state=running; "
                f"got {quote(state)}",
            )
        self.finish(self.monitor.runs(state))


class CellsHandler(_MonitorHandler):
    """``GET torchlab/api/cells?kernel=ID[&msg_id=M&wait=S]``: what each cell of a kernel cost.

    Every kernel's cells are measured from its start (:mod:`.cells`). With ``msg_id``:
    ``{"cell": record}`` for that execute request, waiting up to ``wait`` seconds (at most
    :data:`CELLS_WAIT_MAX`) for its end to be read, ``{"cell": null}`` if it has none by then;
    without: ``{"cells": [...]}``, the kept records, oldest first.
    """

    @web.authenticated
    @authorized
    async def get(self) -> None:
        """Write one cell's record, or every kept one, of the kernel asked about."""
        cells = self.monitor.cells
        if cells is None:
            raise web.HTTPError(
                404,
                "cell costs are off on this server (TorchlabExtension.cell_costs = False); "
                "set it to True and restart the server to measure each cell",
            )
        kid = self.get_argument("kernel", "")
        if kid not in self.monitor.registry.view():
            raise web.HTTPError(
                404, f"no running kernel {quote(kid)}; pass ?kernel=<id> of a kernel in api/kernels"
            )
        msg_id = self.get_argument("msg_id", None)
        if msg_id is None:
            self.finish(json.dumps({"kernel": kid, "cells": cells.records(kid)}))
            return
        wait = _number(
            self.get_argument("wait", None),
            "wait",
            means="a number of seconds to wait for the cell's end",
            example="5",
        )
        record = await cells.wait(kid, msg_id, min(CELLS_WAIT_MAX, max(0.0, wait or 0.0)))
        self.finish(json.dumps({"kernel": kid, "cell": record}))


#: the longest a request for one cell's record waits for the cell's end to be read
CELLS_WAIT_MAX = 30.0


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
        body = _json_object(self.request.body)
        path = await self.writer.copy(body.get("dir", ""))
        self.set_status(201)
        self.set_header(
            "Location", url_path_join(self.base_url, "api", "contents", url_escape(path))
        )
        self.finish(json.dumps({"path": path}))


_SEND = 'send a JSON object like {"dir": "notebooks"} (or {} for the server root)'


def _json_object(raw: bytes) -> dict[str, Any]:
    """Parse a request body that must be a JSON object; an empty body is ``{}``.

    Refuses, with a 400 that says what to send, what is not UTF-8, not JSON, or not an object.
    The messages quote none of the body, so a huge body never reaches the log.
    """
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise web.HTTPError(
            400, f"the body is not UTF-8 text (byte {e.start + 1} is invalid); {_SEND}"
        ) from None
    if not text.strip():
        return {}
    try:
        body = json.loads(text)
    except json.JSONDecodeError as e:
        raise web.HTTPError(
            400, f"Invalid JSON in the body (line {e.lineno}, column {e.colno}: {e.msg}); {_SEND}"
        ) from None
    if not isinstance(body, dict):
        kind = {list: "a list", str: "a string", bool: "true/false"}.get(type(body), "a number")
        if body is None:
            kind = "null"
        raise web.HTTPError(400, f"the body must be a JSON object, got {kind}; {_SEND}")
    return body


def _number(
    raw: str | None, name: str, *, means: str, example: str, positive: bool = False
) -> float | None:
    """Parse the query argument ``name``: None when absent or empty, else a finite number.

    Anything else (not a number, NaN, infinite, or not above 0 when ``positive``) is a 400 that
    says what to send and quotes what came, cut to a few hundred characters.
    """
    if raw is None or raw == "":
        return None
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or (positive and value <= 0):
        raise web.HTTPError(
            400, f"{name} must be {means}, e.g. ?{name}={example}; got {quote(raw)}"
        )
    return value


def make_handlers(
    monitor: ServerMonitor, writer: TutorialWriter
) -> list[tuple[str, Any, dict[str, Any]]]:
    """Return the URL table (patterns relative to base_url)."""
    return [
        (r"/torchlab/api/metrics", MetricsHandler, {"monitor": monitor}),
        (r"/torchlab/api/metrics/history", HistoryHandler, {"monitor": monitor}),
        (r"/torchlab/api/events", EventsHandler, {"monitor": monitor}),
        (r"/torchlab/api/runs", RunsHandler, {"monitor": monitor}),
        (r"/torchlab/api/cells", CellsHandler, {"monitor": monitor}),
        (r"/torchlab/api/stream", StreamHandler, {"monitor": monitor}),
        (r"/torchlab/api/tutorial", TutorialHandler, {"writer": writer}),
    ]
