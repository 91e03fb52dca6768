"""Explain an out-of-memory error where it happens: what asked, what holds the memory, what to do.

:func:`build_report` turns a ``torch.OutOfMemoryError`` into an :class:`OomReport`:

- the request: the device, the size asked for (read from the error's message), what the caching
  allocator has allocated and reserved, the device's total and free memory;
- what holds the memory: the parameters, gradients and optimizer state of the models and
  optimizers in the user's namespace, by name; the largest live tensors on that device, with the
  variable or attribute path that holds each where one can be found; the memory held only by the
  saved traceback (IPython keeps the failed step's activations alive through it); other processes
  on the same GPU, this kernel marked and other kernels named by notebook (the walk from the
  user's variables is :mod:`.holders`);
- what to try, computed: the batch size that would fit (from what fit measured), mixed
  precision when it is off, freeing the traceback, stopping other processes on the GPU.

:func:`jupyter_torchlab.train.oom.free_memory` gives memory back after a failure. Memory
statistics and GPU processes come through injectable providers (:mod:`.memory` has the real
ones), so the logic is tested on the CPU with a real ``torch.OutOfMemoryError``. Nothing here
runs until an error happens.
"""

from __future__ import annotations

import os
import re
import types
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ..._format import format_bytes
from .holders import (
    live_tensors,
    named_tensors,
    on_device,
    optimizer_tensors,
    reachable,
    storage_key,
    traceback_tensors,
    unique_bytes,
)
from .memory import device_stats, gpu_processes, last_fit_memory

__all__ = ["Holder", "OomReport", "build_report", "is_out_of_memory", "requested_bytes"]

