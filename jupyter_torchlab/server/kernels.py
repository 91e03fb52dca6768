"""Which kernels the server runs: id, state, busy-since, notebook path and local pid.

The registry is written on the event loop and read by the sampler thread. Writers build a new
dict and swap the reference, so a reader always sees one consistent view without a lock.

``busy_since`` and ``idle_since`` come from observing each kernel manager's ``execution_state``
trait, which jupyter_server sets from the kernel's IOPub status messages: the time is taken in
the same event-loop callback that handles the message, so it is exact to the loop's latency
(well under a millisecond on an idle loop), with no polling of kernels.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from jupyter_core.utils import ensure_async
from tornado import web

__all__ = ["GATEWAY", "NOT_LOCAL", "NOT_RUNNING", "KernelInfo", "KernelRegistry"]

NOT_LOCAL = "kernel is not a local process; its resources cannot be measured from the server"
GATEWAY = (
    "kernel runs behind a gateway (GatewayKernelManager): this server has no ZMQ connection to "
    "it, so it cannot measure it or ask it for usage_request; see the gateway's own metrics"
)
NOT_RUNNING = "kernel process is not running (starting, restarting or dead)"


@dataclass(frozen=True)
class KernelInfo:
    """What the server knows about one kernel, apart from its resource use."""

    id: str
    name: str
    execution_state: str
    last_activity: str | None  # ISO 8601, as in GET /api/kernels
    busy_since: float | None  # unix time of the transition to "busy"; None when not busy
    connections: int
    pid: int | None
    path: str | None  # notebook (or console) path from the session manager
    reason: str | None  # why pid is None
    # unix time of the transition to "idle" (for a kernel already idle when first seen: its
    # last_activity); None when not idle. Unlike last_activity, output a kernel thread sends
    # while idle (a widget's updates) does not move it: only executing something does.
    idle_since: float | None = None


class KernelRegistry:
    """Join the kernel manager, the session manager and each kernel's local pid."""

    def __init__(
        self,
        kernel_manager: Any,
        session_manager: Any | None = None,
        *,
        wall: Callable[[], float] = time.time,
        log: logging.Logger | None = None,
    ) -> None:
        self._km = kernel_manager
        self._sm = session_manager
        self._wall = wall
        self._log = log or logging.getLogger(__name__)
        self._view: Mapping[str, KernelInfo] = {}
        # kernel id -> connection info, for kernels without a local pid that ZMQ can reach
        self._endpoints: Mapping[str, Mapping[str, Any]] = {}
        # kernel id -> (kernel manager object, the observer we attached to it)
        self._watched: dict[str, tuple[Any, Callable[[dict[str, Any]], None] | None]] = {}
        self._busy_since: dict[str, float] = {}
        self._idle_since: dict[str, float] = {}
        self._paths: dict[str, str] = {}
        self._warned: set[str] = set()

    # --- read side (any thread) ---------------------------------------------------------------

    def view(self) -> Mapping[str, KernelInfo]:
        """Return the current kernels by id (an immutable-by-convention snapshot)."""
        return self._view

    def targets(self) -> dict[str, int]:
        """Return kernel id -> pid for kernels with a local process (the sampler's targets)."""
        return {kid: info.pid for kid, info in self._view.items() if info.pid is not None}

    def endpoints(self) -> Mapping[str, Mapping[str, Any]]:
        """Return kernel id -> connection info for kernels to ask for ``usage_request`` now.

        Kernels the server still shows as ``starting`` are left out: jupyter_server's
        ``record_activity`` turns the state of such a kernel to ``idle`` on any status message,
        whatever its parent, so the busy/idle pair a usage_request causes would end "starting"
        for a kernel no client has connected to. (While a kernel is ``busy``, jupyter_server
        counts every IOPub message as activity, so each usage_request then moves its
        ``last_activity``; the state itself stays ``busy``.)
        """
        asked = {}
        for kid, info in self._endpoints.items():
            entry = self._watched.get(kid)  # read live: the state may have changed since refresh
            if entry is not None and getattr(entry[0], "execution_state", None) != "starting":
                asked[kid] = info
        return asked

    # --- write side (event loop only) ---------------------------------------------------------

    async def refresh(self) -> None:
        """Re-read kernels, sessions and pids; start watching new kernels, forget gone ones."""
        if self._sm is not None:
            try:
                sessions = await ensure_async(self._sm.list_sessions())
                self._paths = {
                    s["kernel"]["id"]: s["path"]
                    for s in sessions
                    if s.get("kernel") and s.get("path")
                }
            # keep the last known paths; the kernel list itself still updates
            except Exception as e:  # noqa: BLE001
                self._warn_once(
                    "sessions", "cannot list sessions (%s); notebook paths may be stale", e
                )
        ids = list(self._km.list_kernel_ids())
        for kid in ids:
            if kid not in self._watched:
                self._watch(kid)
        for kid in set(self._watched) - set(ids):
            self._unwatch(kid)
        view = {}
        endpoints = {}
        for kid in ids:
            info = self._info(kid)
            if info is not None:
                view[kid] = info
                if info.reason == NOT_LOCAL:
                    conn = _connection_info(self._watched[kid][0])
                    if conn is not None:
                        endpoints[kid] = conn
        self._view = view
        self._endpoints = endpoints

    def close(self) -> None:
        """Stop observing every kernel."""
        for kid in list(self._watched):
            self._unwatch(kid)
        self._view = {}
        self._endpoints = {}

    # --- internals ----------------------------------------------------------------------------

    def _watch(self, kid: str) -> None:
        try:
            kernel = self._km.get_kernel(kid)
        except KeyError:
            return

        def on_state(change: dict[str, Any]) -> None:
            self._on_state(kid, change["old"], change["new"])

        observer: Callable[[dict[str, Any]], None] | None = on_state
        try:
            kernel.observe(on_state, names="execution_state")
        except (AttributeError, TypeError):  # not a HasTraits kernel: refresh() catches up
            observer = None
        self._watched[kid] = (kernel, observer)
        state = getattr(kernel, "execution_state", None)
        if state == "busy":
            # already busy when first seen: the best lower bound we have is now
            self._busy_since[kid] = self._wall()
        elif state == "idle":
            # already idle when first seen (the server restarted, the extension loaded late):
            # its last activity is when it went idle, or later
            stamp = _iso_time(getattr(kernel, "last_activity", None))
            self._idle_since[kid] = stamp if stamp is not None else self._wall()

    def _unwatch(self, kid: str) -> None:
        kernel, observer = self._watched.pop(kid)
        self._busy_since.pop(kid, None)
        self._idle_since.pop(kid, None)
        if observer is not None:
            with contextlib.suppress(ValueError):
                kernel.unobserve(observer, names="execution_state")

    def _on_state(self, kid: str, old: str, new: str) -> None:
        if new == "busy":
            if old != "busy":
                self._busy_since[kid] = self._wall()
        else:
            self._busy_since.pop(kid, None)
        if new == "idle":
            if old != "idle":
                self._idle_since[kid] = self._wall()
        else:
            self._idle_since.pop(kid, None)
        info = self._info(kid)
        if info is not None:
            view = dict(self._view)
            view[kid] = info
            self._view = view

    def _info(self, kid: str) -> KernelInfo | None:
        entry = self._watched.get(kid)
        if entry is None:
            return None
        kernel = entry[0]
        try:
            # the same model GET /api/kernels returns: state, activity and connection count
            model = self._km.kernel_model(kid)
        except (KeyError, web.HTTPError):  # removed between listing and reading
            return None
        state = model.get("execution_state") or "unknown"
        if entry[1] is None:  # no observer: derive busy_since from what refresh() sees
            if state == "busy":
                self._busy_since.setdefault(kid, self._wall())
            else:
                self._busy_since.pop(kid, None)
            if state == "idle":
                self._idle_since.setdefault(kid, self._wall())
            else:
                self._idle_since.pop(kid, None)
        pid, reason = _local_pid(kernel)
        return KernelInfo(
            id=kid,
            name=model.get("name") or getattr(kernel, "kernel_name", ""),
            execution_state=state,
            last_activity=model.get("last_activity"),
            busy_since=self._busy_since.get(kid),
            connections=int(model.get("connections") or 0),
            pid=pid,
            path=self._paths.get(kid),
            reason=reason,
            idle_since=self._idle_since.get(kid) if state == "idle" else None,
        )

    def _warn_once(self, key: str, msg: str, *args: object) -> None:
        if key not in self._warned:
            self._warned.add(key)
            self._log.warning("torchlab: " + msg, *args)


