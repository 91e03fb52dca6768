"""Data-parallel training through ``torch.distributed``: what :func:`fit` does under torchrun.

:func:`fit` calls :func:`setup` first. Outside torchrun (no ``WORLD_SIZE`` in the environment, no
process group) it returns ``None`` and training is single-process as before. Under ``torchrun``
(or :func:`jupyter_torchlab.launch`) it joins the process group (NCCL on CUDA, gloo otherwise),
picks ``cuda:LOCAL_RANK`` on GPUs, and :func:`fit` then wraps the model in
DistributedDataParallel, gives each process its own slice of the data and reduces the epoch metrics
across processes. Batch sizes stay per process: the global batch is ``batch_size * world_size``.

The group fit creates stays up for later fits in the same process and is destroyed when the
process exits. Destroying and re-creating the default group under one torchrun store is racy (a
process can read a peer's address from the previous group and find nobody listening there).
"""

from __future__ import annotations

import atexit
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import (
    BatchSampler,
    DataLoader,
    IterableDataset,
    RandomSampler,
    Sampler,
    SequentialSampler,
)
from torch.utils.data.distributed import DistributedSampler

from ..device import pick_device

__all__ = [
    "DistInfo",
    "broadcast_buffers",
    "convert_sync_batchnorm",
    "eval_loader",
    "reduce_counts",
    "reduce_max",
    "reduce_sums",
    "setup",
    "train_loader",
]

_ENV_NEEDED = ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits in the process group."""

    rank: int
    world_size: int

    @property
    def is_main(self) -> bool:
        """Return True on rank 0, the process that displays progress and writes checkpoints."""
        return self.rank == 0


def _env_int(name: str) -> int | None:
    value = os.environ.get(name)
    if value is None or value == "":
        return None
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"the environment variable {name}={value!r} is not an integer") from None


def setup(
    device: str | torch.device | None, distributed: bool | None
) -> tuple[DistInfo | None, Any]:
    """Join or reuse the process group when running distributed; return (info, device).

    ``distributed=None`` follows the environment: a process group that is already initialised, or
    torchrun's variables with ``WORLD_SIZE > 1``. ``True`` insists (a one-process group is allowed);
    ``False`` trains this process alone whatever the environment says.
    """
    if distributed is False or not dist.is_available():
        if distributed:
            raise RuntimeError("fit(distributed=True): this torch build has no torch.distributed")
        return None, pick_device(device)
    if dist.is_initialized():
        rank = dist.get_rank()
        local = _env_int("LOCAL_RANK")
        dev = _rank_device(device, rank if local is None else local)
        if dev.type == "cuda":
            torch.cuda.set_device(dev)  # NCCL collectives use the current device
        return DistInfo(rank, dist.get_world_size()), dev
    env_world = _env_int("WORLD_SIZE")
    if env_world is None or (env_world < 2 and not distributed):
        if distributed:
            raise RuntimeError(
                "fit(distributed=True) needs the environment torchrun sets up (RANK, WORLD_SIZE, "
                "MASTER_ADDR, MASTER_PORT): run the script with `torchrun --nproc_per_node=N "
                "script.py`, or call fit inside a function started by tl.launch(fn, nprocs=N)"
            )
        return None, pick_device(device)
    missing = [name for name in _ENV_NEEDED if not os.environ.get(name)]
    if missing:
        raise RuntimeError(
            f"WORLD_SIZE={env_world} is set but {', '.join(missing)} is not: start the processes "
            "with torchrun (or tl.launch), which sets all of them, or pass fit(distributed=False) "
            "to train this process alone"
        )
    rank = _env_int("RANK") or 0
    local = _env_int("LOCAL_RANK")
    local = rank if local is None else local
    dev = _rank_device(device, local)
    backend = "nccl" if dev.type == "cuda" else "gloo"
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
        dist.init_process_group(backend=backend, device_id=dev)
    else:
        dist.init_process_group(backend=backend)
    atexit.register(_destroy_at_exit)
    return DistInfo(rank, dist.get_world_size()), dev


def _destroy_at_exit() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def _rank_device(device: str | torch.device | None, local_rank: int) -> torch.device:
    """Pick this process's device: its own GPU (``cuda:LOCAL_RANK``) unless told otherwise."""
    dev = pick_device(device)
    if dev.type != "cuda" or (device is not None and torch.device(device).index is not None):
        return dev
    count = torch.cuda.device_count()
    if local_rank >= count:
        raise RuntimeError(
            f"this process has LOCAL_RANK={local_rank} but only {count} CUDA device(s) are "
            f"visible: start at most {count} processes per node (torchrun --nproc_per_node="
            f"{count}), or train on the CPU with device='cpu'"
        )
    return torch.device("cuda", local_rank)


