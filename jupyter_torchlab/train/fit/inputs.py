"""What fit and evaluate accept as data, and the checks that turn a wrong input into advice.

A Dataset becomes a DataLoader with settings that suit the device; the first batch of a run is
checked once (tensors, one label per input, label dtype and range against the model's outputs), so
a mistake is reported in words before any training happens, at no cost per batch afterwards.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch.utils.data import (
    BatchSampler,
    DataLoader,
    Dataset,
    IterableDataset,
    RandomSampler,
    SequentialSampler,
    TensorDataset,
)

__all__ = [
    "as_loader",
    "check_first_batch",
    "check_labels_range",
    "classes_of",
    "device_hint",
    "input_advice",
    "split_batch",
]


def as_loader(
    data: Any,
    *,
    name: str,
    batch_size: int,
    shuffle: bool,
    num_workers: int | None,
    device: torch.device,
) -> DataLoader[Any]:
    """Return ``data`` as a DataLoader (a Dataset gets one suited to ``device``); refuse no data."""
    if isinstance(data, DataLoader):
        loader = data
    elif isinstance(data, Dataset):
        if _safe_len(data) == "0":
            raise ValueError(
                f"{name} is empty: 0 batches (0 samples). Pass a dataset with samples."
            )
        if num_workers is None:
            in_memory = isinstance(data, TensorDataset)
            # on a CPU, workers compete with the training threads for the same cores
            spare = max(0, (os.cpu_count() or 1) - 1)
            num_workers = 0 if device.type == "cpu" or in_memory else min(4, spare)
        if isinstance(data, TensorDataset):
            # in-memory tensors: index a whole batch at once instead of collating single samples
            sampler: Any = RandomSampler(data) if shuffle else SequentialSampler(data)
            loader = DataLoader(
                data,
                batch_size=None,
                sampler=BatchSampler(sampler, batch_size, drop_last=False),
                num_workers=num_workers,
                pin_memory=device.type == "cuda",
            )
        else:
            loader = DataLoader(
                data,
                batch_size=batch_size,
                shuffle=shuffle and not isinstance(data, IterableDataset),
                num_workers=num_workers,
                pin_memory=device.type == "cuda",
                persistent_workers=num_workers > 0,
            )
    else:
        raise TypeError(
            f"{name} must be a torch DataLoader or Dataset (e.g. tl.cifar10().train), got "
            f"{type(data).__name__}. Wrap tensors as "
            "torch.utils.data.TensorDataset(inputs, labels)."
        )
    try:
        n = len(loader)
    except TypeError:  # an IterableDataset without __len__: checked after the first pass
        return loader
    if n == 0:
        size = _safe_len(loader.dataset)
        raise ValueError(
            f"{name} is empty: 0 batches ({size} samples, batch_size={loader.batch_size}, "
            f"drop_last={loader.drop_last}). Pass a dataset with samples, or a smaller batch_size."
        )
    return loader


def _safe_len(obj: Any) -> str:
    try:
        return str(len(obj))
    except TypeError:
        return "unknown number of"


def split_batch(batch: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """Return a batch as (inputs, labels), or say what the data loader yielded instead."""
    if isinstance(batch, (list, tuple)) and len(batch) == 2:
        return batch[0], batch[1]
    what = (
        f"a dict with keys {sorted(batch)}"
        if isinstance(batch, Mapping)
        else f"{type(batch).__name__} of length {len(batch)}"
        if isinstance(batch, (list, tuple))
        else type(batch).__name__
    )
    raise TypeError(f"each batch must be (inputs, labels); the data loader yielded {what}")


def check_first_batch(x: Any, y: Any, default_loss: bool) -> None:
    """Check the run's first batch: tensors, one label per input, labels the loss can use."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(
            f"inputs must be tensors, got {type(x).__name__}: add transforms.ToTensor() to the "
            "dataset's transform"
        )
    if not isinstance(y, torch.Tensor):
        raise TypeError(f"labels must be tensors, got {type(y).__name__}")
    if y.ndim == 0 or y.shape[0] != x.shape[0]:
        raise ValueError(
            f"the batch has {x.shape[0]} inputs but labels of shape {tuple(y.shape)}: the "
            "dataset must return one label per input"
        )
    if not default_loss:
        return
    if not (y.dtype.is_floating_point or y.dtype == torch.bool or y.is_complex()):
        if y.ndim != 1:
            raise ValueError(
                f"labels have shape {tuple(y.shape)}, but CrossEntropyLoss wants class indices "
                f"of shape ({y.shape[0]},): squeeze the extra dimension (e.g. "
                "target_transform=lambda t: int(t)) or pass your own loss_fn"
            )
    elif y.dtype.is_floating_point and y.ndim == 1:
        raise ValueError(
            f"labels are {y.dtype} with shape {tuple(y.shape)}; CrossEntropyLoss wants class "
            "indices as int64 (labels.long()) or class probabilities of shape (batch, classes)"
        )
    elif y.dtype == torch.bool or y.is_complex():
        raise ValueError(f"labels of dtype {y.dtype} are not class indices; use int64 labels")


