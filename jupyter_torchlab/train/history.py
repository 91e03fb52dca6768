""":class:`History`, fit's per-epoch record, and the one way an epoch is summarised for people.

The History's repr, fit's text display and the notebook display's epoch table all describe an
epoch through :func:`epoch_cells`, so a finished epoch reads the same wherever it is shown.
Nothing here imports torch.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from .._format import (
    format_bytes,
    format_count,
    format_duration,
    format_number,
    format_percent,
    format_rate,
)

__all__ = ["COLUMNS", "EPOCH_HEADERS", "History", "epoch_cells", "epoch_line"]

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
    "peak_memory",  # bytes the accelerator's allocator peaked at during the epoch (None on a CPU)
)

#: the columns of an epoch table, as :func:`epoch_cells` fills them
EPOCH_HEADERS = ("epoch", "train loss", "val loss", "val acc", "time", "images/s")


def _metric(value: Any) -> str:
    return "" if value is None else format_number(value)


def epoch_cells(record: Mapping[str, Any]) -> dict[str, str]:
    """Return an epoch record as the cells of an epoch table (:data:`EPOCH_HEADERS`).

    Also ``"train acc"``; a value that is not known is an empty cell.
    """
    ips = record.get("images_per_s")
    acc = record.get("val_acc")
    train_acc = record.get("train_acc")
    return {
        "epoch": str(record.get("epoch", "")),
        "train loss": _metric(record.get("train_loss")),
        "train acc": "" if train_acc is None else format_percent(train_acc, 1),
        "val loss": _metric(record.get("val_loss")),
        "val acc": "" if acc is None else format_percent(acc, 1),
        "time": format_duration(record.get("time")),
        "images/s": "" if ips is None else format_count(round(ips)),
        "peak memory": ""
        if record.get("peak_memory") is None
        else format_bytes(record["peak_memory"]),
    }


def epoch_line(record: Mapping[str, Any], epochs: int | None = None) -> str:
    """Return one line for a finished epoch: ``epoch 2/5 done in 0:12  train loss 0.9 ...``."""
    cells = epoch_cells(record)
    of = f"/{epochs}" if epochs is not None else ""
    parts = [f"epoch {cells['epoch']}{of} done in {cells['time']}"]
    for prefix in ("train", "val"):
        loss, acc = cells[f"{prefix} loss"], cells[f"{prefix} acc"]
        if loss:
            parts.append(f"{prefix} loss {loss}" + (f" acc {acc}" if acc else ""))
    ips = record.get("images_per_s")
    if ips:
        parts.append(format_rate(ips, "img"))
    return "  ".join(parts)


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
        lines += [f"  {epoch_line(e)}" for e in self.epochs]
        return "\n".join(lines)

    def plot(self, ax: Any = None) -> Any:
        """Plot loss and accuracy per epoch with matplotlib; return the axes used.

        Without ``ax``: a new figure with a loss and an accuracy panel. With ``ax``: loss on it,
        accuracy on a twin y-axis.
        """
        import matplotlib.pyplot as plt

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
