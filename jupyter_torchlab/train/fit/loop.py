""":func:`fit`: train a classifier, report through callbacks, and end cleanly however it ends.

``fit`` sets a run up (:mod:`.inputs`, :mod:`.step`, :mod:`.checkpoint`) and hands it to
:class:`_Run`, whose methods read top to bottom as the training does: every epoch trains its
batches, then validates, records, checkpoints and calls the callbacks. Per batch only work on the
device is queued; the sums that a display or the History needs are kept by :mod:`.window`.
A little over 400 lines: ``fit``'s signature and docstring are the public contract, and the run
reads best in one place.

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
import os
import time
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from .. import device as devices
from ..callbacks import Callback, FitState
from ..display import DisplayFactory, resolve_progress
from ..history import History
from ..oom import FitMemory, is_out_of_memory, record_fit_memory
from . import distributed as ddp
from .checkpoint import load_checkpoint, save_checkpoint, seed_all
from .evaluate import evaluate_sums
from .inputs import as_loader, check_first_batch, split_batch
from .interrupt import DeferredInterrupt
from .out_of_memory import FitOutOfMemoryError, out_of_memory_error
from .step import Step
from .window import NonFiniteLoss, NonFiniteLossError, Window

__all__ = ["FitOutOfMemoryError", "fit"]


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
    progress: bool | Callback | DisplayFactory = True,
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
    ``history=`` is filled in place. ``progress``: True shows the display in use (see
    :mod:`jupyter_torchlab.train.display`), False none, or pass a Callback or a function that
    returns one. See the module docstring for what happens on NaN and Ctrl-C.

    Under ``torchrun`` or :func:`jupyter_torchlab.launch` (``distributed=None`` follows the
    environment) each process trains a DistributedDataParallel copy on its own share of the data;
    ``batch_size`` is per process, epoch metrics are averaged over all processes, and only rank 0
    shows progress and writes checkpoints. ``sync_batchnorm=True`` converts BatchNorm layers to
    SyncBatchNorm (GPUs only). See :mod:`jupyter_torchlab.train.fit.distributed`.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(epochs, int) or epochs < 0:
        raise ValueError(f"epochs must be a non-negative int, got {epochs!r}")
    info, dev = ddp.setup(device, distributed)
    if sync_batchnorm and info is not None and dev.type not in ("cuda", "xpu", "hpu"):
        raise ValueError(
            f"sync_batchnorm=True needs GPUs: torch's SyncBatchNorm does not run on {dev.type}. "
            "Leave it off on the CPU (each process then normalises with its own batch statistics)"
        )
    # changes fit makes to the user's model are undone however the run ends
    with contextlib.ExitStack() as undo:
        loader = as_loader(
            train_data,
            name="train_data",
            batch_size=batch_size,
            shuffle=True,
            num_workers=num_workers,
            device=dev,
        )
        val_loader = None
        if val_data is not None:
            val_loader = as_loader(
                val_data,
                name="val_data",
                batch_size=max(batch_size, 256),
                shuffle=False,
                num_workers=num_workers,
                device=dev,
            )
        if info is not None:
            loader = ddp.train_loader(loader, info, seed=seed, name="train_data")
            if val_loader is not None:
                val_loader = ddp.eval_loader(val_loader, info)
            if sync_batchnorm:
                undo.callback(ddp.convert_sync_batchnorm(model))
        step = Step(
            model,
            optimizer,
            loss_fn,
            dev,
            info=info,
            amp=amp,
            channels_last=channels_last,
            compile=compile,
        )
        history = History() if history is None else history
        start_epoch = 0
        if resume_from is not None:
            ckpt = load_checkpoint(
                resume_from,
                model,
                step.optimizer,
                scheduler=scheduler,
                scaler=step.scaler,
                restore_rng=True,
            )
            start_epoch = ckpt.epoch
            history.epochs[:] = ckpt.history.epochs
        elif seed is not None:
            seed_all(seed)
        if info is not None and info.rank and resume_from is None:
            # forked workers, and fresh processes under torch's default seed, would otherwise
            # draw the same dropout masks and augmentations on every rank (weights come from 0)
            seed_all((torch.initial_seed() if seed is None else seed) + info.rank)

        cbs = list(callbacks)
        display = resolve_progress(progress) if info is None or info.is_main else None
        if display is not None:  # one display per run: rank 0's
            cbs.insert(0, display)
        state = FitState(
            model=model,
            optimizer=step.optimizer,
            device=dev,
            device_label=devices.device_label(dev),
            epochs=epochs,
            history=history,
            epoch=start_epoch,
            start_epoch=start_epoch,
            rank=0 if info is None else info.rank,
            world_size=1 if info is None else info.world_size,
            loader=loader,
        )
        try:
            state.batches = len(loader)
        except TypeError:
            state.batches = None
        run = _Run(state, step, loader, val_loader, cbs, info, scheduler, checkpoint, check_every)
        return run.run()


class _Run:
    """One call of :func:`fit`, set up; :meth:`run` trains it and reports how it ended."""

    def __init__(
        self,
        state: FitState,
        step: Step,
        loader: DataLoader[Any],
        val_loader: DataLoader[Any] | None,
        callbacks: list[Callback],
        info: ddp.DistInfo | None,
        scheduler: Any,
        checkpoint: str | os.PathLike[str] | None,
        check_every: int,
    ) -> None:
        self.state = state
        self.step = step
        self.loader = loader
        self.val_loader = val_loader
        self.callbacks = callbacks
        # only callbacks that override on_batch_end are called per batch
        self.batch_callbacks = [
            cb for cb in callbacks if type(cb).on_batch_end is not Callback.on_batch_end
        ]
        self.info = info
        self.scheduler = scheduler
        self.checkpoint = checkpoint
        self.check_every = check_every
        self.shards = ddp.distributed_sampler(loader) if info is not None else None
        self.interrupt = DeferredInterrupt()
        self.checked = False  # the first batch was checked
        # a loader over in-memory tensors batches through a BatchSampler as its sampler
        self.batch_size = (
            loader.batch_size
            or getattr(loader.batch_sampler, "batch_size", None)
            or getattr(loader.sampler, "batch_size", None)
            or 0
        )
        # the model and optimizer in place, before a step: what a batch adds comes on top
        self.baseline = devices.allocated_memory(step.device)

    def run(self) -> History:
        """Train every epoch; set the status, call ``on_fit_end``, re-raise what stopped the run."""
        state, history, model = self.state, self.state.history, self.step.model
        history.status = state.status = "running"
        history.stopped_at = None
        was_training = model.training
        status = "failed"
        error: BaseException | None = None
        try:
            with self.interrupt:
                for cb in self.callbacks:
                    cb.on_fit_start(state)
                for epoch in range(state.start_epoch, state.epochs):
                    if not self._epoch(epoch):
                        break
            status = "stopped" if state.stop_training else "done"
            return history
        except NonFiniteLoss as nf:
            status = "failed"
            history.stopped_at = (nf.epoch + 1, nf.batch)
            error = self._non_finite_error(nf)
            raise error from None
        except KeyboardInterrupt as ki:
            status = "interrupted"
            history.stopped_at = (state.epoch + 1, state.batch)
            ki.history = history  # type: ignore[attr-defined]
            error = ki
            raise
        except BaseException as exc:
            if is_out_of_memory(exc) and not self.interrupt.requested:
                status = "out of memory"
                history.stopped_at = (state.epoch + 1, state.batch)
                error = self._out_of_memory(exc)
                raise error from exc
            if not self.interrupt.requested:
                status, error = "failed", exc
                raise
            # e.g. a terminal's Ctrl-C also stopped the DataLoader's workers: still an interrupt
            status = "interrupted"
            history.stopped_at = (state.epoch + 1, state.batch)
            stop = KeyboardInterrupt()
            stop.history = history  # type: ignore[attr-defined]
            error = stop
            raise stop from exc
        finally:
            model.train(was_training)
            state.status = history.status = status
            state.error = error
            _call_fit_end(self.callbacks, state, failing=error is not None)

    def _epoch(self, epoch: int) -> bool:
        """Train, validate and record epoch ``epoch``; return False when the run stops here."""
        state = self.state
        state.reset_epoch(epoch)
        devices.reset_peak_memory(self.step.device)  # the peak of this epoch
        for cb in self.callbacks:
            cb.on_epoch_start(state)
        window = Window(self.step.device, self.check_every)
        t_start = time.perf_counter()
        self._train_batches(epoch, window)
        train_loss, train_acc, samples = self._train_metrics(epoch, window)
        elapsed = time.perf_counter() - t_start
        state.running_loss, state.running_acc = window.running()
        state.peak_memory = devices.peak_memory(self.step.device)
        if state.stop_training and (state.batches is None or state.batch < state.batches):
            state.history.stopped_at = (epoch + 1, state.batch)
            return False  # a partial epoch is not recorded as an epoch
        val_loss, val_acc = self._validate()
        if self.scheduler is not None:
            self.scheduler.step()
        record = {
            "epoch": epoch + 1,
            "train_loss": train_loss,
            "train_acc": train_acc,
            "val_loss": val_loss,
            "val_acc": val_acc,
            "time": elapsed,
            "images_per_s": samples / elapsed if elapsed > 0 else None,
            "lr": float(self.step.optimizer.param_groups[0]["lr"]),
            "data_wait": state.data_time,
            "peak_memory": state.peak_memory,
        }
        if state.peak_memory is not None and self.baseline is not None and self.batch_size:
            record_fit_memory(
                FitMemory(
                    str(self.step.device),
                    self.batch_size,
                    self.baseline,
                    state.peak_memory,
                    amp=self.step.amp_dtype is not None,
                    model=id(self.step.model),
                )
            )
        state.history.epochs.append(record)
        state.epoch_metrics = dict(record)
        if self.checkpoint is not None and (self.info is None or self.info.is_main):
            save_checkpoint(
                self.checkpoint,
                self.step.model,
                self.step.optimizer,
                epoch=epoch + 1,
                history=state.history,
                scheduler=self.scheduler,
                scaler=self.step.scaler,
            )
        for cb in self.callbacks:
            cb.on_epoch_end(state)
        if self.interrupt.requested:  # arrived during validation or a callback
            raise KeyboardInterrupt
        if self.info is not None:  # a callback on one process can end the run for all
            state.stop_training = ddp.reduce_sums([state.stop_training], self.step.device)[0] > 0
        return not state.stop_training

    def _train_batches(self, epoch: int, window: Window) -> None:
        """Run one pass over the training data (the hot loop: O(1), no device sync per batch)."""
        state, step, interrupt = self.state, self.step, self.interrupt
        batch_callbacks = self.batch_callbacks
        distributed = self.info is not None
        step.model.train()
        if self.shards is not None:
            self.shards.set_epoch(epoch)
        batches = iter(self.loader)
        while True:
            t0 = time.perf_counter()
            try:
                batch = next(batches)
            except StopIteration:
                break
            t1 = time.perf_counter()
            x, y = split_batch(batch)
            first = not self.checked
            if first:
                check_first_batch(x, y, step.default_loss)
            loss, out, y = step.train(x, y, first=first)
            self.checked = True
            state.batch += 1
            state.batch_size = y.shape[0]
            state.samples += y.shape[0]
            state.loss = loss.detach()
            if window.add(state.loss, out.detach(), y):
                window.flush(epoch)
                state.running_loss, state.running_acc = window.running()
                state.peak_memory = devices.peak_memory(step.device)
            t2 = time.perf_counter()
            state.data_time += t1 - t0
            state.step_time += t2 - t1
            for cb in batch_callbacks:
                cb.on_batch_end(state)
            if interrupt.requested:
                raise KeyboardInterrupt
            if state.stop_training and not distributed:
                # distributed: every process must run the same batches; the request is shared
                # with the others and honoured at the end of the epoch
                break
        if state.batch == 0:
            raise ValueError(
                "train_data yielded no batches: pass a dataset with samples, or a smaller "
                "batch_size"
            )

    def _train_metrics(self, epoch: int, window: Window) -> tuple[float, float | None, int]:
        """Return the epoch's mean train loss, accuracy and sample count (over all processes)."""
        train_loss, train_acc = window.finish(epoch)
        if self.info is None:
            return train_loss, train_acc, self.state.samples
        loss_sum, correct, count, stop_votes = ddp.reduce_sums(
            [window.loss_sum, window.correct, window.count, self.state.stop_training],
            self.step.device,
        )
        self.state.stop_training = stop_votes > 0
        acc = correct / count if train_acc is not None else None
        return loss_sum / count, acc, int(count)

    def _validate(self) -> tuple[float | None, float | None]:
        """Return validation loss and accuracy (None, None without validation data)."""
        if self.info is not None:
            ddp.broadcast_buffers(self.step.model)
        if self.val_loader is None:
            return None, None
        step = self.step
        val = evaluate_sums(
            step.eval_forward,
            step.model,
            self.val_loader,
            step.device,
            step.loss_fn,
            step.default_loss,
            step.autocast,
            step.non_blocking,
            step.memory_format,
            None,
            self.info,
        )
        return val.loss, val.accuracy

    def _out_of_memory(self, exc: BaseException) -> FitOutOfMemoryError:
        return out_of_memory_error(exc, self.state, self.step, self.batch_size, self.baseline)

    def _non_finite_error(self, nf: NonFiniteLoss) -> NonFiniteLossError:
        lr = self.step.optimizer.param_groups[0].get("lr")
        return NonFiniteLossError(
            f"the training loss became {nf.value} at epoch {nf.epoch + 1}, batch {nf.batch}. "
            f"Lower the learning rate (now {lr}), check the inputs and labels for NaN/inf, or "
            "clip gradients. The weights are probably not finite any more: reload a checkpoint "
            "or re-create the model before training again.",
            nf.epoch + 1,
            nf.batch,
            self.state.history,
        )


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