def check_labels_range(y_cpu: torch.Tensor, out: torch.Tensor) -> None:
    """Check the first batch's labels against the number of classes the model outputs."""
    if out.ndim != 2:
        return
    classes = out.shape[1]
    if y_cpu.dtype.is_floating_point:
        if tuple(y_cpu.shape) != tuple(out.shape):
            raise ValueError(
                f"probability labels have shape {tuple(y_cpu.shape)} but the model outputs "
                f"{tuple(out.shape)}"
            )
        return
    lo, hi = int(y_cpu.min()), int(y_cpu.max())
    if lo < 0 or hi >= classes:
        raise ValueError(
            f"label {hi if hi >= classes else lo} is out of range for a model with {classes} "
            f"outputs (labels must be 0..{classes - 1}): check the dataset or the last layer"
        )


_DEVICE_MISMATCH = ("same device", "expected device", "device type", "on the expected device")


def device_hint(err: RuntimeError, device: torch.device) -> RuntimeError | None:
    """Return an error that explains a device mismatch, or None for other errors."""
    text = str(err)
    if not any(s in text for s in _DEVICE_MISMATCH):
        return None
    return RuntimeError(
        f"the model and the data are on different devices (the batch is on {device}): {text}\n"
        f"fit moved the model with model.to({str(device)!r}); a tensor the model keeps outside its "
        "parameters and buffers did not move. Register it with self.register_buffer(...), or "
        "put the model and everything it uses on one device yourself and pass that as device=."
    )


def input_advice(loader: Any, device: torch.device | str) -> list[str]:
    """Return the concrete knobs that would feed an input-bound training loop faster.

    Read from the loader fit trains on: worker processes, pinned memory on a GPU, workers kept
    between epochs, a dataset that transforms images on every access, a small batch on a GPU.
    """
    dev = torch.device(device)
    advice: list[str] = []
    if not isinstance(loader, DataLoader):
        return ["more DataLoader workers (num_workers)", "the data in memory", "a larger batch"]
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    if loader.num_workers == 0 and (cores or 1) > 1:
        advice.append(f"num_workers={min(8, max(2, (cores or 2) - 1))} (it is 0)")
    elif loader.num_workers > 0 and not loader.persistent_workers:
        advice.append("persistent_workers=True (workers restart every epoch)")
    if dev.type == "cuda" and not loader.pin_memory:
        advice.append("pin_memory=True")
    if not isinstance(loader.dataset, TensorDataset) and getattr(loader.dataset, "transform", None):
        advice.append(
            "the data in memory, transformed once (tl.cifar10(in_memory=True) for CIFAR-10)"
        )
    size = loader.batch_size
    if dev.type != "cpu" and size is not None and size <= 64:
        advice.append(f"a larger batch (batch_size={size * 4}; it is {size})")
    return advice


def classes_of(data: Any) -> Sequence[str] | None:
    """Return the class names a dataset (or a wrapper around one) carries, or None."""
    ds = data.dataset if isinstance(data, DataLoader) else data
    for _ in range(4):  # through Subset/wrappers
        classes = getattr(ds, "classes", None)
        if classes is not None:
            return [str(c) for c in classes]
        ds = getattr(ds, "dataset", None)
        if ds is None:
            return None
    return None
