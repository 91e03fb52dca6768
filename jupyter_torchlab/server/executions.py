"""Whether a kernel is executing code, decided from its execute requests alone.

jupyter_server keeps the *last* IOPub ``status`` as a kernel's ``execution_state``. Since ipykernel
7, JupyterLab 4.4+ opens a kernel subshell when a widget renders (``create_subshell_request`` on
the control channel); the kernel publishes a busy/idle pair for that request, and from then on
the server reads "idle" while the cell that rendered the widget keeps running. Any request that
is not in jupyter_server's deny list (``untracked_message_types``) does the same, and new ones
come with every protocol version.

So the rule here is an allow list:

- busy from the first ``status: busy`` whose parent is an ``execute_request``;
- idle at the ``status: idle`` of the last execute request still running;
- a status for any other request (subshells, kernel_info, comm_info, comms, debug,
  usage_request, history, and whatever comes next) never changes it;
- a restart or a death ends every execution (:meth:`Executions.reset`).

Queued cells: a kernel publishes nothing for an execute request until it starts it, but it
starts the next queued one within milliseconds of the previous one's end. An idle therefore takes
effect only after :data:`QUEUE_GAP` seconds without a new execution (:meth:`Executions.settle`),
so a queue of cells (Run All) is one busy stretch and ``busy_since`` is the first one's start.

An interrupt needs no case of its own: the interrupted cell ends with its own ``status: idle``
and ipykernel answers each queued request as aborted, each with its busy/idle pair.

The class is pure (the time is passed in), so message sequences are unit-tested without a kernel;
:mod:`.kernels` feeds it from an IOPub subscription of its own per kernel.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["QUEUE_GAP", "Executions", "Transition"]

#: seconds an idle waits for the next queued execute request before it takes effect
QUEUE_GAP = 0.2

# a running execution of unknown id: the kernel was already busy when first watched
_SEEDED = "?"


@dataclass(frozen=True)
class Transition:
    """A change of the state read from executions."""

    state: str  # "busy" or "idle"
    since: float  # unix time of the change (for busy: the first execution's start)


class Executions:
    """The execute requests a kernel is running, and since when it is busy or idle."""

    def __init__(self, *, busy: bool = False, since: float | None = None) -> None:
        # ids of execute requests that went busy and not idle yet
        self._running: set[str] = {_SEEDED} if busy else set()
        self.busy_since: float | None = since if busy else None
        self.idle_since: float | None = None if busy else since
        # when the last running execution ended, while waiting QUEUE_GAP for a queued one
        self._ended_at: float | None = None

    @property
    def state(self) -> str:
        """Return "busy" or "idle" (an ending stretch stays busy until it settles)."""
        return "busy" if self.busy_since is not None else "idle"

    @property
    def pending_idle(self) -> bool:
        """Whether the last execution ended and the idle waits for :meth:`settle`."""
        return self._ended_at is not None

    def status(
        self, execution_state: str, parent_type: str | None, parent_id: str | None, now: float
    ) -> Transition | None:
        """Take one IOPub ``status`` message; return the transition it causes, if any."""
        if execution_state == "starting":  # a new kernel process: nothing runs in it yet
            return self.reset(now)
        if parent_type != "execute_request" or not parent_id:
            return None
        if execution_state == "busy":
            self._running.add(parent_id)
            if self._ended_at is not None:  # the next queued cell: the stretch goes on
                self._ended_at = None
                return None
            if self.busy_since is None:
                self.busy_since, self.idle_since = now, None
                return Transition("busy", now)
            return None
        if execution_state == "idle":
            self._running.discard(parent_id)
            # a kernel already busy when first watched: its first execute idle ends that run
            self._running.discard(_SEEDED)
            if not self._running and self.busy_since is not None and self._ended_at is None:
                self._ended_at = now
        return None

    def settle(self, now: float | None = None) -> Transition | None:
        """Let a pending idle take effect once :data:`QUEUE_GAP` has passed without a new run.

        ``now=None``: the caller knows the gap has passed (a timer set when the run ended).
        """
        if self._ended_at is None:
            return None
        if now is not None and now - self._ended_at < QUEUE_GAP - 1e-9:  # float sums
            return None
        ended, self._ended_at = self._ended_at, None
        self.busy_since, self.idle_since = None, ended
        return Transition("idle", ended)

    def reset(self, now: float) -> Transition | None:
        """End every execution at once (the kernel restarted or died): idle from ``now``."""
        self._running.clear()
        self._ended_at = None
        was_busy = self.busy_since is not None
        self.busy_since, self.idle_since = None, now
        return Transition("idle", now) if was_busy else None
