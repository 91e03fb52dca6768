"""The jupyter_server extension: one sampler per server, its snapshots served three ways.

Configuration (any jupyter_server config file, or the command line)::

    c.TorchlabExtension.sample_interval = 1.0    # seconds between samples
    c.TorchlabExtension.history_seconds = 600.0  # how much history to keep
    c.TorchlabExtension.gpu = True               # read GPUs through NVML (torch as fallback)
    c.TorchlabExtension.prometheus = True        # torchlab_* gauges on the server's /metrics
    c.TorchlabExtension.usage_interval = 3.0     # ask non-local kernels for usage_request (0: off)
    c.TorchlabExtension.usage_timeout = 1.0      # after this long without a reply: "did not answer"

Data flow: the sampler thread reads every kernel's process tree, the host and the GPUs once per
interval, builds the JSON document once, and hands it to the event loop with
``IOLoop.add_callback``; a GET writes those cached bytes and a WebSocket subscriber gets the same
bytes. Handlers never touch psutil or NVML. Kernels without a local process (remote
provisioners) are asked for their own figures through ``usage_request`` on the same thread
(see ``usage.py``); that costs a tick at most ``usage_wait(sample_interval, usage_timeout)``
seconds of waiting, however many kernels are slow or hung.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import math
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

from jupyter_core.utils import ensure_async
from jupyter_server.extension.application import ExtensionApp
from tornado import web
from tornado.ioloop import IOLoop, PeriodicCallback
from traitlets import Bool, Float, TraitError, default, validate

from jupyter_torchlab.metrics.host import HostSnapshot

from .kernels import NOT_LOCAL, KernelInfo, KernelRegistry
from .usage import UNTRACKED_TYPES, KernelUsage, UsagePoller

if TYPE_CHECKING:
    from jupyter_torchlab.metrics import Sampler, Snapshot

__all__ = ["Monitor", "TorchlabExtension", "TutorialWriter"]

# every field of the host reading is public; GPUs list only device fields (no process lists)
_HOST_FIELDS = tuple(f.name for f in dataclasses.fields(HostSnapshot))
_GPU_FIELDS = (
    "index",
    "name",
    "uuid",
    "utilization_gpu",
    "utilization_memory",
    "memory_used",
    "memory_total",
    "temperature",
    "power_watts",
    "power_limit_watts",
    "source",
)
PROCESS_GONE = "kernel process has exited"
GPU_OFF = "GPU sampling is off (TorchlabExtension.gpu = False)"
USAGE_OFF = (
    NOT_LOCAL + " (asking it through usage_request is off: TorchlabExtension.usage_interval = 0)"
)
USAGE_STARTING = (
    "kernel is not a local process and the server still shows it as starting (no client has "
    "connected yet); it is asked for its CPU and memory once a client connects, because asking "
    "now would make the server mark it idle"
)
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


class Monitor:
    """Own the server's one Sampler and share each snapshot with REST, WebSocket and Prometheus."""

    def __init__(
        self,
        kernel_manager: Any,
        session_manager: Any,
        *,
        interval: float = 1.0,
        history_seconds: float = 600.0,
        enable_gpu: bool = True,
        prometheus: bool = True,
        sampler_factory: Callable[..., Sampler] | None = None,
        usage_interval: float = 3.0,
        usage_timeout: float = 1.0,
        wall: Callable[[], float] = time.time,
        log: logging.Logger | None = None,
    ) -> None:
        self.log = log or logging.getLogger(__name__)
        self.interval = interval
        self._wall = wall
        self._gpu_enabled = enable_gpu
        self.registry = KernelRegistry(kernel_manager, session_manager, wall=wall, log=self.log)
        self._loop = IOLoop.current()
        self._lock = threading.Lock()  # guards _latest and _history (sampler thread vs loop)
        self._latest: bytes | None = None
        self._history: deque[tuple[float, bytes]] = deque(
            maxlen=max(1, math.ceil(history_seconds / interval) + 1)
        )
        self._first = asyncio.Event()
        self._subscribers: set[Subscriber] = set()
        self._registry_error: str | None = None
        self._warned: set[str] = set()
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
        if sampler_factory is None:
            from jupyter_torchlab.metrics import Sampler

            sampler_factory = Sampler
        self.sampler = sampler_factory(
            interval=interval,
            history_seconds=history_seconds,
            targets=self.registry.targets,
            enable_gpu=enable_gpu,
            extra=self._extra,
        )
        self._unsubscribe: Callable[[], None] | None = None
        self._refresher = PeriodicCallback(self._refresh, interval * 1000)
        self._stopped = False

    # --- lifecycle (event loop) ---------------------------------------------------------------

    def start(self) -> None:
        """Start watching kernels and sampling."""
        self._loop.add_callback(self._refresh)
        self._refresher.start()
        self._unsubscribe = self.sampler.subscribe(self._on_snapshot)
        self.sampler.start()

    def stop(self) -> None:
        """Stop sampling, disconnect subscribers and withdraw the Prometheus series; never hangs."""
        if self._stopped:
            return
        self._stopped = True
        self._refresher.stop()
        if self._unsubscribe is not None:
            self._unsubscribe()
        self._usage_closing = True  # before the join: a tick still running sees it
        self.sampler.stop(timeout=2.0)
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
        if self._exporter is not None:
            self._exporter.close()

    async def _refresh(self) -> None:
        try:
            await self.registry.refresh()
            self._registry_error = None
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

    def _extra(self) -> Mapping[str, Any]:
        usage: Mapping[str, KernelUsage] | None = None
        usage_error = None
        if self.usage is not None:
            usage = {}
            with self._usage_lock:
                if not self._usage_closing:
                    try:
                        usage = self.usage.poll(self.registry.endpoints())
                    except Exception as e:  # noqa: BLE001 - the kernel list must still go out
                        usage_error = f"{type(e).__name__}: {e}"
                        self._warn_once("usage", "asking kernels for usage failed: %s", usage_error)
                if self._usage_closing:  # stop() came during poll() and gave up waiting
                    self.usage.close()
        return {
            "kernels": self.registry.view(),
            "registry_error": self._registry_error,
            "usage": usage,
            "usage_error": usage_error,
        }

    def _on_snapshot(self, snap: Snapshot) -> None:
        try:
            doc = snapshot_document(snap)
            if not self._gpu_enabled and doc["gpu_reason"] is None:
                doc["gpu_reason"] = GPU_OFF
            try:
                data = json.dumps(doc, separators=(",", ":"), allow_nan=False).encode()
            except ValueError:  # a NaN or infinity somewhere: JSON has no spelling for it
                data = json.dumps(_finite(doc), separators=(",", ":")).encode()
        except Exception as e:  # noqa: BLE001 - a bad snapshot must not stop the sampler
            self._warn_once("encode", "cannot encode a snapshot: %s", e)
            return
        with self._lock:
            self._latest = data
            self._history.append((doc["time"], data))
        if self._exporter is not None:
            try:
                self._exporter.update(doc)
            except Exception as e:  # noqa: BLE001 - the REST and WS outputs must go on
                self._warn_once("prometheus", "cannot update the Prometheus gauges: %s", e)
        # RuntimeError: the loop is closed because the server is shutting down
        with contextlib.suppress(RuntimeError):
            self._loop.add_callback(self._broadcast, data)

    def _warn_once(self, key: str, msg: str, *args: object) -> None:
        if key not in self._warned:
            self._warned.add(key)
            self.log.warning("torchlab: " + msg, *args)


