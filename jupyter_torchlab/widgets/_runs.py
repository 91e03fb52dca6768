"""Publish this kernel's runs to the Jupyter server: one small file beside the connection file.

A page that reloads, or a notebook whose tab is closed, loses the widgets of a cell that still
runs; the server does not. So every notebook display of a run (``tl.progress``, the tqdm drop-in,
fit's display) also hands its record (:class:`~jupyter_torchlab._runtime_files.RunRecord`) to
this module at the refreshes it makes anyway, and once at its end; each hand-over rewrites the
kernel's runs file (``torchlab-runs-<kernel id>.json``), which the server reads on its tick.

- Nothing here reads a tensor: a display passes the numbers it has just read for its own redraw.
- Writes never raise into the user's loop: a runtime dir that cannot be written means no
  publishing (the first failure turns it off for the kernel's life, logged at debug level).
- Outside a kernel started with a connection file (a script, a torchrun worker, a forked
  DataLoader worker) nothing is written.
- ``JUPYTER_TORCHLAB_PUBLISH_RUNS=0`` (or :func:`set_publishing`) turns publishing off.
"""

from __future__ import annotations

import itertools
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from tqdm.std import tqdm as std_tqdm  # type: ignore[import-untyped]

from .._format import format_number
from .._runtime_files import RunRecord, kernel_runs_file, write_runs
from ._frontend import get_shell

__all__ = [
    "ENV_PUBLISH",
    "Run",
    "error_line",
    "fit_fields",
    "meter_fields",
    "publish",
    "set_publishing",
    "start_run",
]

#: "0" turns publishing off for the kernel (e.g. to measure what it costs)
ENV_PUBLISH = "JUPYTER_TORCHLAB_PUBLISH_RUNS"
#: ended runs kept in the file: the newest this many, for this many seconds
ENDED_KEPT = 20
ENDED_SECONDS = 600.0

_log = logging.getLogger(__name__)


def error_line(exc: BaseException | None) -> str | None:
    """Return an exception's first line as a traceback ends with it ("ValueError: bad input")."""
    if exc is None:
        return None
    message = str(exc).strip().splitlines()
    name = type(exc).__name__
    return f"{name}: {message[0]}" if message else name


def meter_fields(
    d: Mapping[str, Any], desc: str, metrics: dict[str, float], line: str
) -> dict[str, Any]:
    """Return a run's figures from a bar's tqdm ``format_dict`` (as read for its redraw)."""
    n, total, elapsed = d["n"], d["total"], d["elapsed"]
    rate = d.get("rate")
    if rate is None and elapsed > 0:
        rate = n / elapsed  # what tqdm's line shows without smoothing
    return {
        "desc": desc.removesuffix(": "),
        "n": n,
        "total": total,
        "unit": str(d.get("unit") or "it"),
        "fraction": min(max(n / total, 0.0), 1.0) if total else None,
        "rate": rate or None,
        "eta": (total - n) / rate if total and rate and n <= total else None,
        "elapsed": elapsed,
        "metrics": metrics,
        "line": line,
    }


def fit_fields(
    state: Any,
    *,
    rate: float | None,
    metrics: dict[str, float],
    elapsed: float,
    epoch_elapsed: float,
) -> dict[str, Any]:
    """Return a fit's figures: this epoch's batches, the whole fit's share and ETA.

    ``metrics``: the display's latest readings (fit's loss); the latest epoch's validation
    figures are added.
    """
    batches, epochs = state.batches, max(state.epochs, 1)
    done = min(state.epoch + (state.batch / batches if batches else 0.0), epochs)
    eta = None
    if batches and rate:
        eta = max((epochs - state.epoch) * batches - state.batch, 0) / rate
    rows = list(getattr(state.history, "epochs", None) or [])
    for key in ("val_loss", "val_acc") if rows else ():
        if isinstance(rows[-1].get(key), int | float):
            metrics[key] = float(rows[-1][key])
    epoch = min(state.epoch + 1, epochs)
    postfix = ", ".join(f"{k}={format_number(v)}" for k, v in metrics.items())
    line = std_tqdm.format_meter(
        state.batch,
        batches,
        epoch_elapsed,
        prefix=f"epoch {epoch}/{epochs}",
        rate=rate,
        unit="batch",
        postfix=postfix or None,
    )
    return {
        "n": state.batch,
        "total": batches,
        "fraction": done / epochs,
        "rate": rate,
        "eta": eta,
        "elapsed": elapsed,
        "metrics": metrics,
        "epoch": epoch,
        "epochs": state.epochs,
        "line": line,
    }


# a bar's status -> the run's state ("stopped": a ``break``, which ends it as the user meant)
_BAR_STATES = {"done": "finished", "stopped": "finished"}


def publish(
    run: Run | None,
    fields: dict[str, Any],
    ended: str | None,
    error: BaseException | None,
    leave: bool,
) -> Run | None:
    """Publish a ``tl.progress`` bar's redraw (``ended``: its final status); return its run.

    A bar's first redraw starts its run; the end drops a ``leave=False`` bar from the file.
    """
    if ended is None:
        if run is None:
            return start_run(kind="progress", started=time.time() - fields["elapsed"], **fields)
        run.update(**fields)
        return run
    if run is not None:
        state = _BAR_STATES.get(ended, ended)
        line = error_line(error) if state == "failed" else None
        run.end(state, line, drop=not leave, **fields)
    return None


