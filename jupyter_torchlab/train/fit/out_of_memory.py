"""fit out of accelerator memory: drop what the failed step holds, then say what to change."""

from __future__ import annotations

import dataclasses
import gc
import traceback
from typing import Any

import torch

from ..callbacks import FitState
from ..history import History
from ..oom import FitMemory, build_report, last_fit_memory, record_fit_memory
from .step import Step

__all__ = ["FitOutOfMemoryError", "out_of_memory_error"]


class FitOutOfMemoryError(torch.OutOfMemoryError):
    """fit ran out of accelerator memory: ``history``, ``report``, ``batch_size`` say more.

    ``epoch`` and ``batch`` (1-based) say where.

    A ``torch.OutOfMemoryError``, so code that catches torch's error still does. fit has dropped
    the failed step's tensors and the gradients before raising: the model keeps its last
    finished step and can train again (with a smaller ``batch_size``, see ``batch_size``).
    """

    def __init__(
        self,
        message: str,
        history: History,
        report: Any,
        batch_size: int | None,
        epoch: int | None = None,
        batch: int | None = None,
    ):
        super().__init__(message)
        self.epoch, self.batch = epoch, batch  # where it failed, 1-based
        self.history = history
        self.report = report
        self.batch_size = batch_size  # the suggested batch size (None: no suggestion)


def out_of_memory_error(
    exc: BaseException, state: FitState, step: Step, batch_size: int, baseline: int | None
) -> FitOutOfMemoryError:
    """Drop what the failed step holds, and return the error that explains it."""
    # the failed step's frames keep its batch, outputs and activations alive
    traceback.clear_frames(exc.__traceback__)
    state.loss = state.running_loss = state.running_acc = None
    step.optimizer.zero_grad(set_to_none=True)
    gc.collect()
    if step.device.type == "cuda":
        torch.cuda.empty_cache()
    device = str(step.device)
    if baseline is not None and batch_size:
        # what fit measured of this model (in the same precision) at some batch size still
        # tells its memory per sample; another model's measurement does not
        amp, model = step.amp_dtype is not None, id(step.model)
        earlier = last_fit_memory(device)
        measured = earlier if earlier is not None and earlier.peak is not None else None
        if measured is not None and (measured.model, measured.amp) == (model, amp):
            failed_at = min(batch_size, measured.too_big or batch_size)
            record_fit_memory(dataclasses.replace(measured, failed_at=failed_at))
        else:
            record_fit_memory(FitMemory(device, batch_size, baseline, None, amp=amp, model=model))
    report = build_report(
        exc, {"model": step.model, "optimizer": step.optimizer}, device=step.device
    )
    hint = f" Try batch_size={report.batch_size}." if report.batch_size is not None else ""
    first = str(exc).strip().splitlines()[0].rstrip(".") if str(exc).strip() else "out of memory"
    return FitOutOfMemoryError(
        f"out of memory at epoch {state.epoch + 1}, batch {state.batch + 1} with "
        f"batch_size={batch_size} on {step.device}: {first}.{hint} The model keeps its "
        "last finished step and can train again; err.report says what held the memory.",
        state.history,
        report,
        report.batch_size,
        state.epoch + 1,
        state.batch + 1,
    )
