"""``jupyter torchlab``: copy the tutorial, check the installation, run a notebook headless.

Importing this module is cheap: torch, nbclient and Jupyter's config machinery are imported inside
the subcommand that needs them, so ``jupyter torchlab tutorial`` answers at once.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import os
import re
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from .train.display import PROGRESS_ENV

if TYPE_CHECKING:
    from nbformat import NotebookNode

__all__ = ["main"]

PROG = "jupyter torchlab"
SERVER_EXTENSION = "jupyter_torchlab"
LAB_EXTENSION = "jupyter-torchlab"


# --------------------------------------------------------------------------------------------------
# tutorial


def _cmd_tutorial(args: argparse.Namespace) -> int:
    from .tutorial import copy_tutorial

    try:
        path = copy_tutorial(args.dir)
    except OSError as e:
        _error(str(e))
        return 1
    print(path)
    return 0


# --------------------------------------------------------------------------------------------------
# doctor


@dataclass
class Check:
    """One line of the doctor's report: ``status`` is "ok", "info" or "problem"."""

    label: str
    status: str
    detail: str


_MARKS = {"ok": "[ok]", "info": "[--]", "problem": "[!!]"}


def _check_python() -> list[Check]:
    from . import __version__

    return [
        Check("jupyter-torchlab", "ok", f"{__version__} ({Path(__file__).parent})"),
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
    from .train.device import available_devices, describe_device

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
    # str(DeviceInfo) reads "cuda:0: NVIDIA H100 80GB HBM3, 79.1 GiB, compute capability 9.0"
    return Check("accelerators", "ok", "; ".join(str(describe_device(d)) for d in accelerators))


def _check_nvml() -> Check:
    # through the same sampler the monitor uses, so the doctor reports what the monitor will see
    from .metrics.gpu import GpuSampler

    sampler = GpuSampler(torch_fallback=False)
    try:
        reading = sampler.sample()
    finally:
        sampler.close()
    if not reading.gpus:
        return Check("NVML", "info", f"unavailable: {reading.reason or 'no GPU is visible'}")
    gpus = "; ".join(
        f"{g.index}: {g.name}" + (f", {g.memory_total / 2**30:.1f} GiB" if g.memory_total else "")
        for g in reading.gpus
    )
    partial = f" (partly readable: {reading.reason})" if reading.reason else ""
    return Check("NVML", "problem" if reading.reason else "ok", f"{gpus}{partial}")


def _check_server_extension() -> Check:
    try:
        from jupyter_core.paths import jupyter_config_dir, jupyter_config_path
        from jupyter_server.extension.config import ExtensionConfigManager
        from jupyter_server.extension.manager import ExtensionPackage
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
    try:
        package = ExtensionPackage(name=SERVER_EXTENSION, enabled=True)
        valid = package.validate()
    except Exception as e:  # noqa: BLE001 -- report whatever stops it loading, do not crash
        return Check(
            "server extension",
            "problem",
            f"{SERVER_EXTENSION} is enabled (in {where}) but does not load: {e}",
        )
    if not valid:
        return Check(
            "server extension", "problem", f"{SERVER_EXTENSION} is enabled but fails validation"
        )
    return Check("server extension", "ok", f"{SERVER_EXTENSION} enabled (in {where})")


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


def _cmd_doctor(args: argparse.Namespace) -> int:
    checks = doctor_checks()
    width = max(len(c.label) for c in checks)
    for c in checks:
        print(f"{_MARKS[c.status]} {c.label:<{width}}  {c.detail}")
    problems = sum(c.status == "problem" for c in checks)
    print(f"\n{problems} problem(s) found." if problems else "\nNo problems found.")
    return 1 if problems and args.strict else 0


# --------------------------------------------------------------------------------------------------
# run


def parse_param(text: str) -> tuple[str, Any]:
    """Parse ``NAME=VALUE``: a Python literal when it reads as one, else the text as a string."""
    name, eq, raw = text.partition("=")
    name = name.strip()
    if not eq or not name.isidentifier():
        raise ValueError(f"--param expects NAME=VALUE with a Python name, got {text!r}")
    try:
        value = ast.literal_eval(raw)
    except (ValueError, SyntaxError):
        value = raw
    return name, value


def _assigned_names(source: str) -> set[str]:
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return set()
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
    return names


def inject_parameters(nb: NotebookNode, params: dict[str, Any]) -> list[str]:
    """Insert a cell assigning ``params`` after the cell tagged ``parameters``; return warnings.

    As papermill does: the notebook's defaults stay visible and the override follows them. Without
    a ``parameters`` cell the assignments go first.
    """
    import nbformat

    if not params:
        return []
    warnings = []
    index = next(
        (
            i
            for i, cell in enumerate(nb.cells)
            if cell.cell_type == "code" and "parameters" in cell.get("metadata", {}).get("tags", [])
        ),
        None,
    )
    lines = ["# Parameters injected by `jupyter torchlab run`"]
    lines += [f"{name} = {value!r}" for name, value in params.items()]
    cell = nbformat.v4.new_code_cell("\n".join(lines), metadata={"tags": ["injected-parameters"]})
    if index is None:
        warnings.append("the notebook has no cell tagged 'parameters'; setting them first")
        nb.cells.insert(0, cell)
    else:
        known = _assigned_names(nb.cells[index].source)
        for name in params:
            if name not in known:
                warnings.append(
                    f"parameter {name} is not set in the notebook's parameters cell "
                    f"(it sets: {', '.join(sorted(known)) or 'nothing'}); a typo?"
                )
        nb.cells.insert(index + 1, cell)
    return warnings


def format_elapsed(seconds: float) -> str:
    """Format seconds as ``M:SS`` (or ``H:MM:SS``)."""
    s = int(seconds)
    h, rest = divmod(s, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def _source_head(source: str, lines: int = 3, width: int = 90) -> list[str]:
    head = [line[:width] for line in source.strip().splitlines()[:lines]]
    if len(source.strip().splitlines()) > lines:
        head.append("...")
    return head


class TerminalReporter:
    """Print cell-by-cell progress and the kernel's text output as it arrives."""

    def __init__(
        self,
        nb: NotebookNode,
        out: TextIO | None = None,
        err: TextIO | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.out = out or sys.stdout
        self.err = err or sys.stderr
        self.clock = clock
        self.start = clock()
        self.code_cells = [
            i for i, c in enumerate(nb.cells) if c.cell_type == "code" and c.source.strip()
        ]
        self.failure: dict[str, Any] | None = None
        self.current_cell: int | None = None
        self.interrupts = 0
        self._at_line_start = True

    def position(self, cell_index: int) -> int:
        """Return the 1-based position of a cell among the code cells that run."""
        return self.code_cells.index(cell_index) + 1

    def on_cell_execute(self, cell: NotebookNode, cell_index: int, **_: Any) -> None:
        """Announce a code cell before it runs."""
        self.current_cell = cell_index
        first = (cell.source.strip().splitlines() or [""])[0][:70]
        self.newline()
        elapsed = format_elapsed(self.clock() - self.start)
        print(
            f"[{self.position(cell_index)}/{len(self.code_cells)}] cell {cell_index + 1} "
            f"({elapsed} elapsed)  {first}",
            file=self.out,
            flush=True,
        )

    def on_cell_error(
        self, cell: NotebookNode, cell_index: int, execute_reply: dict[str, Any], **_: Any
    ) -> None:
        """Remember the failing cell so the summary can show it."""
        self.failure = execute_reply.get("content", {})
        self.current_cell = cell_index

    def on_message(self, msg: dict[str, Any]) -> None:
        """Echo a kernel output message: streams as they are, rich outputs as their text."""
        kind = msg.get("msg_type")
        content = msg.get("content", {})
        if kind == "stream":
            target = self.err if content.get("name") == "stderr" else self.out
            self._write(target, content.get("text", ""))
        elif kind in ("execute_result", "display_data"):
            data = content.get("data", {})
            if "application/vnd.jupyter.widget-view+json" in data:
                return  # a widget has no terminal form; its text/plain is only a repr
            text = data.get("text/plain")
            if text:
                self._write(self.out, text + "\n")

    def notice(self, text: str) -> None:
        """Print a line of our own between the kernel's output."""
        self.newline()
        print(text, file=self.err, flush=True)

    def _write(self, stream: TextIO, text: str) -> None:
        stream.write(text)
        stream.flush()
        if text:
            self._at_line_start = text.endswith("\n")

    def newline(self) -> None:
        """End the current line if the kernel's output left the cursor mid-line."""
        # a progress bar drawn with "\r" leaves the cursor mid-line
        if not self._at_line_start:
            self.out.write("\n")
            self._at_line_start = True

    def report_failure(self, nb: NotebookNode, error: BaseException) -> None:
        """Print the failing cell's number, the head of its source and the error."""
        self.newline()
        err = self.err
        elapsed = format_elapsed(self.clock() - self.start)
        content = self.failure or {}
        if content.get("ename") == "KeyboardInterrupt" or self.interrupts:
            what = "INTERRUPTED"
        elif type(error).__name__ == "CellTimeoutError":
            what = "TIMED OUT"
        else:
            what = "FAILED"
        if self.current_cell is None:
            print(f"\n{what} after {elapsed}: {error}", file=err)
            return
        index = self.current_cell
        print(
            f"\n{what} in cell {index + 1} (code cell {self.position(index)}/"
            f"{len(self.code_cells)}) after {elapsed}:",
            file=err,
        )
        for line in _source_head(nb.cells[index].source):
            print(f"    {line}", file=err)
        traceback = "\n".join(content.get("traceback") or [])
        if traceback:
            print(traceback if _is_tty(err) else _ANSI.sub("", traceback), file=err)
        else:
            detail = str(error).strip() or type(error).__name__
            if what == "INTERRUPTED" and type(error).__name__ == "DeadKernelError":
                detail = "the kernel was shut down"
            print(detail, file=err)

    def summary(self) -> str:
        """Return the closing line for a successful run."""
        elapsed = format_elapsed(self.clock() - self.start)
        return f"Ran {len(self.code_cells)} code cells in {elapsed}."


_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def _is_tty(stream: TextIO) -> bool:
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


def _make_client(nb: NotebookNode, reporter: TerminalReporter, **kwargs: Any) -> Any:
    import asyncio
    import signal

    from nbclient import NotebookClient

    class _EchoingClient(NotebookClient):
        """Hands every output message to the reporter; Ctrl-C interrupts the cell first."""

        _sigint_installed = False
        _tasks: set[asyncio.Future[Any]] = set()  # noqa: RUF012 -- keeps signal tasks alive

        def process_message(self, msg: dict[str, Any], cell: Any, cell_index: int) -> Any:
            reporter.on_message(msg)
            return super().process_message(msg, cell, cell_index)

        async def async_execute_cell(
            self,
            cell: Any,
            cell_index: int,
            execution_count: int | None = None,
            store_history: bool = True,
        ) -> Any:
            if not self._sigint_installed:
                # nbclient's own SIGINT handler kills the kernel at once; like Jupyter, the first
                # Ctrl-C interrupts the running cell (so fit() can stop cleanly), the second kills
                self._sigint_installed = True
                # RuntimeError: not the main thread; NotImplementedError: Windows
                with contextlib.suppress(RuntimeError, NotImplementedError):
                    asyncio.get_running_loop().add_signal_handler(signal.SIGINT, self._on_sigint)
            return await super().async_execute_cell(
                cell, cell_index, execution_count=execution_count, store_history=store_history
            )

        def _on_sigint(self) -> None:
            reporter.interrupts += 1
            if reporter.interrupts == 1 and self.km is not None:
                reporter.notice("Interrupting the kernel (press Ctrl-C again to stop it)")
                task = asyncio.ensure_future(_maybe_await(self.km.interrupt_kernel()))
            else:
                task = asyncio.ensure_future(self._async_cleanup_kernel())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    return _EchoingClient(
        nb,
        on_cell_execute=reporter.on_cell_execute,
        on_cell_error=reporter.on_cell_error,
        **kwargs,
    )


async def _maybe_await(value: Any) -> None:
    if hasattr(value, "__await__"):
        await value


def _default_output(source: Path) -> Path:
    stem = source.name[: -len(".ipynb")] if source.name.endswith(".ipynb") else source.name
    return source.with_name(f"{stem}.executed.ipynb")


def _write_atomically(nb: NotebookNode, path: Path) -> None:
    import nbformat

    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            nbformat.write(nb, f)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _cmd_run(args: argparse.Namespace) -> int:
    import nbformat

    from .tutorial import TUTORIAL_NAME, tutorial_path

    try:
        params = dict(parse_param(p) for p in args.param)
    except ValueError as e:
        _error(str(e))
        return 2

    if args.notebook is None:
        # the bundled copy may sit in a read-only site-packages: run it here, in the cwd
        source = tutorial_path()
        workdir = Path.cwd()
        default = workdir / TUTORIAL_NAME.replace(".ipynb", ".executed.ipynb")
        output = Path(args.output) if args.output else default
    else:
        source = Path(args.notebook)
        if not source.is_file():
            kind = "it is a directory" if source.is_dir() else "no such file"
            _error(f"cannot run {source}: {kind}; pass the path of an .ipynb file")
            return 2
        workdir = source.resolve().parent
        output = Path(args.output) if args.output else _default_output(source)
    if output.resolve() == source.resolve():
        _error(f"refusing to write the executed notebook over its source {source}; use --output")
        return 2

    try:
        nb = nbformat.read(source, as_version=4)
    except Exception as e:  # noqa: BLE001 -- nbformat raises many kinds for an unreadable file
        _error(f"cannot read {source} as a notebook: {e}")
        return 2
    for warning in inject_parameters(nb, params):
        print(f"warning: {warning}", file=sys.stderr)

    kernel = args.kernel or nb.metadata.get("kernelspec", {}).get("name") or "python3"
    # no frontend will render widgets: ask our progress displays for text (the kernel inherits
    # this environment), unless the user chose otherwise
    os.environ.setdefault(PROGRESS_ENV, "text")
    reporter = TerminalReporter(nb)
    print(f"Running {source} in kernel {kernel!r} (working directory {workdir})", flush=True)
    client = _make_client(
        nb,
        reporter,
        kernel_name=kernel,
        timeout=args.timeout,
        resources={"metadata": {"path": str(workdir)}},
        record_timing=False,
        # the kernel's own log (its TCP transport notice) is noise in a headless run; cell
        # output and errors still arrive as messages
        extra_arguments=["--IPKernelApp.log_level=ERROR"] if kernel.startswith("python") else [],
    )
    try:
        client.execute()
        code = 0
    except KeyboardInterrupt as e:
        reporter.interrupts += 1
        reporter.report_failure(nb, e)
        code = 130
    except Exception as e:  # noqa: BLE001 -- every failure is reported the same way below
        if type(e).__name__ == "NoSuchKernel":
            _error(f"no kernel named {kernel!r}; see `jupyter kernelspec list` or pass --kernel")
            return 2
        reporter.report_failure(nb, e)
        code = 130 if reporter.interrupts else 1
    try:
        _write_atomically(nb, output)
    except OSError as e:
        reporter.newline()
        _error(f"cannot write the executed notebook to {output} ({e}); choose another --output")
        return code or 1
    if code == 0:
        reporter.newline()
        print(f"{reporter.summary()} Wrote {output}", flush=True)
    else:
        print(f"The notebook as far as it ran: {output}", file=sys.stderr)
    return code


# --------------------------------------------------------------------------------------------------
# entry point


def _error(message: str) -> None:
    print(f"{PROG}: error: {message}", file=sys.stderr)


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser for ``jupyter torchlab``."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="PyTorch in Jupyter: the classifier tutorial, an installation check, "
        "and headless notebook runs.",
        epilog="Also available as `jupyter-torchlab` and `python -m jupyter_torchlab`.",
    )
    from . import __version__

    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser(
        "tutorial",
        help="copy the CIFAR-10 classifier tutorial notebook into DIR and print its path",
        description="Copy the bundled first_pytorch_classifier.ipynb into DIR. An existing file "
        "is never overwritten: a taken name becomes first_pytorch_classifier-1.ipynb, -2, ...",
    )
    p.add_argument(
        "dir", nargs="?", default=".", metavar="DIR", help="target directory (default: .)"
    )
    p.set_defaults(func=_cmd_tutorial)

    p = sub.add_parser(
        "doctor",
        help="report torch, accelerators, NVML and whether the Jupyter extensions are enabled",
        description="Check what jupyter-torchlab needs: torch and torchvision, the accelerators "
        "torch sees, NVML for GPU monitoring, the server extension and the JupyterLab extension.",
    )
    p.add_argument(
        "--strict", action="store_true", help="exit with status 1 when a problem is found"
    )
    p.set_defaults(func=_cmd_doctor)

    p = sub.add_parser(
        "run",
        help="execute a notebook headless in a real kernel (the tutorial by default)",
        description="Execute NOTEBOOK top to bottom in a kernel, printing each cell and its text "
        "output as it runs, and write the executed copy beside it as NAME.executed.ipynb (the "
        "source is never changed). Without NOTEBOOK the bundled tutorial runs in the current "
        "directory. Exits 1 when a cell fails, after printing that cell and its error.",
    )
    p.add_argument("notebook", nargs="?", metavar="NOTEBOOK", help="the .ipynb to run")
    p.add_argument(
        "-p",
        "--param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="override a value of the cell tagged 'parameters' (repeatable); VALUE is read as a "
        "Python literal (1, 0.5, True, 'x'), anything else as a string. Example: -p EPOCHS=1",
    )
    p.add_argument(
        "--timeout",
        type=int,
        default=None,
        metavar="SECONDS",
        help="fail a cell that runs longer than this (default: no limit)",
    )
    p.add_argument("-o", "--output", metavar="PATH", help="where to write the executed notebook")
    p.add_argument("--kernel", metavar="NAME", help="kernel to use (default: the notebook's)")
    p.set_defaults(func=_cmd_run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``jupyter torchlab`` with ``argv`` (default: the process arguments)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    result: int = args.func(args)
    return result
