"""Train and evaluate a classifier: :func:`fit`, :func:`evaluate`, :class:`History`, checkpoints.

Per batch, ``fit`` only queues work on the device: the loss and the outputs are kept as detached
tensors and folded into running sums once per *check window* (``check_every`` batches, 64 by
default). That fold is where a non-finite loss is detected: on the CPU right away (reading a CPU
tensor costs no device sync), on CUDA through a pinned non-blocking copy read one window later, so
no step ever waits for the GPU. The error still names the exact epoch and batch.

Fault semantics (also in the README):

* NaN/inf loss: :class:`NonFiniteLossError` (a ``FloatingPointError``) naming epoch and batch;
  ``history.status == "failed"``; the weights are likely already non-finite (reload a checkpoint).
* ``KeyboardInterrupt`` (Ctrl-C, Jupyter's interrupt): in the main thread the first one is
  deferred to the end of the running batch, so no optimizer step is cut in half (a second one
  interrupts at once). ``fit`` then re-raises ``KeyboardInterrupt`` with ``err.history`` set; the
  History keeps the finished epochs, ``status == "interrupted"`` and ``stopped_at == (epoch,
  batch)``; pass ``history=`` to keep a handle on it without catching anything. The model keeps the
  weights of its last finished step and its train/eval mode from before ``fit``.
* A callback setting ``state.stop_training``: ``fit`` returns normally with ``status == "stopped"``.
"""

from __future__ import annotations

import contextlib
import math
import os
import random
import signal
import tempfile
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from torch import nn
from torch.utils.data import (
    BatchSampler,
    DataLoader,
    Dataset,
    IterableDataset,
    RandomSampler,
    SequentialSampler,
    TensorDataset,
)

from . import distributed as ddp
from .callbacks import Callback, FitState, default_progress, progress_forced
from .device import pick_device

__all__ = [
    "COLUMNS",
    "Checkpoint",
    "EvalResult",
    "History",
    "NonFiniteLossError",
    "evaluate",
    "fit",
    "load_checkpoint",
    "save_checkpoint",
]

