"""Ask kernels that are not local processes for their own CPU and memory (``usage_request``).

ipykernel answers a ``usage_request`` on the control channel with a ``usage_reply`` (from version
6.7; the ``kernel_cpu`` figure is right from 6.14) that carries ``kernel_cpu`` (percent of one
core, summed over the kernel's process tree) and ``kernel_memory`` (bytes, PSS where readable) —
the same figures the server measures through /proc for a local kernel. Everything here runs on the
sampler thread, one ZMQ DEALER socket per kernel (jupyter_client's ``BlockingKernelClient``,
control channel only), and a round is cheap and bounded so that a slow or hung kernel never
delays the host, GPU and local-kernel figures of the same tick:

1. read every reply that has arrived since the last round, without waiting;
2. send the requests that are due;
3. wait for their replies at most ``wait`` seconds (a small part of a sampler tick), for all
   kernels together. What has not arrived by then stays pending and is read by step 1 of a later
   round; a kernel whose oldest request has stayed unanswered ``timeout`` seconds is reported as
   not answering.

The control messages make the kernel publish ``status`` busy/idle on IOPub with the request as
parent; the extension adds ``usage_request``/``usage_reply`` to the kernel manager's
``untracked_message_types`` so that an idle kernel's ``execution_state`` and ``last_activity`` do
not move (see ``KernelRegistry.endpoints`` for the cases jupyter_server still counts).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from queue import Empty
from typing import Any

from jupyter_torchlab._format import format_span

__all__ = ["UNTRACKED_TYPES", "KernelUsage", "UsagePoller"]

# message types that must not count as user activity on the server (see the module docstring)
UNTRACKED_TYPES = ("usage_request", "usage_reply")
# the first ipykernel release that answers usage_request (ipykernel PR #805, CHANGELOG 6.7.0)
FIRST_IPYKERNEL = "6.7"
_MAX_PENDING = 16  # unanswered requests remembered per kernel (a hung kernel gets one per interval)


@dataclass(frozen=True)
class KernelUsage:
    """What one kernel last said about itself, and how old that is."""

    cpu_percent: float | None  # 100 = one core, summed over the kernel's process tree
    memory: int | None  # bytes: PSS where the kernel can read it, else RSS
    age: float | None  # seconds since the figures arrived; None when there are none
    hostname: str | None
    pid: int | None  # the kernel's pid on its own host (not a local pid)
    latency: float | None  # seconds from request to reading its reply (latest answered request)
    reason: str | None  # why the figures are missing or old; None when fresh


class _Client:
    """One kernel's control-channel connection and what it has answered so far."""

    def __init__(self, identity: tuple[Any, ...], client: Any) -> None:
        self.identity = identity
        self.client = client
        self.socket = client.control_channel.socket
        self.next_due = 0.0  # clock time of the next usage_request
        self.pending: dict[str, float] = {}  # unanswered usage_request msg_id -> sent, oldest first
        self.waiting_since: float | None = None  # oldest unanswered usage_request
        self.session: str | None = None  # header.session of the kernel process that answered
        self.answered = False  # this kernel process has answered a usage_request
        self.figures: tuple[float | None, int | None] | None = None
        self.received_at: float | None = None
        self.hostname: str | None = None
        self.pid: int | None = None
        self.latency: float | None = None
        self.probe_id: str | None = None  # kernel_info_request sent to tell "old" from "hung"
        self.probe_at = 0.0
        self.problem: str | None = None  # a reply we could not use
        self.unsupported: str | None = None  # this kernel ignores usage_request (re-checked)
        self.unsupported_at = 0.0

    def new_process(self, session: str) -> None:
        """Forget what an earlier process of this kernel said (it restarted on the same ports)."""
        self.session = session
        self.answered = False
        self.figures = self.received_at = self.hostname = self.pid = None

    def close(self) -> None:
        # not stop_channels(): it would create the other channels' sockets just to stop them
        self.client.control_channel.close()


