"""Checkpoints that survive a crash mid-write, and the random state a resumed run needs.

:func:`save_checkpoint` writes through :func:`jupyter_torchlab._files.atomic_write`: a reader sees
the old file or the new one, never a torn one. A checkpoint keeps the model, optimizer, scheduler,
grad scaler, History and every random generator's state, so ``fit(resume_from=...)`` continues
exactly where an uninterrupted run would be.
"""

from __future__ import annotations

import os
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from torch import nn

from ..._files import atomic_write
from ..history import History

__all__ = ["CHECKPOINT_FORMAT", "Checkpoint", "load_checkpoint", "save_checkpoint", "seed_all"]

CHECKPOINT_FORMAT = "jupyter_torchlab.checkpoint/1"


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

    A crash mid-write can leave a ``.<name>.*.tmp`` file behind, never a broken ``path``.
    """
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
    return atomic_write(path, lambda f: torch.save(payload, f))


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


def seed_all(seed: int) -> None:
    """Seed torch (every device), Python's and NumPy's generators with ``seed``."""
    torch.manual_seed(seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)