def snapshot_document(snap: Snapshot) -> dict[str, Any]:
    """Build the JSON document of ``GET torchlab/api/metrics`` from one snapshot."""
    host = snap.host
    kernels: Mapping[str, KernelInfo] = snap.extra.get("kernels") or {}
    # "usage" is None when asking kernels is off, absent when the snapshot has no such source
    usage: Mapping[str, KernelUsage] | None = snap.extra.get("usage", {})
    errors = dict(snap.errors)
    registry_error = snap.extra.get("registry_error")
    if registry_error:
        errors["kernels"] = registry_error
    usage_error = snap.extra.get("usage_error")
    if usage_error:
        errors["usage"] = usage_error
    return {
        "time": snap.time,
        "host": None if host is None else {f: _plain(getattr(host, f, None)) for f in _HOST_FIELDS},
        "gpus": [{f: getattr(g, f, None) for f in _GPU_FIELDS} for g in snap.gpus],
        "gpu_reason": snap.gpu_reason,
        "kernels": [
            _kernel_entry(
                info,
                snap.trees.get(kid),
                None if usage is None else usage.get(kid),
                usage_off=usage is None,
                usage_on="usage" in snap.extra and usage is not None,
            )
            for kid, info in kernels.items()
        ],
        "errors": errors,
    }


