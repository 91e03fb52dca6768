"""What holds memory on a device: the user's tensors, models and optimizers, found by path.

The out-of-memory report (:mod:`.oom`) names what holds the memory the way the user wrote it:
``model.fc1.weight``, ``batch[0]``, ``trainer.cache``, ``models['enc']``. :func:`reachable`
walks from the user's variables through lists, dicts and plain objects, breadth first, so each
object gets its shortest path; tensors are counted once per storage (views share it).
"""

from __future__ import annotations

import gc
import types
from collections import deque
from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch import nn

__all__ = [
    "live_tensors",
    "named_tensors",
    "on_device",
    "optimizer_tensors",
    "reachable",
    "storage_key",
    "traceback_tensors",
    "unique_bytes",
]


def on_device(t: torch.Tensor, device: torch.device) -> bool:
    """Return True when ``t`` lives on ``device`` (any index when ``device`` has none)."""
    return t.device.type == device.type and (
        device.index is None or t.device.index in (None, device.index)
    )


def storage_key(t: torch.Tensor) -> tuple[int, int]:
    """Return (address, bytes) of the storage under ``t``: views of one storage share it."""
    try:
        storage = t.untyped_storage()
        return storage.data_ptr(), storage.nbytes()
    except Exception:  # noqa: BLE001 - meta or sparse tensors: count by the tensor itself
        return id(t), t.numel() * t.element_size()


def unique_bytes(
    tensors: Iterable[torch.Tensor], device: torch.device, seen: set[tuple[int, int]]
) -> int:
    """Return the bytes of the storages on ``device`` not in ``seen`` (and add them to it)."""
    total = 0
    for t in tensors:
        if isinstance(t, torch.Tensor) and on_device(t, device):
            key = storage_key(t)
            if key not in seen:
                seen.add(key)
                total += key[1]
    return total


def optimizer_tensors(opt: torch.optim.Optimizer) -> list[torch.Tensor]:
    """Return the tensors an optimizer keeps per parameter (momentum, Adam's moments)."""
    return [
        v for state in opt.state.values() for v in state.values() if isinstance(v, torch.Tensor)
    ]


#: how far the walk from the user's variables goes (``trainer.state["model"].fc``), and how much
#: it looks at in all: the report must stay quick with a namespace of many thousand objects
_MAX_DEPTH = 3
_MAX_OBJECTS = 50_000
#: objects of these packages are Jupyter's machinery, not the user's data
_NOT_USERS = {"IPython", "ipykernel", "ipywidgets", "traitlets", "zmq", "tornado", "jupyter_client"}


def _plain_object(obj: Any) -> bool:
    """Return True for an instance whose attributes may hold the user's tensors."""
    if isinstance(obj, type | types.ModuleType | types.FunctionType | types.MethodType):
        return False
    if not hasattr(obj, "__dict__"):
        return False
    return type(obj).__module__.split(".")[0] not in _NOT_USERS


def reachable(namespace: Mapping[str, Any]) -> list[tuple[str, Any]]:
    """Return (path, object) for the tensors, modules and optimizers the user's variables reach.

    Breadth first, so each object gets its shortest path (``model`` before ``trainer.model``):
    through lists, tuples, dicts and plain objects' attributes, :data:`_MAX_DEPTH` steps deep.
    """
    found: list[tuple[str, Any]] = []
    seen: set[int] = set()
    queue = deque((var, obj, 0) for var, obj in namespace.items() if not var.startswith("_"))
    while queue and len(seen) < _MAX_OBJECTS:
        path, obj, depth = queue.popleft()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        if isinstance(obj, torch.Tensor | nn.Module | torch.optim.Optimizer):
            found.append((path, obj))
            continue  # a module's tensors are named through named_parameters()
        if depth >= _MAX_DEPTH or isinstance(obj, str | bytes | int | float):
            continue
        if isinstance(obj, list | tuple):
            queue.extend((f"{path}[{i}]", item, depth + 1) for i, item in enumerate(obj[:1000]))
        elif isinstance(obj, dict):
            items = list(obj.items())[:1000]
            queue.extend((f"{path}[{key!r}]", item, depth + 1) for key, item in items)
        elif _plain_object(obj):
            attrs = [(a, v) for a, v in list(vars(obj).items())[:1000] if not a.startswith("_")]
            queue.extend((f"{path}.{a}", v, depth + 1) for a, v in attrs)
    return found


def named_tensors(found: Iterable[tuple[str, Any]]) -> dict[tuple[int, int], str]:
    """Map each storage to the first path that reaches it (variables, containers, modules)."""
    names: dict[tuple[int, int], str] = {}

    def put(t: torch.Tensor, name: str) -> None:
        names.setdefault(storage_key(t), name)

    for path, obj in found:
        if isinstance(obj, torch.Tensor):
            put(obj, path)
        elif isinstance(obj, nn.Module):
            for name, p in obj.named_parameters():
                put(p, f"{path}.{name}")
                if p.grad is not None:
                    put(p.grad, f"{path}.{name}.grad")
            for name, b in obj.named_buffers():
                put(b, f"{path}.{name}")
        elif isinstance(obj, torch.optim.Optimizer):
            for t in optimizer_tensors(obj):
                put(t, f"{path} (optimizer state)")
    return names


def traceback_tensors(tb: types.TracebackType | None) -> list[torch.Tensor]:
    """Return the tensors the frames of a saved traceback keep alive (locals, their lists)."""
    found: list[torch.Tensor] = []
    while tb is not None:
        for value in tb.tb_frame.f_locals.values():
            if isinstance(value, torch.Tensor):
                found.append(value)
            elif isinstance(value, list | tuple):
                found += [v for v in value[:1000] if isinstance(v, torch.Tensor)]
        tb = tb.tb_next
    return found


def live_tensors(device: torch.device) -> list[torch.Tensor]:
    """Return every tensor on ``device`` that the garbage collector tracks."""
    # cost grows with the objects alive, once per error
    # type(), not isinstance(): some objects answer __class__ with a deprecation warning
    tensor = torch.Tensor
    return [o for o in gc.get_objects() if issubclass(type(o), tensor) and on_device(o, device)]
