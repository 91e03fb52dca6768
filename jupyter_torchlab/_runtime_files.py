"""The files beside the kernels' connection files: names, format, writing and reading.

They live in the server's runtime dir (``jupyter --runtime-dir``), beside the kernels' connection
files, which are named after the kernel ids (``kernel-<id>.json``); a kernel finds them from its
own connection file. Every file is written atomically (a reader sees the old file or the new
one). This module is their one home: nothing else opens them.

The server writes two kinds, which kernels read:

- :data:`DEATHS_FILE`: the recent kernel deaths (:class:`DeathRecord`, oldest first), so a
  restarted kernel's monitor can say how the process before it ended.
- :data:`KERNELS_FILE`: each live kernel's pid, id, kernel name and notebook
  (:class:`KernelRecord`), so a kernel's out-of-memory report can name the notebooks whose
  kernels hold the same GPU.
- :data:`GUARD_FILE`: the memory guard's latest interrupt of each kernel (:class:`GuardRecord`,
  by kernel id), written just before the interrupt, so the interrupted cell can say why.

Each kernel writes one kind, which the server reads:

- :func:`runs_file_name` (``torchlab-runs-<kernel id>.json``): the kernel's progress bars and
  fits, running and recently ended (:class:`RunsFile` of :class:`RunRecord`), so the server can
  show every run without a page open (``widgets/_runs.py`` writes it, ``server/runs.py`` reads).
- :func:`cells_file_name` (``torchlab-cells-<kernel id>.json``): torch's allocator peak on each
  GPU during the kernel's last cells, by execute request (:class:`CellGpuRecord`), written at
  each cell's end where torch uses CUDA (``widgets/_cell_cost.py`` writes it, ``server/cells.py``
  reads it when it hears the cell end, which the kernel publishes after writing).

Reads never raise: a missing, partial or foreign file reads as nothing.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import sys
from collections.abc import Mapping, Sequence
from typing import Any, TypedDict

from ._files import atomic_write

__all__ = [
    "CELLS_FILE_PREFIX",
    "CELLS_KEPT",
    "DEATHS_FILE",
    "GUARD_FILE",
    "KERNELS_FILE",
    "RUNS_FILE_PREFIX",
    "RUN_STATES",
    "CellGpuRecord",
    "DeathRecord",
    "GuardRecord",
    "KernelRecord",
    "RunRecord",
    "RunsFile",
    "cells_file_name",
    "cells_path",
    "kernel_cells_file",
    "kernel_runs_file",
    "read_cell_gpu",
    "read_deaths",
    "read_guard",
    "read_kernels",
    "read_runs",
    "remove_kernel_files",
    "runs_file_name",
    "runs_path",
    "runs_stamp",
    "write_cell_gpu",
    "write_deaths",
    "write_guard",
    "write_kernels",
    "write_runs",
]

DEATHS_FILE = "torchlab-deaths.json"
KERNELS_FILE = "torchlab-kernels.json"
GUARD_FILE = "torchlab-memory-guard.json"
RUNS_FILE_PREFIX = "torchlab-runs-"
CELLS_FILE_PREFIX = "torchlab-cells-"
#: the cells kept in a kernel's cells file (the newest)
CELLS_KEPT = 20
#: the deaths kept in DEATHS_FILE (the newest)
DEATHS_KEPT = 20
#: what a run can be: the first while it runs, one of the others once it ended
RUN_STATES = ("running", "finished", "failed", "interrupted")


class KernelRecord(TypedDict):
    """One live kernel in :data:`KERNELS_FILE` (the file maps its pid, as a string, to this)."""

    id: str
    name: str
    path: str | None  # the notebook, None for a kernel without a session


class DeathRecord(TypedDict, total=False):
    """One kernel death in :data:`DEATHS_FILE` (the server's ``KernelDeath`` as JSON)."""

    id: str
    kernel_id: str
    name: str
    path: str | None
    time: float  # unix time the server noticed
    pid: int | None
    cause: str  # "oom_killer", "signal", "exit", "unknown"
    reason: str
    signal: int | None
    exit_status: int | None
    last_memory: int | None
    peak_memory: int | None
    memory_limit: int | None
    restarting: bool
    busy_for: float | None


class RunRecord(TypedDict):
    """One progress bar or fit of a kernel, as of its latest refresh (its runs file's entry)."""

    id: str  # unique within the kernel's process: "<pid>-<counter>"
    kind: str  # "progress" (tl.progress, the tqdm drop-in) or "fit"
    desc: str  # the bar's description ("" when none); "fit" for a fit
    n: float  # items done (a fit: batches of this epoch)
    total: float | None  # items expected (None: unknown)
    unit: str  # "it", "batch", ...
    fraction: float | None  # share done in [0, 1] (a fit: of all its epochs); None: unknown
    rate: float | None  # units a second
    eta: float | None  # seconds left (a fit: of the whole fit)
    elapsed: float  # seconds since the run started
    started: float  # unix time
    updated: float  # unix time of this record
    ended: float | None  # unix time, None while running
    state: str  # one of RUN_STATES
    error: str | None  # "failed": the exception's first line ("ValueError: bad input")
    metrics: dict[str, float]  # the latest numbers (postfix, logged metrics, fit's loss)
    epoch: int | None  # a fit: the epoch in progress, 1-based (the last one once ended)
    epochs: int | None  # a fit: epochs in all
    line: str  # the bar's own text line (tqdm's format_meter), to draw without the widget
    cell_id: str | None  # the notebook cell that started it (the execute request's cellId)
    msg_id: str | None  # that execute request's msg_id


class RunsFile(TypedDict):
    """A kernel's runs file: its process and its runs, running and recently ended."""

    version: int
    pid: int
    runs: list[RunRecord]


def runs_file_name(kernel_id: str) -> str:
    """Return the name of the runs file of kernel ``kernel_id``."""
    return f"{RUNS_FILE_PREFIX}{kernel_id}.json"


def runs_path(runtime_dir: str | os.PathLike[str], kernel_id: str) -> str:
    """Return the path of kernel ``kernel_id``'s runs file in ``runtime_dir``."""
    return os.path.join(runtime_dir, runs_file_name(kernel_id))


class GuardRecord(TypedDict):
    """One interrupt by the memory guard in :data:`GUARD_FILE` (the server's guard event)."""

    id: str
    kernel_id: str
    name: str
    path: str | None
    time: float  # unix time the server decided to interrupt
    pid: int
    memory: int  # bytes, what the guard compared (see server/memory_guard.py)
    memory_limit: int  # bytes, the limit it compared it with
    limit_source: str  # "cgroup" (the kernel's memory cgroup) or "host" (physical memory)
    measure: str  # "cgroup" (its cgroup's unreclaimable charge) or "tree" (its process tree)
    fraction: float  # TorchlabExtension.memory_guard
    reason: str  # the sentence the notebook shows


class CellGpuRecord(TypedDict):
    """One cell in a kernel's cells file: torch's allocator peak per device, while it ran."""

    msg_id: str  # the cell's execute request
    devices: dict[str, int]  # CUDA device index -> peak bytes allocated (max_memory_allocated)


def cells_file_name(kernel_id: str) -> str:
    """Return the name of the cells file of kernel ``kernel_id``."""
    return f"{CELLS_FILE_PREFIX}{kernel_id}.json"


def cells_path(runtime_dir: str | os.PathLike[str], kernel_id: str) -> str:
    """Return the path of kernel ``kernel_id``'s cells file in ``runtime_dir``."""
    return os.path.join(runtime_dir, cells_file_name(kernel_id))


# --- the server writes (raises OSError: the caller logs it) ---------------------------------------


def write_kernels(runtime_dir: str | os.PathLike[str], kernels: Mapping[int, KernelRecord]) -> None:
    """Write every live kernel's record, by pid."""
    data = json.dumps({str(pid): record for pid, record in kernels.items()}).encode()
    atomic_write(os.path.join(runtime_dir, KERNELS_FILE), lambda f: f.write(data))


def write_guard(runtime_dir: str | os.PathLike[str], records: Mapping[str, GuardRecord]) -> None:
    """Write each kernel's latest interrupt by the memory guard, by kernel id."""
    data = json.dumps(dict(records)).encode()
    atomic_write(os.path.join(runtime_dir, GUARD_FILE), lambda f: f.write(data))


def write_deaths(runtime_dir: str | os.PathLike[str], deaths: Sequence[DeathRecord]) -> None:
    """Write the newest :data:`DEATHS_KEPT` deaths, oldest first."""
    data = json.dumps(list(deaths)[-DEATHS_KEPT:]).encode()
    atomic_write(os.path.join(runtime_dir, DEATHS_FILE), lambda f: f.write(data))


# --- a kernel writes, the server reads ------------------------------------------------------------


def kernel_runs_file(connection_file: str | None = None) -> str | None:
    """Return this kernel's runs file path, or None outside a kernel started with a connection file.

    A script or a torchrun worker has none, so it publishes nothing.
    """
    found = _kernel(connection_file)
    if found is None:
        return None
    return runs_path(*found)


def write_runs(path: str, pid: int, runs: Sequence[RunRecord]) -> None:
    """Write a kernel's runs (raises OSError: the caller decides).

    Not fsynced: the file describes a live process, and a crash that loses it loses nothing the
    next refresh would not rewrite.
    """
    content = RunsFile(version=1, pid=pid, runs=list(runs))
    try:
        data = json.dumps(content, allow_nan=False).encode()
    except ValueError:  # a NaN loss: JSON has no spelling for it, null says "not a number"
        data = json.dumps(_finite(content)).encode()
    atomic_write(path, lambda f: f.write(data), durable=False)


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def runs_stamp(path: str) -> tuple[int, int, int] | None:
    """Return what tells a runs file from the one read before (mtime, size, inode); None: none."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


def remove_kernel_files(runtime_dir: str | os.PathLike[str], kernel_id: str) -> None:
    """Remove the runs and cells files of a kernel that left the server (none there is fine)."""
    for path in (runs_path(runtime_dir, kernel_id), cells_path(runtime_dir, kernel_id)):
        with contextlib.suppress(OSError):
            os.unlink(path)


def read_runs(path: str) -> RunsFile | None:
    """Return a kernel's runs file, or None where it is missing, torn or foreign."""
    try:
        with open(path, "rb") as f:
            found = json.loads(f.read())
    except (OSError, ValueError):
        return None
    if not isinstance(found, dict) or found.get("version") != 1:
        return None
    pid, runs = found.get("pid"), found.get("runs")
    if not isinstance(pid, int) or not isinstance(runs, list):
        return None
    kept: list[RunRecord] = [
        r  # type: ignore[misc]  # checked where it matters: an id and a known state
        for r in runs
        if isinstance(r, dict) and isinstance(r.get("id"), str) and r.get("state") in RUN_STATES
    ]
    return RunsFile(version=1, pid=pid, runs=kept)


def kernel_cells_file(connection_file: str | None = None) -> str | None:
    """Return this kernel's cells file path, or None outside a kernel with a connection file."""
    found = _kernel(connection_file)
    return None if found is None else cells_path(*found)


def write_cell_gpu(path: str, cells: Sequence[CellGpuRecord]) -> None:
    """Write a kernel's newest :data:`CELLS_KEPT` cells (raises OSError; not fsynced)."""
    data = json.dumps({"version": 1, "cells": list(cells)[-CELLS_KEPT:]}).encode()
    atomic_write(path, lambda f: f.write(data), durable=False)


def read_cell_gpu(path: str) -> dict[str, dict[str, int]]:
    """Return a kernel's cells file as msg_id -> device -> peak bytes (empty where unreadable)."""
    try:
        with open(path, "rb") as f:
            found = json.loads(f.read())
    except (OSError, ValueError):
        return {}
    if not isinstance(found, dict) or found.get("version") != 1:
        return {}
    cells = found.get("cells")
    if not isinstance(cells, list):
        return {}
    table: dict[str, dict[str, int]] = {}
    for cell in cells:
        if isinstance(cell, dict) and isinstance(cell.get("msg_id"), str):
            devices = cell.get("devices")
            if isinstance(devices, dict):
                table[cell["msg_id"]] = {
                    str(d): int(v) for d, v in devices.items() if isinstance(v, int)
                }
    return table


# --- a kernel reads (never raises) ----------------------------------------------------------------


def read_kernels(connection_file: str | None = None) -> dict[int, KernelRecord]:
    """Return the server's live kernels by pid (empty when there is no such file)."""
    found = _read(connection_file, KERNELS_FILE)
    if found is None or not isinstance(found[1], dict):
        return {}
    kernels: dict[int, KernelRecord] = {}
    for pid, entry in found[1].items():
        if isinstance(entry, dict) and str(pid).isdigit():
            kernels[int(pid)] = KernelRecord(
                id=str(entry.get("id") or ""),
                name=str(entry.get("name") or ""),
                path=entry.get("path") if isinstance(entry.get("path"), str) else None,
            )
    return kernels


def read_deaths(connection_file: str | None = None) -> tuple[str, list[DeathRecord]] | None:
    """Return (this kernel's id, the server's recent deaths), or None where there is no record."""
    found = _read(connection_file, DEATHS_FILE)
    if found is None or not isinstance(found[1], list):
        return None
    kernel_id, events = found
    return kernel_id, [e for e in events if isinstance(e, dict)]  # type: ignore[misc]


def read_guard(connection_file: str | None = None) -> GuardRecord | None:
    """Return the memory guard's latest interrupt of this kernel (None: there was none)."""
    found = _read(connection_file, GUARD_FILE)
    if found is None or not isinstance(found[1], dict):
        return None
    kernel_id, records = found
    record = records.get(kernel_id)
    if not isinstance(record, dict) or not isinstance(record.get("reason"), str):
        return None
    if not isinstance(record.get("time"), (int, float)):
        return None
    return record  # type: ignore[return-value]


def _read(connection_file: str | None, name: str) -> tuple[str, Any] | None:
    """Return (this kernel's id, the parsed file ``name`` beside its connection file)."""
    found = _kernel(connection_file)
    if found is None:
        return None
    folder, kernel_id = found
    try:
        with open(os.path.join(folder, name), "rb") as f:
            return kernel_id, json.loads(f.read())
    except (OSError, ValueError):
        return None


def _kernel(connection_file: str | None) -> tuple[str, str] | None:
    """Return (the runtime dir, this kernel's id) from its connection file ``kernel-<id>.json``."""
    if connection_file is None:
        # in a kernel, ipykernel's app is loaded and running; anywhere else nothing is imported
        # to find that out (importing ipykernel's kernel modules swaps comm's global factories)
        app = sys.modules.get("ipykernel.kernelapp")
        try:
            if app is None or not app.IPKernelApp.initialized():
                return None
            connection_file = app.IPKernelApp.instance().abs_connection_file
        except Exception:  # noqa: BLE001 - not in a kernel: nothing to say
            return None
        if not isinstance(connection_file, str):
            return None
    base = os.path.basename(connection_file)
    if not (base.startswith("kernel-") and base.endswith(".json")):
        return None
    return os.path.dirname(connection_file), base[len("kernel-") : -len(".json")]
