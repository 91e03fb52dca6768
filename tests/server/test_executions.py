"""Busy and idle from execute requests: message sequences as a kernel publishes them.

Each sequence is what ipykernel 7 publishes on IOPub (status messages and their parents) for
what JupyterLab 4.4+ and ipywidgets send; the times are passed in, so the tests are exact.
"""

from __future__ import annotations

import pytest

from jupyter_torchlab.server.executions import QUEUE_GAP, Executions, Transition

EXEC = "execute_request"


def feed(ex: Executions, *events: tuple[float, str, str | None, str | None]) -> list[Transition]:
    """Feed (time, state, parent type, parent id) status messages; return the transitions."""
    out = []
    for now, state, ptype, pid in events:
        change = ex.status(state, ptype, pid, now)
        if change is not None:
            out.append(change)
    return out


def test_a_cell_is_busy_from_its_busy_to_its_idle() -> None:
    ex = Executions(since=0.0)
    assert feed(ex, (10.0, "busy", EXEC, "a")) == [Transition("busy", 10.0)]
    assert (ex.state, ex.busy_since, ex.idle_since) == ("busy", 10.0, None)
    assert feed(ex, (12.5, "idle", EXEC, "a")) == []
    assert ex.state == "busy"  # until no queued cell follows within the gap
    assert ex.settle(12.5 + QUEUE_GAP / 2) is None
    assert ex.settle(12.5 + QUEUE_GAP) == Transition("idle", 12.5)
    assert (ex.state, ex.busy_since, ex.idle_since) == ("idle", None, 12.5)


@pytest.mark.parametrize(
    "request_type",
    [
        "create_subshell_request",  # JupyterLab 4.4+ when a widget renders (control channel)
        "list_subshell_request",
        "delete_subshell_request",
        "kernel_info_request",
        "comm_info_request",
        "comm_msg",  # a widget's slider moved while the cell runs
        "debug_request",
        "usage_request",
        "history_request",
        "complete_request",
        "inspect_request",
        "interrupt_request",
        "some_future_request",
    ],
)
def test_other_requests_never_change_a_running_cell(request_type: str) -> None:
    ex = Executions(since=0.0)
    feed(
        ex,
        (1.0, "busy", EXEC, "cell"),
        (1.5, "busy", request_type, "x"),
        (1.6, "idle", request_type, "x"),
    )
    assert (ex.state, ex.busy_since) == ("busy", 1.0)
    assert not ex.pending_idle
    # nor do they make an idle kernel busy
    ex2 = Executions(since=5.0)
    assert feed(ex2, (6.0, "busy", request_type, "y")) == []
    assert (ex2.state, ex2.idle_since) == ("idle", 5.0)


def test_a_subshell_opened_while_a_widget_cell_runs_then_the_cell_ends() -> None:
    # the case: tl.progress renders a widget, the page opens a subshell, the cell goes on
    ex = Executions(since=0.0)
    feed(
        ex,
        (1.0, "busy", EXEC, "cell"),
        (1.2, "busy", "comm_info_request", "c"),
        (1.21, "idle", "comm_info_request", "c"),
        (1.3, "busy", "create_subshell_request", "s"),
        (1.31, "idle", "create_subshell_request", "s"),
        (4.0, "busy", "comm_msg", "m"),
        (4.01, "idle", "comm_msg", "m"),
    )
    assert ex.state == "busy"
    feed(ex, (16.0, "idle", EXEC, "cell"))
    assert ex.settle(16.0 + QUEUE_GAP) == Transition("idle", 16.0)


def test_queued_cells_are_one_busy_stretch() -> None:
    # Run All: three execute requests queued; each starts just after the previous one's idle
    ex = Executions(since=0.0)
    changes = feed(
        ex,
        (1.0, "busy", EXEC, "a"),
        (3.0, "idle", EXEC, "a"),
        (3.003, "busy", EXEC, "b"),
        (5.0, "idle", EXEC, "b"),
        (5.002, "busy", EXEC, "c"),
    )
    assert changes == [Transition("busy", 1.0)]
    assert ex.settle(5.002 + QUEUE_GAP) is None  # c is running: nothing pending
    assert (ex.state, ex.busy_since) == ("busy", 1.0)
    feed(ex, (9.0, "idle", EXEC, "c"))
    assert ex.settle(9.0 + QUEUE_GAP) == Transition("idle", 9.0)


