""":func:`evaluate`: accuracy, per-class accuracy, the confusion matrix and the mean loss.

The sums are shared with fit's validation pass (:func:`evaluate_sums`), which also reduces them
over all processes under torch.distributed.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from ..device import pick_device
from . import distributed as ddp
from .inputs import as_loader, classes_of, split_batch
from .step import resolve_amp

__all__ = ["EvalResult", "evaluate", "evaluate_sums"]


@dataclass
class EvalResult:
    """Accuracy, per-class accuracy, confusion matrix (rows: true, columns: predicted) and loss."""

    accuracy: float
    loss: float | None
    per_class: dict[str, float]
    confusion: torch.Tensor
    classes: tuple[str, ...]
    count: int

    def __repr__(self) -> str:
        loss = f", loss {self.loss:.4f}" if self.loss is not None else ""
        lines = [f"EvalResult: accuracy {self.accuracy:.1%} on {self.count:,} samples{loss}"]
        if self.per_class:
            width = max(len(c) for c in self.per_class)
            for name, acc in self.per_class.items():
                shown = "  n/a" if math.isnan(acc) else f"{acc:6.1%}"
                lines.append(f"  {name:<{width}}  {shown}")
        return "\n".join(lines)


def evaluate_sums(
    forward: Any,
    model: nn.Module,
    loader: DataLoader[Any],
    dev: torch.device,
    loss_fn: Any,
    default_loss: bool,
    autocast: Any,
    non_blocking: bool,
    memory_format: torch.memory_format,
    classes: Sequence[str] | None,
    info: ddp.DistInfo | None = None,
) -> EvalResult:
    """Return the loss, accuracy and confusion of ``forward`` over ``loader`` (all processes)."""
    was_training = model.training
    model.eval()
    loss_sum = torch.zeros((), device=dev)
    confusion: torch.Tensor | None = None
    count = 0
    num_classes = len(classes) if classes is not None else None
    try:
        with torch.no_grad():
            for batch in loader:
                x, y = split_batch(batch)
                x = x.to(dev, non_blocking=non_blocking, memory_format=memory_format)
                y = y.to(dev, non_blocking=non_blocking)
                with autocast:
                    out = forward(x)
                    loss = loss_fn(out.float(), y)
                n = y.shape[0]
                # a mean-reduced loss weighted by batch size gives the per-sample mean overall
                loss_sum += loss.float() * n
                count += n
                if out.ndim == 2:
                    if num_classes is None:
                        num_classes = out.shape[1]
                    labels = y.argmax(1) if y.ndim == 2 else y.long()
                    idx = labels * num_classes + out.argmax(1)
                    counts = torch.bincount(idx, minlength=num_classes * num_classes)
                    confusion = counts if confusion is None else confusion + counts
    finally:
        model.train(was_training)
    total = float(loss_sum)
    if info is not None:
        # once per evaluation, identical on every process (a process may have had no batch)
        classes_seen, length = ddp.reduce_max(
            [num_classes or 0, 0 if confusion is None else confusion.numel()], dev
        )
        total, summed = ddp.reduce_sums([loss_sum, count], dev)
        count = int(summed)
        num_classes = int(classes_seen) or None
        if length:
            confusion = ddp.reduce_counts(confusion, int(length), dev)
    if count == 0:
        raise ValueError("the evaluation data is empty: pass a dataset with samples")
    loss_value = total / count
    if confusion is None or num_classes is None:
        return EvalResult(math.nan, loss_value, {}, torch.zeros(0, 0, dtype=torch.int64), (), count)
    if confusion.numel() != num_classes * num_classes:
        raise ValueError(
            f"labels go beyond the {num_classes} classes given: pass classes= with every class"
        )
    cm = confusion.reshape(num_classes, num_classes).cpu()
    names = tuple(classes) if classes is not None else tuple(str(i) for i in range(num_classes))
    totals = cm.sum(1)
    per_class = {
        names[i]: (float(cm[i, i]) / int(totals[i]) if int(totals[i]) else math.nan)
        for i in range(num_classes)
    }
    accuracy = float(cm.diagonal().sum()) / count
    return EvalResult(accuracy, loss_value, per_class, cm, names, count)


def evaluate(
    model: nn.Module,
    data: DataLoader[Any] | Dataset[Any],
    *,
    device: str | torch.device | None = None,
    classes: Sequence[str] | None = None,
    loss_fn: Any = None,
    batch_size: int = 256,
    num_workers: int | None = None,
    amp: bool | str = False,
) -> EvalResult:
    """Measure accuracy, per-class accuracy, the confusion matrix and the mean loss on ``data``.

    Runs under ``torch.no_grad()`` in eval mode and restores the model's train/eval mode.
    ``device=None`` uses the device the model's parameters are on (the model is moved only when
    ``device`` is given). ``classes`` defaults to ``data.classes`` (torchvision datasets have it).
    ``loss_fn`` defaults to CrossEntropyLoss; a mean-reduced loss is weighted by batch size.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if device is None:
        param = next(model.parameters(), None)
        dev = param.device if param is not None else torch.device("cpu")
    else:
        dev = pick_device(device)
        model.to(dev)
    loader = as_loader(
        data,
        name="data",
        batch_size=batch_size,
        shuffle=False,
        num_workers=num_workers,
        device=dev,
    )
    if classes is None:
        classes = classes_of(data)
    default_loss = loss_fn is None
    if loss_fn is None:
        loss_fn = nn.CrossEntropyLoss()
    amp_dtype = resolve_amp(amp, dev)
    autocast = (
        torch.autocast(device_type=dev.type, dtype=amp_dtype)
        if amp_dtype is not None
        else contextlib.nullcontext()
    )
    return evaluate_sums(
        model,
        model,
        loader,
        dev,
        loss_fn,
        default_loss,
        autocast,
        dev.type == "cuda",
        torch.preserve_format,
        classes,
    )