class UsagePoller:
    """Ask kernels for ``usage_request`` every ``interval`` s; report silence after ``timeout`` s.

    ``poll(endpoints)`` is called once per sampler tick with kernel id -> connection info (the
    dict ``KernelManager.get_connection_info()`` returns: transport, ip, control_port, key,
    signature_scheme, ...) and blocks at most ``wait`` seconds (default ``min(timeout, 0.05)``)
    beyond reading sockets. Clients of kernels that are gone or whose connection info changed are
    closed. A kernel found to ignore usage_request is asked again after ``recheck`` seconds (its
    ipykernel may have been upgraded and restarted on the same ports). Create, poll and close on
    one thread (ZMQ sockets are not thread-safe).
    """

    def __init__(
        self,
        interval: float = 3.0,
        timeout: float = 1.0,
        *,
        wait: float | None = None,
        max_age: float | None = None,
        recheck: float = 600.0,
        clock: Callable[[], float] = time.monotonic,
        log: logging.Logger | None = None,
    ) -> None:
        self.interval = float(interval)
        self.timeout = float(timeout)
        self.wait = min(self.timeout, 0.05) if wait is None else max(0.0, float(wait))
        # figures older than this are dropped, not shown as current
        self.max_age = float(max_age) if max_age is not None else max(30.0, 5 * self.interval)
        self.recheck = float(recheck)
        self._clock = clock
        self._log = log or logging.getLogger(__name__)
        self._clients: dict[str, _Client] = {}
        self._errors: dict[str, str] = {}  # kernel id -> why no client could be made
        self._context: Any = None
        self.last_round_seconds = 0.0  # wall time of the latest poll(), for measurement
        self.replies = 0  # usage_reply messages received so far

    # --- the round ----------------------------------------------------------------------------

    def poll(self, endpoints: Mapping[str, Mapping[str, Any]]) -> dict[str, KernelUsage]:
        """Read arrived replies, send due requests, wait at most ``wait`` s; return id -> usage."""
        began = time.perf_counter()  # real time: what this round costs the sampler thread
        self._sync(endpoints)
        self._collect(set(), 0.0)  # replies that came after an earlier round stopped waiting
        start = self._clock()
        sent = set()
        for client in self._clients.values():
            if client.unsupported is not None:
                if start - client.unsupported_at < self.recheck:
                    continue
                client.unsupported = None
                client.next_due = start
            if start >= client.next_due and self._send_usage(client, start):
                sent.add(client)
                client.next_due = start + self.interval
            if (
                client.waiting_since is not None
                and start - client.waiting_since >= self.timeout
                and (client.probe_id is None or start - client.probe_at >= self.recheck)
            ):
                # control messages are handled in order: a kernel_info_reply to this probe with
                # no usage_reply to the request right in front of it means the process that got
                # both ignores usage_request (pairing them keeps a restart in between from
                # blaming a new kernel for a request its predecessor never answered)
                paired = client in sent or self._send_usage(client, start)
                probe = self._send(client, "kernel_info_request") if paired else None
                if probe is not None:
                    client.probe_id, client.probe_at = probe, start
                    sent.add(client)
        if sent:
            self._collect(sent, self.wait)
        now = self._clock()
        self.last_round_seconds = time.perf_counter() - began
        return {kid: self._reading(kid, now) for kid in endpoints}

    @property
    def open_clients(self) -> int:
        """Return how many kernels have a control-channel socket open."""
        return len(self._clients)

    def close(self) -> None:
        """Close every client and the ZMQ context (call on the thread that polls, or after it)."""
        for client in self._clients.values():
            client.close()
        self._clients.clear()
        if self._context is not None:
            self._context.destroy(linger=0)
            self._context = None

    # --- internals ----------------------------------------------------------------------------

    def _sync(self, endpoints: Mapping[str, Mapping[str, Any]]) -> None:
        for kid in list(self._clients):
            info = endpoints.get(kid)
            if info is None or _identity(info) != self._clients[kid].identity:
                self._clients.pop(kid).close()
        self._errors = {kid: e for kid, e in self._errors.items() if kid in endpoints}
        for kid, info in endpoints.items():
            if kid not in self._clients:
                try:
                    self._clients[kid] = self._connect(info)
                    self._errors.pop(kid, None)
                except Exception as e:  # noqa: BLE001 - bad connection info is reported per kernel
                    self._errors[kid] = (
                        f"cannot connect to the kernel's control channel: {type(e).__name__}: {e}"
                    )

    def _connect(self, info: Mapping[str, Any]) -> _Client:
        import zmq
        from jupyter_client.blocking.client import BlockingKernelClient

        if self._context is None:
            self._context = zmq.Context()
        client = BlockingKernelClient(context=self._context, log=self._log)
        client.load_connection_info(dict(info))  # type: ignore[arg-type]
        socket = client.control_channel.socket  # created and connected here
        # a kernel that stopped reading must never block a send (it would block the sampler)
        socket.setsockopt(zmq.SNDTIMEO, 0)
        socket.setsockopt(zmq.LINGER, 0)
        return _Client(_identity(info), client)

    def _send_usage(self, client: _Client, now: float) -> bool:
        msg_id = self._send(client, "usage_request")
        if msg_id is None:
            return False
        client.pending[msg_id] = now
        if len(client.pending) > _MAX_PENDING:
            del client.pending[next(iter(client.pending))]
        if client.waiting_since is None:
            client.waiting_since = now
        return True

    def _send(self, client: _Client, msg_type: str) -> str | None:
        import zmq

        msg = client.client.session.msg(msg_type, {})
        try:
            client.client.control_channel.send(msg)
        except zmq.ZMQError as e:  # zmq.Again: its queue is full, it has not read for a while
            client.problem = f"cannot send {msg_type} to the kernel: {e}"
            return None
        return str(msg["header"]["msg_id"])

    def _collect(self, waiting: set[_Client], budget: float) -> None:
        """Read replies; wait up to ``budget`` s while a client in ``waiting`` owes one."""
        import zmq

        if not self._clients:
            return
        by_socket = {c.socket: c for c in self._clients.values()}
        poller = zmq.Poller()
        for socket in by_socket:
            poller.register(socket, zmq.POLLIN)
        deadline = time.perf_counter() + budget
        while True:
            remaining = deadline - time.perf_counter()
            wait_ms = math.ceil(remaining * 1000) if waiting and remaining > 0 else 0
            events = poller.poll(wait_ms)
            for socket, _ in events:
                client = by_socket[socket]
                self._drain(client)
                if client.unsupported is not None or (
                    not client.pending and client.probe_id is None
                ):
                    waiting.discard(client)
            if not events and (not waiting or time.perf_counter() >= deadline):
                return

    def _drain(self, client: _Client) -> None:
        while True:
            try:
                msg = client.client.control_channel.get_msg(timeout=0)
            except Empty:
                return
            except Exception as e:  # noqa: BLE001 - e.g. a bad signature: wrong key
                client.problem = f"cannot read the kernel's reply: {type(e).__name__}: {e}"
                return
            now = self._clock()
            header = msg.get("header") or {}
            parent = (msg.get("parent_header") or {}).get("msg_id")
            content = msg.get("content") or {}
            session = header.get("session")
            if session and session != client.session:
                client.new_process(session)
            msg_type = header.get("msg_type")
            if msg_type == "usage_reply":
                self._on_usage(client, parent, content, now)
            elif msg_type == "kernel_info_reply" and parent and parent == client.probe_id:
                client.unsupported = _unsupported(content)
                client.unsupported_at = now
                client.probe_id = client.waiting_since = None
                client.pending.clear()

    def _on_usage(
        self, client: _Client, parent: str | None, content: Mapping[str, Any], now: float
    ) -> None:
        self.replies += 1
        first = not client.answered
        client.answered = True
        client.probe_id = None  # it does answer usage_request: no verdict from a pending probe
        client.unsupported = None
        # the kernel handles control messages in order: every request before this one is done
        sent = client.pending.get(parent) if parent is not None else None
        if sent is not None:
            while client.pending:
                msg_id = next(iter(client.pending))
                del client.pending[msg_id]
                if msg_id == parent:
                    break
        client.latency = None if sent is None else now - sent
        client.waiting_since = next(iter(client.pending.values()), None)
        client.hostname = content.get("hostname")
        client.pid = content.get("pid")
        if content.get("status") == "error":
            client.problem = (
                "the kernel answered usage_request with an error: "
                f"{content.get('ename', '')}: {content.get('evalue', '')}".rstrip(": ")
            )
            return
        cpu, memory = content.get("kernel_cpu"), content.get("kernel_memory")
        if not isinstance(cpu, int | float) and not isinstance(memory, int | float):
            client.problem = (
                "the kernel's usage_reply has no kernel_cpu/kernel_memory: "
                "install psutil in the kernel's environment"
            )
            return
        client.problem = None
        # ipykernel's first reply per process carries psutil's meaningless first CPU figure (0.0)
        client.figures = (
            None if first or not isinstance(cpu, int | float) else float(cpu),
            int(memory) if isinstance(memory, int | float) else None,
        )
        client.received_at = now
        if first:
            client.next_due = now  # a second reply soon gives the first real CPU figure

    def _reading(self, kid: str, now: float) -> KernelUsage:
        client = self._clients.get(kid)
        if client is None:
            return KernelUsage(None, None, None, None, None, None, self._errors.get(kid))
        if client.unsupported is not None:
            return KernelUsage(None, None, None, None, None, None, client.unsupported)
        figures, age = client.figures, None
        if figures is not None and client.received_at is not None:
            age = now - client.received_at
            if age > self.max_age:
                figures, age = None, None
        reason = client.problem
        late = client.waiting_since is not None and now - client.waiting_since >= self.timeout
        if reason is None and late:
            reason = f"kernel did not answer usage_request within {self.timeout:g} s"
            if figures is not None and age is not None:
                reason += f"; figures are {format_span(age)} old"
        if reason is None and figures is None:
            reason = "waiting for the kernel's first usage_reply"
        cpu, memory = figures if figures is not None else (None, None)
        return KernelUsage(
            cpu_percent=cpu,
            memory=memory,
            age=age,
            hostname=client.hostname,
            pid=client.pid,
            latency=client.latency,
            reason=reason,
        )


def _identity(info: Mapping[str, Any]) -> tuple[Any, ...]:
    """Return what makes two connection infos the same endpoint (a restart may change it)."""
    return tuple(
        info.get(k) for k in ("transport", "ip", "control_port", "key", "signature_scheme")
    )


def _unsupported(kernel_info: Mapping[str, Any]) -> str:
    what = " ".join(
        str(v)
        for v in (kernel_info.get("implementation"), kernel_info.get("implementation_version"))
        if v
    )
    return (
        f"the kernel ignores usage_request (ipykernel answers it from version {FIRST_IPYKERNEL}; "
        f"this kernel is {what or 'of an unknown kind'}); upgrade ipykernel in the kernel's "
        "environment and restart the kernel to see its CPU and memory"
    )
