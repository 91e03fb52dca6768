"""Data-parallel training from a notebook: :func:`launch` runs a function in N processes.

The processes are started by torch's elastic launcher (the engine behind ``torchrun``) with the
*fork* start method, so a function defined in a notebook cell, and everything it closes over, is
available in the workers without pickling. Each worker gets torchrun's environment (RANK,
WORLD_SIZE, MASTER_ADDR, ...), so :func:`jupyter_torchlab.fit` inside it trains with
DistributedDataParallel on its share of the data.

A forked worker cannot draw in the notebook, so rank 0's fit reports its progress as small events
over a pipe; the notebook process replays them into the same progress display ``fit`` shows
there. Per batch that is at most a few events a second, never one per batch.
"""

from __future__ import annotations

import contextlib
import ctypes
import io
import logging
import multiprocessing as mp
import os
import signal
import sys
import tempfile
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

from ..callbacks import Callback
from ..display import PROGRESS_ENV, use_display
from .events import EventSender, Hello, Mirror, WorkerError

__all__ = ["LaunchError", "launch"]

#: seconds workers get to stop at a batch boundary after an interrupt before they are killed
INTERRUPT_GRACE = 10.0

_CUDA_INITIALISED = (
    "CUDA is already initialised in this kernel (a cell ran something on the GPU), and processes "
    "forked from it cannot use the GPU. Restart the kernel and call tl.launch before anything "
    "touches CUDA: create the model and the data inside the launched function. Or put the code "
    "in a script and run it with `torchrun --nproc_per_node=N script.py`."
)
_CUDA_FORKED = (
    "The workers could not use CUDA: something in this kernel started the CUDA driver before "
    "tl.launch (even torch.cuda.is_available(), tl.pick_device() or a GPU query does), and CUDA "
    "does not survive a fork. Restart the kernel and call tl.launch before anything asks about "
    "the GPU, choosing the device inside the launched function; or run the code with torchrun."
)
_CUDA_FORK_ERRORS = ("re-initialize CUDA in forked subprocess", "CUDA error: initialization error")


class LaunchError(RuntimeError):
    """A worker started by :func:`launch` failed; ``rank`` and ``worker_traceback`` say how."""

    def __init__(self, message: str, rank: int | None, worker_traceback: str | None) -> None:
        super().__init__(message)
        self.rank = rank
        self.worker_traceback = worker_traceback


