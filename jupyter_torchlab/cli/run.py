"""``jupyter torchlab run``: execute a notebook headless in a real kernel, with text progress.

Each code cell is announced (``[n/N] cell i (m:ss elapsed)``) and the kernel's text output is
echoed as it arrives; the executed copy is written beside the source (never over it). A first
Ctrl-C interrupts the running cell, a second one shuts the kernel down.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import errno
import io
import os
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, TextIO

from .._files import atomic_write
from .._format import format_duration
from .._terminal import is_tty
from ..train.display import PROGRESS_ENV
from ._common import error

if TYPE_CHECKING:
    from nbformat import NotebookNode

__all__ = ["TerminalReporter", "cmd_run", "inject_parameters", "parse_param"]


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
        elapsed = format_duration(self.clock() - self.start)
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
        elapsed = format_duration(self.clock() - self.start)
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
            print(traceback if is_tty(err) else _ANSI.sub("", traceback), file=err)
        else:
            detail = str(error).strip() or type(error).__name__
            if what == "INTERRUPTED" and type(error).__name__ == "DeadKernelError":
                detail = "the kernel was shut down"
            print(detail, file=err)

    def summary(self) -> str:
        """Return the closing line for a successful run."""
        elapsed = format_duration(self.clock() - self.start)
        return f"Ran {len(self.code_cells)} code cells in {elapsed}."


_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


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


def _write_notebook(nb: NotebookNode, path: Path) -> None:
    import nbformat

    # atomic_write would create a missing folder; an --output into one is more likely a typo
    if not path.parent.is_dir():
        raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), str(path.parent))

    def write(f: IO[bytes]) -> None:
        # nbformat.write into a text file, as a notebook is saved: utf-8 and a final newline
        text = io.TextIOWrapper(f, encoding="utf-8")
        nbformat.write(nb, text)
        text.flush()
        text.detach()  # atomic_write still fsyncs and closes the file

    atomic_write(path, write)


def cmd_run(args: argparse.Namespace) -> int:
    """Run ``jupyter torchlab run``; return the exit status."""
    import nbformat

    from ..tutorial import TUTORIAL_NAME, tutorial_path

    try:
        params = dict(parse_param(p) for p in args.param)
    except ValueError as e:
        error(str(e))
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
            error(f"cannot run {source}: {kind}; pass the path of an .ipynb file")
            return 2
        workdir = source.resolve().parent
        output = Path(args.output) if args.output else _default_output(source)
    if output.resolve() == source.resolve():
        error(f"refusing to write the executed notebook over its source {source}; use --output")
        return 2

    try:
        nb = nbformat.read(source, as_version=4)
    except Exception as e:  # noqa: BLE001 -- nbformat raises many kinds for an unreadable file
        error(f"cannot read {source} as a notebook: {e}")
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
            error(f"no kernel named {kernel!r}; see `jupyter kernelspec list` or pass --kernel")
            return 2
        reporter.report_failure(nb, e)
        code = 130 if reporter.interrupts else 1
    try:
        _write_notebook(nb, output)
    except OSError as e:
        reporter.newline()
        error(f"cannot write the executed notebook to {output} ({e}); choose another --output")
        return code or 1
    if code == 0:
        reporter.newline()
        print(f"{reporter.summary()} Wrote {output}", flush=True)
    else:
        print(f"The notebook as far as it ran: {output}", file=sys.stderr)
    return code