class Run:
    """One published run; its display updates it at each refresh and ends it once."""

    __slots__ = ("_publisher", "record")

    def __init__(self, publisher: _Publisher, record: RunRecord) -> None:
        self._publisher = publisher
        self.record = record

    def update(self, **fields: Any) -> None:
        """Take the display's latest figures (a refresh) and rewrite the file."""
        self._publisher.put(self, fields)

    def end(
        self, state: str, error: str | None = None, *, drop: bool = False, **fields: Any
    ) -> None:
        """Record how the run ended (``drop``: leave it out of the file, a ``leave=False`` bar)."""
        now = self._publisher.clock()
        fields.update(state=state, error=error, ended=now, eta=None)
        self._publisher.put(self, fields, drop=drop)


class _Publisher:
    """The kernel's runs and its file (one per process)."""

    def __init__(self, path: str, clock: Callable[[], float] = time.time) -> None:
        self.path = path
        self.pid = os.getpid()
        self.clock = clock
        self._runs: dict[str, RunRecord] = {}  # in start order
        self._count = itertools.count(1)
        self._lock = threading.Lock()  # tqdm's monitor thread may refresh a bar too
        self.failed = False

    def start(self, fields: dict[str, Any]) -> Run:
        now = self.clock()
        cell_id, msg_id = _request()
        record = RunRecord(
            id=f"{self.pid}-{next(self._count)}",
            kind="progress",
            desc="",
            n=0,
            total=None,
            unit="it",
            fraction=None,
            rate=None,
            eta=None,
            elapsed=0.0,
            started=now,
            updated=now,
            ended=None,
            state="running",
            error=None,
            metrics={},
            epoch=None,
            epochs=None,
            line="",
            cell_id=cell_id,
            msg_id=msg_id,
        )
        record.update(fields)  # type: ignore[typeddict-item]
        run = Run(self, record)
        self.put(run, {})
        return run

    def put(self, run: Run, fields: dict[str, Any], drop: bool = False) -> None:
        with self._lock:
            run.record.update(fields)  # type: ignore[typeddict-item]
            run.record["updated"] = self.clock()
            if drop:
                self._runs.pop(run.record["id"], None)
            else:
                self._runs[run.record["id"]] = run.record
            if self.failed or not _enabled:
                return
            self._prune(run.record["updated"])
            try:
                write_runs(self.path, self.pid, list(self._runs.values()))
            except OSError as e:
                # a read-only or vanished runtime dir: no publishing (not the user's problem, and
                # not for their cell's output: the kernel's logging prints there)
                self.failed = True
                _log.debug("torchlab: cannot write %s (runs are not published): %s", self.path, e)
            except Exception:  # noqa: BLE001 - never into the user's loop
                _log.debug("torchlab: cannot publish runs", exc_info=True)

    def _prune(self, now: float) -> None:
        ended = [r for r in self._runs.values() if r["ended"] is not None]
        old = {r["id"] for r in ended if now - (r["ended"] or now) > ENDED_SECONDS}
        old.update(r["id"] for r in ended[:-ENDED_KEPT])
        for key in old:
            del self._runs[key]


def _request() -> tuple[str | None, str | None]:
    """Return (cellId, msg_id) of the execute request this code runs for, where there is one."""
    shell = get_shell()
    try:
        parent = getattr(shell, "parent_header", None) or {}
    except LookupError:  # ipykernel 7's context variable unset in this thread
        return None, None
    header = parent.get("header") or {}
    if header.get("msg_type") != "execute_request":
        return None, None
    cell_id = (parent.get("metadata") or {}).get("cellId")
    return (cell_id if isinstance(cell_id, str) else None), header.get("msg_id")


_enabled = os.environ.get(ENV_PUBLISH, "").strip() not in ("0", "false", "no", "off")
_publisher: _Publisher | None = None
_resolved = False
_resolve_lock = threading.Lock()


def set_publishing(enabled: bool) -> None:
    """Turn publishing this kernel's runs on or off (as ``JUPYTER_TORCHLAB_PUBLISH_RUNS``)."""
    global _enabled
    _enabled = bool(enabled)


def start_run(**fields: Any) -> Run | None:
    """Publish a new running run with these record fields; None where nothing is published."""
    global _publisher, _resolved
    if not _enabled:
        return None
    if not _resolved:
        with _resolve_lock:
            if not _resolved:
                path = kernel_runs_file()
                _publisher = _Publisher(path) if path is not None else None
                _resolved = True
    publisher = _publisher
    if publisher is None or publisher.failed or publisher.pid != os.getpid():
        return None  # no kernel file, or a forked child of the kernel: not its file to write
    try:
        return publisher.start(fields)
    except Exception:  # noqa: BLE001 - publishing must never break the loop it describes
        _log.debug("torchlab: cannot publish a run", exc_info=True)
        return None
