"""The small callback protocol through which :func:`fit` reports progress.

A progress display (text or widget) is one callback. ``fit`` owns one :class:`FitState` and passes
the same object to every hook; callbacks read it and may set ``state.stop_training = True``.
Per-batch values on the state stay tensors: a callback that wants Python numbers converts them only
when it refreshes its display, so nothing here forces a device sync per batch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

    from .history import History

__all__ = ["STATUSES", "Callback", "FitState", "as_number"]

#: fit's run states; "stopped" means a callback asked to end early (not a failure)
STATUSES = ("running", "done", "stopped", "interrupted", "failed", "out of memory")


@dataclass
class FitState:
    """Everything a callback may want to know about a running :func:`fit`."""

    model: Any
    optimizer: Any
    device: torch.device  # one type everywhere: fit's device, also in tl.launch's mirror
    epochs: int
    history: History
    epoch: int = 0  # 0-based index of the current epoch (absolute, so it counts resumed epochs)
    start_epoch: int = 0  # first epoch of this call (> 0 when resumed)
    batch: int = 0  # 1-based index of the last finished batch in the current epoch
    batches: int | None = None  # batches per epoch, None when the loader has no len()
    batch_size: int | None = None  # samples in the last batch
    samples: int = 0  # samples seen in the current epoch
    loss: torch.Tensor | None = None  # last batch's loss, detached, still on the device
    # the epoch's mean loss and accuracy so far, as device tensors refreshed every few dozen
    # batches (fit's check window); None until the first refresh
    running_loss: torch.Tensor | None = None
    running_acc: torch.Tensor | None = None
    data_time: float = 0.0  # seconds this epoch spent waiting for the data loader
    step_time: float = 0.0  # seconds this epoch spent in forward/backward/step (dispatch time)
    epoch_metrics: dict[str, Any] = field(default_factory=dict)  # filled at epoch end
    status: str = "running"
    error: BaseException | None = None
    stop_training: bool = False
    extras: dict[str, Any] = field(default_factory=dict)
    # torch.distributed: this process's rank and the number of processes (1 when not distributed);
    # batch, batches and samples above count this process's share only
    rank: int = 0
    world_size: int = 1
    # peak accelerator memory allocated by this process during the fit, in bytes (None on the
    # CPU); fit reads the allocator's counter (no device sync) every check window
    peak_memory: int | None = None
    # what displays call the device ("cuda:0 (NVIDIA H200)"), named once by whoever may ask it
    device_label: str = ""
    # the training loader fit iterates, so a display can name the knob that would feed it faster
    loader: Any = None

    def images_per_s(self, batches_per_s: float | None, elapsed: float) -> float | None:
        """Images a second over all processes: at the recent pace of batches, else the average."""
        # samples counts this process's share; every process gets an equal one
        if batches_per_s and self.batch:
            return batches_per_s * self.samples / self.batch * self.world_size
        return self.samples * self.world_size / elapsed if elapsed > 0 else None

    def where(self, of_epochs: bool = False) -> str:
        """Say where fit stopped: "epoch 2, batch 3" (the batch that failed, else the last done)."""
        epoch, batch = self.epoch + 1, self.batch
        if self.status in ("failed", "out of memory"):
            # fit's own errors say which batch failed (a NaN is found a few batches late)
            at_epoch, at_batch = (
                getattr(self.error, "epoch", None),
                getattr(self.error, "batch", None),
            )
            if isinstance(at_epoch, int) and isinstance(at_batch, int):
                epoch, batch = at_epoch, at_batch
            else:
                batch += 1
        epochs = f"/{self.epochs}" if of_epochs else ""
        return f"epoch {epoch}{epochs}, batch {batch}"

    def stop_reason(self) -> str:
        """Say briefly why fit failed ("" when it did not): the error, or the batch size to try."""
        if self.status == "out of memory":
            size = getattr(self.error, "batch_size", None)
            return f": try batch_size={size} (err.report says what held the memory)" if size else ""
        if self.status == "failed" and self.error is not None:
            return f": {type(self.error).__name__}: {self.error}"
        return ""

    def reset_epoch(self, epoch: int) -> None:
        """Start epoch ``epoch`` (0-based): zero the per-epoch counters and readings."""
        self.epoch = epoch
        self.batch = self.samples = 0
        self.data_time = self.step_time = 0.0
        self.loss = self.running_loss = self.running_acc = None
        self.epoch_metrics = {}


class Callback:
    """Base class: override the hooks you need; all default to doing nothing."""

    def on_fit_start(self, state: FitState) -> None:
        """Run once before the first epoch."""

    def on_epoch_start(self, state: FitState) -> None:
        """Run before each epoch."""

    def on_batch_end(self, state: FitState) -> None:
        """Run after each optimizer step; must be O(1) and must not sync the device."""

    def on_epoch_end(self, state: FitState) -> None:
        """Run after each epoch (and its validation); ``state.epoch_metrics`` is filled."""

    def on_fit_end(self, state: FitState) -> None:
        """Run once at the end, whatever the outcome; ``state.status`` says which."""


def as_number(value: Any) -> float | None:
    """Return ``value`` (a number or a one-element tensor) as a float; None stays None.

    A tensor's ``item()`` waits for the device: call this only when a display refreshes.
    """
    if value is None:
        return None
    item = getattr(value, "item", None)
    return float(item()) if item is not None else float(value)
