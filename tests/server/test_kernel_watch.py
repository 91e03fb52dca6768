"""KernelWatch hands over from jupyter_server's state to our own subscription, message by message.

A real kernel makes these orders only now and then (they depend on a machine's timing: one CI run
in several), so they are replayed here in order: the real KernelWatch, a kernel manager with the
same ``execution_state`` trait jupyter_server's has, and IOPub frames signed by a real
jupyter_client Session, on a running event loop.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from jupyter_client.session import Session
from traitlets import HasTraits, Unicode

from jupyter_torchlab.server.executions import QUEUE_GAP
from jupyter_torchlab.server.kernel_watch import KernelWatch

STREAM = object()  # our subscription, as the watch knows it (no socket is needed to feed it)


class Manager(HasTraits):
    """The part of jupyter_server's kernel manager the watch reads: its last IOPub status."""

    execution_state = Unicode("idle")


def watch_of(manager: Manager, session: Session) -> KernelWatch:
    watch = KernelWatch(
        "k",
        manager,
        wall=time.time,
        changed=lambda _: None,
        guard=lambda _key, fn, *args: fn(*args),
        log=logging.getLogger("test"),
    )
    # an open subscription that has not delivered anything yet, already narrowed to kernel.*
    watch._stream, watch._session, watch._narrowed = STREAM, session, True
    return watch


def publish(watch: KernelWatch, session: Session, msg_type: str, content: dict, parent: Any = None):
    """Deliver one message of the kernel's IOPub to the watch's subscription."""
    msg = session.msg(msg_type, content, parent=parent)
    watch._on_iopub(STREAM, session.serialize(msg, ident=[f"kernel.x.{msg_type}".encode()]))


def test_a_cells_busy_published_just_before_our_subscription_connected_still_reads_busy() -> None:
    """ipykernel 7: jupyter_server takes the cell's busy; our greeting comes just after it."""

    async def replay() -> None:
        session, manager = Session(key=b"secret"), Manager()
        watch = watch_of(manager, session)
        cell = session.msg("execute_request", {"code": "import time; time.sleep(600)"})
        sent = time.time()
        manager.execution_state = "busy"  # jupyter_server's stream had the cell's busy
        publish(watch, session, "iopub_welcome", {"subscription": "kernel."})
        assert watch.heard
        await asyncio.sleep(QUEUE_GAP + 0.15)
        assert watch.executions.state == "busy", "a running cell read idle"
        assert sent <= watch.executions.busy_since <= sent + QUEUE_GAP
        # its end, which our subscription does hear, ends it
        publish(watch, session, "status", {"execution_state": "busy"}, parent=cell)
        publish(watch, session, "status", {"execution_state": "idle"}, parent=cell)
        manager.execution_state = "idle"
        await asyncio.sleep(QUEUE_GAP + 0.15)
        assert watch.executions.state == "idle"
        watch.close()

    asyncio.run(replay())


def test_a_requests_pair_seen_by_the_server_first_does_not_stick() -> None:
    """ipykernel 6: our probe's own busy reaches jupyter_server a moment before us."""

    async def replay() -> None:
        session, manager = Session(key=b"secret"), Manager()
        watch = watch_of(manager, session)
        probe = session.msg("kernel_info_request", {})
        manager.execution_state = "busy"
        publish(watch, session, "status", {"execution_state": "busy"}, parent=probe)
        publish(watch, session, "status", {"execution_state": "idle"}, parent=probe)
        manager.execution_state = "idle"
        await asyncio.sleep(QUEUE_GAP + 0.15)
        assert watch.heard
        assert watch.executions.state == "idle", "a kernel_info pair made the kernel busy"
        watch.close()

    asyncio.run(replay())


def test_a_cell_our_subscription_hears_itself_is_followed_from_its_own_statuses() -> None:
    async def replay() -> None:
        session, manager = Session(key=b"secret"), Manager()
        watch = watch_of(manager, session)
        cell = session.msg("execute_request", {"code": "x = 1"})
        manager.execution_state = "busy"
        publish(watch, session, "iopub_welcome", {"subscription": "kernel."})
        publish(watch, session, "status", {"execution_state": "busy"}, parent=cell)
        publish(watch, session, "status", {"execution_state": "idle"}, parent=cell)
        # jupyter_server reads busy a little longer than the cell ran (its stream is behind)
        await asyncio.sleep(QUEUE_GAP + 0.15)
        assert watch.executions.state == "idle", "the ended cell was taken as running"
        manager.execution_state = "idle"
        watch.close()

    asyncio.run(replay())
