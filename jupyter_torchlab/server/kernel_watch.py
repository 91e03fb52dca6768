"""One kernel followed: its executions, read from an IOPub subscription of our own.

:class:`KernelWatch` is the part of :mod:`.kernels` that follows a single kernel process. It
owns the subscription (asking ipykernel for its ``kernel.*`` topics only: status and
execute_input, so a cell's output and widget traffic never reach it), feeds each ``status`` to
:class:`~.executions.Executions`, lets a pending idle settle after
:data:`~.executions.QUEUE_GAP`, and, until the subscription has delivered its first message,
follows jupyter_server's own ``execution_state`` instead (a first cell may run before a new
subscription is connected).

A subscription is known to work once a message comes through it: ipykernel 7 greets each new
topic a subscriber asks for (``iopub_welcome``), and ours is the only one to ask for
``kernel.``, so the greeting arrives as soon as it is connected (ZMQ resends the subscription if
the kernel was still binding its socket). An older kernel is heard at its first status, so a
subscription not heard :data:`PROBE_AFTER` seconds after it opened (a new kernel, a restart's new
process) asks the kernel for one ``kernel_info_request`` on its control channel (the shell where
no control socket can be made), again after 1, 2, 4 and 8 s while still unheard: the kernel
publishes a status pair for it, the pair a page's own kernel_info makes, and from then on every
status reaches us before any cell. A request is sent only while jupyter_server reads the kernel
"idle": not while "starting" (no client has connected; the first one's kernel_info is heard
instead), and not while busy (the pair would make jupyter_server read idle during a cell); never
to a kernel we do not subscribe to (a gateway), nor once heard.

Until heard, jupyter_server's busy is taken only once it has lasted :data:`QUEUE_GAP`: a request's
own busy/idle pair (that probe, a page's kernel_info or comm_info) passes in milliseconds, and
followed, it would stay busy if our subscription were first heard in between. A busy that lasts
is taken even where our subscription was heard meanwhile, unless it has since heard an execute
request's own status: ipykernel 7's greeting can come just after a cell's busy, which the new
subscription then never receives (the cell would read idle to its end).

Replacing a subscription that has not heard yet loses what is published during the swap, so a
subscription is dropped only when its process is replaced (a restart, a new pid), and messages
of a dropped one are ignored.

The registry calls in on the event loop. The watch calls back ``changed(True)`` when its state
changed, ``changed(False)`` for any other status (which ends a "starting" the registry shows),
and ``on_execution(msg_id, "start" or "end", time)`` at each execute request's own busy and
idle status. Callbacks from ZMQ, timers and traitlets go through the registry's ``guard``:
nothing here may fail jupyter_server's own requests.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from tornado.ioloop import IOLoop

from .executions import QUEUE_GAP, Executions

__all__ = ["PROBE_AFTER", "KernelWatch", "iso_time", "trait"]

#: seconds an open subscription may stay unheard before the kernel is asked for kernel_info
PROBE_AFTER = 0.5
_PROBES = 5  # kernel_info requests at most per subscription: 0.5, 1, 2, 4 and 8 s apart

# ipykernel publishes status (and execute_input) under "kernel.<uuid>.<type>": subscribing to
# this prefix leaves out stream output, display data and comm messages
_KERNEL_TOPIC = b"kernel."

Guard = Callable[..., None]  # guard(key, fn, *args): call fn, log a failure once, return


class KernelWatch:
    """Follow one kernel's executions (event loop only)."""

    def __init__(
        self,
        kid: str,
        kernel: Any,
        *,
        wall: Callable[[], float],
        changed: Callable[[bool], None],
        guard: Guard,
        log: logging.Logger,
        on_execution: Callable[[str, str, float], None] | None = None,
    ) -> None:
        self.kid = kid
        self.kernel = kernel
        self._wall = wall
        self._changed = changed
        self._guard = guard
        self._log = log
        self._on_execution = on_execution
        now = wall()
        if trait(kernel, "execution_state") == "busy":
            # already busy when first seen: the best lower bound we have is now
            self.executions = Executions(busy=True, since=now)
        else:
            # already idle when first seen (the server restarted, the extension loaded late):
            # its last activity is when it went idle, or later
            stamp = iso_time(trait(kernel, "last_activity"))
            self.executions = Executions(since=stamp if stamp is not None else now)
        self.heard = False  # our subscription has delivered a message: it is connected
        self.pid: int | None = None
        self._observer: Callable[[dict[str, Any]], None] | None = None  # on execution_state
        self._stream: Any = None  # our IOPub subscription (a ZMQStream)
        self._session: Any = None  # to check and read its messages
        self._narrowed = False  # subscribed to _KERNEL_TOPIC only
        self._settling = False  # a timer waits QUEUE_GAP to let a pending idle take effect
        self._ended_at = 0.0  # the loop's time the last execution ended (the gap counts from it)
        self._confirm: Any = None  # a timer: does jupyter_server's busy last QUEUE_GAP?
        self._probe: Any = None  # a timer: ask the kernel for kernel_info if still unheard
        self._probes = 0  # kernel_info requests sent to the current subscription's process
        self._request_stream: Any = None  # our control (or shell) connection for them
        self._execute_heard_at = 0.0  # wall time of the last execute request status heard
        # until our own subscription has heard from the kernel, follow jupyter_server's state
        self._observe()

    @property
    def follows_server(self) -> bool:
        """Whether jupyter_server's state trait is being followed (nothing heard yet)."""
        return self._observer is not None

    # --- the registry calls -------------------------------------------------------------------

    def check_process(self, pid: int | None) -> None:
        """End everything of a process that was replaced (a restart we did not hear of)."""
        if pid is not None and self.pid is not None and pid != self.pid:
            self.executions.reset(self._wall())  # nothing of the old process runs
            self._drop_subscription()
        if pid is not None:
            self.pid = pid

    def restarted(self) -> None:
        """jupyter_server restarted the kernel: nothing runs, the new process has new sockets."""
        self.executions.reset(self._wall())
        self._drop_subscription()

    def subscribe(self, warn: Callable[[str, str, object], None]) -> None:
        """Open our IOPub subscription to a launched ZMQ kernel, if there is none yet."""
        if self._stream is not None:
            return
        kernel = self.kernel
        if is_gateway(kernel) or not getattr(kernel, "has_kernel", False):
            return
        connect = getattr(kernel, "connect_iopub", None)
        if not callable(connect):
            return
        try:
            from jupyter_client.session import Session

            stream = connect()
            session = Session(config=kernel.session.config, key=kernel.session.key)
            if _is_ipykernel(kernel):
                _narrow(stream)
                self._narrowed = True
            stream.on_recv(lambda frames: self._guard("iopub", self._on_iopub, stream, frames))
        except Exception as e:  # noqa: BLE001 - the kernel keeps the server's own state
            warn("iopub", "cannot subscribe to a kernel's IOPub (%s)", e)
            return
        self._stream, self._session = stream, session
        self._log.debug("torchlab: subscribed to kernel %s's IOPub", self.kid)
        self._probes = 0
        self._arm_probe(PROBE_AFTER)

    def follow_server(self, server_state: str, since: float | None = None) -> None:
        """Take jupyter_server's busy or idle as ours, timed ``since`` (now), where it differs."""
        at = self._wall() if since is None else since
        if server_state == "busy" and self.executions.state != "busy":
            self.executions = Executions(busy=True, since=at)
        elif server_state == "idle" and self.executions.state != "idle":
            self.executions = Executions(since=at)

    def close(self) -> None:
        """Stop following the kernel (it left the server)."""
        self._unobserve()
        self._stop_probing()
        self._cancel_confirm()
        if self._stream is not None:
            with contextlib.suppress(Exception):
                self._stream.close()
            self._stream = None

    # --- internals ----------------------------------------------------------------------------

    def _observe(self) -> None:
        """Follow the server's ``execution_state`` trait (before our subscription hears)."""
        if self._observer is not None:
            return

        def on_state(change: dict[str, Any]) -> None:
            self._guard("state", self._on_state, change["new"])

        try:
            self.kernel.observe(on_state, names="execution_state")
            self._observer = on_state
        except (AttributeError, TypeError):  # not a HasTraits kernel: refresh() catches up
            pass

    def _unobserve(self) -> None:
        if self._observer is not None:
            with contextlib.suppress(ValueError):
                self.kernel.unobserve(self._observer, names="execution_state")
            self._observer = None

    def _drop_subscription(self) -> None:
        """Close our subscription (a new process: new ports); the server's state stands in."""
        if self._stream is not None:
            with contextlib.suppress(Exception):
                self._stream.close()
        self._stream, self._narrowed, self.heard = None, False, False
        self._stop_probing()  # the next subscription (the new process) probes afresh
        self._cancel_confirm()  # a busy of the old process's
        self._log.debug("torchlab: dropped kernel %s's IOPub subscription", self.kid)
        self._observe()

    def _on_state(self, new: str) -> None:
        """Follow the server's own state while our subscription does not hear (yet)."""
        if self.heard:
            return
        if self._stream is not None and new == "idle":
            self._arm_probe(PROBE_AFTER)  # a client connected, or a cell ended: ask it now
        if new == "busy" and self._stream is not None and self.executions.state != "busy":
            # a request's busy/idle pair passes in milliseconds; a cell's busy lasts
            if self._confirm is None:
                self._confirm = IOLoop.current().call_later(
                    QUEUE_GAP, self._guard, "confirm", self._confirm_busy, self._wall()
                )
            return
        self.follow_server(new)
        self._log.debug("torchlab: kernel %s: server says %s", self.kid, new)
        self._changed(True)

    def _confirm_busy(self, seen: float) -> None:
        """jupyter_server's busy, seen QUEUE_GAP ago: take it if it lasted.

        Our subscription may have been heard in the meantime (ipykernel 7's greeting can come
        just after a cell's busy, which it then never delivers to us): unless it has since heard
        an execute request's own status, the cell's busy stands, and the first execute idle
        heard ends it.
        """
        self._confirm = None
        if trait(self.kernel, "execution_state") != "busy" or self.executions.state == "busy":
            return
        if self.heard and self._execute_heard_at >= seen:
            return  # our subscription follows that cell itself
        self.follow_server("busy", since=seen)
        self._log.debug("torchlab: kernel %s: server says busy (lasted)", self.kid)
        self._changed(True)

    def _arm_probe(self, delay: float) -> None:
        if self._probe is None and not self.heard and self._probes <= _PROBES:
            self._probe = IOLoop.current().call_later(delay, self._guard, "probe", self._send_probe)

    def _send_probe(self) -> None:
        """Ask a kernel our subscription has not heard for kernel_info (it publishes a status)."""
        self._probe = None
        if self.heard or self._stream is None or self._session is None:
            return
        if trait(self.kernel, "execution_state") != "idle":
            return  # _on_state arms the probe again when the server reads the kernel idle
        if self._probes >= _PROBES:  # bounded: jupyter_server's state keeps standing in
            self._probes += 1
            self._close_requests()
            return
        if self._request_stream is None:
            self._request_stream = _request_stream(self.kernel)
        self._probes += 1
        self._arm_probe(PROBE_AFTER * 2**self._probes)
        self._session.send(self._request_stream, "kernel_info_request", {})
        self._log.debug("torchlab: kernel %s not heard: sent kernel_info_request", self.kid)

    def _stop_probing(self) -> None:
        """Send no more kernel_info requests to this subscription's process."""
        if self._probe is not None:
            IOLoop.current().remove_timeout(self._probe)
            self._probe = None
        self._close_requests()

    def _cancel_confirm(self) -> None:
        """Drop a busy of jupyter_server's that waits to be confirmed."""
        if self._confirm is not None:
            IOLoop.current().remove_timeout(self._confirm)
            self._confirm = None

    def _close_requests(self) -> None:
        if self._request_stream is not None:
            with contextlib.suppress(Exception):
                self._request_stream.close()
            self._request_stream = None

    def _on_iopub(self, stream: Any, frames: list[Any]) -> None:
        if self._session is None or stream is not self._stream:
            return  # a message of a subscription already dropped: its process is gone
        if not self.heard:  # connected: from now on every status reaches us
            self.heard = True
            self._unobserve()
            # a busy of jupyter_server's waiting to be confirmed may be a cell's whose status
            # came before our subscription was connected: _confirm_busy still decides it
            self._stop_probing()
            self._log.debug("torchlab: heard kernel %s (%s)", self.kid, self.executions.state)
        idents, fed = self._session.feed_identities(frames)
        msg = self._session.deserialize(fed, content=False)
        if msg["header"].get("msg_type") != "status":
            return
        topic = idents[0] if idents else b""
        if not self._narrowed and isinstance(topic, bytes) and topic.startswith(_KERNEL_TOPIC):
            _narrow(stream)  # a kernel that publishes as ipykernel does
            self._narrowed = True
        state = self._session.unpack(fed[4]).get("execution_state")
        parent = msg.get("parent_header") or {}
        parent_type, parent_id = parent.get("msg_type"), parent.get("msg_id")
        now = self._wall()
        if parent_type == "execute_request":
            self._execute_heard_at = now
        was_pending = self.executions.pending_idle
        change = self.executions.status(state, parent_type, parent_id, now)
        self._log.debug(
            "torchlab: kernel %s status %s for %s: %s", self.kid, state, parent_type, change
        )
        if (
            self._on_execution is not None
            and parent_type == "execute_request"
            and parent_id
            and state in ("busy", "idle")
        ):
            stamp = iso_time(msg["header"].get("date"))
            edge = "start" if state == "busy" else "end"
            self._guard("execution", self._on_execution, parent_id, edge, stamp or now)
        if self.executions.pending_idle and not was_pending:  # the last execution just ended
            loop = IOLoop.current()
            self._ended_at = loop.time()
            if not self._settling:
                self._settling = True
                loop.call_later(QUEUE_GAP, self._guard, "settle", self._settle)
        # a change or a new process; any other status may end a "starting" the registry shows
        self._changed(change is not None or state == "starting")

    def _settle(self) -> None:
        self._settling = False
        left = self._ended_at + QUEUE_GAP - IOLoop.current().time()
        if left > 0:  # a queued cell ran and ended since the timer was set: wait for its gap
            self._settling = True
            IOLoop.current().call_later(left, self._guard, "settle", self._settle)
            return
        # QUEUE_GAP has passed on the loop's clock: no queued cell started, or it cleared this
        if self.executions.settle() is not None:
            self._changed(True)