def _kernel_entry(
    info: KernelInfo,
    tree: Any,
    usage: KernelUsage | None,
    usage_off: bool = False,
    usage_on: bool = False,
) -> dict[str, Any]:
    """Build one kernel's entry; ``usage`` is what the kernel reported, if it was asked.

    ``usage_off``: asking kernels is configured off; ``usage_on``: this snapshot asked them.
    """
    # a tree read for an older pid (the kernel restarted between listing and sampling) is stale
    if tree is not None and info.pid is not None and getattr(tree, "pid", info.pid) != info.pid:
        tree = None
    reason = info.reason
    if reason is None and tree is None:
        reason = PROCESS_GONE
    elif reason is None:
        reason = tree.reason
    memory = None
    cpu_percent = None
    source = None
    usage_age = None
    if tree is not None:
        memory = tree.pss if tree.pss is not None else tree.rss
        cpu_percent = tree.cpu_percent
        source = "process"
    elif info.pid is None and info.reason == NOT_LOCAL:
        if usage_off:
            reason = USAGE_OFF
        elif usage is None and usage_on and info.execution_state == "starting":
            reason = USAGE_STARTING
        elif usage is not None:
            reason = usage.reason
            if usage.cpu_percent is not None or usage.memory is not None:
                cpu_percent, memory = usage.cpu_percent, usage.memory
                source, usage_age = "kernel", usage.age
    return {
        "id": info.id,
        "name": info.name,
        "execution_state": info.execution_state,
        "last_activity": info.last_activity,
        "busy_since": info.busy_since,
        "connections": info.connections,
        "pid": info.pid,
        "cpu_percent": cpu_percent,
        "memory": memory,
        "gpu_memory": None if tree is None else tree.gpu_memory,
        "path": info.path,
        "reason": reason,
        # where cpu_percent and memory come from: "process" (/proc), "kernel" (usage_request)
        "source": source,
        "usage_age": usage_age,  # seconds since a kernel-reported figure arrived
    }


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


# --- the tutorial endpoint's service ----------------------------------------------------------

_DRIVE = re.compile(r"^[A-Za-z]:")