#: the per-epoch record kept by History, in column order
COLUMNS = (
    "epoch",  # 1-based count of finished epochs
    "train_loss",
    "train_acc",  # fraction in [0, 1]
    "val_loss",  # None without val_data
    "val_acc",
    "time",  # seconds of the training pass (validation not included)
    "images_per_s",
    "lr",  # first param group's lr at the end of the epoch (after scheduler.step())
    "data_wait",  # seconds of the training pass spent waiting for the data loader
)
CHECKPOINT_FORMAT = "jupyter_torchlab.checkpoint/1"


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite; ``epoch`` and ``batch`` are 1-based."""

    def __init__(self, message: str, epoch: int, batch: int, history: History) -> None:
        super().__init__(message)
        self.epoch = epoch
        self.batch = batch
        self.history = history


class History:
    """Per-epoch metrics of :func:`fit`: ``epochs`` is a list of dicts with :data:`COLUMNS`."""

    def __init__(self, epochs: Iterable[Mapping[str, Any]] = ()) -> None:
        self.epochs: list[dict[str, Any]] = [dict(e) for e in epochs]
        self.status: str = "new"  # then fit's status: running, done, stopped, interrupted, failed
        self.stopped_at: tuple[int, int] | None = None  # (epoch, batch), 1-based, when cut short

    def __len__(self) -> int:
        return len(self.epochs)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.epochs[index]

    def as_dict(self) -> dict[str, list[Any]]:
        """Return column name -> list of per-epoch values."""
        return {c: [e.get(c) for e in self.epochs] for c in COLUMNS}

    def state_dict(self) -> dict[str, Any]:
        """Return a plain, ``torch.load(weights_only=True)``-safe form."""
        return {"epochs": [dict(e) for e in self.epochs], "status": self.status}

    @classmethod
    def from_state_dict(cls, state: Mapping[str, Any]) -> History:
        """Rebuild a History from :meth:`state_dict`."""
        h = cls(state.get("epochs", ()))
        h.status = str(state.get("status", "new"))
        return h

    def __repr__(self) -> str:
        if not self.epochs:
            return f"History(status={self.status!r}, no epochs)"
        lines = [f"History(status={self.status!r}, {len(self.epochs)} epochs)"]
        for e in self.epochs:
            row = f"  epoch {e['epoch']:>3}: train loss {e['train_loss']:.4f}"
            if e.get("train_acc") is not None:
                row += f" acc {e['train_acc']:.1%}"
            if e.get("val_loss") is not None:
                row += f"  val loss {e['val_loss']:.4f} acc {e['val_acc']:.1%}"
            row += f"  {e['time']:.1f}s  {e['images_per_s']:,.0f} img/s"
            lines.append(row)
        return "\n".join(lines)

    def plot(self, ax: Any = None) -> Any:
        """Plot loss and accuracy per epoch with matplotlib; return the axes used.

        Without ``ax``: a new figure with a loss and an accuracy panel. With ``ax``: loss on it,
        accuracy on a twin y-axis.
        """
        try:
            import matplotlib.pyplot as plt
        except ImportError as err:  # optional dependency: fail at use with the fix
            raise ImportError("History.plot needs matplotlib: pip install matplotlib") from err
        d = self.as_dict()
        x = d["epoch"]
        if ax is None:
            _, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 3.5))
        else:
            ax_loss, ax_acc = ax, ax.twinx()
        ax_loss.plot(x, d["train_loss"], "o-", label="train loss")
        if any(v is not None for v in d["val_loss"]):
            ax_loss.plot(x, d["val_loss"], "o-", label="val loss")
        ax_loss.set_xlabel("epoch")
        ax_loss.set_ylabel("loss")
        ax_acc.plot(x, d["train_acc"], "s--", label="train acc")
        if any(v is not None for v in d["val_acc"]):
            ax_acc.plot(x, d["val_acc"], "s--", label="val acc")
        ax_acc.set_ylabel("accuracy")
        ax_loss.legend(loc="upper left")
        ax_acc.legend(loc="upper right")
        return (ax_loss, ax_acc)


# ----------------------------------------------------------------------------------------------
# inputs


def _as_loader(
    data: Any,
    *,
    name: str,
    batch_size: int,
    shuffle: bool,
    num_workers: int | None,
    device: torch.device,
) -> DataLoader[Any]:
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


def _split(batch: Any) -> tuple[torch.Tensor, torch.Tensor]:
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


def _check_first_batch(x: Any, y: Any, default_loss: bool) -> None:
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


def _check_labels_range(y_cpu: torch.Tensor, out: torch.Tensor) -> None:
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


def _device_hint(err: RuntimeError, device: torch.device) -> RuntimeError | None:
    text = str(err)
    if not any(s in text for s in _DEVICE_MISMATCH):
        return None
    return RuntimeError(
        f"the model and the data are on different devices (the batch is on {device}): {text}\n"
        f"fit moved the model with model.to({str(device)!r}); a tensor the model keeps outside its "
        "parameters and buffers did not move. Register it with self.register_buffer(...), or "
        "put the model and everything it uses on one device yourself and pass that as device=."
    )


# ----------------------------------------------------------------------------------------------
# per-epoch sums that never sync per batch


class _Window:
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
        raise _NonFinite(epoch, first + offset, value)

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


class _NonFinite(Exception):
    def __init__(self, epoch: int, batch: int, value: float) -> None:
        self.epoch, self.batch, self.value = epoch, batch, value


# ----------------------------------------------------------------------------------------------
# Ctrl-C at a batch boundary


class _DeferredInterrupt:
    """Hold the first SIGINT until the running batch ends; a second one interrupts at once."""

    def __init__(self) -> None:
        self.requested = False
        self._old: Any = None

    def _handler(self, signum: int, frame: Any) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __enter__(self) -> _DeferredInterrupt:
        # only where Python's own handler is active (plain Python, ipykernel during a cell)
        if (
            threading.current_thread() is threading.main_thread()
            and signal.getsignal(signal.SIGINT) is signal.default_int_handler
        ):
            self._old = signal.signal(signal.SIGINT, self._handler)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._old is not None:
            signal.signal(signal.SIGINT, self._old)
            self._old = None


# ----------------------------------------------------------------------------------------------
# fit


def _resolve_amp(amp: bool | str, device: torch.device) -> torch.dtype | None:
    if amp not in (False, True, "auto"):
        raise ValueError(f"amp must be False, True or 'auto', got {amp!r}")
    if amp is False or (amp == "auto" and device.type != "cuda"):
        return None
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "mps":
        return torch.float16
    return torch.bfloat16


def _rng_state() -> dict[str, Any]:
    np_state = cast(tuple[Any, ...], np.random.get_state())
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        "numpy": {
            "kind": str(np_state[0]),
            "keys": torch.from_numpy(np.asarray(np_state[1], dtype=np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached": float(np_state[4]),
        },
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: Mapping[str, Any]) -> None:
    if "torch" in state:
        torch.set_rng_state(state["torch"])
    if "python" in state:
        py = state["python"]
        random.setstate((py[0], tuple(py[1]), py[2]))
    if "numpy" in state:
        s = state["numpy"]
        keys = s["keys"].numpy().astype(np.uint32)
        np.random.set_state((s["kind"], keys, s["pos"], s["has_gauss"], s["cached"]))
    if "cuda" in state and torch.cuda.is_available():
        cuda_states = state["cuda"]
        if len(cuda_states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda_states)


def fit(
    model: nn.Module,
    train_data: DataLoader[Any] | Dataset[Any],
    *,
    epochs: int,
    optimizer: torch.optim.Optimizer | None = None,
    loss_fn: nn.Module | Any = None,
    device: str | torch.device | None = None,
    val_data: DataLoader[Any] | Dataset[Any] | None = None,
    callbacks: Sequence[Callback] = (),
    progress: bool | Callback = True,
    batch_size: int = 4,
    num_workers: int | None = None,
    amp: bool | str = False,
    channels_last: bool = False,
    compile: bool = False,
    resume_from: str | os.PathLike[str] | None = None,
    checkpoint: str | os.PathLike[str] | None = None,
    seed: int | None = None,
    scheduler: Any = None,
    history: History | None = None,
    check_every: int = 64,
    distributed: bool | None = None,
    sync_batchnorm: bool = False,
) -> History:
    """Train ``model`` on ``train_data`` for ``epochs`` epochs and return its :class:`History`.

    Defaults follow the PyTorch tutorial: SGD(lr=0.001, momentum=0.9), CrossEntropyLoss,
    batch_size=4. ``device=None`` picks the best device (:func:`pick_device`) and moves the model
    there. A Dataset gets a shuffled DataLoader (no worker processes on a CPU, ``pin_memory`` on
    CUDA). ``amp`` (``"auto"``: bf16/fp16 autocast on CUDA only), ``channels_last`` and ``compile``
    are off by default. ``scheduler.step()`` runs once per epoch. ``checkpoint=path`` saves after
    every epoch; ``resume_from=path`` restores model, optimizer, scheduler, history and RNG state
    and continues with the next epoch (``epochs`` counts all epochs, resumed ones included).
    ``history=`` is filled in place. See the module docstring for what happens on NaN and Ctrl-C.

    Under ``torchrun`` or :func:`jupyter_torchlab.launch` (``distributed=None`` follows the
    environment) each process trains a DistributedDataParallel copy on its own share of the data;
    ``batch_size`` is per process, epoch metrics are averaged over all processes, and only rank 0
    shows progress and writes checkpoints. ``sync_batchnorm=True`` converts BatchNorm layers to
    SyncBatchNorm (GPUs only). See :mod:`jupyter_torchlab.train.distributed`.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(epochs, int) or epochs < 0:
        raise ValueError(f"epochs must be a non-negative int, got {epochs!r}")
    info, dev = ddp.setup(device, distributed)
    undo: list[Any] = []  # changes fit made to the model, undone however it ends
    try:
        return _fit(
            model,
            train_data,
            epochs=epochs,
            optimizer=optimizer,
            loss_fn=loss_fn,
            dev=dev,
            info=info,
            val_data=val_data,
            callbacks=callbacks,
            progress=progress,
            batch_size=batch_size,
            num_workers=num_workers,
            amp=amp,
            channels_last=channels_last,
            compile=compile,
            resume_from=resume_from,
            checkpoint=checkpoint,
            seed=seed,
            scheduler=scheduler,
            history=history,
            check_every=check_every,
            sync_batchnorm=sync_batchnorm,
            undo=undo,
        )
    finally:
        for step in reversed(undo):
            step()


