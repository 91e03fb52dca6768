"""Under a cell the server's memory guard interrupted: why, in one sentence.

The server (``server/memory_guard.py``) writes its interrupt of this kernel beside the connection
files just before it sends it. When a cell ends with ``KeyboardInterrupt`` and that record was
written while the cell ran, the sentence is printed under IPython's traceback: "interrupted at
2.8 GiB of a 3.0 GiB limit to save this kernel; free memory, then continue". An interrupt from
the toolbar finds no such record and prints nothing. A cell without an error costs one attribute
check.
"""

from __future__ import annotations

import sys
import time
from typing import Any

from .._runtime_files import read_guard
from ._frontend import register_hooks

__all__ = ["PREFIX", "install", "note_for"]

PREFIX = "jupyter-torchlab memory guard: "

_cell_started = 0.0


def install() -> bool:
    """Register the hooks with the running IPython shell, once; return False without a shell."""
    return register_hooks(("pre_run_cell", _pre_run_cell), ("post_run_cell", _post_run_cell))


def note_for(
    error: BaseException | None, started: float, connection_file: str | None = None
) -> str | None:
    """Return the line to print under a cell that ended with ``error`` (None: nothing to say)."""
    if not isinstance(error, KeyboardInterrupt):
        return None
    record = read_guard(connection_file)
    # a record from before this cell is an earlier interrupt's (the clock is the same machine's)
    if record is None or record["time"] < started:
        return None
    return PREFIX + record["reason"]


def _pre_run_cell(info: Any = None) -> None:
    global _cell_started
    _cell_started = time.time()


def _post_run_cell(result: Any) -> None:
    note = note_for(getattr(result, "error_in_exec", None), _cell_started)
    if note is not None:
        print(note, file=sys.stderr)