class TutorialWriter:
    """Copy the bundled tutorial into the user's workspace through the contents manager."""

    max_tries = 1000

    def __init__(self, contents_manager: Any) -> None:
        self._cm = contents_manager
        # two POSTs in flight must not both pick the same free name
        self._lock = asyncio.Lock()

    async def copy(self, directory: Any) -> str:
        """Save a copy under a fresh name in ``directory`` (relative to the root); return it."""
        from jupyter_torchlab.tutorial import TUTORIAL_NAME, fresh_name

        dir_path = self._clean(directory)
        shown = dir_path or "/"
        try:
            model = await ensure_async(self._cm.get(dir_path, content=False))
        except web.HTTPError as e:
            if e.status_code == 404:
                raise web.HTTPError(
                    404,
                    f"no such directory {shown!r}; create it first or pick an existing one",
                ) from None
            raise
        if model.get("type") != "directory":
            raise web.HTTPError(
                400, f"{shown!r} is a file, not a directory; pass the directory to copy into"
            )
        if model.get("writable") is False:
            raise web.HTTPError(
                403,
                f"cannot write into {shown!r}: it is read-only; pick a directory you can write to",
            )
        content = self._notebook()
        async with self._lock:
            taken: set[str] = set()
            for _ in range(self.max_tries):
                name = fresh_name(taken, TUTORIAL_NAME)
                path = f"{dir_path}/{name}" if dir_path else name
                if await ensure_async(self._cm.exists(path)):
                    taken.add(name)
                    continue
                try:
                    await ensure_async(
                        self._cm.save(
                            {"type": "notebook", "format": "json", "content": content}, path
                        )
                    )
                except web.HTTPError as e:
                    if e.status_code == 403:
                        raise web.HTTPError(
                            403,
                            f"cannot write into {shown!r}: permission denied; "
                            "pick a directory you can write to",
                        ) from None
                    raise
                return path
        raise web.HTTPError(
            409,
            f"no free name for the tutorial in {shown!r} after {self.max_tries} tries; "
            "pick another directory",
        )

    @staticmethod
    def _clean(directory: Any) -> str:
        if directory is None:
            return ""
        if not isinstance(directory, str):
            raise web.HTTPError(
                400, '"dir" must be a path relative to the server root, e.g. "" or "notebooks"'
            )
        path = directory.replace("\\", "/")
        if path.startswith("/") or _DRIVE.match(path) or "\x00" in path:
            raise web.HTTPError(
                400,
                f"{directory!r} is not a path relative to the server root; "
                'pass e.g. "" (the root) or "notebooks"',
            )
        parts = [p for p in path.split("/") if p not in ("", ".")]
        if ".." in parts:
            raise web.HTTPError(
                403, f"{directory!r} is outside the server root; pick a directory inside it"
            )
        return "/".join(parts)

    @staticmethod
    def _notebook() -> Any:
        import nbformat

        from jupyter_torchlab.tutorial import tutorial_path

        try:
            return nbformat.read(tutorial_path(), as_version=4)
        except FileNotFoundError as e:
            raise web.HTTPError(500, str(e)) from None


# --- the extension ----------------------------------------------------------------------------


