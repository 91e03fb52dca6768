"""Ask kernels that are not local processes for their own CPU and memory (``usage_request``).

ipykernel (6.9 and later) answers a ``usage_request`` on the control channel with a
``usage_reply`` that carries ``kernel_cpu`` (percent of one core, summed over the kernel's process
tree) and ``kernel_memory`` (bytes, PSS where readable) — the same figures the server measures
through /proc for a local kernel. Everything here runs on the sampler thread: one ZMQ DEALER
socket per kernel (through jupyter_client's ``BlockingKernelClient``, control channel only), all
requests of a round sent first, then every reply collected against one deadline, so a round
never takes much longer than ``timeout`` however many kernels hang.

The control messages make the kernel publish ``status`` busy/idle on IOPub with the request as
parent; the extension adds ``usage_request``/``usage_reply`` to the kernel manager's
``untracked_message_types`` so that neither ``execution_state`` nor ``last_activity`` moves.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from queue import Empty
from typing import Any

__all__ = ["UNTRACKED_TYPES", "KernelUsage", "UsagePoller"]

# message types that must not count as user activity on the server (see the module docstring)
UNTRACKED_TYPES = ("usage_request", "usage_reply")


@dataclass(frozen=True)
class KernelUsage:
    """What one kernel last said about itself, and how old that is."""

    cpu_percent: float | None  # 100 = one core, summed over the kernel's process tree
    memory: int | None  # bytes: PSS where the kernel can read it, else RSS
    age: float | None  # seconds since the figures arrived; None when there are none
    hostname: str | None
    pid: int | None  # the kernel's pid on its own host (not a local pid)
    latency: float | None  # seconds from request to reply, last answered round
    reason: str | None  # why the figures are missing or old; None when fresh


class _Client:
    """One kernel's control-channel connection and what it has answered so far."""

    def __init__(self, identity: tuple[Any, ...], client: Any) -> None:
        self.identity = identity
        self.client = client
        self.socket = client.control_channel.socket
        self.next_due = 0.0  # monotonic time of the next usage_request
        self.waiting_since: float | None = None  # oldest unanswered usage_request
        self.sent_at: float | None = None
        self.figures: tuple[float | None, int | None] | None = None
        self.received_at: float | None = None
        self.hostname: str | None = None
        self.pid: int | None = None
        self.latency: float | None = None
        self.answered = False
        self.probe_id: str | None = None  # kernel_info_request sent to tell "old" from "hung"
        self.problem: str | None = None  # a reply we could not use
        self.unsupported: str | None = None  # final: this kernel does not do usage_request

    def close(self) -> None:
        # not stop_channels(): it would create the other channels' sockets just to stop them
        self.client.control_channel.close()


class UsagePoller:
    """Ask kernels for ``usage_request`` at most every ``interval`` s; wait ``timeout`` s a round.

    ``poll(endpoints)`` is called once per sampler tick with kernel id -> connection info (the
    dict ``KernelManager.get_connection_info()`` returns: transport, ip, control_port, key,
    signature_scheme, ...). Clients of kernels that are gone or whose connection info changed
    are closed. Create, poll and close on one thread (ZMQ sockets are not thread-safe).
    """

    def __init__(
        self,
        interval: float = 3.0,
        timeout: float = 1.0,
        *,
        max_age: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        log: logging.Logger | None = None,
    ) -> None:
        self.interval = float(interval)
        self.timeout = float(timeout)
        # figures older than this are dropped, not shown as current
        self.max_age = float(max_age) if max_age is not None else max(30.0, 5 * self.interval)
        self._clock = clock
        self._log = log or logging.getLogger(__name__)
        self._clients: dict[str, _Client] = {}
        self._errors: dict[str, str] = {}  # kernel id -> why no client could be made
        self._context: Any = None
        self.last_round_seconds = 0.0  # cost of the latest poll(), for measurement
        self.replies = 0  # usage_reply messages received so far

    # --- the round ----------------------------------------------------------------------------

    def poll(self, endpoints: Mapping[str, Mapping[str, Any]]) -> dict[str, KernelUsage]:
        """Send due requests, collect replies until one deadline; return kernel id -> usage."""
        start = self._clock()
        self._sync(endpoints)
        sent = []
        for client in self._clients.values():
            due = client.unsupported is None and start >= client.next_due
            if due and self._send(client, "usage_request", start):
                sent.append(client)
                client.next_due = start + self.interval
            if (
                client.probe_id is None
                and not client.answered
                and client.unsupported is None
                and client.waiting_since is not None
                and start - client.waiting_since >= self.timeout
            ):
                # control messages are handled in order: a kernel_info_reply that comes back
                # while the earlier usage_request stays unanswered means it was ignored
                client.probe_id = self._send(client, "kernel_info_request", start)
                if client.probe_id:
                    sent.append(client)
        self._collect(sent, start + self.timeout if sent else start)
        now = self._clock()
        self.last_round_seconds = now - start
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

    def _send(self, client: _Client, msg_type: str, now: float) -> str | None:
        import zmq

        msg = client.client.session.msg(msg_type, {})
        try:
            client.client.control_channel.send(msg)
        except zmq.ZMQError as e:  # zmq.Again: its queue is full, it has not read for a while
            client.problem = f"cannot send {msg_type} to the kernel: {e}"
            return None
        if msg_type == "usage_request":
            client.sent_at = now
            if client.waiting_since is None:
                client.waiting_since = now
        return str(msg["header"]["msg_id"])

    def _collect(self, sent: list[_Client], deadline: float) -> None:
        import zmq

        by_socket = {c.socket: c for c in self._clients.values()}
        poller = zmq.Poller()
        for socket in by_socket:
            poller.register(socket, zmq.POLLIN)
        waiting = set(sent)
        while True:
            remaining = deadline - self._clock()
            wait_ms = math.ceil(remaining * 1000) if waiting and remaining > 0 else 0
            events = poller.poll(wait_ms)
            for socket, _ in events:
                client = by_socket[socket]
                self._drain(client)
                if client.waiting_since is None or client.unsupported is not None:
                    waiting.discard(client)
            if not waiting or (not events and self._clock() >= deadline):
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
            msg_type = msg.get("header", {}).get("msg_type")
            content = msg.get("content") or {}
            if msg_type == "usage_reply":
                self._on_usage(client, content, now)
            elif (
                msg_type == "kernel_info_reply"
                and client.waiting_since is not None
                and not client.answered
            ):
                client.unsupported = _unsupported(content)
                client.waiting_since = None

    def _on_usage(self, client: _Client, content: Mapping[str, Any], now: float) -> None:
        self.replies += 1
        first = not client.answered
        client.answered = True
        client.waiting_since = None
        client.latency = None if client.sent_at is None else now - client.sent_at
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
                reason += f"; figures are {age:.0f} s old"
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
        "the kernel ignores usage_request (ipykernel answers it from version 6.9; this kernel is "
        f"{what or 'of an unknown kind'}); upgrade ipykernel in the kernel's environment to see "
        "its CPU and memory"
    )