def trait(kernel: Any, name: str) -> Any:
    """Return a kernel manager's attribute, None where it is unset or cannot be read yet.

    While jupyter_server starts a kernel, ``last_activity`` is None and reading the trait raises.
    """
    try:
        return getattr(kernel, name, None)
    except Exception:  # noqa: BLE001 - a TraitError while the server fills it in
        return None


def iso_time(value: Any) -> float | None:
    """Return the unix time of a datetime or an ISO 8601 string (None: neither)."""
    if isinstance(value, datetime):
        stamp = value if value.tzinfo is not None else value.replace(tzinfo=timezone.utc)
        return stamp.timestamp()
    if isinstance(value, str):
        try:
            return iso_time(datetime.fromisoformat(value.replace("Z", "+00:00")))
        except ValueError:
            return None
    return None


def is_gateway(kernel: Any) -> bool:
    """Whether jupyter_server reaches the kernel through a gateway (no ZMQ of its own)."""
    try:
        from jupyter_server.gateway.managers import GatewayKernelManager
    except ImportError:  # pragma: no cover - a jupyter_server without gateway support
        return False
    return isinstance(kernel, GatewayKernelManager)


def _request_stream(kernel: Any) -> Any:
    """Open a connection to send the kernel requests on: its control channel, else its shell.

    Replies are left unread (closing the stream drops them); like the usage poller's control
    socket, a send never blocks and nothing lingers at close.
    """
    import zmq

    try:
        stream = kernel.connect_control()
    except Exception:  # noqa: BLE001 - a kernel manager without a control channel
        stream = kernel.connect_shell()
    socket = getattr(stream, "socket", stream)
    socket.setsockopt(zmq.SNDTIMEO, 0)
    socket.setsockopt(zmq.LINGER, 0)
    return stream


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