class TorchlabExtension(ExtensionApp):
    """Kernel, host and GPU monitoring for Jupyter: REST, WebSocket stream and Prometheus."""

    name = "jupyter_torchlab"

    sample_interval = Float(
        1.0,
        config=True,
        help="""Seconds between samples of the host, the GPUs and every kernel's processes.
        Each sample costs a few milliseconds of one core on a thread off the event loop.""",
    )
    history_seconds = Float(
        600.0,
        config=True,
        help="Seconds of samples kept for GET torchlab/api/metrics/history.",
    )
    gpu = Bool(
        True,
        config=True,
        help="""Read NVIDIA GPUs through NVML (torch as a fallback). False skips GPU reads:
        gpus is then [] with gpu_reason saying so.""",
    )
    usage_interval = Float(
        3.0,
        config=True,
        help="""Seconds between usage_request messages to each kernel that is not a local
        process (a remote provisioner): such kernels report their own CPU and memory on the
        control channel. 0 turns this off. Local kernels are always measured through /proc.""",
    )
    usage_timeout = Float(
        1.0,
        config=True,
        help="""Seconds after which a kernel that has not answered a usage_request is reported
        as not answering (it keeps its older figures, with that reason). A sampler tick itself
        never waits longer than min(usage_timeout, 0.2 * sample_interval, 0.05 s) for replies;
        later replies are read at the next tick.""",
    )
    prometheus = Bool(
        True,
        config=True,
        help="""Publish torchlab_* gauges on the server's /metrics (Prometheus text format).
        /metrics requires a token unless ServerApp.authenticate_prometheus is False.""",
    )

    @validate("sample_interval")
    def _check_interval(self, proposal: dict[str, Any]) -> float:
        value = float(proposal["value"])
        if not 0.05 <= value <= 3600:
            raise TraitError(
                f"TorchlabExtension.sample_interval must be between 0.05 and 3600 seconds, "
                f"got {value}"
            )
        return value

    @validate("usage_interval")
    def _check_usage_interval(self, proposal: dict[str, Any]) -> float:
        value = float(proposal["value"])
        if not (value == 0 or 0.1 <= value <= 3600):
            raise TraitError(
                "TorchlabExtension.usage_interval must be 0 (off) or between 0.1 and 3600 "
                f"seconds, got {value}"
            )
        return value

    @validate("usage_timeout")
    def _check_usage_timeout(self, proposal: dict[str, Any]) -> float:
        value = float(proposal["value"])
        if not 0.01 <= value <= 60:
            raise TraitError(
                f"TorchlabExtension.usage_timeout must be between 0.01 and 60 seconds, got {value}"
            )
        return value

    @validate("history_seconds")
    def _check_history(self, proposal: dict[str, Any]) -> float:
        value = float(proposal["value"])
        if not 0 <= value <= 7 * 24 * 3600:
            raise TraitError(
                f"TorchlabExtension.history_seconds must be between 0 and 604800, got {value}"
            )
        return value

    @default("config_file_name")
    def _config_file_name_default(self) -> str:
        # besides any jupyter_server_config file, read jupyter_torchlab_config.py/.json
        return "jupyter_torchlab_config"

    monitor: Monitor | None = None
    tutorial: TutorialWriter | None = None

    def _server(self) -> Any:
        """Return the ServerApp this extension is loaded into."""
        if self.serverapp is None:
            raise RuntimeError(
                "the jupyter_torchlab extension was initialised without a Jupyter server; "
                "load it through jupyter_server (jpserver_extensions), not on its own"
            )
        return self.serverapp

    def initialize_settings(self) -> None:
        """Create and start the server's one Monitor."""
        server = self._server()
        self.monitor = Monitor(
            server.kernel_manager,
            server.session_manager,
            interval=self.sample_interval,
            history_seconds=max(self.history_seconds, self.sample_interval),
            enable_gpu=self.gpu,
            prometheus=self.prometheus,
            usage_interval=self.usage_interval,
            usage_timeout=self.usage_timeout,
            log=self.log,
        )
        if self.usage_interval > 0:
            self._untrack_usage_messages()
        self.tutorial = TutorialWriter(server.contents_manager)
        self.settings["torchlab_monitor"] = self.monitor
        self.monitor.start()
        self.log.info(
            "torchlab: sampling every %.2g s, history %.0f s, GPU %s, Prometheus %s",
            self.sample_interval,
            self.history_seconds,
            "on" if self.gpu else "off",
            "on" if self.prometheus else "off",
        )

    def _untrack_usage_messages(self) -> None:
        """Keep usage_request/usage_reply from moving a kernel's execution_state/last_activity."""
        server = self._server()
        km = server.kernel_manager
        current = getattr(km, "untracked_message_types", None)
        if current is None:
            return  # a kernel manager without activity tracking: nothing to protect
        missing = [t for t in UNTRACKED_TYPES if t not in current]
        if missing:
            km.untracked_message_types = [*current, *missing]
        # JupyterLab reads this list from the page config to ignore those status messages too;
        # jupyterlab_server copies it when it loads, which may have happened before us
        page_config = server.web_app.settings.get("page_config_data")
        if isinstance(page_config, dict) and "untracked_message_types" in page_config:
            page_config["untracked_message_types"] = list(km.untracked_message_types)

    def initialize_handlers(self) -> None:
        """Add the torchlab/api routes (the base_url is prepended by ExtensionApp)."""
        from .handlers import make_handlers

        if self.monitor is None or self.tutorial is None:
            raise RuntimeError(
                "jupyter_torchlab: initialize_settings() must run before initialize_handlers(); "
                "load the extension through jupyter_server"
            )
        self.handlers.extend(make_handlers(self.monitor, self.tutorial))

    async def stop_extension(self) -> None:
        """Stop the sampler and close every stream (called on server shutdown)."""
        if self.monitor is not None:
            self.monitor.stop()
