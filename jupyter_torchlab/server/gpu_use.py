"""Who holds a GPU, and is it working: idle holders, busy kernels whose GPU waits, and culling.

On a shared GPU box the costliest waste is a kernel that finished training an hour ago and still
holds 40 GiB: nobody else can start, and nobody knows whose it is. The second is a busy kernel
whose GPU sits mostly idle because data cannot keep up. Each tick (:meth:`GpuUse.observe`, on the
sampler thread) this module derives, per kernel:

- ``holding_idle``: the kernel is idle, has been for ``warn_after`` seconds or more (since its
  last transition to idle: output an idle kernel's threads send does not reset it), its GPU has
  done no work of its for as long (a background thread or child process that keeps the GPU
  :data:`WORKING_ABOVE` percent busy restarts the stretch), and it holds GPU memory;
- ``gpu_waiting``: the kernel is busy and holds GPU memory, but its share of the GPU (NVML's
  per-process utilisation) stayed low for a while (:mod:`jupyter_torchlab.metrics.starvation`).

:class:`IdleCuller` is the opt-in policy (``TorchlabExtension.gpu_idle_cull``, off by default):
a flagged kernel is warned first, and shut down through the kernel manager when it is still idle
and still holding memory ``grace`` seconds later. It re-checks the kernel's state at that moment
and never touches a busy kernel. Unlike jupyter_server's ``cull_idle_timeout``, which shuts down
every idle kernel whether it holds anything or not, this only acts on kernels that keep a GPU
from others, and says so before it does.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from jupyter_torchlab._format import format_bytes, format_span
from jupyter_torchlab.metrics import STARVED_BELOW, GpuStarvation, ProcessTreeSnapshot

from .kernels import KernelInfo

__all__ = ["WORKING_ABOVE", "GpuUse", "IdleCuller", "idle_seconds"]

#: an idle kernel whose processes keep its GPUs at least this busy (percent) is working
WORKING_ABOVE = STARVED_BELOW


def idle_seconds(info: KernelInfo, now: float) -> float | None:
    """Return how long an idle kernel has been idle (None: busy, starting, or not known)."""
    if info.execution_state != "idle" or info.idle_since is None:
        return None
    return max(0.0, now - info.idle_since)


@dataclass(frozen=True)
class Flags:
    """What one tick says about one kernel's GPU use."""

    holding_idle: dict[str, Any] | None = None  # {"seconds", "bytes"[, "cull_at"]}
    gpu_waiting: dict[str, Any] | None = None  # {"seconds", "utilization"}


class GpuUse:
    """Derive each kernel's idle-holder and waiting-GPU flags from tick to tick."""

    def __init__(self, warn_after: float = 1800.0) -> None:
        self.warn_after = warn_after  # 0: never flag idle holders
        self._starvation = GpuStarvation()
        self._gpu_worked: dict[str, float] = {}  # kernel id -> when its GPU share was last high

    def observe(
        self,
        kernels: Mapping[str, KernelInfo],
        trees: Mapping[str, ProcessTreeSnapshot],
        now: float,
    ) -> dict[str, Flags]:
        """Return the flags of every kernel that has one (sampler thread, once per tick)."""
        flags: dict[str, Flags] = {}
        for kid, info in kernels.items():
            tree = trees.get(kid)
            held = tree.gpu_memory if tree is not None else None
            share = tree.gpu_utilization if tree is not None else None
            if share is not None and share >= WORKING_ABOVE:
                self._gpu_worked[kid] = now  # a thread or a child of an idle kernel at work
            holding = None
            idle = idle_seconds(info, now)
            worked = self._gpu_worked.get(kid)
            if idle is not None and worked is not None:
                idle = min(idle, now - worked)
            if held and idle is not None and 0 < self.warn_after <= idle:
                holding = {"seconds": idle, "bytes": held}
            starved = self._starvation.observe(
                kid,
                busy=info.execution_state == "busy",
                gpu_memory=held,
                utilization=tree.gpu_utilization_per_device if tree is not None else None,
                now=now,
            )
            waiting = (
                None
                if starved is None
                else {"seconds": starved.seconds, "utilization": starved.utilization}
            )
            if holding is not None or waiting is not None:
                flags[kid] = Flags(holding, waiting)
        self._starvation.forget(set(kernels))
        for kid in set(self._gpu_worked) - set(kernels):
            del self._gpu_worked[kid]
        return flags