def _fit(
    model: nn.Module,
    train_data: DataLoader[Any] | Dataset[Any],
    *,
    epochs: int,
    optimizer: torch.optim.Optimizer | None,
    loss_fn: nn.Module | Any,
    dev: torch.device,
    info: ddp.DistInfo | None,
    val_data: DataLoader[Any] | Dataset[Any] | None,
    callbacks: Sequence[Callback],
    progress: bool | Callback,
    batch_size: int,
    num_workers: int | None,
    amp: bool | str,
    channels_last: bool,
    compile: bool,
    resume_from: str | os.PathLike[str] | None,
    checkpoint: str | os.PathLike[str] | None,
    seed: int | None,
    scheduler: Any,
    history: History | None,
    check_every: int,
    sync_batchnorm: bool,
    undo: list[Any],
) -> History:
    if sync_batchnorm and info is not None and dev.type not in ("cuda", "xpu", "hpu"):
        raise ValueError(
            f"sync_batchnorm=True needs GPUs: torch's SyncBatchNorm does not run on {dev.type}. "
            "Leave it off on the CPU (each process then normalises with its own batch statistics)"
        )
    loader = _as_loader(
        train_data,
        name="train_data",
        batch_size=batch_size,
        shuffle=True,
        num_workers=num_workers,
        device=dev,
    )
    val_loader = (
        None
        if val_data is None
        else _as_loader(
            val_data,
            name="val_data",
            batch_size=max(batch_size, 256),
            shuffle=False,
            num_workers=num_workers,
            device=dev,
        )
    )
    if info is not None:
        loader = ddp.train_loader(loader, info, seed=seed, name="train_data")
        if val_loader is not None:
            val_loader = ddp.eval_loader(val_loader, info)
        if sync_batchnorm:
            undo.append(ddp.convert_sync_batchnorm(model))
    model.to(dev)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    if optimizer is None:
        optimizer = torch.optim.SGD(model.parameters(), lr=0.001, momentum=0.9)
    default_loss = loss_fn is None
    if loss_fn is None:
        loss_fn = nn.CrossEntropyLoss()
    amp_dtype = _resolve_amp(amp, dev)
    use_scaler = amp_dtype == torch.float16 and dev.type == "cuda"
    scaler = torch.amp.GradScaler(dev.type) if use_scaler else None
    train_module: nn.Module = model
    if info is not None:
        # broadcasts rank 0's weights now, so every process starts from the same model
        train_module = nn.parallel.DistributedDataParallel(
            model, device_ids=[dev.index] if dev.type == "cuda" else None
        )
    forward = torch.compile(train_module) if compile else train_module
    # validation runs on each process's share without DDP: its forward would broadcast buffers,
    # a collective that hangs when processes have different numbers of validation batches
    eval_forward = model if info is not None else forward
    shard_sampler = ddp.distributed_sampler(loader) if info is not None else None

    if history is None:
        history = History()
    start_epoch = 0
    if resume_from is not None:
        ckpt = load_checkpoint(
            resume_from, model, optimizer, scheduler=scheduler, scaler=scaler, restore_rng=True
        )
        start_epoch = ckpt.epoch
        history.epochs[:] = ckpt.history.epochs
    elif seed is not None:
        torch.manual_seed(seed)
        random.seed(seed)
        np.random.seed(seed % 2**32)
    if info is not None and info.rank and resume_from is None:
        # forked workers, and fresh processes under torch's default seed, would otherwise draw
        # the same dropout masks and augmentations on every rank (the weights come from rank 0)
        rank_seed = (torch.initial_seed() if seed is None else seed) + info.rank
        torch.manual_seed(rank_seed)
        random.seed(rank_seed)
        np.random.seed(rank_seed % 2**32)

    cbs: list[Callback] = list(callbacks)
    if info is not None and not info.is_main:
        pass  # one display per run: rank 0's
    elif progress is True or (progress is not False and progress_forced()):
        cbs.insert(0, default_progress())
    elif isinstance(progress, Callback):
        cbs.insert(0, progress)
    # only callbacks that override on_batch_end are called per batch
    batch_cbs = [cb for cb in cbs if type(cb).on_batch_end is not Callback.on_batch_end]
    state = FitState(
        model=model,
        optimizer=optimizer,
        device=dev,
        epochs=epochs,
        history=history,
        epoch=start_epoch,
        start_epoch=start_epoch,
        rank=0 if info is None else info.rank,
        world_size=1 if info is None else info.world_size,
    )
    try:
        state.batches = len(loader)
    except TypeError:
        state.batches = None
    history.status = state.status = "running"
    history.stopped_at = None
    autocast = (
        torch.autocast(device_type=dev.type, dtype=amp_dtype)
        if amp_dtype is not None
        else contextlib.nullcontext()
    )
    non_blocking = dev.type == "cuda"
    memory_format = torch.channels_last if channels_last else torch.preserve_format
    was_training = model.training
    checked = False
    status = "failed"
    error: BaseException | None = None
    interrupt = _DeferredInterrupt()
    try:
        with interrupt:
            for cb in cbs:
                cb.on_fit_start(state)
            for epoch in range(start_epoch, epochs):
                state.epoch = epoch
                state.batch = state.samples = 0
                state.data_time = state.step_time = 0.0
                state.loss = state.running_loss = state.running_acc = None
                state.epoch_metrics = {}
                for cb in cbs:
                    cb.on_epoch_start(state)
                model.train()
                if shard_sampler is not None:
                    shard_sampler.set_epoch(epoch)
                window = _Window(dev, check_every)
                t_start = time.perf_counter()
                batches = iter(loader)
                while True:
                    t0 = time.perf_counter()
                    try:
                        batch = next(batches)
                    except StopIteration:
                        break
                    t1 = time.perf_counter()
                    x, y = _split(batch)
                    if not checked:
                        _check_first_batch(x, y, default_loss)
                        y_cpu = y
                    x = x.to(dev, non_blocking=non_blocking, memory_format=memory_format)
                    y = y.to(dev, non_blocking=non_blocking)
                    optimizer.zero_grad(set_to_none=True)
                    try:
                        with autocast:
                            out = forward(x)
                            if not checked and default_loss:
                                _check_labels_range(y_cpu, out)
                            loss = loss_fn(out, y)
                    except RuntimeError as err:
                        hint = _device_hint(err, dev) if not checked else None
                        if hint is not None:
                            raise hint from err
                        raise
                    checked = True
                    if scaler is not None:
                        scaler.scale(loss).backward()
                        scaler.step(optimizer)
                        scaler.update()
                    else:
                        loss.backward()
                        optimizer.step()
                    state.batch += 1
                    state.batch_size = y.shape[0]
                    state.samples += y.shape[0]
                    state.loss = loss.detach()
                    if window.add(state.loss, out.detach(), y):
                        window.flush(epoch)
                        state.running_loss, state.running_acc = window.running()
                    t2 = time.perf_counter()
                    state.data_time += t1 - t0
                    state.step_time += t2 - t1
                    for cb in batch_cbs:
                        cb.on_batch_end(state)
                    if interrupt.requested:
                        raise KeyboardInterrupt
                    if state.stop_training and info is None:
                        # distributed: every process must run the same batches; the request is
                        # shared with the others and honoured at the end of the epoch
                        break
                if state.batch == 0:
                    raise ValueError(
                        "train_data yielded no batches: pass a dataset with samples, or a "
                        "smaller batch_size"
                    )
                train_loss, train_acc = window.finish(epoch)
                samples = state.samples
                if info is not None:
                    loss_sum, correct, count, stop_votes = ddp.reduce_sums(
                        [window.loss_sum, window.correct, window.count, state.stop_training], dev
                    )
                    train_loss = loss_sum / count
                    train_acc = correct / count if train_acc is not None else None
                    samples = int(count)
                    state.stop_training = stop_votes > 0
                elapsed = time.perf_counter() - t_start
                state.running_loss, state.running_acc = window.running()
                if state.stop_training and (state.batches is None or state.batch < state.batches):
                    history.stopped_at = (epoch + 1, state.batch)
                    break  # a partial epoch is not recorded as an epoch
                if info is not None:
                    ddp.broadcast_buffers(model)
                val_loss = val_acc = None
                if val_loader is not None:
                    val = _evaluate_sums(
                        eval_forward,
                        model,
                        val_loader,
                        dev,
                        loss_fn,
                        default_loss,
                        autocast,
                        non_blocking,
                        memory_format,
                        None,
                        info,
                    )
                    val_loss, val_acc = val.loss, val.accuracy
                if scheduler is not None:
                    scheduler.step()
                record = {
                    "epoch": epoch + 1,
                    "train_loss": train_loss,
                    "train_acc": train_acc,
                    "val_loss": val_loss,
                    "val_acc": val_acc,
                    "time": elapsed,
                    "images_per_s": samples / elapsed if elapsed > 0 else None,
                    "lr": float(optimizer.param_groups[0]["lr"]),
                    "data_wait": state.data_time,
                }
                history.epochs.append(record)
                state.epoch_metrics = dict(record)
                if checkpoint is not None and (info is None or info.is_main):
                    save_checkpoint(
                        checkpoint,
                        model,
                        optimizer,
                        epoch=epoch + 1,
                        history=history,
                        scheduler=scheduler,
                        scaler=scaler,
                    )
                for cb in cbs:
                    cb.on_epoch_end(state)
                if interrupt.requested:  # arrived during validation or a callback
                    raise KeyboardInterrupt
                if info is not None:  # a callback on one process can end the run for all
                    state.stop_training = ddp.reduce_sums([state.stop_training], dev)[0] > 0
                if state.stop_training:
                    break
        status = "stopped" if state.stop_training else "done"
        return history
    except _NonFinite as nf:
        status = "failed"
        history.stopped_at = (nf.epoch + 1, nf.batch)
        lr = optimizer.param_groups[0].get("lr")
        nan_error = NonFiniteLossError(
            f"the training loss became {nf.value} at epoch {nf.epoch + 1}, batch {nf.batch}. "
            f"Lower the learning rate (now {lr}), check the inputs and labels for NaN/inf, or "
            "clip gradients. The weights are probably not finite any more: reload a checkpoint "
            "or re-create the model before training again.",
            nf.epoch + 1,
            nf.batch,
            history,
        )
        error = nan_error
        raise nan_error from None
    except KeyboardInterrupt as ki:
        status = "interrupted"
        history.stopped_at = (state.epoch + 1, state.batch)
        ki.history = history  # type: ignore[attr-defined]
        error = ki
        raise
    except BaseException as exc:
        if interrupt.requested:
            # e.g. a terminal's Ctrl-C also stopped the DataLoader's workers: still an interrupt
            status = "interrupted"
            history.stopped_at = (state.epoch + 1, state.batch)
            stop = KeyboardInterrupt()
            stop.history = history  # type: ignore[attr-defined]
            error = stop
            raise stop from exc
        status = "failed"
        error = exc
        raise
    finally:
        model.train(was_training)
        state.status = history.status = status
        state.error = error
        _call_fit_end(cbs, state, failing=error is not None)


