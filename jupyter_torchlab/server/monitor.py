"""The server's one monitor: it drives sampling, keeps the history and feeds every reader.

Data flow, once per ``sample_interval`` on one thread off the event loop (a
:class:`~jupyter_torchlab.metrics.Ticker`): take ONE view of the kernel registry, derive the
targets (kernel id -> local pid) from it, ask kernels that are not local processes for their own
usage (:mod:`.usage`, bounded wait), call ``Sampler.sample_once(targets)``, build the document
from that same view (:mod:`.document`), encode it once, append the bytes to the one ring buffer,
set the Prometheus gauges, and hand the bytes to the event loop for the WebSocket subscribers.
A GET writes the cached bytes. Handlers never touch psutil or NVML, and the metrics package
knows nothing of the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Mapping
from typing import Any, Protocol

from tornado.ioloop import IOLoop, PeriodicCallback

from jupyter_torchlab._runtime_files import KERNELS_FILE
from jupyter_torchlab._series import COUNTERS
from jupyter_torchlab.metrics import Sampler, Ticker

from .cells import CellCosts
from .deaths import DeathWatch, KernelDeath
from .document import build_document, encode
from .gpu_use import GpuUse, IdleCuller
from .kernels import KernelInfo, KernelRegistry, KernelsFile
from .memory_guard import MemoryGuard
from .runs import RunInfo, RunsWatch
from .usage import KernelUsage, UsagePoller

__all__ = ["EVENT_WINDOW", "USAGE_WAIT_MAX", "ServerMonitor", "Subscriber", "usage_wait"]

#: seconds a kernel's death stays in the snapshot document (GET torchlab/api/events keeps more)
EVENT_WINDOW = 600.0

# the most one sampler tick waits for usage replies: replies from a healthy kernel nearby take a
# few milliseconds; anything slower is read at the start of the next tick instead of holding up
# the host, GPU and local-kernel figures of this one
USAGE_WAIT_MAX = 0.05


def usage_wait(sample_interval: float, usage_timeout: float) -> float:
    """Return how long one sampler tick may wait for usage replies (seconds)."""
    return min(usage_timeout, 0.2 * sample_interval, USAGE_WAIT_MAX)


class Subscriber(Protocol):
    """A WebSocket (or anything) that takes each new snapshot document as JSON bytes."""

    def push(self, data: bytes) -> None:
        """Queue one snapshot; never block."""

    def close(self, code: int | None = None, reason: str | None = None) -> None:
        """Disconnect."""


class ServerMonitor:
    """Sample the server's kernels, host and GPUs, and share each snapshot three ways."""

    def __init__(
        self,
        kernel_manager: Any,
        session_manager: Any,
        *,
        interval: float = 1.0,
        history_seconds: float = 600.0,
        enable_gpu: bool = True,
        prometheus: bool = True,
        sampler: Sampler | None = None,
        usage_interval: float = 3.0,
        usage_timeout: float = 1.0,
        wall: Any = time.time,
        log: logging.Logger | None = None,
        runtime_dir: str | None = None,
        gpu_idle_warn: float = 1800.0,
        gpu_idle_cull: float = 0.0,
        cell_costs: bool = True,
        memory_guard: float = 0.0,
    ) -> None:
        self.log = log or logging.getLogger(__name__)
        self.interval = interval
        self._wall = wall
        self._gpu_enabled = enable_gpu
        # what each cell cost, for the kernels a page asks about (None: turned off by the setting
        # TorchlabExtension.cell_costs)
        self.cells: CellCosts | None = None
        if cell_costs:
            self.cells = CellCosts(
                lambda: self.registry.view(), runtime_dir=runtime_dir, log=self.log
            )
        self.registry = KernelRegistry(
            kernel_manager,
            session_manager,
            wall=wall,
            log=self.log,
            # the ServerApp's: it tells when a kernel has started, so its first cell is seen
            event_logger=getattr(getattr(kernel_manager, "parent", None), "event_logger", None),
            on_execution=None if self.cells is None else self.cells.on_execution,
        )
        self.deaths = DeathWatch(
            kernel_manager,
            wall=wall,
            log=self.log,
            on_death=self._on_death,
            runtime_dir=runtime_dir,
        )
        self.gpu_use = GpuUse(gpu_idle_warn)
        # each kernel's progress bars and fits, from the files kernels write (None: no runtime dir)
        self.runs_watch: RunsWatch | None = (
            None if runtime_dir is None else RunsWatch(runtime_dir, wall=wall)
        )
        # opt-in: interrupt a kernel near its memory limit (None: off)
        self.guard: MemoryGuard | None = None
        if memory_guard > 0:
            self.guard = MemoryGuard(
                kernel_manager,
                memory_guard,
                wall=wall,
                log=self.log,
                on_interrupt=self._on_guard,
                runtime_dir=runtime_dir,
                close_interval=min(interval, 0.05),
                interval=interval,
            )
        # each kernel's pid and notebook beside the connection files, for kernels to read
        self._kernels_file = None if runtime_dir is None else KernelsFile(runtime_dir)
        self.culler: IdleCuller | None = None
        if gpu_idle_cull > 0:
            self.culler = IdleCuller(
                kernel_manager,
                gpu_idle_cull,
                lambda kid: self.registry.view().get(kid),
                wall=wall,
                log=self.log,
                on_action=self._on_idle_action,
            )
        self.sampler = sampler if sampler is not None else Sampler(enable_gpu=enable_gpu)
        self._loop = IOLoop.current()
        self._lock = threading.Lock()  # guards _latest and _history (sampler thread vs loop)
        self._latest: bytes | None = None
        # one more than the window so history(history_seconds) is full right after a tick
        self._history: deque[tuple[float, bytes]] = deque(
            maxlen=max(1, math.ceil(history_seconds / interval) + 1)
        )
        self._first = asyncio.Event()
        self._subscribers: set[Subscriber] = set()
        self._registry_error: str | None = None
        self._warned: set[str] = set()
        # the document's "counts" (event loop adds, under _lock; the sampler thread copies)
        self._counts: dict[str, dict[str, int]] = {kind: {} for kind in COUNTERS}
        # kernels without a local pid answer usage_request; None: not asked (usage_interval 0)
        self.usage: UsagePoller | None = None
        if usage_interval > 0:
            self.usage = UsagePoller(
                usage_interval,
                usage_timeout,
                wait=usage_wait(interval, usage_timeout),
                log=self.log,
            )
        # held by the sampler thread while it uses the ZMQ sockets; stop() closes them under it
        self._usage_lock = threading.Lock()
        self._usage_closing = False
        self._exporter = None
        if prometheus:
            from .prometheus import PrometheusExporter

            self._exporter = PrometheusExporter()
        self.ticker = Ticker(
            self.tick, interval, name="torchlab-metrics-sampler", on_stop=self.sampler.close
        )
        self._refresher = PeriodicCallback(self._refresh, interval * 1000)
        self._stopped = False

    # --- lifecycle (event loop) ---------------------------------------------------------------

    def start(self) -> None:
        """Start watching kernels and sampling."""
        self._loop.add_callback(self._refresh)
        self._refresher.start()
        if self.guard is not None:
            self.guard.start()
        self.ticker.start()

    def stop(self) -> None:
        """Stop sampling, disconnect subscribers and withdraw the Prometheus series; never hangs."""
        if self._stopped:
            return
        self._stopped = True
        self._refresher.stop()
        self._usage_closing = True  # before the join: a tick still running sees it
        self.ticker.stop(timeout=2.0)
        # a round is bounded (usage_wait plus socket reads), so this rarely waits; if the tick
        # is still inside poll() after that, it closes the sockets itself when poll() returns
        if self.usage is not None and self._usage_lock.acquire(timeout=1.0):
            try:
                self.usage.close()
            finally:
                self._usage_lock.release()
        for sub in list(self._subscribers):
            try:
                sub.close(1001, "the Jupyter server is shutting down")  # 1001: going away
            except Exception as e:  # noqa: BLE001 - a broken socket must not stop the shutdown
                self.log.debug("torchlab: closing a subscriber failed: %s", e)
        self._subscribers.clear()
        self.registry.close()
        if self.cells is not None:
            self.cells.close()
        self.deaths.close()
        if self.runs_watch is not None:
            self.runs_watch.close()
        if self.guard is not None:
            self.guard.close()
        if self._exporter is not None:
            self._exporter.close()

    @property
    def running(self) -> bool:
        """Whether the sampling thread is alive."""
        return self.ticker.running

    async def _refresh(self) -> None:
        try:
            await self.registry.refresh()
            self._registry_error = None
            self.deaths.sync(self.registry.view())
            if self.cells is not None:
                self.cells.forget(set(self.registry.view()))
        except Exception as e:  # noqa: BLE001 - reported in the snapshot's errors, retried
            self._registry_error = f"{type(e).__name__}: {e}"
            self._warn_once("registry", "listing kernels failed: %s", self._registry_error)

    # --- read side (event loop) ---------------------------------------------------------------

    def latest(self) -> bytes | None:
        """Return the latest snapshot document as JSON bytes (None before the first sample)."""
        return self._latest

    async def wait_latest(self, timeout: float) -> bytes | None:
        """Return the latest snapshot, waiting up to ``timeout`` s for the first one."""
        if self._latest is None:
            try:
                await asyncio.wait_for(self._first.wait(), timeout)
            except asyncio.TimeoutError:
                return None
        return self._latest

    def history(self, seconds: float | None = None) -> bytes:
        """Return ``{"snapshots": [...]}`` for the last ``seconds`` (all kept history if None)."""
        with self._lock:
            items = list(self._history)
        if seconds is not None:
            cutoff = self._wall() - seconds
            items = [item for item in items if item[0] >= cutoff]
        return b'{"snapshots":[' + b",".join(data for _, data in items) + b"]}"

    def events(self, since: float | None = None) -> bytes:
        """Return ``{"events": [...], "memory_guard": [...]}``: kernel deaths and guard interrupts.

        Both kept lists, oldest first (those after ``since`` if given).
        """
        events = [e.to_dict() for e in self.deaths.events(since)]
        guard = [] if self.guard is None else self.guard.events(since)
        return encode({"events": events, "memory_guard": guard})

    def add_subscriber(self, sub: Subscriber) -> None:
        """Send every new snapshot to ``sub`` until it is removed."""
        self._subscribers.add(sub)

    def remove_subscriber(self, sub: Subscriber) -> None:
        """Stop sending snapshots to ``sub``."""
        self._subscribers.discard(sub)

    @property
    def subscriber_count(self) -> int:
        """Return how many subscribers are connected."""
        return len(self._subscribers)

    def _broadcast(self, data: bytes) -> None:
        self._first.set()
        for sub in list(self._subscribers):
            sub.push(data)

    # --- sampler thread -----------------------------------------------------------------------

    def tick(self) -> bytes | None:
        """Sample once and publish the document (the sampler thread calls this); return it."""
        kernels = self.registry.view()  # one view per tick: targets and entries agree
        targets = {kid: info.pid for kid, info in kernels.items() if info.pid is not None}
        if self._kernels_file is not None:
            try:
                self._kernels_file.write(kernels)
            except OSError as e:
                self._warn_once("kernels-file", "cannot write %s: %s", KERNELS_FILE, e)
        usage, usage_error = self.poll_usage()
        snap = self.sampler.sample_once(targets)
        self.deaths.observe(kernels, snap.trees)
        if self.cells is not None:
            self.cells.observe(snap.trees)
        runs = self._observe_runs(kernels, snap)
        if self.guard is not None:
            host_memory = snap.host.memory_total if snap.host is not None else None
            self.guard.observe(kernels, snap.trees, host_memory)
        flags = self.gpu_use.observe(kernels, snap.trees, snap.time)
        culler = self.culler
        if culler is not None:
            for kid, flag in flags.items():
                if flag.holding_idle is not None:
                    deadline = culler.deadline(kid)
                    if deadline is not None:
                        flag.holding_idle["cull_at"] = deadline
            held = {k: f.holding_idle for k, f in flags.items() if f.holding_idle is not None}
            with contextlib.suppress(RuntimeError):  # the loop is closed: shutting down
                self._loop.add_callback(culler.check, held)
        errors = {}
        if self._registry_error:
            errors["kernels"] = self._registry_error
        if usage_error:
            errors["usage"] = usage_error
        try:
            doc = build_document(
                snap,
                kernels,
                usage=usage,
                usage_off=self.usage is None,
                gpu_off=not self._gpu_enabled,
                errors=errors,
                events=[e.to_dict() for e in self.deaths.events(snap.time - EVENT_WINDOW)],
                flags=flags,
                gpu_actions=[] if culler is None else culler.recent(snap.time - EVENT_WINDOW),
                runs=runs,
                memory_guard=(
                    [] if self.guard is None else self.guard.events(snap.time - EVENT_WINDOW)
                ),
                counts=self._counts_now(),
            )
            data = encode(doc)
        except Exception as e:  # noqa: BLE001 - a bad snapshot must not stop the sampler
            self._warn_once("encode", "cannot encode a snapshot: %s", e)
            return None
        self._publish(doc, data)
        return data

    def runs(self, state: str | None = None) -> bytes:
        """Return ``{"runs": [...]}``: every kernel's runs, running first (or only ``state``)."""
        return encode({"runs": [] if self.runs_watch is None else self.runs_watch.every(state)})

    def _observe_runs(
        self, kernels: Mapping[str, KernelInfo], snap: Any
    ) -> dict[str, list[RunInfo]]:
        """Read the kernels' runs files that changed; keep every kernel's runs for GET runs."""
        if self.runs_watch is None:
            return {}
        # a kernel whose process this tick did not find has died (unless sampling failed)
        alive = None if "process" in snap.errors else snap.trees
        try:
            return self.runs_watch.observe(kernels, alive)
        except Exception as e:  # noqa: BLE001 - the rest of the tick must go on
            self._warn_once("runs", "cannot read the kernels' runs: %s", e)
            return {}

    def poll_usage(self) -> tuple[Mapping[str, KernelUsage] | None, str | None]:
        """Ask kernels that are not local processes for their usage; return (replies, error)."""
        if self.usage is None:
            return None, None
        usage: Mapping[str, KernelUsage] = {}
        error = None
        with self._usage_lock:
            if not self._usage_closing:
                try:
                    usage = self.usage.poll(self.registry.endpoints())
                except Exception as e:  # noqa: BLE001 - the kernel list must still go out
                    error = f"{type(e).__name__}: {e}"
                    self._warn_once("usage", "asking kernels for usage failed: %s", error)
            if self._usage_closing:  # stop() came during poll() and gave up waiting
                self.usage.close()
        return usage, error

    def _publish(self, doc: Mapping[str, Any], data: bytes) -> None:
        # the gauges first: whoever has read a snapshot finds /metrics at least as new
        if self._exporter is not None:
            try:
                self._exporter.update(doc)
            except Exception as e:  # noqa: BLE001 - the REST and WS outputs must go on
                self._warn_once("prometheus", "cannot update the Prometheus gauges: %s", e)
        with self._lock:
            self._latest = data
            self._history.append((doc["time"], data))
        # RuntimeError: the loop is closed because the server is shutting down
        with contextlib.suppress(RuntimeError):
            self._loop.add_callback(self._broadcast, data)

    def _on_death(self, death: KernelDeath) -> None:
        """Count a kernel's death (event loop; the next tick's document carries the event)."""
        if self.runs_watch is not None:
            self.runs_watch.kernel_died(death.kernel_id, death.pid)  # its running runs failed
        self._count("kernel_deaths", death.cause)
        if self._exporter is not None:
            try:
                self._exporter.count_death(death.cause)
            except Exception as e:  # noqa: BLE001 - the event is still served
                self._warn_once("prometheus-deaths", "cannot count a kernel death: %s", e)

    def _on_guard(self, record: Mapping[str, Any]) -> None:
        """Count an interrupt by the memory guard (event loop; the next tick carries the event)."""
        self._count("memory_guard_interrupts", str(record["measure"]))
        if self._exporter is not None:
            try:
                self._exporter.count_guard_interrupt(str(record["measure"]))
            except Exception as e:  # noqa: BLE001 - the interrupt itself is logged already
                self._warn_once("prometheus-guard", "cannot count a guard interrupt: %s", e)

    def _on_idle_action(self, action: str, kid: str, detail: dict[str, Any]) -> None:
        """Count a warning or shutdown of an idle GPU holder (event loop; the culler keeps it)."""
        self._count("kernel_idle_gpu_actions", action)
        if self._exporter is not None:
            try:
                self._exporter.count_idle_action(action)
            except Exception as e:  # noqa: BLE001 - the action itself is logged already
                self._warn_once("prometheus-idle", "cannot count an idle-GPU action: %s", e)

    def _count(self, kind: str, label: str) -> None:
        """Add one to the document's ``counts[kind][label]``."""
        with self._lock:
            self._counts[kind][label] = self._counts[kind].get(label, 0) + 1

    def _counts_now(self) -> dict[str, dict[str, int]]:
        """Return a copy of the counts, for one tick's document."""
        with self._lock:
            return {kind: dict(by_label) for kind, by_label in self._counts.items()}

    def _warn_once(self, key: str, msg: str, *args: object) -> None:
        if key not in self._warned:
            self._warned.add(key)
            self.log.warning("torchlab: " + msg, *args)