def _iso_time(value: Any) -> float | None:
    """Return the unix time of a datetime or an ISO 8601 string (None: neither)."""
    if isinstance(value, datetime):
        stamp = value if value.tzinfo is not None else value.replace(tzinfo=timezone.utc)
        return stamp.timestamp()
    if isinstance(value, str):
        try:
            return _iso_time(datetime.fromisoformat(value.replace("Z", "+00:00")))
        except ValueError:
            return None
    return None


def _local_pid(kernel: Any) -> tuple[int | None, str | None]:
    """Return (pid, None) for a kernel launched as a local process, else (None, reason)."""
    from jupyter_client.provisioning import LocalProvisioner

    provisioner = getattr(kernel, "provisioner", None)
    if _is_gateway(kernel):
        return None, GATEWAY if getattr(kernel, "has_kernel", False) else NOT_RUNNING
    if provisioner is None:
        # a kernel manager without provisioners; a local one has none until launched
        return None, NOT_LOCAL if getattr(kernel, "has_kernel", False) else NOT_RUNNING
    if not isinstance(provisioner, LocalProvisioner):
        return None, NOT_LOCAL
    process = getattr(provisioner, "process", None)
    pid = getattr(process, "pid", None)
    if pid is None:
        return None, NOT_RUNNING
    return int(pid), None


def _is_gateway(kernel: Any) -> bool:
    try:
        from jupyter_server.gateway.managers import GatewayKernelManager
    except ImportError:  # pragma: no cover - a jupyter_server without gateway support
        return False
    return isinstance(kernel, GatewayKernelManager)


def _connection_info(kernel: Any) -> Mapping[str, Any] | None:
    """Return the ZMQ connection info (with the session key) of a launched kernel, else None."""
    if not getattr(kernel, "has_kernel", False):
        return None
    try:
        info = dict(kernel.get_connection_info())
    except Exception:  # noqa: BLE001 - not a ZMQ kernel manager: nothing to ask it through
        return None
    if not info.get("control_port") or not info.get("ip"):
        return None  # no ports yet, or a kernel that is reached some other way
    return info