def launch(
    fn: Callable[..., Any],
    args: Sequence[Any] = (),
    kwargs: Mapping[str, Any] | None = None,
    *,
    nprocs: int | None = None,
    threads: int | None = None,
    progress: bool = True,
) -> Any:
    """Run ``fn(*args, **kwargs)`` in ``nprocs`` processes; return rank 0's result.

    ``nprocs`` defaults to the number of visible CUDA GPUs (one process per GPU); on a machine
    without GPUs pass it (CPU processes with the gloo backend). ``threads`` sets each CPU worker's
    torch threads (default: the CPU count divided by ``nprocs``). ``fit`` inside ``fn`` shows rank
    0's progress in this notebook (``progress=False``: none). If a worker raises, the others are
    stopped and :class:`LaunchError` names the rank and carries its traceback. Interrupting the
    kernel stops the workers and raises ``KeyboardInterrupt`` with ``err.history`` (rank 0's
    finished epochs). The result travels by ``torch.save`` and is loaded onto the CPU.
    """
    if not callable(fn):
        raise TypeError(f"fn must be a function to run in each process, got {type(fn).__name__}")
    if "fork" not in mp.get_all_start_methods():
        raise RuntimeError(
            "tl.launch needs the 'fork' start method, which this platform lacks: run the code as "
            "a script with `torchrun --nproc_per_node=N script.py` instead"
        )
    if torch.cuda.is_initialized():
        raise RuntimeError(_CUDA_INITIALISED)
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        raise RuntimeError(
            "tl.launch was called inside a process that is already part of a torch.distributed "
            "group (a launched worker or a torchrun process): call it from the notebook itself"
        )
    if nprocs is None:
        nprocs = torch.cuda.device_count()  # asks the driver; does not initialise CUDA
        if nprocs == 0:
            raise ValueError(
                "no CUDA GPU is visible, so tl.launch cannot pick one process per GPU: pass "
                "nprocs=N to train with N CPU processes (gloo backend)"
            )
    if not isinstance(nprocs, int) or isinstance(nprocs, bool) or nprocs < 1:
        raise ValueError(f"nprocs must be a positive int, got {nprocs!r}")
    if threads is None:
        threads = max(1, (os.cpu_count() or 1) // nprocs)
    return _Launch(fn, tuple(args), dict(kwargs or {}), nprocs, threads, progress).run()


# ----------------------------------------------------------------------------------------------
# worker side


class _Channel:
    """The write end of the event pipe, shared by all workers (a lock keeps messages whole)."""

    def __init__(self, conn: Any, lock: Any) -> None:
        self.conn = conn
        self.lock = lock

    def send(self, event: Any) -> None:
        with self.lock:
            self.conn.send(event)


def _worker(
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    channel: _Channel,
    threads: int,
    progress: bool,
    cancel: Any,
    parent: int,
) -> Any:
    """Run in each forked worker: report, set up, call ``fn``, return rank 0's result."""
    # a process group of its own: Jupyter's interrupt signals the kernel's whole group, and a
    # second SIGINT would cut fit's step short; the notebook forwards exactly one instead
    os.setpgid(0, 0)
    _die_with(parent)
    rank = int(os.environ.get("RANK", "0"))
    channel.send(Hello(rank, os.getpid()))
    if cancel.is_set():  # the notebook gave up (interrupted) before this worker started
        return None
    os.environ[PROGRESS_ENV] = "text"  # a widget made here would have nobody to talk to
    torch.set_num_threads(threads)
    display = (lambda: EventSender(channel.send)) if rank == 0 and progress else _NoProgress
    try:
        with use_display(display):
            result = fn(*args, **kwargs)
        if rank == 0:
            result = _serialise(result)
    except BaseException as err:
        channel.send(WorkerError(rank, type(err).__name__, str(err), traceback.format_exc()))
        if isinstance(err, KeyboardInterrupt):
            # torch's process wrapper takes KeyboardInterrupt for "killed by the parent" and exits
            # 0 without a result, and the launcher would then wait for that result forever
            raise RuntimeError("interrupted from the notebook") from err
        raise
    finally:
        dist = torch.distributed
        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()
    return result if rank == 0 else None


def _die_with(parent: int) -> None:
    """Have Linux kill this worker when the notebook goes (its own group no longer shares fate)."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            pr_set_pdeathsig = 1
            ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, int(signal.SIGKILL))
    if os.getppid() != parent:  # the kernel died before the request took effect
        os._exit(1)


def _serialise(result: Any) -> bytes:
    """Return rank 0's result as ``torch.save`` bytes, or raise saying what to return instead.

    The notebook loads them with ``map_location="cpu"``: tensors anywhere in the result arrive on
    the CPU, so the notebook never starts CUDA (which would rule out launching on the GPU again).
    """
    buffer = io.BytesIO()
    try:
        torch.save(result, buffer)
    except Exception as err:  # any pickling failure gets the same advice
        raise TypeError(
            f"tl.launch returns rank 0's result to the notebook by pickling it, and this "
            f"{type(result).__name__} cannot be pickled ({type(err).__name__}: {err}). Return "
            "plain data instead, e.g. the History and model.state_dict()"
        ) from err
    return buffer.getvalue()


class _NoProgress(Callback):
    """Progress for workers other than rank 0 (fit shows none there anyway)."""


# ----------------------------------------------------------------------------------------------
# notebook side


class _ChildThreadNotice(logging.Filter):
    """Drop the launcher's notice that it runs in a thread: here that is on purpose."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "child thread" not in record.getMessage()


class _Launch:
    def __init__(
        self,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        nprocs: int,
        threads: int,
        progress: bool,
    ) -> None:
        self.fn, self.args, self.kwargs = fn, args, kwargs
        self.nprocs, self.threads, self.progress = nprocs, threads, progress
        self.mirror = Mirror()
        self.pids: dict[int, int] = {}
        self.error: WorkerError | None = None
        self.result: Any = None
        self.failure: BaseException | None = None

    def run(self) -> Any:
        from torch.distributed.elastic.multiprocessing import DefaultLogsSpecs
        from torch.distributed.launcher.api import LaunchConfig, elastic_launch

        ctx = mp.get_context("fork")
        reader, writer = ctx.Pipe(duplex=False)
        channel = _Channel(writer, ctx.Lock())
        self.cancel = ctx.Event()
        notice = _ChildThreadNotice()
        quiet = logging.getLogger("torch.distributed.elastic.multiprocessing.api")
        with tempfile.TemporaryDirectory(prefix="torchlab-launch-") as logs:
            config = LaunchConfig(
                min_nodes=1,
                max_nodes=1,
                nproc_per_node=self.nprocs,
                run_id=f"torchlab-{uuid.uuid4().hex[:12]}",
                rdzv_backend="c10d",
                rdzv_endpoint="localhost:0",  # a free port, as torchrun --standalone
                max_restarts=0,
                monitor_interval=0.1,
                start_method="fork",
                logs_specs=DefaultLogsSpecs(log_dir=logs),
            )
            call = elastic_launch(config, _worker)

            def agent() -> None:
                try:
                    results = call(
                        self.fn,
                        self.args,
                        self.kwargs,
                        channel,
                        self.threads,
                        self.progress,
                        self.cancel,
                        os.getpid(),
                    )
                    self.result = results.get(0)
                except BaseException as err:  # noqa: BLE001 - re-raised in the caller's thread
                    self.failure = err

            # the agent waits in a thread so this (main) thread stays free to draw the display
            # and to take the kernel's interrupt; the launcher then leaves signal handlers alone
            thread = threading.Thread(target=agent, name="torchlab-launch", daemon=True)
            quiet.addFilter(notice)
            try:
                thread.start()
                try:
                    self._pump(reader, thread)
                except KeyboardInterrupt:
                    self._stop_workers(reader, thread)
                    self.mirror.finish("interrupted", None)
                    stop = KeyboardInterrupt()
                    stop.history = self.mirror.history  # type: ignore[attr-defined]
                    raise stop from None
            finally:
                quiet.removeFilter(notice)
                writer.close()
                reader.close()
        if self.failure is not None or self.error is not None:
            raise self._launch_error()
        if self.result is None:
            return None
        return torch.load(io.BytesIO(self.result), map_location="cpu", weights_only=False)

    def _pump(self, reader: Any, thread: threading.Thread) -> None:
        while thread.is_alive():
            if reader.poll(0.05):
                self._receive(reader)
        while reader.poll(0):  # what arrived after the last worker exited
            self._receive(reader)

    def _receive(self, reader: Any) -> None:
        try:
            event = reader.recv()
        except (EOFError, OSError):
            return
        except Exception as err:  # noqa: BLE001 - a worker killed mid-message garbles the pipe
            if self.error is None:
                self.failure = self.failure or err
            return
        if isinstance(event, Hello):
            self.pids[event.rank] = event.pid
        elif isinstance(event, WorkerError):
            if self.error is None:  # the first failure is the cause; later ones follow from it
                self.error = event
        else:
            self.mirror.handle(event)

    def _stop_workers(self, reader: Any, thread: threading.Thread) -> None:
        """Interrupt the workers once (fit stops at a batch boundary), then kill what is left."""
        self.cancel.set()  # a worker that starts from now on returns at once
        self._signal(signal.SIGINT)
        deadline = time.monotonic() + INTERRUPT_GRACE
        try:
            while thread.is_alive() and time.monotonic() < deadline:
                if reader.poll(0.05):
                    self._receive(reader)
        except KeyboardInterrupt:
            pass  # a second interrupt: do not wait
        finally:
            if thread.is_alive():
                self._signal(signal.SIGKILL)  # each worker's group: its loader workers too
            thread.join(timeout=60)

    def _signal(self, sig: signal.Signals) -> None:
        for pid in self.pids.values():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                try:
                    os.killpg(pid, sig)  # workers lead their own process groups
                except ProcessLookupError:
                    os.kill(pid, sig)

    def _launch_error(self) -> BaseException:
        error = self.error
        if error is None:
            failure = self.failure
            self.mirror.finish("failed", f"{type(failure).__name__}: {failure}")
            return LaunchError(
                f"the workers failed before reporting an error: {type(failure).__name__}: "
                f"{failure}",
                None,
                None,
            )
        cause = f"{error.type}: {error.message}"
        self.mirror.finish("failed", cause)
        if error.type == "KeyboardInterrupt":
            stop = KeyboardInterrupt()
            stop.history = self.mirror.history  # type: ignore[attr-defined]
            return stop
        advice = ""
        if any(text in error.message for text in _CUDA_FORK_ERRORS):
            advice = f"\n\n{_CUDA_FORKED}"
        return LaunchError(
            f"rank {error.rank} of {self.nprocs} raised {cause}{advice}\n\n"
            f"Its traceback:\n{error.traceback}",
            error.rank,
            error.traceback,
        )
