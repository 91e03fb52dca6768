"""Kernels that die, and why: killed by the out-of-memory killer, by a signal, or exited.

A kernel killed for memory just vanishes; JupyterLab says it "appears to have died". The server
already sees every kernel's memory, its limit and its process, so it can say what happened:

- **While a kernel lives** (sampler thread, each tick, :meth:`DeathWatch.observe`): its pid, the
  tree's last and peak memory, and from its memory cgroup
  (:mod:`jupyter_torchlab.metrics.memory_cgroup`, located once per process) the limit that
  applies to it and the OOM-kill count. Each tick's reading replaces the one before, unless the
  process was already on its way out when it was taken: a count read after the OOM killer took
  it would hide the kill.
- **When it dies** (event loop): jupyter_client's restarter notices the dead process and calls the
  ``restart`` callback (``dead`` once it gives up) before it starts a new one. The old process's
  exit status is still there, and the cgroup's OOM count is read again: a rise since the kernel's
  last reading means the OOM killer took it (kernels that share a cgroup share its count, so a
  kill seconds earlier elsewhere in it is not this kernel's). The event is kept, counted, and
  served (REST, the stream, Prometheus).

With ``KernelManager.autorestart`` off there is no restarter and so no event.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from jupyter_torchlab._format import format_bytes, format_span
from jupyter_torchlab._runtime_files import DEATHS_FILE, DeathRecord, write_deaths
from jupyter_torchlab.metrics import (
    MemoryCgroup,
    ProcessTreeSnapshot,
    locate_memory_cgroup,
    process_leaving,
    read_memory_limit,
    read_oom_kills,
)

from .kernels import KernelInfo

__all__ = ["NEAR_LIMIT", "DeathWatch", "KernelDeath", "explain"]

#: a kernel killed by SIGKILL at this share of the memory limit or more was most likely OOM-killed
NEAR_LIMIT = 0.9
#: events kept for GET torchlab/api/events
KEEP = 100
#: seconds after a kernel process is first seen during which its cgroup is looked up every tick:
#: a launcher may move it into a cgroup of its own as it starts (hubs do), and on a loaded machine
#: that can come several ticks late
SETTLE_SECONDS = 10.0

OOM_ADVICE = (
    "Use less memory in that notebook (a smaller batch size, fewer DataLoader workers, "
    "in_memory=False, del large variables you no longer need) or ask for a larger memory limit."
)


@dataclass(frozen=True)
class KernelDeath:
    """One kernel process that died, and what the server knew about it."""

    id: str  # of the event
    kernel_id: str
    name: str
    path: str | None  # the notebook
    time: float  # unix time the server noticed
    pid: int | None
    cause: str  # "oom_killer", "signal", "exit", "unknown" (the Prometheus label)
    reason: str  # a sentence for people, with what to do
    signal: int | None
    exit_status: int | None
    last_memory: int | None  # bytes, the tree's last reading
    peak_memory: int | None
    memory_limit: int | None
    restarting: bool  # the server is starting a new kernel in its place
    busy_for: float | None = None  # seconds it had been running cells when it died; None: idle

    def to_dict(self) -> DeathRecord:
        """Return the event as JSON-ready values (the runtime file's record)."""
        return DeathRecord(**asdict(self))  # type: ignore[typeddict-item]


@dataclass
class _Alive:
    """What is known of a live kernel process."""

    pid: int
    cgroup: MemoryCgroup | None
    oom_kills: int | None  # the cgroup's count at the latest reading while the process ran
    last_memory: int | None = None
    peak_memory: int | None = None
    memory_limit: int | None = None
    info: KernelInfo | None = None
    seen: float = field(default_factory=time.monotonic)


def explain(
    returncode: int | None,
    oom_killed: bool,
    last_memory: int | None,
    memory_limit: int | None,
    busy_for: float | None = None,
) -> tuple[str, str, int | None, int | None]:
    """Return (cause, reason, signal, exit status) for a dead kernel process.

    ``busy_for``: how long the kernel had been running cells when it died (None: it was idle).
    """
    sig = -returncode if returncode is not None and returncode < 0 else None
    status = returncode if returncode is not None and returncode >= 0 else None
    used = ""
    if last_memory is not None and memory_limit:
        used = f" at {format_bytes(last_memory)} of its {format_bytes(memory_limit)} memory limit"
    elif last_memory is not None:
        used = f" at {format_bytes(last_memory)}"
    if busy_for is not None:
        used += f" while a cell ran (for {format_span(busy_for)})"
    # the OOM killer only ever sends SIGKILL: a kernel that exited or died of another signal
    # after a kill elsewhere in its cgroup (a DataLoader worker, another kernel) died of that
    if oom_killed and (returncode is None or sig == signal.SIGKILL):
        return (
            "oom_killer",
            f"killed by the out-of-memory killer{used}. {OOM_ADVICE}",
            sig,
            status,
        )
    if sig is not None:
        name = _signal_name(sig)
        near = (
            sig == signal.SIGKILL
            and last_memory is not None
            and bool(memory_limit)
            and last_memory >= NEAR_LIMIT * memory_limit  # type: ignore[operator]
        )
        if near:
            return (
                "oom_killer",
                f"killed by signal {sig} ({name}){used}: most likely out of memory. {OOM_ADVICE}",
                sig,
                status,
            )
        return "signal", f"killed by signal {sig} ({name}){used}", sig, status
    if status is not None:
        return "exit", f"exited with status {status}{used}", sig, status
    return "unknown", f"died; its exit status is not known{used}", sig, status


def _per_cgroup(
    reads: dict[MemoryCgroup, int | None],
    cgroup: MemoryCgroup | None,
    read: Callable[[MemoryCgroup | None], int | None],
) -> int | None:
    """Return this tick's reading of ``cgroup``, reading it on first use."""
    if cgroup is None:
        return None
    if cgroup not in reads:
        reads[cgroup] = read(cgroup)
    return reads[cgroup]


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return "unknown signal"


class DeathWatch:
    """Remember what live kernels look like; explain the ones that die."""

    def __init__(
        self,
        kernel_manager: Any,
        *,
        wall: Callable[[], float] = time.time,
        log: logging.Logger | None = None,
        on_death: Callable[[KernelDeath], None] | None = None,
        keep: int = KEEP,
        runtime_dir: str | None = None,
        cgroup_root: str = "/sys/fs/cgroup",
        proc: str = "/proc",
    ) -> None:
        self._km = kernel_manager
        self._wall = wall
        self._log = log or logging.getLogger(__name__)
        self._on_death = on_death
        self._lock = threading.Lock()  # _alive (sampler thread) vs callbacks (event loop)
        self._alive: dict[str, _Alive] = {}
        self._events: deque[KernelDeath] = deque(maxlen=keep)
        self._callbacks: dict[str, list[tuple[str, Callable[[], None]]]] = {}
        self._runtime_dir = runtime_dir  # where DEATHS_FILE goes, for restarted kernels to read
        self._cgroup_root = cgroup_root
        self._proc = proc

    # --- sampler thread -----------------------------------------------------------------------

    def observe(
        self,
        kernels: Mapping[str, KernelInfo],
        trees: Mapping[str, ProcessTreeSnapshot],
    ) -> None:
        """Record this tick's view of each live kernel (its process, memory and cgroup).

        A kernel's memory limit is its own cgroup's (or the tightest of its ancestors'), not the
        server's: a pod's limit applies to the kernels in it.
        """
        # kernels often share one cgroup (a user's pod): read its files once per tick
        counts: dict[MemoryCgroup, int | None] = {}
        limits: dict[MemoryCgroup, int | None] = {}
        with self._lock:
            for kid, info in kernels.items():
                tree = trees.get(kid)
                if info.pid is None or tree is None:
                    continue
                alive = self._alive.get(kid)
                if alive is None or alive.pid != info.pid:
                    cgroup = locate_memory_cgroup(info.pid, self._cgroup_root, self._proc)
                    kills = _per_cgroup(counts, cgroup, read_oom_kills)
                    alive = self._alive[kid] = _Alive(info.pid, cgroup, kills)
                else:
                    cgroup = alive.cgroup
                    if time.monotonic() - alive.seen < SETTLE_SECONDS:
                        found = locate_memory_cgroup(info.pid, self._cgroup_root, self._proc)
                        # None: the process is gone; the root: cgroup v1 moves an exiting
                        # process there (a launcher never does). Either way its death is read
                        # from the cgroup found while it lived
                        if found is not None and not found.root:
                            cgroup = found
                alive.info = info
                kills = _per_cgroup(counts, cgroup, read_oom_kills)
                # asked after the count was read: a process that still runs now had not been
                # killed when it was read. One on its way out keeps the readings from before
                # (a count that already holds its own kill, memory the OOM reaper has freed)
                if process_leaving(info.pid, self._proc):
                    continue
                alive.cgroup, alive.oom_kills = cgroup, kills
                alive.memory_limit = _per_cgroup(limits, cgroup, read_memory_limit)
                if tree.memory:  # a process being torn down reads 0: keep the reading before
                    alive.last_memory = tree.memory
                alive.peak_memory = max(alive.peak_memory or 0, tree.memory)
            for kid in set(self._alive) - set(kernels):
                del self._alive[kid]

    # --- event loop ---------------------------------------------------------------------------

    def sync(self, kernel_ids: Iterable[str]) -> None:
        """Watch these kernels' restarters (new ones get callbacks, gone ones lose them)."""
        ids = set(kernel_ids)
        for kid in ids - set(self._callbacks):
            self._watch(kid)
        for kid in set(self._callbacks) - ids:
            self._unwatch(kid)

    def close(self) -> None:
        """Stop watching every kernel."""
        for kid in list(self._callbacks):
            self._unwatch(kid)

    def events(self, since: float | None = None) -> list[KernelDeath]:
        """Return the kept events, oldest first (those after ``since`` when given)."""
        with self._lock:
            events = list(self._events)
        return [e for e in events if since is None or e.time > since]

    def _watch(self, kid: str) -> None:
        registered = []
        for event in ("restart", "dead"):
            callback = self._callback(kid, event)
            try:
                self._km.add_restart_callback(kid, callback, event)
            except Exception as e:  # noqa: BLE001 - a manager without restarters: no events
                self._log.debug("torchlab: cannot watch kernel %s for deaths: %s", kid, e)
                continue
            registered.append((event, callback))
        self._callbacks[kid] = registered

    def _unwatch(self, kid: str) -> None:
        for event, callback in self._callbacks.pop(kid, []):
            # the kernel may already be gone, its restarter with it
            with contextlib.suppress(Exception):
                self._km.remove_restart_callback(kid, callback, event)

    def _callback(self, kid: str, event: str) -> Callable[[], None]:
        def died() -> None:
            try:
                self._record(kid, restarting=event == "restart")
            except Exception:  # noqa: BLE001 - a failed explanation must not stop the restart
                self._log.warning("torchlab: explaining a dead kernel failed", exc_info=True)

        return died

    def _record(self, kid: str, *, restarting: bool) -> None:
        with self._lock:
            alive = self._alive.pop(kid, None)
        returncode = self._returncode(kid)
        pid = alive.pid if alive is not None else None
        oom_killed = False
        if alive is not None and alive.oom_kills is not None:
            now_kills = read_oom_kills(alive.cgroup)
            oom_killed = now_kills is not None and now_kills > alive.oom_kills
        last = alive.last_memory if alive is not None else None
        limit = alive.memory_limit if alive is not None else None
        info = alive.info if alive is not None else None
        now = self._wall()
        # the registry's reading at the last tick: busy means executing a cell (execute
        # requests), so a death in the middle of training says so
        busy_for = None
        if info is not None and info.execution_state == "busy" and info.busy_since is not None:
            busy_for = max(0.0, now - info.busy_since)
        cause, reason, sig, status = explain(returncode, oom_killed, last, limit, busy_for)
        death = KernelDeath(
            id=uuid.uuid4().hex,
            kernel_id=kid,
            name=info.name if info is not None else "",
            path=info.path if info is not None else None,
            time=now,
            pid=pid,
            cause=cause,
            reason=reason,
            signal=sig,
            exit_status=status,
            last_memory=last,
            peak_memory=alive.peak_memory if alive is not None else None,
            memory_limit=limit,
            restarting=restarting,
            busy_for=busy_for,
        )
        with self._lock:
            # the restarter calls "dead" after its last failed "restart": one event per death
            recent = self._events[-1] if self._events else None
            if recent is not None and recent.kernel_id == kid and pid is None:
                return
            self._events.append(death)
        self._log.warning(
            "torchlab: kernel %s (%s) %s", kid, death.path or "no notebook", death.reason
        )
        self._write_record()
        if self._on_death is not None:
            self._on_death(death)

    def _write_record(self) -> None:
        """Write the recent deaths beside the connection files (the kernel monitor reads it)."""
        if self._runtime_dir is None:
            return
        try:
            write_deaths(self._runtime_dir, [e.to_dict() for e in self.events()])
        except OSError as e:
            self._log.debug("torchlab: cannot write %s: %s", DEATHS_FILE, e)

    def _returncode(self, kid: str) -> int | None:
        try:
            kernel = self._km.get_kernel(kid)
        except KeyError:
            return None
        process = getattr(getattr(kernel, "provisioner", None), "process", None)
        poll = getattr(process, "poll", None)
        if poll is None:
            return None
        try:
            code = poll()
        except Exception:  # noqa: BLE001 - not a Popen: unknown
            return None
        return code if isinstance(code, int) else None