def _call_fit_end(cbs: Sequence[Callback], state: FitState, *, failing: bool) -> None:
    first: Exception | None = None
    for cb in cbs:
        try:
            cb.on_fit_end(state)
        except Exception as exc:  # noqa: BLE001 - every callback gets on_fit_end; first error re-raised
            if first is None:
                first = exc
    if first is not None and not failing:
        raise first


# ----------------------------------------------------------------------------------------------
# evaluate


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


def _classes_of(data: Any) -> Sequence[str] | None:
    ds = data.dataset if isinstance(data, DataLoader) else data
    for _ in range(4):  # through Subset/wrappers
        classes = getattr(ds, "classes", None)
        if classes is not None:
            return [str(c) for c in classes]
        ds = getattr(ds, "dataset", None)
        if ds is None:
            return None
    return None


def _evaluate_sums(
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
    was_training = model.training
    model.eval()
    loss_sum = torch.zeros((), device=dev)
    confusion: torch.Tensor | None = None
    count = 0
    num_classes = len(classes) if classes is not None else None
    try:
        with torch.no_grad():
            for batch in loader:
                x, y = _split(batch)
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
    loader = _as_loader(
        data,
        name="data",
        batch_size=batch_size,
        shuffle=False,
        num_workers=num_workers,
        device=dev,
    )
    if classes is None:
        classes = _classes_of(data)
    default_loss = loss_fn is None
    if loss_fn is None:
        loss_fn = nn.CrossEntropyLoss()
    amp_dtype = _resolve_amp(amp, dev)
    autocast = (
        torch.autocast(device_type=dev.type, dtype=amp_dtype)
        if amp_dtype is not None
        else contextlib.nullcontext()
    )
    return _evaluate_sums(
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


# ----------------------------------------------------------------------------------------------
# checkpoints


@dataclass
class Checkpoint:
    """What :func:`load_checkpoint` read besides the weights."""

    epoch: int  # finished epochs
    history: History
    extra: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None


def _state_dict_of(obj: Any) -> Any:
    return obj.state_dict() if obj is not None else None


def save_checkpoint(
    path: str | os.PathLike[str],
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    *,
    epoch: int = 0,
    history: History | None = None,
    scheduler: Any = None,
    scaler: Any = None,
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """Write a checkpoint atomically: a reader sees the old file or the new one, never a torn one.

    The data goes to a temporary file in the same folder, is flushed and fsynced, then renamed over
    ``path`` with ``os.replace`` (atomic on POSIX and Windows); the folder is fsynced where the OS
    allows. A crash mid-write can leave a ``.<name>.*.tmp`` file behind, never a broken ``path``.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": CHECKPOINT_FORMAT,
        "epoch": int(epoch),
        "model": model.state_dict(),
        "optimizer": _state_dict_of(optimizer),
        "scheduler": _state_dict_of(scheduler),
        "scaler": _state_dict_of(scaler),
        "history": (history or History()).state_dict(),
        "rng": _rng_state(),
        "extra": dict(extra or {}),
    }
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp_name, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp_name)
        raise
    with contextlib.suppress(OSError, AttributeError):
        dir_fd = os.open(target.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    return target


def load_checkpoint(
    path: str | os.PathLike[str],
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    *,
    scheduler: Any = None,
    scaler: Any = None,
    restore_rng: bool = False,
) -> Checkpoint:
    """Load a :func:`save_checkpoint` file into ``model`` (and optimizer...); return the rest.

    Tensors are loaded onto the CPU and copied into the model where it is. ``restore_rng=True``
    also restores the torch/CUDA/Python/NumPy random states saved with it (``fit`` does this on
    resume, so a resumed run draws the same shuffles as an uninterrupted one).
    """
    target = Path(path)
    if not target.is_file():
        raise FileNotFoundError(f"no checkpoint at {target}")
    try:
        payload = torch.load(target, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types for a truncated or foreign file
        raise ValueError(
            f"{target} is not a readable checkpoint ({type(err).__name__}: {err}); it may be "
            "truncated or not written by save_checkpoint"
        ) from err
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{target} was not written by jupyter_torchlab's save_checkpoint")
    try:
        model.load_state_dict(payload["model"])
    except RuntimeError as err:
        raise RuntimeError(
            f"the checkpoint {target} does not fit this model (saved from a different "
            f"architecture?): {err}"
        ) from err
    for obj, key in ((optimizer, "optimizer"), (scheduler, "scheduler"), (scaler, "scaler")):
        if obj is not None and payload.get(key) is not None:
            obj.load_state_dict(payload[key])
    if restore_rng and payload.get("rng"):
        _set_rng_state(payload["rng"])
    return Checkpoint(
        epoch=int(payload["epoch"]),
        history=History.from_state_dict(payload.get("history") or {}),
        extra=dict(payload.get("extra") or {}),
        path=target,
    )
