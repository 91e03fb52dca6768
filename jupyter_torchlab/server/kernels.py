"""Which kernels the server runs: id, state, busy-since, notebook path and local pid.

The registry is written on the event loop and read by the sampler thread. Writers build a new
dict and swap the reference, so a reader always sees one consistent view without a lock.

Busy and idle come from each kernel's execute requests (:mod:`.executions`), read from an IOPub
subscription of the registry's own (one :class:`~.kernel_watch.KernelWatch` per kernel follows
it): jupyter_server's ``execution_state`` is the last status
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
from typing import Any

from jupyter_core.utils import ensure_async

from jupyter_torchlab._runtime_files import KernelRecord, write_kernels

from .kernel_watch import KernelWatch, is_gateway

__all__ = [
    "FROM_EXECUTIONS",
    "FROM_SERVER",
    "GATEWAY",
    "NOT_LOCAL",
    "NOT_RUNNING",
    "KernelInfo",
    "KernelRegistry",
    "KernelsFile",
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
        self._watched: dict[str, KernelWatch] = {}
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
            watch = self._watched.get(kid)
            if watch is not None:
                # a new process first (it drops the old process's subscription), then subscribe
                watch.check_process(_local_pid(watch.kernel)[0])
                watch.subscribe(self._warn_once)
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
        on_execution = self._on_execution
        self._watched[kid] = KernelWatch(
            kid,
            kernel,
            wall=self._wall,
            changed=lambda certain: self._changed(kid, certain),
            guard=self._guard,
            log=self._log,
            on_execution=(
                None
                if on_execution is None
                else lambda msg_id, edge, at: on_execution(kid, msg_id, edge, at)
            ),
        )

    def _unwatch(self, kid: str) -> None:
        self._watched.pop(kid).close()

    def _changed(self, kid: str, certain: bool) -> None:
        """Update the view on a change (certain) or where a status may end "starting"."""
        shown = self._view.get(kid)
        if certain or (shown is not None and shown.execution_state == "starting"):
            self._update(kid)

    async def _on_action(self, logger: Any, schema_id: str, data: Mapping[str, Any]) -> None:
        """Watch a kernel as soon as it has started: its first cell may follow at once."""
        kid = data.get("kernel_id")
        if not isinstance(kid, str) or data.get("status") != "success":
            return
        action = data.get("action")
        if action == "start" and kid not in self._watched:
            self._guard("start", self._watch, kid)
            if kid in self._watched:
                self._guard("start", self._watched[kid].subscribe, self._warn_once)
                self._guard("start", self._update, kid)
        elif action == "restart" and kid in self._watched:
            self._guard("restart", self._watched[kid].restarted)
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
        elif from_executions or entry.follows_server:
            state = executions.state
        else:  # no observer at all: follow what refresh() sees
            entry.follow_server(server_state)
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


class KernelsFile:
    """Write each kernel's pid, name and notebook beside the connection files, when they change.

    Kernels read it (:mod:`jupyter_torchlab._runtime_files`) to name the notebooks whose kernels
    hold the same GPU. Called from the sampler thread with the tick's registry view.
    """

    def __init__(self, runtime_dir: str) -> None:
        self._dir = runtime_dir
        self._written: dict[int, KernelRecord] | None = None

    def write(self, kernels: Mapping[str, KernelInfo]) -> None:
        """Write the table if it differs from the last one written (raises OSError)."""
        table = {
            info.pid: KernelRecord(id=kid, name=info.name, path=info.path)
            for kid, info in kernels.items()
            if info.pid is not None
        }
        if table != self._written:
            write_kernels(self._dir, table)
            self._written = table


def _local_pid(kernel: Any) -> tuple[int | None, str | None]:
    """Return (pid, None) for a kernel launched as a local process, else (None, reason)."""
    from jupyter_client.provisioning import LocalProvisioner

    provisioner = getattr(kernel, "provisioner", None)
    if is_gateway(kernel):
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