_TRIED = re.compile(r"Tried to allocate ([0-9.]+) ?([KMGT]i?B|B|bytes)", re.IGNORECASE)
_UNITS = {"b": 1, "bytes": 1, "kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30, "tib": 1 << 40}
_UNITS.update({"kb": 1 << 10, "mb": 1 << 20, "gb": 1 << 30, "tb": 1 << 40})
#: the share of a device's memory a suggested batch size may plan to use
HEADROOM = 0.9
TOP = 8  # largest tensors listed


def is_out_of_memory(error: BaseException) -> bool:
    """Return True for torch's out-of-memory errors (CUDA, XPU) and MPS's."""
    oom = getattr(torch, "OutOfMemoryError", None)
    if oom is not None and isinstance(error, oom):
        return True
    return isinstance(error, RuntimeError) and "out of memory" in str(error).lower()


def requested_bytes(message: str) -> int | None:
    """Return the bytes an allocation asked for, from "Tried to allocate 2.00 GiB" in a message."""
    match = _TRIED.search(message)
    if match is None:
        return None
    return int(float(match.group(1)) * _UNITS.get(match.group(2).lower(), 1))


@dataclass(frozen=True)
class Holder:
    """Something that holds memory on the device: a model's parameters, a tensor, the traceback."""

    name: str  # the variable or attribute path, e.g. "model.fc1.weight", "batch[0]"
    kind: str  # "parameters", "gradients", "optimizer state", "buffers", "tensor", "traceback"
    bytes: int
    shape: tuple[int, ...] | None = None


@dataclass
class OomReport:
    """Everything the out-of-memory explanation shows."""

    message: str  # the error's first line
    device: str
    requested: int | None
    allocated: int | None
    reserved: int | None
    total: int | None
    free: int | None
    models: list[Holder] = field(default_factory=list)  # parameters, gradients, optimizer state
    tensors: list[Holder] = field(default_factory=list)  # the largest live tensors
    traceback_bytes: int = 0  # held only through the saved traceback
    processes: list[tuple[int, int, bool]] = field(default_factory=list)  # pid, bytes, this kernel
    notebooks: dict[int, str] = field(default_factory=dict)  # pid -> notebook of a kernel
    suggestions: list[str] = field(default_factory=list)
    batch_size: int | None = None  # the suggested batch size, when one can be computed

    def holder(self, pid: int, mine: bool) -> str:
        """Say whose a GPU process is: this kernel, another notebook's kernel, another process."""
        if mine:
            return "this kernel"
        notebook = self.notebooks.get(pid)
        return f"the kernel of {notebook}" if notebook else "another process"

    def text(self) -> str:
        """Return the report as plain text (what a terminal or an exported notebook shows)."""
        lines = [f"Out of memory on {self.device}: {self.message}"]
        figures = [
            ("asked for", self.requested),
            ("allocated", self.allocated),
            ("reserved", self.reserved),
            ("free", self.free),
            ("total", self.total),
        ]
        lines.append(
            "  " + ", ".join(f"{label} {format_bytes(v)}" for label, v in figures if v is not None)
        )
        if self.models:
            lines.append("Held by models and optimizers:")
            lines += [f"  {h.name}: {h.kind} {format_bytes(h.bytes)}" for h in self.models]
        if self.tensors:
            lines.append("Largest tensors on the device:")
            for h in self.tensors:
                shape = f" {list(h.shape)}" if h.shape is not None else ""
                lines.append(f"  {h.name}{shape}: {format_bytes(h.bytes)}")
        if self.traceback_bytes:
            lines.append(f"Held only by the saved traceback: {format_bytes(self.traceback_bytes)}")
        if self.processes:
            lines.append("Processes on this GPU:")
            for pid, used, mine in self.processes:
                lines.append(f"  pid {pid} ({self.holder(pid, mine)}): {format_bytes(used)}")
        if self.suggestions:
            lines.append("What to try:")
            lines += [f"  - {s}" for s in self.suggestions]
        return "\n".join(lines)


def build_report(
    error: BaseException,
    namespace: Mapping[str, Any] | None = None,
    *,
    device: torch.device | None = None,
    traceback: types.TracebackType | None = None,
    stats: Callable[[torch.device], Mapping[str, int | None]] = device_stats,
    processes: Callable[[torch.device], list[tuple[int, int]]] = gpu_processes,
    live: Callable[[torch.device], list[torch.Tensor]] = live_tensors,
    pid: int | None = None,
    notebooks: Mapping[int, str] | None = None,
) -> OomReport:
    """Explain ``error`` (an out-of-memory error) against what ``namespace`` holds.

    ``notebooks`` names the Jupyter kernels among the GPU's processes (pid -> notebook).
    """
    namespace = namespace or {}
    message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    if device is None:
        device = _device_of(str(error))
    figures = dict(stats(device))
    report = OomReport(
        message=message,
        device=str(device),
        requested=requested_bytes(str(error)),
        allocated=figures.get("allocated"),
        reserved=figures.get("reserved"),
        total=figures.get("total"),
        free=figures.get("free"),
    )
    seen: set[tuple[int, int]] = set()
    found = reachable(namespace)
    for var, obj in found:
        if isinstance(obj, nn.Module):
            params = list(obj.parameters())
            for kind, tensors in (
                ("parameters", params),
                ("gradients", [p.grad for p in params if p.grad is not None]),
                ("buffers", list(obj.buffers())),
            ):
                size = unique_bytes(tensors, device, seen)
                if size:
                    report.models.append(Holder(var, kind, size))
        elif isinstance(obj, torch.optim.Optimizer):
            size = unique_bytes(optimizer_tensors(obj), device, seen)
            if size:
                report.models.append(Holder(var, "optimizer state", size))
    names = named_tensors(found)
    tb_keys = {storage_key(t) for t in traceback_tensors(traceback) if on_device(t, device)}
    largest: dict[tuple[int, int], torch.Tensor] = {}
    for t in live(device):
        key = storage_key(t)
        if key not in largest or t.numel() > largest[key].numel():
            largest[key] = t
    report.traceback_bytes = sum(key[1] for key in tb_keys if key not in names)
    for key, t in sorted(largest.items(), key=lambda kv: kv[0][1], reverse=True)[:TOP]:
        if key in names:
            name = names[key]
        elif key in tb_keys:
            name = "(held by the saved traceback)"
        else:
            name = "(no variable in the notebook)"
        report.tensors.append(Holder(name, "tensor", key[1], tuple(t.shape)))
    me = os.getpid() if pid is None else pid
    report.processes = [(p, used, p == me) for p, used in processes(device)]
    report.notebooks = dict(notebooks or {})
    report.suggestions, report.batch_size = _suggest(report, device, namespace)
    return report


def _device_of(message: str) -> torch.device:
    match = re.search(r"GPU (\d+)", message)
    lower = message.lower()
    if "mps" in lower:
        return torch.device("mps")
    if lower.startswith("xpu") or "xpu out of memory" in lower:
        # XPU's message also says "GPU 0"
        return torch.device("xpu", int(match.group(1)) if match is not None else 0)
    if match is not None:
        return torch.device("cuda", int(match.group(1)))
    if torch.cuda.is_available():
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cuda", 0)


def _suggest(
    report: OomReport, device: torch.device, namespace: Mapping[str, Any]
) -> tuple[list[str], int | None]:
    tips: list[str] = []
    batch: int | None = None
    fitted = last_fit_memory(str(device))
    if fitted is not None and report.total:
        budget = HEADROOM * report.total - sum(b for _, b, mine in report.processes if not mine)
        if fitted.peak is not None and fitted.peak > fitted.baseline:
            per_sample = (fitted.peak - fitted.baseline) / fitted.batch_size
        else:
            # the failed step needed at least what was allocated plus what it asked for
            needed = (report.allocated or 0) + (report.requested or 0)
            per_sample = max(needed - fitted.baseline, 1) / fitted.batch_size
        fits = int((budget - fitted.baseline) / per_sample) if per_sample > 0 else 0
        if fitted.too_big is not None:
            # that size failed: whatever the arithmetic says, suggest a smaller one
            fits = min(fits, fitted.too_big - 1)
        if fits >= 1:
            batch = 1 << (fits.bit_length() - 1)  # a power of two that fits
            tips.append(
                f"Use batch_size={batch}: fit measured about {format_bytes(per_sample)} per "
                f"sample on top of {format_bytes(fitted.baseline)} for the model and optimizer."
            )
    if report.traceback_bytes:
        tips.append(
            f"Free the {format_bytes(report.traceback_bytes)} the saved traceback holds: "
            "tl.free_memory() (or the Free memory button)."
        )
    else:
        tips.append(
            "tl.free_memory() (or the Free memory button) releases what the failed cell still "
            "holds through its saved traceback."
        )
    if not _amp_in_use(namespace, fitted is not None and fitted.amp):
        tips.append(
            "Train in mixed precision: tl.fit(..., amp=True) (bf16 or fp16 autocast) roughly "
            "halves the activations' memory."
        )
    tips.append(
        "Drop gradients you do not need: optimizer.zero_grad(set_to_none=True) (tl.fit does), "
        "and run evaluation under torch.no_grad()."
    )
    others = [(p, b) for p, b, mine in report.processes if not mine and b]
    if others:
        held = ", ".join(
            f"{report.notebooks[p]}'s kernel (pid {p}, {format_bytes(b)})"
            if p in report.notebooks
            else f"pid {p} ({format_bytes(b)})"
            for p, b in others
        )
        stop = (
            "Shut down the kernels you do not need (the PyTorch monitor panel lists them)"
            if any(p in report.notebooks for p, _ in others)
            else "Stop the ones you do not need"
        )
        tips.append(f"Other processes hold GPU memory: {held}. {stop}.")
    return tips, batch


def _amp_in_use(namespace: Mapping[str, Any], fit_amp: bool) -> bool:
    """Return True where mixed precision is already on: in fit, a GradScaler, half weights."""
    if fit_amp:
        return True
    scaler = getattr(torch.amp, "GradScaler", None)
    for value in namespace.values():
        if scaler is not None and isinstance(value, scaler):
            return True
        if isinstance(value, nn.Module):
            first = next(value.parameters(), None)
            if first is not None and first.dtype in (torch.float16, torch.bfloat16):
                return True
    return False