# ----------------------------------------------------------------------------------------------
# data


def _inner_sampler(loader: DataLoader[Any]) -> tuple[Any, int | None, bool, bool]:
    """Return (sampler, batch size, drop_last, batches built by a sampler) of a DataLoader."""
    # fit builds in-memory loaders as DataLoader(batch_size=None, sampler=BatchSampler(...))
    if isinstance(loader.sampler, BatchSampler):
        bs = loader.sampler
        return bs.sampler, bs.batch_size, bs.drop_last, True
    if loader.batch_sampler is not None and type(loader.batch_sampler) is not BatchSampler:
        return loader.batch_sampler, None, False, False
    return loader.sampler, loader.batch_size, loader.drop_last, False


def distributed_sampler(loader: DataLoader[Any]) -> DistributedSampler[Any] | None:
    """Return the DistributedSampler a loader draws from, if any (fit calls its set_epoch)."""
    sampler = _inner_sampler(loader)[0]
    return sampler if isinstance(sampler, DistributedSampler) else None


def train_loader(
    loader: DataLoader[Any], info: DistInfo, *, seed: int | None, name: str
) -> DataLoader[Any]:
    """Return ``loader`` rebuilt so this process draws only its share of every epoch.

    Every process gets the same number of batches (DistributedSampler pads the last few samples by
    repeating some), which DistributedDataParallel needs: a process with one batch more would wait
    for the others forever. Shuffling follows the given loader; the order is reshuffled each epoch
    through ``set_epoch``.
    """
    if distributed_sampler(loader) is not None:
        return loader
    if isinstance(loader.dataset, IterableDataset):
        raise ValueError(
            f"{name} is an IterableDataset, which fit cannot split across {info.world_size} "
            "processes (each needs its own share and the same number of batches): pass a "
            "map-style Dataset, or a DataLoader with your own DistributedSampler"
        )
    sampler, batch_size, drop_last, sampler_batches = _inner_sampler(loader)
    if not isinstance(sampler, (RandomSampler, SequentialSampler)):
        raise ValueError(
            f"{name} draws from a {type(sampler).__name__}; under torch.distributed every process "
            "must see a different share of the data, which fit can only arrange for plain "
            "shuffled or sequential loaders. Build the DataLoader with a DistributedSampler "
            "yourself (torch.utils.data.distributed.DistributedSampler) and fit will use it"
        )
    shard: DistributedSampler[Any] = DistributedSampler(
        loader.dataset,
        num_replicas=info.world_size,
        rank=info.rank,
        shuffle=isinstance(sampler, RandomSampler),
        seed=0 if seed is None else seed,
    )
    return _rebuild(loader, shard, batch_size, drop_last, sampler_batches)


class ShardSampler(Sampler[int]):
    """Every ``world_size``-th index starting at ``rank``: a split without padding (evaluation)."""

    def __init__(self, size: int, rank: int, world_size: int) -> None:
        self.indices = range(rank, size, world_size)

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


def eval_loader(loader: DataLoader[Any], info: DistInfo) -> DataLoader[Any]:
    """Return ``loader`` split across processes with no sample counted twice (for validation)."""
    if isinstance(loader.dataset, IterableDataset):
        return loader  # cannot split: every process evaluates it whole, the averages still hold
    sampler, batch_size, drop_last, sampler_batches = _inner_sampler(loader)
    if not isinstance(sampler, (SequentialSampler, RandomSampler, DistributedSampler)):
        return loader
    shard = ShardSampler(len(loader.dataset), info.rank, info.world_size)  # type: ignore[arg-type]
    return _rebuild(loader, shard, batch_size, drop_last, sampler_batches)


