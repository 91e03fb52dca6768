"""The files the Jupyter server writes for its kernels: names, format, writing and reading.

They live in the server's runtime dir (``jupyter --runtime-dir``), beside the kernels' connection
files, which are named after the kernel ids (``kernel-<id>.json``); a kernel finds them from its
own connection file. The server writes them atomically (a reader sees the old file or the new
one); kernels only read them. This module is their one home: nothing else opens them.

- :data:`DEATHS_FILE`: the recent kernel deaths (:class:`DeathRecord`, oldest first), so a
  restarted kernel's monitor can say how the process before it ended.
- :data:`KERNELS_FILE`: each live kernel's pid, id, kernel name and notebook
  (:class:`KernelRecord`), so a kernel's out-of-memory report can name the notebooks whose
  kernels hold the same GPU.

Reads never raise: a missing, partial or foreign file reads as nothing.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from typing import Any, TypedDict

from ._files import atomic_write

__all__ = [
    "DEATHS_FILE",
    "KERNELS_FILE",
    "DeathRecord",
    "KernelRecord",
    "read_deaths",
    "read_kernels",
    "write_deaths",
    "write_kernels",
]

DEATHS_FILE = "torchlab-deaths.json"
KERNELS_FILE = "torchlab-kernels.json"
#: the deaths kept in DEATHS_FILE (the newest)
DEATHS_KEPT = 20


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


# --- the server writes (raises OSError: the caller logs it) ---------------------------------------


def write_kernels(runtime_dir: str | os.PathLike[str], kernels: Mapping[int, KernelRecord]) -> None:
    """Write every live kernel's record, by pid."""
    data = json.dumps({str(pid): record for pid, record in kernels.items()}).encode()
    atomic_write(os.path.join(runtime_dir, KERNELS_FILE), lambda f: f.write(data))


def write_deaths(runtime_dir: str | os.PathLike[str], deaths: Sequence[DeathRecord]) -> None:
    """Write the newest :data:`DEATHS_KEPT` deaths, oldest first."""
    data = json.dumps(list(deaths)[-DEATHS_KEPT:]).encode()
    atomic_write(os.path.join(runtime_dir, DEATHS_FILE), lambda f: f.write(data))


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


def _read(connection_file: str | None, name: str) -> tuple[str, Any] | None:
    """Return (this kernel's id, the parsed file ``name`` beside its connection file)."""
    if connection_file is None:
        try:
            from ipykernel.connect import get_connection_file

            connection_file = get_connection_file()
        except Exception:  # noqa: BLE001 - not in a kernel: nothing to say
            return None
    base = os.path.basename(connection_file)
    if not (base.startswith("kernel-") and base.endswith(".json")):
        return None
    try:
        with open(os.path.join(os.path.dirname(connection_file), name), "rb") as f:
            return base[len("kernel-") : -len(".json")], json.loads(f.read())
    except (OSError, ValueError):
        return None
