"""GPU allocator peaks carried across a reset, so that a cell's peak outlives fit's per-epoch reset.

Two users in the kernel reset torch's allocator peak: the per-cell hook (``widgets._cell_cost``,
at each cell's start) and ``tl.fit`` (``train.device.reset_peak_memory``, at each epoch's start,
for the epoch's own peak). Without this module a multi-epoch fit cell would leave only its last
epoch's peak for the cell. Before fit resets a device, it folds the peak so far into
:func:`carry`; the cell hook clears the carried peaks at the cell's start (:func:`clear`) and
takes ``max(carried(device), max_memory_allocated(device))`` at its end.

Plain integers per CUDA device index; this module imports nothing (no torch), so both sides
use it without importing each other.
"""

from __future__ import annotations

__all__ = ["carried", "carry", "clear"]

# CUDA device index -> the highest allocator peak read just before a reset since the cell began
_carried: dict[int, int] = {}


def carry(device: int, peak: int) -> None:
    """Keep ``peak`` (bytes, read just before a reset of ``device``'s peak) for the cell."""
    if peak > _carried.get(device, 0):
        _carried[device] = peak


def carried(device: int) -> int:
    """Return the highest peak of ``device`` carried since the last :func:`clear` (0 if none)."""
    return _carried.get(device, 0)


def clear() -> None:
    """Forget the carried peaks (a cell starts: its peak counts from here)."""
    _carried.clear()