def _rebuild(
    loader: DataLoader[Any],
    sampler: Sampler[int],
    batch_size: int | None,
    drop_last: bool,
    sampler_batches: bool,
) -> DataLoader[Any]:
    workers = loader.num_workers
    common: dict[str, Any] = {
        "num_workers": workers,
        "collate_fn": loader.collate_fn,
        "pin_memory": loader.pin_memory,
        "timeout": loader.timeout,
        "worker_init_fn": loader.worker_init_fn,
        "multiprocessing_context": loader.multiprocessing_context,
        "generator": loader.generator,
        "persistent_workers": loader.persistent_workers,
    }
    if workers > 0:
        common["prefetch_factor"] = loader.prefetch_factor
    if sampler_batches:
        return DataLoader(
            loader.dataset,
            batch_size=None,
            sampler=BatchSampler(sampler, batch_size or 1, drop_last),
            **common,
        )
    return DataLoader(
        loader.dataset, batch_size=batch_size, sampler=sampler, drop_last=drop_last, **common
    )


# ----------------------------------------------------------------------------------------------
# collectives (once per epoch, never per batch)


def reduce_sums(values: Sequence[torch.Tensor | float], device: torch.device) -> list[float]:
    """Sum these numbers over all processes in one all-reduce; return them as Python floats."""
    packed = torch.stack(
        [torch.as_tensor(v, device=device).detach().to(torch.float64).reshape(()) for v in values]
    )
    dist.all_reduce(packed, op=dist.ReduceOp.SUM)
    return [float(v) for v in packed.tolist()]


def reduce_max(values: Sequence[float], device: torch.device) -> list[float]:
    """Return the largest value of each position over all processes (one all-reduce)."""
    packed = torch.tensor([float(v) for v in values], dtype=torch.float64, device=device)
    dist.all_reduce(packed, op=dist.ReduceOp.MAX)
    return [float(v) for v in packed.tolist()]


def reduce_counts(counts: torch.Tensor | None, length: int, device: torch.device) -> torch.Tensor:
    """Sum an integer vector over all processes; a process without one (or a shorter one) adds 0."""
    total = torch.zeros(length, dtype=torch.int64, device=device)
    if counts is not None:
        total[: counts.numel()] += counts.to(device=device, dtype=torch.int64)
    dist.all_reduce(total, op=dist.ReduceOp.SUM)
    return total


def broadcast_buffers(model: nn.Module) -> None:
    """Copy rank 0's buffers (BatchNorm statistics) to every process.

    DDP sends rank 0's buffers at the start of each forward, but the last steps of an epoch leave
    each process with its own update; this makes validation and the checkpoint agree everywhere.
    """
    for buffer in model.buffers():
        dist.broadcast(buffer, src=0)


def convert_sync_batchnorm(model: nn.Module) -> Callable[[], None]:
    """Swap the model's BatchNorm layers for SyncBatchNorm in place; return the undo function.

    The SyncBatchNorm layers share the originals' parameters and buffers; the undo puts the
    original layers back with whatever the training left in those (moved, updated) tensors, so the
    model works again outside a process group (SyncBatchNorm refuses to train there on a CPU).
    """
    swaps: list[tuple[nn.Module, str, nn.Module, nn.Module]] = []
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            is_bn = isinstance(child, nn.modules.batchnorm._BatchNorm)
            if is_bn and not isinstance(child, nn.SyncBatchNorm):
                sync = nn.SyncBatchNorm.convert_sync_batchnorm(child)
                setattr(parent, name, sync)
                swaps.append((parent, name, child, sync))

    def undo() -> None:
        for parent, name, original, sync in reversed(swaps):
            original._parameters.update(sync._parameters)
            original._buffers.update(sync._buffers)  # .to() replaces buffer tensors
            original.train(sync.training)
            setattr(parent, name, original)

    return undo