@dataclass
class _Pending:
    warned_at: float
    idle_since: float | None  # the idle stretch the warning was about


class IdleCuller:
    """Warn, then shut down, kernels that sit idle on GPU memory (opt-in; event loop).

    ``current(kernel_id)`` returns the registry's live view of a kernel; it is read again at the
    moment of shutting down, so a kernel that ran anything since the warning (its idle stretch
    changed) or is busy now is left alone and warned afresh if it idles again.
    """

    def __init__(
        self,
        kernel_manager: Any,
        grace: float,
        current: Callable[[str], KernelInfo | None],
        *,
        wall: Callable[[], float] = time.time,
        log: logging.Logger | None = None,
        on_action: Callable[[str, str, dict[str, Any]], None] | None = None,
    ) -> None:
        self._km = kernel_manager
        self.grace = grace
        self._current = current
        self._wall = wall
        self._log = log or logging.getLogger(__name__)
        self._on_action = on_action  # (action, kernel id, details): "warned" or "culled"
        self._actions: deque[dict[str, Any]] = deque(maxlen=100)  # the newest, oldest first
        self._actions_lock = threading.Lock()  # appended on the loop, read by the sampler
        self._pending: dict[str, _Pending] = {}
        # being shut down: checks run once per tick and a shutdown can outlast several ticks
        self._culling: set[str] = set()

    def deadline(self, kid: str) -> float | None:
        """Return when a warned kernel will be shut down (unix time; None: not warned)."""
        pending = self._pending.get(kid)  # read from the sampler thread: one dict lookup
        return None if pending is None else pending.warned_at + self.grace

    async def check(self, flagged: Mapping[str, Mapping[str, Any]]) -> None:
        """Act on one tick's idle holders (``kernel id -> holding_idle``)."""
        now = self._wall()
        for kid in set(self._pending) - set(flagged):
            del self._pending[kid]  # used again, or it let its memory go: start over
        for kid, holding in flagged.items():
            if kid in self._culling:
                continue
            info = self._current(kid)
            if info is None:
                self._pending.pop(kid, None)
                continue
            label = info.path or kid
            pending = self._pending.get(kid)
            if pending is not None and pending.idle_since != info.idle_since:
                pending = None  # it ran something since the warning: this is a new stretch
            if pending is None:
                self._pending[kid] = _Pending(now, info.idle_since)
                self._log.warning(
                    "torchlab: kernel %s (%s) has been idle for %s holding %s of GPU memory; "
                    "it is shut down in %s unless it runs something "
                    "(TorchlabExtension.gpu_idle_cull)",
                    kid,
                    label,
                    format_span(holding["seconds"]),
                    format_bytes(holding["bytes"]),
                    format_span(self.grace),
                )
                self._action("warned", kid, {**holding, "grace": self.grace})
                continue
            if now - pending.warned_at < self.grace:
                continue
            if info.execution_state != "idle":  # never a busy (or starting) kernel
                self._pending.pop(kid, None)
                continue
            self._pending.pop(kid, None)
            self._log.warning(
                "torchlab: shutting down kernel %s (%s): idle for %s holding %s of GPU memory "
                "(TorchlabExtension.gpu_idle_cull = %s s)",
                kid,
                label,
                format_span(holding["seconds"]),
                format_bytes(holding["bytes"]),
                f"{self.grace:g}",
            )
            self._culling.add(kid)
            try:
                await self._km.shutdown_kernel(kid)
            except Exception as e:  # noqa: BLE001 - logged; warned and tried again later
                self._log.warning("torchlab: shutting down kernel %s failed: %s", kid, e)
                continue
            finally:
                self._culling.discard(kid)
            self._action("culled", kid, dict(holding))

    def recent(self, since: float) -> list[dict[str, Any]]:
        """Return the warnings and shutdowns since ``since`` (unix time), oldest first."""
        with self._actions_lock:
            return [a for a in self._actions if a["time"] >= since]

    def _action(self, kind: str, kid: str, detail: dict[str, Any]) -> None:
        info = self._current(kid)
        entry = {
            "action": kind,
            "kernel_id": kid,
            "path": None if info is None else info.path,
            "name": None if info is None else info.name,
            "time": self._wall(),
            **detail,
        }
        with self._actions_lock:
            self._actions.append(entry)
        if self._on_action is not None:
            self._on_action(kind, kid, detail)
