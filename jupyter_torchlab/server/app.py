"""The jupyter_server extension: configuration, and the one ServerMonitor it starts.

Configuration (any jupyter_server config file, or the command line)::

    c.TorchlabExtension.sample_interval = 1.0    # seconds between samples
    c.TorchlabExtension.history_seconds = 600.0  # how much history to keep
    c.TorchlabExtension.gpu = True               # read GPUs through NVML (torch as fallback)
    c.TorchlabExtension.prometheus = True        # torchlab_* gauges on the server's /metrics
    c.TorchlabExtension.usage_interval = 3.0     # ask non-local kernels for usage_request (0: off)
    c.TorchlabExtension.usage_timeout = 1.0      # after this long without a reply: "did not answer"
    c.TorchlabExtension.gpu_idle_warn = 1800.0   # flag kernels idle this long on a GPU (0: off)
    c.TorchlabExtension.gpu_idle_cull = 0.0      # then shut down this long after warning (0: off)
    c.TorchlabExtension.memory_guard = 0.0       # interrupt a kernel at this share of its memory
                                                 # limit, e.g. 0.95 (0: off; see .memory_guard)

How the data flows is in :mod:`.monitor`; the routes are in :mod:`.handlers` and :mod:`.stream`.
An extension that cannot load (a bad setting above, a jupyter_server too old for the routes) says
why at ERROR and answers on its routes with the reason instead: see :mod:`.load_failure`.
"""

from __future__ import annotations

from typing import Any

from jupyter_server.extension.application import ExtensionApp
from jupyter_server.utils import url_path_join
from traitlets import Bool, Float, TraitError, default, validate

from .hub_activity import BusyActivity
from .load_failure import (
    PAGE_CONFIG_KEY,
    ExtensionNotLoaded,
    LoadFailure,
    explain,
    unavailable_handlers,
)
from .memory_guard import check_fraction
from .monitor import ServerMonitor
from .tutorial_copy import TutorialWriter
from .usage import UNTRACKED_TYPES