def test_a_cell_run_after_the_gap_starts_a_new_stretch() -> None:
    ex = Executions(since=0.0)
    feed(ex, (1.0, "busy", EXEC, "a"), (2.0, "idle", EXEC, "a"))
    assert ex.settle(2.0 + QUEUE_GAP) == Transition("idle", 2.0)
    assert feed(ex, (7.0, "busy", EXEC, "b")) == [Transition("busy", 7.0)]
    assert ex.busy_since == 7.0


def test_concurrent_executions_on_a_subshell_end_with_the_last_one() -> None:
    # an execute_request on a subshell runs beside the main shell's: busy until both end
    ex = Executions(since=0.0)
    feed(
        ex,
        (1.0, "busy", EXEC, "main"),
        (2.0, "busy", EXEC, "sub"),
        (3.0, "idle", EXEC, "sub"),
    )
    assert not ex.pending_idle
    assert ex.settle(9.0) is None
    assert (ex.state, ex.busy_since) == ("busy", 1.0)
    feed(ex, (4.0, "idle", EXEC, "main"))
    assert ex.settle(4.0 + QUEUE_GAP) == Transition("idle", 4.0)


def test_an_interrupt_ends_the_cell_and_the_aborted_queue() -> None:
    # interrupt_request on the control channel; the cell ends with KeyboardInterrupt, and
    # ipykernel answers each queued request as aborted, each with its busy/idle pair
    ex = Executions(since=0.0)
    feed(
        ex,
        (1.0, "busy", EXEC, "a"),
        (5.0, "busy", "interrupt_request", "i"),
        (5.001, "idle", "interrupt_request", "i"),
        (5.01, "idle", EXEC, "a"),
        (5.011, "busy", EXEC, "b"),
        (5.012, "idle", EXEC, "b"),
        (5.013, "busy", EXEC, "c"),
        (5.014, "idle", EXEC, "c"),
    )
    assert ex.settle(5.014 + QUEUE_GAP) == Transition("idle", 5.014)
    assert ex.state == "idle"


def test_a_restart_ends_everything_at_once() -> None:
    ex = Executions(since=0.0)
    feed(ex, (1.0, "busy", EXEC, "a"))
    assert feed(ex, (3.0, "starting", None, None)) == [Transition("idle", 3.0)]
    assert (ex.state, ex.idle_since) == ("idle", 3.0)
    # the old process's idle for "a", if it still comes, changes nothing
    assert feed(ex, (3.1, "idle", EXEC, "a")) == []
    assert not ex.pending_idle
    ex.status("busy", EXEC, "b", 4.0)
    assert ex.reset(6.0) == Transition("idle", 6.0)  # a death read by the registry


def test_a_kernel_already_busy_when_first_seen_ends_at_its_next_execute_idle() -> None:
    ex = Executions(busy=True, since=50.0)
    assert (ex.state, ex.busy_since) == ("busy", 50.0)
    feed(
        ex,
        (51.0, "busy", "create_subshell_request", "s"),
        (51.1, "idle", "create_subshell_request", "s"),
    )
    assert ex.state == "busy"
    feed(ex, (60.0, "idle", EXEC, "unknown-to-us"))
    assert ex.settle(60.0 + QUEUE_GAP) == Transition("idle", 60.0)


def test_an_idle_without_its_busy_keeps_an_idle_kernel_idle() -> None:
    # subscribed in the middle of a cell that started before: its idle alone changes nothing
    ex = Executions(since=7.0)
    assert feed(ex, (8.0, "idle", EXEC, "a")) == []
    assert ex.settle(100.0) is None
    assert (ex.state, ex.idle_since) == ("idle", 7.0)
