"""Which kernels the server runs: id, state, busy-since, notebook path and local pid.

The registry is written on the event loop and read by the sampler thread. Writers build a new
dict and swap the reference, so a reader always sees one consistent view without a lock.

Busy and idle come from each kernel's execute requests (:mod:`.executions`), read from an IOPub
subscription of the registry's own: jupyter_server's ``execution_state`` is the last status
message of any request, and a kernel subshell's busy/idle pair (ipykernel 7 with JupyterLab 4.4+)
leaves it "idle" while a cell runs. The subscription asks ipykernel for its ``kernel.*`` topics
only (status, execute_input), so a cell's output and widget traffic never reach it. The times are
taken in the event-loop callback that handles the message, exact to the loop's latency.

Kernels whose messages the server cannot subscribe to (a gateway, a kernel manager without ZMQ)
keep jupyter_server's own ``execution_state``; ``state_source`` says which rule applies. The
server's own states for a kernel's life (starting, restarting, dead) always come through, and a
restart or a new process ends every execution.

Nothing here may fail jupyter_server's own requests: every callback the server or ZMQ calls
catches, logs once and returns.
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
from tornado.ioloop import IOLoop

from .executions import QUEUE_GAP, Executions

__all__ = [
    "FROM_EXECUTIONS",
    "FROM_SERVER",
    "GATEWAY",
    "NOT_LOCAL",
    "NOT_RUNNING",
    "KernelInfo",
    "KernelRegistry",
]

NOT_LOCAL = "kernel is not a local process; its resources cannot be measured from the server"
GATEWAY = (
    "kernel runs behind a gateway (GatewayKernelManager): this server has no ZMQ connection to "
    "it, so it cannot measure it or ask it for usage_request; see the gateway's own metrics"
)
NOT_RUNNING = "kernel process is not running (starting, restarting or dead)"

#: state_source values: busy/idle read from execute requests, or jupyter_server's last status
FROM_EXECUTIONS = "executions"
FROM_SERVER = "server"

# jupyter_server's states for a kernel's life, which pass through as they are
_LIFE_STATES = frozenset({"starting", "restarting", "autorestarting", "dead", "terminating"})
# the kernel-actions events jupyter_server emits (start, interrupt, restart, shutdown)
_KERNEL_ACTIONS = "https://events.jupyter.org/jupyter_server/kernel_actions/v1"
# ipykernel publishes status (and execute_input) under "kernel.<uuid>.<type>": subscribing to
# this prefix leaves out stream output, display data and comm messages
_KERNEL_TOPIC = b"kernel."


@dataclass(frozen=True)
class KernelInfo:
    """What the server knows about one kernel, apart from its resource use."""

    id: str
    name: str
    execution_state: str
    last_activity: str | None  # ISO 8601, as in GET /api/kernels
    busy_since: float | None  # unix time the current run of executions began; None: not busy
    connections: int
    pid: int | None
    path: str | None  # notebook (or console) path from the session manager
    reason: str | None  # why pid is None
    # unix time of the transition to "idle" (for a kernel already idle when first seen: its
    # last_activity); None when not idle. Unlike last_activity, output a kernel thread sends
    # while idle (a widget's updates) does not move it: only executing something does.
    idle_since: float | None = None
    # FROM_EXECUTIONS: busy/idle from execute requests; FROM_SERVER: jupyter_server's last status
    state_source: str = FROM_SERVER


@dataclass
class _Watched:
    """One kernel the registry follows."""

    kernel: Any
    executions: Executions
    observer: Callable[[dict[str, Any]], None] | None = None  # on execution_state (fallback)
    stream: Any = None  # our IOPub subscription (a ZMQStream)
    session: Any = None  # to check and read its messages
    narrowed: bool = False  # subscribed to _KERNEL_TOPIC only
    heard: bool = False  # our subscription has delivered a message: it is connected
    pid: int | None = None
    settling: bool = False  # a timer waits QUEUE_GAP to let a pending idle take effect
    ended_at: float = 0.0  # the loop's time the last execution ended (the gap counts from it)


class KernelRegistry:
    """Join the kernel manager, the session manager and each kernel's local pid."""

    def __init__(
        self,
        kernel_manager: Any,
        session_manager: Any | None = None,
        *,
        wall: Callable[[], float] = time.time,
        log: logging.Logger | None = None,
        event_logger: Any = None,
        on_execution: Callable[[str, str, str, float], None] | None = None,
    ) -> None:
        self._km = kernel_manager
        # called with (kernel id, execute request's msg_id, "start" or "end", unix time) at each
        # execute request's own busy and idle status, as our subscription hears them (queued
        # cells each have their own pair; the time is the kernel's header date where it has one)
        self._on_execution = on_execution
        self._sm = session_manager
        self._wall = wall
        self._log = log or logging.getLogger(__name__)
        self._view: Mapping[str, KernelInfo] = {}
        # kernel id -> connection info, for kernels without a local pid that ZMQ can reach
        self._endpoints: Mapping[str, Mapping[str, Any]] = {}
        self._watched: dict[str, _Watched] = {}
        self._paths: dict[str, str] = {}
        self._warned: set[str] = set()
        self._events = event_logger
        self._listening = False
        if event_logger is not None:
            try:
                event_logger.add_listener(schema_id=_KERNEL_ACTIONS, listener=self._on_action)
                self._listening = True
            except Exception as e:  # noqa: BLE001 - without it, refresh() finds new kernels
                self._warn_once("events", "cannot listen to kernel events (%s)", e)

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
            if entry is not None and getattr(entry.kernel, "execution_state", None) != "starting":
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
            if kid in self._watched:
                # a new process first (it drops the old process's subscription), then subscribe
                self._check_process(kid, self._watched[kid])
                self._check_subscription(kid, self._watched[kid])
        for kid in set(self._watched) - set(ids):
            self._unwatch(kid)
        view = {}
        endpoints = {}
        for kid in ids:
            info = self._info(kid)
            if info is not None:
                view[kid] = info
                if info.reason == NOT_LOCAL:
                    conn = _connection_info(self._watched[kid].kernel)
                    if conn is not None:
                        endpoints[kid] = conn
        self._view = view
        self._endpoints = endpoints

    def close(self) -> None:
        """Stop observing every kernel."""
        if self._listening:
            with contextlib.suppress(Exception):
                self._events.remove_listener(schema_id=_KERNEL_ACTIONS, listener=self._on_action)
            self._listening = False
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
        now = self._wall()
        state = _trait(kernel, "execution_state")
        if state == "busy":
            # already busy when first seen: the best lower bound we have is now
            executions = Executions(busy=True, since=now)
        else:
            # already idle when first seen (the server restarted, the extension loaded late):
            # its last activity is when it went idle, or later
            stamp = _iso_time(_trait(kernel, "last_activity"))
            executions = Executions(since=stamp if stamp is not None else now)
        entry = self._watched[kid] = _Watched(kernel, executions)
        # until our own subscription has heard from the kernel, follow jupyter_server's state (a
        # first cell may run before a new subscription is connected); the caller subscribes
        self._observe(kid, entry)

    def _observe(self, kid: str, entry: _Watched) -> None:
        """Follow the server's ``execution_state`` trait (before our subscription hears)."""
        if entry.observer is not None:
            return

        def on_state(change: dict[str, Any]) -> None:
            self._guard("state", self._on_state, kid, change["new"])

        try:
            entry.kernel.observe(on_state, names="execution_state")
            entry.observer = on_state
        except (AttributeError, TypeError):  # not a HasTraits kernel: refresh() catches up
            pass

    def _unobserve(self, entry: _Watched) -> None:
        if entry.observer is not None:
            with contextlib.suppress(ValueError):
                entry.kernel.unobserve(entry.observer, names="execution_state")
            entry.observer = None

    def _check_process(self, kid: str, entry: _Watched) -> None:
        """End everything of a process that was replaced (a restart we did not hear of)."""
        pid, _ = _local_pid(entry.kernel)
        if pid is not None and entry.pid is not None and pid != entry.pid:
            entry.executions.reset(self._wall())  # nothing of the old process runs
            self._drop_subscription(kid, entry)
        if pid is not None:
            entry.pid = pid

    def _check_subscription(self, kid: str, entry: _Watched) -> None:
        """Subscribe to a launched kernel that has no subscription of ours yet.

        A subscription is known to work once a message comes through it: ipykernel 7 greets each
        new topic a subscriber asks for (``iopub_welcome``), and ours is the only one to ask for
        ``kernel.``, so the greeting arrives as soon as it is connected (ZMQ resends the
        subscription if the kernel was still binding its socket). An older kernel is heard at
        its first status. Until then jupyter_server's own state stands in. (Replacing a
        subscription that has not heard yet loses what is published during the swap, so a
        subscription is never replaced while its kernel process lives.)
        """
        if entry.stream is None:
            self._subscribe(kid, entry)

    def _subscribe(self, kid: str, entry: _Watched) -> bool:
        """Open our IOPub subscription to a launched ZMQ kernel; return whether there is one."""
        if entry.stream is not None:
            return True
        kernel = entry.kernel
        if _is_gateway(kernel) or not getattr(kernel, "has_kernel", False):
            return False
        connect = getattr(kernel, "connect_iopub", None)
        if not callable(connect):
            return False
        try:
            from jupyter_client.session import Session

            stream = connect()
            session = Session(config=kernel.session.config, key=kernel.session.key)
            if _is_ipykernel(kernel):
                _narrow(stream)
                entry.narrowed = True
            stream.on_recv(lambda frames: self._guard("iopub", self._on_iopub, kid, stream, frames))
        except Exception as e:  # noqa: BLE001 - the kernel keeps the server's own state
            self._warn_once("iopub", "cannot subscribe to a kernel's IOPub (%s)", e)
            return False
        entry.stream, entry.session = stream, session
        self._log.debug("torchlab: subscribed to kernel %s's IOPub", kid)
        return True

    def _drop_subscription(self, kid: str, entry: _Watched) -> None:
        """Close our subscription (a new process: new ports); the server's state stands in."""
        if entry.stream is not None:
            with contextlib.suppress(Exception):
                entry.stream.close()
        entry.stream, entry.narrowed, entry.heard = None, False, False
        self._log.debug("torchlab: dropped kernel %s's IOPub subscription", kid)
        self._observe(kid, entry)

    def _unwatch(self, kid: str) -> None:
        entry = self._watched.pop(kid)
        self._unobserve(entry)
        if entry.stream is not None:
            with contextlib.suppress(Exception):
                entry.stream.close()

    def _on_iopub(self, kid: str, stream: Any, frames: list[Any]) -> None:
        entry = self._watched.get(kid)
        if entry is None or entry.session is None or stream is not entry.stream:
            return  # a message of a subscription already dropped: its process is gone
        if not entry.heard:  # connected: from now on every status reaches us
            entry.heard = True
            self._unobserve(entry)
            self._log.debug("torchlab: heard kernel %s (%s)", kid, entry.executions.state)
        idents, fed = entry.session.feed_identities(frames)
        msg = entry.session.deserialize(fed, content=False)
        if msg["header"].get("msg_type") != "status":
            return
        topic = idents[0] if idents else b""
        if not entry.narrowed and isinstance(topic, bytes) and topic.startswith(_KERNEL_TOPIC):
            _narrow(entry.stream)  # a kernel that publishes as ipykernel does
            entry.narrowed = True
        state = entry.session.unpack(fed[4]).get("execution_state")
        parent = msg.get("parent_header") or {}
        now = self._wall()
        was_pending = entry.executions.pending_idle
        change = entry.executions.status(state, parent.get("msg_type"), parent.get("msg_id"), now)
        if (
            self._on_execution is not None
            and parent.get("msg_type") == "execute_request"
            and parent.get("msg_id")
            and state in ("busy", "idle")
        ):
            stamp = _iso_time(msg["header"].get("date"))
            edge = "start" if state == "busy" else "end"
            self._guard("execution", self._on_execution, kid, parent["msg_id"], edge, stamp or now)
        self._log.debug(
            "torchlab: kernel %s status %s for %s: %s", kid, state, parent.get("msg_type"), change
        )
        if entry.executions.pending_idle and not was_pending:  # the last execution just ended
            loop = IOLoop.current()
            entry.ended_at = loop.time()
            if not entry.settling:
                entry.settling = True
                loop.call_later(QUEUE_GAP, self._settle, kid)
        shown = self._view.get(kid)
        # a change, a new process, or the first status of a kernel shown as starting
        if (
            change is not None
            or state == "starting"
            or (shown is not None and shown.execution_state == "starting")
        ):
            self._update(kid)

    def _settle(self, kid: str) -> None:
        entry = self._watched.get(kid)
        if entry is None:
            return
        entry.settling = False
        left = entry.ended_at + QUEUE_GAP - IOLoop.current().time()
        if left > 0:  # a queued cell ran and ended since the timer was set: wait for its gap
            entry.settling = True
            IOLoop.current().call_later(left, self._settle, kid)
            return
        # QUEUE_GAP has passed on the loop's clock: no queued cell started, or it cleared this
        if entry.executions.settle() is not None:
            self._guard("settle", self._update, kid)

    def _on_state(self, kid: str, new: str) -> None:
        """Follow the server's own state for a kernel our subscription does not hear (yet)."""
        entry = self._watched.get(kid)
        if entry is None or entry.heard:
            return
        self._follow_server(entry, new)
        self._log.debug("torchlab: kernel %s: server says %s", kid, new)
        self._update(kid)

    def _follow_server(self, entry: _Watched, server_state: str) -> None:
        """Take jupyter_server's busy or idle as ours, timed now, where it differs."""
        if server_state == "busy" and entry.executions.state != "busy":
            entry.executions = Executions(busy=True, since=self._wall())
        elif server_state == "idle" and entry.executions.state != "idle":
            entry.executions = Executions(since=self._wall())

    async def _on_action(self, logger: Any, schema_id: str, data: Mapping[str, Any]) -> None:
        """Watch a kernel as soon as it has started: its first cell may follow at once."""
        kid = data.get("kernel_id")
        if not isinstance(kid, str) or data.get("status") != "success":
            return
        action = data.get("action")
        if action == "start" and kid not in self._watched:
            self._guard("start", self._watch, kid)
            if kid in self._watched:
                self._guard("start", self._check_subscription, kid, self._watched[kid])
                self._guard("start", self._update, kid)
        elif action == "restart" and kid in self._watched:
            entry = self._watched[kid]
            entry.executions.reset(self._wall())
            self._guard("restart", self._drop_subscription, kid, entry)
            self._guard("restart", self._update, kid)

    def _update(self, kid: str) -> None:
        info = self._info(kid)
        if info is not None:
            view = dict(self._view)
            view[kid] = info
            self._view = view

    def _info(self, kid: str) -> KernelInfo | None:
        entry = self._watched.get(kid)
        if entry is None:
            return None
        kernel = entry.kernel
        try:
            # the same model GET /api/kernels returns: state, activity and connection count;
            # while jupyter_server itself is starting the kernel, this can raise (TraitError:
            # last_activity is still None): the next refresh reads it
            model = self._km.kernel_model(kid)
        except Exception:  # noqa: BLE001 - removed, or not readable yet
            return None
        server_state = model.get("execution_state") or "unknown"
        pid, reason = _local_pid(kernel)
        executions = entry.executions
        from_executions = entry.heard
        if server_state in _LIFE_STATES:
            # "starting" lasts until jupyter_server reads the kernel's first status after a
            # client connects (a usage_request must not end it, see endpoints())
            if server_state != "starting":
                executions.reset(self._wall())
            state = server_state
        elif from_executions or entry.observer is not None:
            state = executions.state
        else:  # no observer at all: follow what refresh() sees
            self._follow_server(entry, server_state)
            executions = entry.executions
            state = server_state if server_state in ("busy", "idle") else executions.state
        return KernelInfo(
            id=kid,
            name=model.get("name") or getattr(kernel, "kernel_name", ""),
            execution_state=state,
            last_activity=model.get("last_activity"),
            busy_since=executions.busy_since if state == "busy" else None,
            connections=int(model.get("connections") or 0),
            pid=pid,
            path=self._paths.get(kid),
            reason=reason,
            idle_since=executions.idle_since if state == "idle" else None,
            state_source=FROM_EXECUTIONS if from_executions else FROM_SERVER,
        )

    def _guard(self, key: str, fn: Callable[..., Any], *args: Any) -> None:
        """Call ``fn``; log its failure once and return (the caller is the server or ZMQ)."""
        try:
            fn(*args)
        except Exception as e:  # noqa: BLE001 - never fail the server's own request
            self._warn_once(f"guard-{key}", "reading a kernel's state failed (%r)", e)

    def _warn_once(self, key: str, msg: str, *args: object) -> None:
        if key not in self._warned:
            self._warned.add(key)
            self._log.warning("torchlab: " + msg, *args)


def _trait(kernel: Any, name: str) -> Any:
    """Return a kernel manager's attribute, None where it is unset or cannot be read yet.

    While jupyter_server starts a kernel, ``last_activity`` is None and reading the trait raises.
    """
    try:
        return getattr(kernel, name, None)
    except Exception:  # noqa: BLE001 - a TraitError while the server fills it in
        return None


def _narrow(stream: Any) -> None:
    """Receive only ``kernel.*`` topics from now on (subscribe before leaving the catch-all)."""
    import zmq

    stream.socket.setsockopt(zmq.SUBSCRIBE, _KERNEL_TOPIC)
    stream.socket.setsockopt(zmq.UNSUBSCRIBE, b"")


def _is_ipykernel(kernel: Any) -> bool:
    """Whether the kernel's command line starts ipykernel (its IOPub topics are known)."""
    try:
        argv = kernel.kernel_spec.argv
    except Exception:  # noqa: BLE001 - no spec (a remote kernel): learn from its first status
        return False
    return any("ipykernel" in str(part) for part in argv or ())


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
