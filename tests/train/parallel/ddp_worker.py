"""Run by tests/train/test_distributed.py, alone or under torchrun: train, then dump the results.

``python ddp_worker.py MODE DATA OUT BATCH`` writes ``OUT/<tag>.pt`` with the weights, the
History and what the process saw, where tag is ``rank<N>`` under torchrun and ``single`` alone.
"""

from __future__ import annotations

import atexit
import os
import sys

import torch
from torch.utils.data import DataLoader, Dataset

import jupyter_torchlab as tl
from jupyter_torchlab.train.data import cifar10


class Recording(Dataset):
    """A dataset that remembers which indices this process read, per epoch."""

    def __init__(self, base: Dataset) -> None:
        self.base = base
        self.reads: list[list[int]] = [[]]

    def __len__(self) -> int:
        return len(self.base)  # type: ignore[arg-type]

    def __getitem__(self, i: int):
        self.reads[-1].append(int(i))
        return self.base[i]


class NewEpoch(tl.Callback):
    def __init__(self, data: Recording) -> None:
        self.data = data

    def on_epoch_end(self, state) -> None:
        self.data.reads.append([])


class StopOnRank(tl.Callback):
    """Ask to stop on one rank only: mid-epoch, or at the end of the first epoch."""

    def __init__(self, rank: int, at_epoch_end: bool = False) -> None:
        self.rank = rank
        self.at_epoch_end = at_epoch_end

    def on_batch_end(self, state) -> None:
        if not self.at_epoch_end and state.rank == self.rank and state.batch == 3:
            state.stop_training = True

    def on_epoch_end(self, state) -> None:
        if self.at_epoch_end and state.rank == self.rank:
            state.stop_training = True


class RaiseOnRank(tl.Callback):
    def on_batch_end(self, state) -> None:
        if state.rank == 1 and state.batch == 3:
            raise ValueError("rank 1 failed on purpose")


class Draws(tl.Callback):
    """Record a random number per epoch: dropout and augmentation draw from the same stream."""

    def __init__(self) -> None:
        self.draws: list[float] = []

    def on_epoch_start(self, state) -> None:
        self.draws.append(float(torch.rand(())))


def main() -> None:
    mode, data_root, out, batch = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    torch.set_num_threads(1)
    rank = os.environ.get("RANK")
    tag = "single" if rank is None else f"rank{rank}"
    if mode == "data":  # every rank prepares the same empty root at once
        fresh = cifar10(data_root, standin=True, standin_size=(2000, 500))
        image, label = fresh.train[1999]
        torch.save({"image": image, "label": label}, os.path.join(out, f"{tag}.pt"))
        return
    data = cifar10(data_root, standin=True, train_size=256, test_size=101, in_memory=True)
    torch.manual_seed(0)
    model = tl.TutorialNet()
    result: dict = {}
    if mode == "exact":
        # sequential: the processes' batches together are exactly the single process's batches
        loader = DataLoader(data.train, batch_size=batch, shuffle=False)
        history = tl.fit(
            model,
            loader,
            epochs=2,
            val_data=data.test,
            checkpoint=os.path.join(out, "ckpt.pt"),
            optimizer=torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9),
        )
        result["group_after_fit"] = torch.distributed.is_initialized()
        result["fitted"] = {k: v.clone() for k, v in model.state_dict().items()}
        again = tl.fit(model, loader, epochs=1, progress=False)  # a second fit: the same group
        result["again"] = again.epochs
        # run now what the interpreter runs at exit, to see fit's handler take the group down
        atexit._run_exitfuncs()
        result["group_after_exit"] = torch.distributed.is_initialized()
    elif mode == "shuffled":
        recording = Recording(data.train)
        draws = Draws()
        history = tl.fit(
            model,
            recording,
            epochs=3,
            batch_size=batch,
            seed=0,
            callbacks=[NewEpoch(recording), draws],
            progress=False,
            optimizer=torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9),
        )
        result["reads"] = recording.reads[:-1]
        result["draws"] = draws.draws
    elif mode == "gpu":
        model = tl.ResNet9()
        seen: dict = {}

        class Backend(tl.Callback):
            def on_fit_start(self, state) -> None:
                seen["backend"] = str(torch.distributed.get_backend())
                seen["device"] = str(state.device)

        history = tl.fit(
            model,
            data.train,
            epochs=1,
            batch_size=batch,
            sync_batchnorm=True,
            distributed=True,
            callbacks=[Backend()],
            progress=False,
        )
        result.update(seen)
        result["sync_bn"] = any(isinstance(m, torch.nn.SyncBatchNorm) for m in model.modules())
        result["param_device"] = str(next(model.parameters()).device)
        model = model.cpu()
    elif mode in ("stop", "stop_epoch"):
        stop = StopOnRank(1, at_epoch_end=mode == "stop_epoch")
        history = tl.fit(model, data.train, epochs=3, batch_size=batch, callbacks=[stop])
    elif mode == "raise":
        history = tl.fit(model, data.train, epochs=3, batch_size=batch, callbacks=[RaiseOnRank()])
    elif mode == "tinyval":  # one validation image: rank 1 has none
        from torch.utils.data import Subset

        history = tl.fit(
            model, data.train, epochs=1, batch_size=batch, val_data=Subset(data.test, [0])
        )
    else:
        raise SystemExit(f"unknown mode {mode}")
    result["state"] = model.state_dict()
    result["epochs"] = history.epochs
    result["status"] = history.status
    torch.save(result, os.path.join(out, f"{tag}.pt"))


if __name__ == "__main__":
    main()
