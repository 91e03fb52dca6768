"""The opt-in memory guard: interrupt a kernel before the out-of-memory killer takes it.

With ``TorchlabExtension.memory_guard = f`` (a fraction in (0, 1); off by default), a kernel that
is running a cell and whose memory reaches ``f`` of its limit is interrupted through the kernel
manager (what the interrupt button does), once per approach to the limit. Its variables survive;
the cell says why (:data:`~jupyter_torchlab._runtime_files.GUARD_FILE`, read at the cell's end by
``widgets/memory_guard_note.py``), and so does the page (the ``memory_guard`` events).

**The limit** is the memory cgroup limit that applies to the kernel (the tightest of its own
cgroup's and its ancestors', located as :mod:`.deaths` does), or the host's physical memory where
there is none.

**The memory compared** is chosen to predict the OOM killer without false alarms:

- When the cgroup that carries the limit is the kernel's own (its processes are all in the
  kernel's tree): that cgroup's *unreclaimable charge*, its usage minus the file cache on its LRU
  lists (``read_unreclaimable``). The limit applies to the cgroup's charge, which includes page
  cache, but the kernel's reclaim drops file cache (inactive, then active) before it kills
  anything; what remains (anonymous memory, shared memory and tmpfs, kernel memory such as page
  tables) only a kill frees. Raw usage (v1 ``memory.usage_in_bytes``) would fire on a kernel that
  merely read a large dataset; usage minus *inactive* file only (kubelet's "working set", the
  host figure in the panel) still counts active file cache, which a dataset read twice fills, so
  it would fire on a healthy run too. This measure also sees what the tree's RSS misses: tmpfs
  files and kernel memory charged to the cgroup.
- Otherwise (a cgroup shared with other kernels or the server, as in a JupyterHub pod; or no
  cgroup limit): the kernel's process tree, PSS where readable, else RSS, as the monitor shows
  it. That is what the kernel can free. Memory outside the tree (other kernels, the server, files
  in tmpfs) is not counted: an OOM kill caused by neighbours is not foreseen.

**When it looks.** Every sampler tick (``sample_interval``), from the tick's own readings, at no
extra cost for the tree measure. A busy kernel that is near its threshold (within :data:`NEAR`
of the limit below it, or growing fast enough to reach it within :data:`AHEAD` ticks at the rate
seen between the last two) is then watched closely: a thread re-reads just its measure every
:data:`CLOSE_INTERVAL` (two small cgroup files, or ``/proc/<pid>/statm`` of the tree's processes)
until it falls back or is interrupted. The headroom above the threshold (5% of a 3 GiB limit is
150 MiB) is filled in a fraction of a second by a loop that allocates hundreds of MB/s, so a
check once per second would often first see the kernel after the OOM killer had; the close reads
cost tens of microseconds and run only while a kernel is near its limit or racing towards it.
``benchmarks/bench_guard.py`` measures the reaction time both ways.

**Once per approach.** After an interrupt the kernel is not interrupted again until its memory
has fallen below ``f - HYSTERESIS`` of the limit (or it restarted: a new process is a new
approach). A kernel over the threshold while idle is not interrupted (no cell to stop); the next
cell that runs while it is still over is.

**What it cannot catch**: one allocation larger than the headroom (the OOM killer acts inside
that allocation, before any reading can see it); growth faster than the headroom per check;
memory outside what it compares (above); and a kernel that ignores or defers SIGINT (C code that
does not return to Python, ``tl.fit`` finishing its batch first).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from jupyter_core.utils import ensure_async
from tornado.ioloop import IOLoop

from jupyter_torchlab._format import format_bytes
from jupyter_torchlab._runtime_files import GUARD_FILE, GuardRecord, write_guard
from jupyter_torchlab.metrics import (
    MemoryCgroup,
    ProcessTreeSnapshot,
    limit_is_own,
    locate_memory_cgroup,
    read_members,
    read_memory_limit,
    read_rss,
    read_unreclaimable,
)

from .deaths import SETTLE_SECONDS
from .kernels import KernelInfo

__all__ = [
    "AHEAD",
    "CLOSE_INTERVAL",
    "HYSTERESIS",
    "NEAR",
    "MemoryGuard",
    "check_fraction",
    "decide",
]

#: after an interrupt, memory must fall this share of the limit below the threshold to re-arm
HYSTERESIS = 0.05
#: a busy kernel within this share of the limit below its threshold is watched closely
NEAR = 0.10
#: a busy kernel that would reach its threshold within this many ticks at its growth rate too
AHEAD = 2.0
#: seconds between close readings of a kernel near its threshold
CLOSE_INTERVAL = 0.05
#: guard events kept for GET torchlab/api/events
KEEP = 100


def check_fraction(value: float) -> float:
    """Return ``value`` if it is a valid guard setting (0: off); raise ValueError saying why not."""
    if value == 0 or 0 < value < 1:
        return float(value)
    raise ValueError(
        "TorchlabExtension.memory_guard is the share of a kernel's memory limit at which it is "
        "interrupted: set a fraction between 0 and 1, e.g. 0.95 (or 0 to turn it off), "
        f"got {value}"
    )


def decide(
    armed: bool,
    used: int,
    limit: int,
    fraction: float,
    busy: bool,
    margin: float = HYSTERESIS,
) -> tuple[bool, bool]:
    """Return (interrupt now, armed afterwards) for one reading of a kernel's memory.

    Armed: no interrupt yet in this approach. Over the threshold a busy, armed kernel is
    interrupted and disarmed; it re-arms once below ``fraction - margin`` of the limit.
    """
    if used >= fraction * limit:
        fire = armed and busy
        return fire, armed and not fire
    return False, armed or used < (fraction - min(margin, fraction / 2)) * limit


def reason(used: int, limit: int, limit_source: str) -> str:
    """Return the sentence the notebook shows."""
    of = (
        f"a {format_bytes(limit)} limit"
        if limit_source == "cgroup"
        else (f"the host's {format_bytes(limit)}")
    )
    return (
        f"interrupted at {format_bytes(used)} of {of} to save this kernel; "
        "free memory, then continue"
    )


@dataclass
class _Watch:
    """What the guard knows of one live kernel process (sampler and close threads)."""

    pid: int
    cgroup: MemoryCgroup | None
    seen: float
    armed: bool = True
    info: KernelInfo | None = None
    limit: int = 0
    limit_source: str = "host"
    measure: str = "tree"
    pids: tuple[int, ...] = ()
    offset: int = 0  # the tree's memory minus its RSS at the last tick (PSS vs RSS)
    last: tuple[float, int] | None = None  # (monotonic time, memory) at the last tick
    rate: float = 0.0  # bytes per second of growth between the last two ticks (0: not growing)


class MemoryGuard:
    """Interrupt busy kernels that reach ``fraction`` of their memory limit, once per approach."""

    def __init__(
        self,
        kernel_manager: Any,
        fraction: float,
        *,
        wall: Callable[[], float] = time.time,
        log: logging.Logger | None = None,
        on_interrupt: Callable[[GuardRecord], None] | None = None,
        runtime_dir: str | None = None,
        close_interval: float = CLOSE_INTERVAL,
        interval: float = 1.0,
        cgroup_root: str = "/sys/fs/cgroup",
        proc: str = "/proc",
    ) -> None:
        self._km = kernel_manager
        self.fraction = check_fraction(fraction)
        self._wall = wall
        self._log = log or logging.getLogger(__name__)
        self._on_interrupt = on_interrupt
        self._runtime_dir = runtime_dir
        self._close_interval = close_interval
        self._interval = interval  # the sampler's: how far ahead a growing kernel is watched
        self._cgroup_root = cgroup_root
        self._proc = proc
        self._loop = IOLoop.current()
        self._lock = threading.Lock()  # _watches and _events: sampler, close thread, loop
        self._watches: dict[str, _Watch] = {}
        self._close: set[str] = set()  # kernels near their threshold
        self._events: deque[GuardRecord] = deque(maxlen=KEEP)
        self._latest: dict[str, GuardRecord] = {}  # GUARD_FILE's content (event loop)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # --- lifecycle ----------------------------------------------------------------------------

    def start(self) -> None:
        """Start the close-watch thread (it sleeps while no kernel is near its threshold)."""
        self._thread = threading.Thread(
            target=self._run_close, name="torchlab-memory-guard", daemon=True
        )
        self._thread.start()

    def close(self) -> None:
        """Stop the close-watch thread."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(2.0)

    def events(self, since: float | None = None) -> list[GuardRecord]:
        """Return the kept interrupts, oldest first (those after ``since`` when given)."""
        with self._lock:
            events = list(self._events)
        return [e for e in events if since is None or e["time"] > since]

    # --- sampler thread -----------------------------------------------------------------------

    def observe(
        self,
        kernels: Mapping[str, KernelInfo],
        trees: Mapping[str, ProcessTreeSnapshot],
        host_memory: int | None,
    ) -> None:
        """Check every local kernel against its threshold with this tick's readings."""
        now = time.monotonic()
        limits: dict[MemoryCgroup, int | None] = {}  # kernels often share one cgroup
        with self._lock:
            for kid in set(self._watches) - set(kernels):
                del self._watches[kid]
                self._close.discard(kid)
        for kid, info in kernels.items():
            tree = trees.get(kid)
            if info.pid is None or tree is None:
                continue
            with self._lock:
                watch = self._watches.get(kid)
            if watch is None or watch.pid != info.pid:  # new, or restarted: a new approach
                cgroup = locate_memory_cgroup(info.pid, self._cgroup_root, self._proc)
                watch = _Watch(info.pid, cgroup, now)
            elif now - watch.seen < SETTLE_SECONDS:  # a launcher may move it as it starts
                found = locate_memory_cgroup(info.pid, self._cgroup_root, self._proc)
                if found is not None and not found.root:
                    watch.cgroup = found
            cgroup = watch.cgroup
            if cgroup is not None and cgroup not in limits:
                limits[cgroup] = read_memory_limit(cgroup)
            limit = limits.get(cgroup) if cgroup is not None else None
            watch.limit_source = "cgroup" if limit else "host"
            watch.limit = limit or host_memory or 0
            watch.info, watch.pids = info, tree.pids
            watch.offset = tree.memory - tree.rss
            used = None
            if limit and limit_is_own(cgroup):
                members = read_members(cgroup)
                if members is not None and members <= set(tree.pids):
                    used = read_unreclaimable(cgroup)
            watch.measure = "tree" if used is None else "cgroup"
            used = tree.memory if used is None else used
            if watch.last is not None and now > watch.last[0]:
                watch.rate = max(0.0, (used - watch.last[1]) / (now - watch.last[0]))
            watch.last = (now, used)
            with self._lock:
                self._watches[kid] = watch
            self._check(kid, watch, used)
        self._wake.set()

    # --- close-watch thread -------------------------------------------------------------------

    def _run_close(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                near = [(kid, self._watches[kid]) for kid in self._close if kid in self._watches]
            if not near:
                self._wake.wait()
                self._wake.clear()
                continue
            for kid, watch in near:
                try:
                    used = self._read(watch)
                    if used is not None:
                        self._check(kid, watch, used)
                except Exception:  # noqa: BLE001 - the tick's checks go on regardless
                    self._log.debug("torchlab: a close memory reading failed", exc_info=True)
            self._stop.wait(self._close_interval)

    def _read(self, watch: _Watch) -> int | None:
        if watch.measure == "cgroup":
            return read_unreclaimable(watch.cgroup)
        rss = read_rss(watch.pids)
        return None if rss is None else max(0, rss + watch.offset)

    # --- both threads -------------------------------------------------------------------------

    def _check(self, kid: str, watch: _Watch, used: int) -> None:
        info = watch.info
        if info is None or not watch.limit:
            return
        busy = info.execution_state == "busy"
        with self._lock:
            if self._watches.get(kid) is not watch:
                return  # replaced (a restart) or gone since this reading began
            fire, watch.armed = decide(watch.armed, used, watch.limit, self.fraction, busy)
            ahead = used + watch.rate * AHEAD * self._interval
            threshold = self.fraction * watch.limit
            near = busy and watch.armed and max(used + NEAR * watch.limit, ahead) >= threshold
            if near:
                self._close.add(kid)
            else:
                self._close.discard(kid)
        if not fire:
            return
        record = GuardRecord(
            id=uuid.uuid4().hex,
            kernel_id=kid,
            name=info.name,
            path=info.path,
            time=self._wall(),
            pid=watch.pid,
            memory=used,
            memory_limit=watch.limit,
            limit_source=watch.limit_source,
            measure=watch.measure,
            fraction=self.fraction,
            reason=reason(used, watch.limit, watch.limit_source),
        )
        with contextlib.suppress(RuntimeError):  # the loop is closed: the server is stopping
            self._loop.add_callback(self._interrupt, record)

    # --- event loop ---------------------------------------------------------------------------

    async def _interrupt(self, record: GuardRecord) -> None:
        kid = record["kernel_id"]
        self._write(record)  # first: the interrupted cell reads it as it ends
        try:
            await ensure_async(self._km.interrupt_kernel(kid))
        except Exception as e:  # noqa: BLE001 - logged; the next approach tries again
            self._log.warning("torchlab: the memory guard could not interrupt %s: %s", kid, e)
            with self._lock:
                watch = self._watches.get(kid)
                if watch is not None and watch.pid == record["pid"]:
                    watch.armed = True
            return
        self._log.warning(
            "torchlab: kernel %s (%s) %s (TorchlabExtension.memory_guard = %g, %s memory)",
            kid,
            record["path"] or "no notebook",
            record["reason"],
            record["fraction"],
            "its cgroup's unreclaimable" if record["measure"] == "cgroup" else "its process tree's",
        )
        with self._lock:
            self._events.append(record)
        if self._on_interrupt is not None:
            self._on_interrupt(record)

    def _write(self, record: GuardRecord) -> None:
        """Write each kernel's latest interrupt beside the connection files."""
        if self._runtime_dir is None:
            return
        with self._lock:
            live = set(self._watches)
        self._latest = {k: r for k, r in self._latest.items() if k in live}
        self._latest[record["kernel_id"]] = record
        try:
            write_guard(self._runtime_dir, self._latest)
        except OSError as e:
            self._log.warning("torchlab: cannot write %s: %s", GUARD_FILE, e)
