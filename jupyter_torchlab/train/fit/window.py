"""Per-epoch sums that never sync the device per batch, and how a non-finite loss is caught.

Per batch, fit hands the detached loss and outputs to a :class:`Window`; every ``every`` batches
(fit's ``check_every``, 64 by default) they are folded into device sums. That fold is where a
non-finite loss is detected: on the CPU right away (reading a CPU tensor costs no device sync), on
CUDA through a pinned non-blocking copy read one window later, so no step ever waits for the GPU.
The error still names the exact epoch and batch.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from ..history import History

__all__ = ["NonFiniteLoss", "NonFiniteLossError", "Window"]


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite; ``epoch`` and ``batch`` are 1-based."""

    def __init__(self, message: str, epoch: int, batch: int, history: History) -> None:
        super().__init__(message)
        self.epoch = epoch
        self.batch = batch
        self.history = history


class Window:
    """Fold detached per-batch losses/outputs into device sums every ``every`` batches."""

    def __init__(self, device: torch.device, every: int) -> None:
        self.device = device
        self.every = max(1, every)
        self.loss_sum = torch.zeros((), device=device)
        self.correct = torch.zeros((), dtype=torch.int64, device=device)
        self.count = 0
        self.has_acc = True
        self._losses: list[torch.Tensor] = []
        self._sizes: list[int] = []
        self._outs: list[torch.Tensor] = []
        self._ys: list[torch.Tensor] = []
        self._first = 1  # 1-based batch number of the window's first batch
        # CUDA: (pinned flag, event, losses, first batch) of the previous window, read lazily
        self._pending: tuple[torch.Tensor, Any, torch.Tensor, int] | None = None

    def add(self, loss: torch.Tensor, out: torch.Tensor, y: torch.Tensor) -> bool:
        """Record one batch; return True when the window is full."""
        self._losses.append(loss)
        self._sizes.append(y.shape[0])
        if out.ndim == 2:
            self._outs.append(out)
            self._ys.append(y)
        else:
            self.has_acc = False
        return len(self._losses) >= self.every

    def flush(self, epoch: int) -> None:
        """Fold the window into the sums and check it for a non-finite loss."""
        if not self._losses:
            return
        losses = torch.stack(self._losses).float()
        if len(set(self._sizes)) == 1:
            total = losses.sum() * self._sizes[0]
        else:
            weights = torch.tensor(self._sizes, dtype=torch.float32)
            total = (losses * weights.to(self.device, non_blocking=True)).sum()
        self.loss_sum += total
        if self.has_acc and self._outs:
            pred = torch.cat(self._outs).argmax(1)
            ys = torch.cat(self._ys)
            if ys.ndim == 2:  # class probabilities
                ys = ys.argmax(1)
            self.correct += (pred == ys).sum()
        self.count += sum(self._sizes)
        finite = torch.isfinite(total)
        first = self._first
        self._first += len(self._losses)
        self._losses, self._sizes, self._outs, self._ys = [], [], [], []
        if self.device.type == "cpu":
            # reading a CPU tensor waits for nothing
            if not bool(finite):
                self._raise(losses, first, epoch)
            return
        self._check_pending(epoch)
        if self.device.type == "cuda":
            flag = torch.empty((), dtype=torch.bool, pin_memory=True)
            flag.copy_(finite, non_blocking=True)
            event = torch.cuda.Event()
            event.record()
            self._pending = (flag, event, losses, first)
        else:
            # other accelerators: one read per window (not per batch)
            if not bool(finite):
                self._raise(losses, first, epoch)

    def _check_pending(self, epoch: int) -> None:
        if self._pending is None:
            return
        flag, event, losses, first = self._pending
        self._pending = None
        event.synchronize()  # the previous window, long finished by now in a busy pipeline
        if not bool(flag):
            self._raise(losses, first, epoch)

    def _raise(self, losses: torch.Tensor, first: int, epoch: int) -> None:
        bad = (~torch.isfinite(losses)).nonzero()
        offset = int(bad[0, 0]) if len(bad) else 0
        value = float(losses[offset])
        raise NonFiniteLoss(epoch, first + offset, value)

    def finish(self, epoch: int) -> tuple[float, float | None]:
        """Flush, check everything and return (mean loss, accuracy) as numbers (one sync)."""
        self.flush(epoch)
        self._check_pending(epoch)
        if self.count == 0:
            return math.nan, None
        loss = float(self.loss_sum) / self.count
        acc = float(self.correct) / self.count if self.has_acc else None
        return loss, acc

    def running(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Return the sums so far as device tensors (mean loss, accuracy)."""
        n = max(1, self.count)
        return self.loss_sum / n, (self.correct.float() / n if self.has_acc else None)


class NonFiniteLoss(Exception):
    """Raised inside fit by :class:`Window`; fit turns it into :class:`NonFiniteLossError`."""

    def __init__(self, epoch: int, batch: int, value: float) -> None:
        self.epoch, self.batch, self.value = epoch, batch, value