__all__ = ["TorchlabExtension"]


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

    cell_costs = Bool(
        True,
        config=True,
        help="""Measure what each executed cell cost (wall time, CPU seconds, peak memory and its
        change, peak GPU memory) of every kernel from its start, served by GET
        torchlab/api/cells, so the lab extension can show it under each cell. False turns it off
        for everyone and measures nothing; each user can also hide it in the extension's
        settings (the server still measures).""",
    )
    gpu_idle_warn = Float(
        1800.0,
        config=True,
        help="""Seconds a kernel may stay idle while holding GPU memory before it is flagged
        (holding_idle in the snapshot, torchlab_kernel_idle_gpu_bytes, a notification in
        JupyterLab). Idle counts from the kernel's last transition to idle. 0 turns it off.""",
    )
    gpu_idle_cull = Float(
        0.0,
        config=True,
        help="""Opt-in: shut down a kernel flagged by gpu_idle_warn when it is still idle and
        still holds GPU memory this many seconds after the warning. 0 (the default) never shuts
        anything down. Unlike MappingKernelManager.cull_idle_timeout, which shuts down every idle
        kernel whether it holds a GPU or not, this only acts on kernels that keep GPU memory from
        others, warns first, re-checks the kernel's state at the moment of acting and never
        touches a busy kernel. Each action is logged and counted in
        torchlab_kernel_idle_gpu_actions_total.""",
    )

    memory_guard = Float(
        0.0,
        config=True,
        help="""Opt-in: interrupt a kernel that is running a cell when its memory reaches this
        share of its memory limit (e.g. 0.95), before the out-of-memory killer takes it and every
        variable with it; once per approach to the limit. The limit is the kernel's memory cgroup
        limit, or the host's memory where there is none. The notebook says why. 0 (the default)
        turns it off. It cannot catch one allocation larger than the headroom left above the
        threshold. Each interrupt is logged, kept in GET torchlab/api/events and counted in
        torchlab_memory_guard_interrupts_total.""",
    )

    @validate("memory_guard")
    def _check_memory_guard(self, proposal: dict[str, Any]) -> float:
        try:
            return check_fraction(float(proposal["value"]))
        except ValueError as e:
            raise TraitError(str(e)) from None

    @validate("gpu_idle_warn", "gpu_idle_cull")
    def _check_idle(self, proposal: dict[str, Any]) -> float:
        value = float(proposal["value"])
        name = proposal["trait"].name
        if not (value == 0 or 1 <= value <= 30 * 24 * 3600):
            raise TraitError(
                f"TorchlabExtension.{name} must be 0 (off) or between 1 and 2592000 seconds, "
                f"got {value}"
            )
        return value

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

    monitor: ServerMonitor | None = None
    busy_activity: BusyActivity | None = None
    tutorial: TutorialWriter | None = None
    #: why the extension did not load; None when it did (or has not tried yet)
    load_failure: LoadFailure | None = None
    _load_error: Exception | None = None

    def _link_jupyter_server_extension(self, serverapp: Any) -> None:
        """Link to the server; what stops it (a bad setting) is reported when loading."""
        try:
            super()._link_jupyter_server_extension(serverapp)
        except Exception as e:  # initialize() reports it, with the cause and the fix
            if getattr(serverapp, "reraise_server_extension_failures", False):
                raise
            self.serverapp = serverapp
            self._load_error = e

    def initialize(self) -> None:  # type: ignore[override]  # ExtensionApp's own signature
        """Load into the server; if anything stops it, serve the reason instead (see above)."""
        if self._load_error is None:
            try:
                # what the routes import comes first, before the sampler starts: a jupyter_server
                # too old for them fails here instead of halfway, with a thread and no routes
                from . import handlers  # noqa: F401

                super().initialize()
                return
            except Exception as e:  # noqa: BLE001 -- reported below with the cause and fix
                self._load_error = e
                self._undo_partial_load()
        self._report_failure(self._load_error)

    def _undo_partial_load(self) -> None:
        if self.monitor is not None:
            self.monitor.stop()
        self.monitor = self.tutorial = None
        if self.serverapp is not None:
            self.serverapp.web_app.settings.pop("torchlab_monitor", None)

    def _report_failure(self, error: Exception) -> None:
        """Log the failure at ERROR, serve it on torchlab/api/* and in the page config; raise."""
        failure = self.load_failure = explain(error)
        server = self.serverapp
        log = self.log if server is None else server.log
        log.error(
            "%s Until then every torchlab/api route answers 503 with this message.",
            failure.message,
            exc_info=error if failure.unexpected else None,
        )
        if server is not None:
            web_app = server.web_app
            base_url = web_app.settings["base_url"]
            web_app.add_handlers(
                ".*$",
                [
                    (url_path_join(base_url, pattern), handler, kwargs)
                    for pattern, handler, kwargs in unavailable_handlers(failure)
                ],
            )
            # the lab reads this at page load: no stream to try, the reason shown at once
            web_app.settings.setdefault("page_config_data", {})[PAGE_CONFIG_KEY] = failure.message
        # jupyter_server then records it as failed, not as "successfully loaded"
        raise ExtensionNotLoaded(failure.message) from None

    def _server(self) -> Any:
        """Return the ServerApp this extension is loaded into."""
        if self.serverapp is None:
            raise RuntimeError(
                "the jupyter_torchlab extension was initialised without a Jupyter server; "
                "load it through jupyter_server (jpserver_extensions), not on its own"
            )
        return self.serverapp

    def initialize_settings(self) -> None:
        """Create and start the server's one ServerMonitor."""
        server = self._server()
        self.monitor = ServerMonitor(
            server.kernel_manager,
            server.session_manager,
            interval=self.sample_interval,
            history_seconds=max(self.history_seconds, self.sample_interval),
            enable_gpu=self.gpu,
            prometheus=self.prometheus,
            usage_interval=self.usage_interval,
            usage_timeout=self.usage_timeout,
            log=self.log,
            runtime_dir=getattr(server, "runtime_dir", None),
            gpu_idle_warn=self.gpu_idle_warn,
            gpu_idle_cull=self.gpu_idle_cull,
            cell_costs=self.cell_costs,
            memory_guard=self.memory_guard,
        )
        if self.gpu_idle_cull and not self.gpu_idle_warn:
            self.log.warning(
                "torchlab: TorchlabExtension.gpu_idle_cull is set but gpu_idle_warn is 0, so no "
                "kernel is ever flagged and none is shut down; set gpu_idle_warn as well"
            )
        if self.usage_interval > 0:
            self._untrack_usage_messages()
        self.tutorial = TutorialWriter(server.contents_manager)
        self.settings["torchlab_monitor"] = self.monitor
        self.monitor.start()
        # a quiet cell that runs for hours is activity for JupyterHub's culler (see .hub_activity)
        self.busy_activity = BusyActivity(self.monitor.registry.view, server.web_app.settings)
        self.busy_activity.start()
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
        if self.busy_activity is not None:
            self.busy_activity.stop()
        if self.monitor is not None:
            self.monitor.stop()
