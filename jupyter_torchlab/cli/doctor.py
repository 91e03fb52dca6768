"""``jupyter torchlab doctor``: what jupyter-torchlab needs, checked one line at a time.

torch and torchvision, the accelerators torch sees and the distributed backends, NVML for GPU
monitoring, whether the server and the JupyterLab extensions are enabled where Jupyter looks, and
whether the server extension really loads (in a Jupyter server started in this process with the
user's configuration, which never listens).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._format import format_bytes
from ._common import LAB_EXTENSION, SERVER_EXTENSION

__all__ = ["Check", "cmd_doctor", "doctor_checks"]


@dataclass
class Check:
    """One line of the doctor's report: ``status`` is "ok", "info", "problem" or "fail".

    "fail" is a problem that stops jupyter-torchlab working where it is enabled (the server
    extension does not load): the doctor then exits 1 even without ``--strict``.
    """

    label: str
    status: str
    detail: str


_MARKS = {"ok": "[ok]", "info": "[--]", "problem": "[!!]", "fail": "[!!]"}


def _check_python() -> list[Check]:
    from .. import __version__

    return [
        Check("jupyter-torchlab", "ok", f"{__version__} ({Path(__file__).parent.parent})"),
        Check("python", "ok", f"{sys.version.split()[0]} ({sys.executable})"),
    ]


def _check_torch() -> list[Check]:
    try:
        import torch
    except ImportError as e:
        return [Check("torch", "problem", f"not importable ({e}); pip install torch")]
    build = f"CUDA {torch.version.cuda} build" if torch.version.cuda else "CPU-only build"
    if getattr(torch.version, "hip", None):
        build = f"ROCm {torch.version.hip} build"
    checks = [Check("torch", "ok", f"{torch.__version__} ({build})")]
    try:
        import torchvision

        checks.append(Check("torchvision", "ok", torchvision.__version__))
    except ImportError as e:
        checks.append(
            Check("torchvision", "problem", f"not importable ({e}); pip install torchvision")
        )
    checks.append(_check_accelerators(torch))
    checks.append(_check_distributed(torch))
    return checks


def _check_distributed(torch: Any) -> Check:
    dist = torch.distributed
    if not dist.is_available():
        return Check(
            "distributed",
            "info",
            "this torch build has no torch.distributed: fit trains in one process only",
        )
    backends = [
        name
        for name, ok in (("gloo", dist.is_gloo_available()), ("nccl", dist.is_nccl_available()))
        if ok
    ]
    gpus = torch.cuda.device_count()  # asks the driver; does not initialise CUDA
    how = (
        f"one process per GPU: tl.launch(fn) or torchrun --nproc_per_node={gpus}"
        if gpus
        else "CPU processes: tl.launch(fn, nprocs=N) or torchrun --nproc_per_node=N"
    )
    return Check("distributed", "ok", f"backends {', '.join(backends) or 'none'}; {how}")


def _check_accelerators(torch: Any) -> Check:
    from ..train.device import available_devices, describe_device

    accelerators = [name for name in available_devices() if name != "cpu"]
    if not accelerators:
        hint = ""
        if torch.version.cuda:
            hint = " (this torch is built for CUDA, but no NVIDIA GPU or driver is visible)"
        return Check(
            "accelerators",
            "info",
            f"none: no GPU{hint}; training runs on the CPU ({torch.get_num_threads()} threads)",
        )
    # str(DeviceInfo) reads "cuda:0: NVIDIA H100 80GB HBM3, 79 GiB, compute capability 9.0"
    return Check("accelerators", "ok", "; ".join(str(describe_device(d)) for d in accelerators))


def _check_nvml() -> Check:
    # through the same sampler the monitor uses, so the doctor reports what the monitor will see
    from ..metrics.gpu import GpuSampler

    sampler = GpuSampler(torch_fallback=False)
    try:
        reading = sampler.sample()
    finally:
        sampler.close()
    if not reading.gpus:
        return Check("NVML", "info", f"unavailable: {reading.reason or 'no GPU is visible'}")
    gpus = "; ".join(
        f"{g.index}: {g.name}" + (f", {format_bytes(g.memory_total)}" if g.memory_total else "")
        for g in reading.gpus
    )
    partial = f" (partly readable: {reading.reason})" if reading.reason else ""
    return Check("NVML", "problem" if reading.reason else "ok", f"{gpus}{partial}")


def _check_server_extension() -> Check:
    try:
        from jupyter_core.paths import jupyter_config_dir, jupyter_config_path
        from jupyter_server.extension.config import ExtensionConfigManager
    except ImportError as e:
        return Check("server extension", "problem", f"jupyter_server is not importable ({e})")
    # the same search path and precedence the server uses (its config dir first)
    paths = jupyter_config_path()
    if jupyter_config_dir() not in paths:
        paths.insert(0, jupyter_config_dir())
    enabled = ExtensionConfigManager(read_config_path=paths).get_jpserver_extensions()
    where = next(
        (
            p
            for p in paths
            if SERVER_EXTENSION
            in ExtensionConfigManager(read_config_path=[p]).get_jpserver_extensions()
        ),
        None,
    )
    if SERVER_EXTENSION not in enabled:
        return Check(
            "server extension",
            "problem",
            f"{SERVER_EXTENSION} is not configured; "
            f"run: jupyter server extension enable {SERVER_EXTENSION}",
        )
    if not enabled[SERVER_EXTENSION]:
        return Check(
            "server extension",
            "problem",
            f"{SERVER_EXTENSION} is disabled (in {where}); "
            f"run: jupyter server extension enable {SERVER_EXTENSION}",
        )
    import jupyter_server

    why = load_server_extension()
    if why is not None:
        return Check(
            "server extension", "fail", f"{SERVER_EXTENSION} is enabled (in {where}), but {why}"
        )
    return Check(
        "server extension",
        "ok",
        f"{SERVER_EXTENSION} enabled (in {where}) and loads in jupyter_server "
        f"{jupyter_server.__version__}",
    )


def load_server_extension() -> str | None:
    """Load the server extension the way ``jupyter server`` does, without serving anything.

    A ServerApp in this process, with the user's configuration files and only this extension,
    initialised and stopped again. Return None when it loads, else the sentence the server logs
    at ERROR: the cause and the fix.
    """
    import asyncio

    return asyncio.run(_load_in_a_server())


async def _load_in_a_server() -> str | None:
    import importlib
    import tempfile

    from jupyter_server.serverapp import ServerApp
    from traitlets.config import Config

    from ..server.load_failure import explain

    class Probe(ServerApp):
        """A Jupyter server that loads only this extension and never listens."""

        def init_server_extensions(self) -> None:
            # the user's config may enable others (JupyterLab, ...); they are not what we check
            self.jpserver_extensions = {SERVER_EXTENSION: True}
            super().init_server_extensions()

        def init_signal(self) -> None:
            """Leave Ctrl-C to the doctor."""

    # a runtime directory of its own: the real servers' files there must not be touched
    with tempfile.TemporaryDirectory(prefix="torchlab-doctor-") as runtime:
        quiet = Config({"TorchlabExtension": {"log_level": "CRITICAL"}})
        server = Probe(config=quiet, runtime_dir=runtime, log_level="CRITICAL")
        try:
            server.initialize(argv=[], find_extensions=False, new_httpserver=False)
        except Exception as e:  # noqa: BLE001 -- the report says what stops the server itself
            if server.extension_manager is not None:
                await server.extension_manager.stop_all_extensions()
            return f"a Jupyter server with this configuration does not start: {e}"
        try:
            apps = server.extension_manager.extension_apps.get(SERVER_EXTENSION)
            if not apps:
                # jupyter_server could not even import it: import it here to learn why
                try:
                    importlib.import_module(f"{SERVER_EXTENSION}.server.app")
                except Exception as e:  # noqa: BLE001 -- explained below
                    return explain(e).message
                return "jupyter_server did not load it (run `jupyter server` to see why)"
            failure = next(iter(apps)).load_failure
            return None if failure is None else failure.message
        finally:
            await server.extension_manager.stop_all_extensions()


def _check_lab_extension() -> Check:
    try:
        from jupyter_core.paths import jupyter_path
        from jupyterlab.commands import AppOptions, get_app_info  # type: ignore[import-untyped]
    except ImportError:
        return Check(
            "lab extension",
            "info",
            "JupyterLab is not installed here, so the lab extension cannot be checked "
            "(pip install jupyterlab to get the launcher tile, status bar and monitor panel)",
        )
    # without an explicit search path get_app_info sees no prebuilt (federated) extensions;
    # these are the folders `jupyter labextension list` and JupyterLab itself search
    info = get_app_info(AppOptions(labextensions_path=jupyter_path("labextensions")))
    federated = info.get("federated_extensions", {})
    if LAB_EXTENSION not in federated:
        return Check(
            "lab extension",
            "problem",
            f"{LAB_EXTENSION} is not installed for JupyterLab {info.get('version', '?')}; "
            "reinstall with: pip install --force-reinstall jupyter-torchlab (from a source "
            "checkout: build labextension/, then jupyter labextension develop --overwrite .)",
        )
    ext = federated[LAB_EXTENSION]
    disabled = info.get("disabled", {})
    off = [
        k
        for k, v in disabled.items()
        if v and (k == LAB_EXTENSION or k.startswith(f"{LAB_EXTENSION}:"))
    ]
    if off:
        return Check(
            "lab extension",
            "problem",
            f"{LAB_EXTENSION} {ext.get('version', '')} is installed but disabled "
            f"({', '.join(off)}); "
            f"run: jupyter labextension enable {LAB_EXTENSION}",
        )
    return Check(
        "lab extension",
        "ok",
        f"{LAB_EXTENSION} {ext.get('version', '')} installed and enabled "
        f"({ext.get('ext_path', '')})",
    )


def _guarded(label: str, fn: Callable[[], Check | list[Check]]) -> list[Check]:
    try:
        result = fn()
    except Exception as e:  # noqa: BLE001 -- one broken check must not hide the others
        return [Check(label, "problem", f"check failed: {type(e).__name__}: {e}")]
    return result if isinstance(result, list) else [result]


def doctor_checks() -> list[Check]:
    """Run every doctor check and return their results in display order."""
    checks: list[Check] = []
    checks += _guarded("python", _check_python)
    checks += _guarded("torch", _check_torch)
    checks += _guarded("NVML", _check_nvml)
    checks += _guarded("server extension", _check_server_extension)
    checks += _guarded("lab extension", _check_lab_extension)
    return checks


def cmd_doctor(args: argparse.Namespace) -> int:
    """Run ``jupyter torchlab doctor``; return the exit status."""
    checks = doctor_checks()
    width = max(len(c.label) for c in checks)
    for c in checks:
        print(f"{_MARKS[c.status]} {c.label:<{width}}  {c.detail}")
    problems = sum(c.status in ("problem", "fail") for c in checks)
    print(f"\n{problems} problem(s) found." if problems else "\nNo problems found.")
    failed = any(c.status == "fail" for c in checks)
    return 1 if failed or (problems and args.strict) else 0
