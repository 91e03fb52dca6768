"""One training step, set up once per fit: device, precision, memory format, DDP and compile.

Per batch :meth:`Step.train` only queues work on the device (forward, loss, backward, optimizer
step) and returns the loss and outputs as device tensors; nothing here reads a value back.
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch
from torch import nn

from .distributed import DistInfo
from .inputs import check_labels_range, device_hint

__all__ = ["Step", "resolve_amp"]


def resolve_amp(amp: bool | str, device: torch.device) -> torch.dtype | None:
    """Return the autocast dtype for ``amp`` on ``device`` (None: full precision)."""
    if amp not in (False, True, "auto"):
        raise ValueError(f"amp must be False, True or 'auto', got {amp!r}")
    if amp is False or (amp == "auto" and device.type != "cuda"):
        return None
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "mps":
        return torch.float16
    return torch.bfloat16


class Step:
    """The model, optimizer and loss of one fit, ready to train a batch or evaluate one."""

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer | None,
        loss_fn: Any,
        device: torch.device,
        *,
        info: DistInfo | None,
        amp: bool | str,
        channels_last: bool,
        compile: bool,
    ) -> None:
        self.model = model
        self.device = device
        model.to(device)
        if channels_last:
            model.to(memory_format=torch.channels_last)
        # the tutorial's optimizer and loss
        self.optimizer = optimizer or torch.optim.SGD(model.parameters(), lr=0.001, momentum=0.9)
        self.default_loss = loss_fn is None
        self.loss_fn = nn.CrossEntropyLoss() if loss_fn is None else loss_fn
        amp_dtype = self.amp_dtype = resolve_amp(amp, device)
        use_scaler = amp_dtype == torch.float16 and device.type == "cuda"
        self.scaler = torch.amp.GradScaler(device.type) if use_scaler else None
        self.autocast: Any = (
            torch.autocast(device_type=device.type, dtype=amp_dtype)
            if amp_dtype is not None
            else contextlib.nullcontext()
        )
        self.non_blocking = device.type == "cuda"
        self.memory_format = torch.channels_last if channels_last else torch.preserve_format
        train_module: nn.Module = model
        if info is not None:
            # broadcasts rank 0's weights now, so every process starts from the same model
            train_module = nn.parallel.DistributedDataParallel(
                model, device_ids=[device.index] if device.type == "cuda" else None
            )
        self.forward: Any = torch.compile(train_module) if compile else train_module
        # validation runs on each process's share without DDP: its forward would broadcast
        # buffers, a collective that hangs when processes have different numbers of batches
        self.eval_forward: Any = model if info is not None else self.forward

    def train(
        self, x: torch.Tensor, y: torch.Tensor, *, first: bool
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Train on one batch; return (loss, outputs, labels on the device), all unsynced.

        ``first``: the run's first batch, whose labels are checked against the model's outputs
        and whose device errors get advice.
        """
        y_cpu = y
        x = x.to(self.device, non_blocking=self.non_blocking, memory_format=self.memory_format)
        y = y.to(self.device, non_blocking=self.non_blocking)
        self.optimizer.zero_grad(set_to_none=True)
        try:
            with self.autocast:
                out = self.forward(x)
                if first and self.default_loss:
                    check_labels_range(y_cpu, out)
                loss = self.loss_fn(out, y)
        except RuntimeError as err:
            hint = device_hint(err, self.device) if first else None
            if hint is not None:
                raise hint from err
            raise
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            loss.backward()
            self.optimizer.step()
        return loss, out, y
