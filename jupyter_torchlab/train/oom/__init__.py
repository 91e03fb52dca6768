"""CUDA (and other accelerators') out-of-memory errors, explained where they happen.

- :mod:`.report`: the report a failed cell or fit shows (what asked, what holds the memory, what
  to try);
- :mod:`.holders`: what holds the memory, named by the user's own paths (``trainer.cache``);
- :mod:`.memory`: fit's measurements per batch size, device figures, GPU processes, and
  :func:`free_memory`.

fit's own error (:class:`~jupyter_torchlab.train.fit.out_of_memory.FitOutOfMemoryError`, which
carries this report with where in the run it failed) stays in ``fit/``: it wraps fit's step and
history, and ``oom`` must not import ``fit`` (no import cycles between siblings). The kernel-side
display of the report is ``widgets/oom_display.py``.
"""

from __future__ import annotations

from .memory import (
    FitMemory,
    device_stats,
    free_memory,
    gpu_processes,
    last_fit_memory,
    record_fit_memory,
)
from .report import Holder, OomReport, build_report, is_out_of_memory, requested_bytes

__all__ = [
    "FitMemory",
    "Holder",
    "OomReport",
    "build_report",
    "device_stats",
    "free_memory",
    "gpu_processes",
    "is_out_of_memory",
    "last_fit_memory",
    "record_fit_memory",
    "requested_bytes",
]
