"""The exact GPU peak of each cell: torch's allocator peak, reset when the cell starts.

Registered by the kernel-side setup (``_set_up_kernel_side``). Where torch has CUDA initialised,
the peak statistics of every device are reset before each cell and read after it; neither call
synchronises the device (they read the caching allocator's counters). The peaks go to the
kernel's cells file (:mod:`jupyter_torchlab._runtime_files`), keyed by the cell's execute
request, which the server reads when it hears the cell end (ipykernel publishes that idle after
``post_run_cell`` has run). Where something else resets a device's peak during the cell
(``tl.fit``, at each epoch), it first carries the peak so far (:mod:`jupyter_torchlab._gpu_peaks`,
cleared here at the cell's start); the cell's peak is the higher of the carried peak and the
allocator's own. A kernel without torch, or that has not used CUDA, does nothing but look up
``sys.modules`` once per cell.
"""

from __future__ import annotations

import sys
from collections import deque
from typing import Any

from jupyter_torchlab import _gpu_peaks
from jupyter_torchlab._runtime_files import (
    CELLS_KEPT,
    CellGpuRecord,
    kernel_cells_file,
    write_cell_gpu,
)

from ._frontend import get_shell, register_hooks

__all__ = ["hook_shell"]

_records: deque[CellGpuRecord] = deque(maxlen=CELLS_KEPT)
_path: str | None = None
_failed = False


def _cuda() -> Any:
    """Return torch.cuda where torch is imported and CUDA is initialised, else None."""
    torch = sys.modules.get("torch")
    cuda = getattr(torch, "cuda", None)
    try:
        return cuda if cuda is not None and cuda.is_initialized() else None
    except Exception:  # noqa: BLE001 - a half-imported torch: nothing to read
        return None


def _pre_run_cell(info: Any = None) -> None:
    _gpu_peaks.clear()
    cuda = _cuda()
    if cuda is None:
        return
    for device in range(cuda.device_count()):
        cuda.reset_peak_memory_stats(device)


def _post_run_cell(result: Any = None) -> None:
    global _path, _failed
    cuda = _cuda()
    if cuda is None or _failed:
        return
    # what a reset during the cell (fit's, per epoch) carried over, and the peak since
    peaks = {
        str(d): max(_gpu_peaks.carried(d), int(cuda.max_memory_allocated(d)))
        for d in range(cuda.device_count())
    }
    devices = {d: peak for d, peak in peaks.items() if peak > 0}
    msg_id = _parent_msg_id()
    if not devices or msg_id is None:
        return
    _records.append(CellGpuRecord(msg_id=msg_id, devices=devices))
    if _path is None:
        _path = kernel_cells_file()
        if _path is None:  # not a kernel started with a connection file: nobody reads it
            _failed = True
            return
    try:
        write_cell_gpu(_path, list(_records))
    except OSError:  # the server then reports the sampled figure
        _failed = True


def _parent_msg_id() -> str | None:
    """Return the msg_id of the execute request this cell runs for (None outside a kernel)."""
    shell = get_shell()
    parent = getattr(shell, "parent_header", None)
    if not isinstance(parent, dict):
        return None
    # the execute request (ipykernel 7), or its header alone
    header = parent.get("header", parent)
    msg_id = header.get("msg_id") if isinstance(header, dict) else None
    return msg_id if isinstance(msg_id, str) else None


def hook_shell() -> None:
    """Register the cell start and end hooks with the running IPython shell, once."""
    register_hooks(("pre_run_cell", _pre_run_cell), ("post_run_cell", _post_run_cell))
