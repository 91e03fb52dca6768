"""A busy process whose GPU mostly waits: the low-utilisation stretch of each watched key.

A training loop that holds GPU memory and runs, yet keeps its GPUs under :data:`STARVED_BELOW`
percent busy (on average over the GPUs it uses) for :data:`STARVED_AFTER` seconds, is almost
always waiting for its input (data loading, Python work between steps). The server flags kernels
with it, the kernel monitor flags its own kernel; both feed it one reading per tick.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["STARVED_AFTER", "STARVED_BELOW", "GpuStarvation", "Starved"]

#: a busy process's GPU share under this percent ...
STARVED_BELOW = 10.0
#: ... for this many seconds is "the GPU waits"
STARVED_AFTER = 30.0
#: readings averaged into the reported share (the most recent ones)
_KEEP = 60


@dataclass(frozen=True)
class Starved:
    """How long the GPU has waited, and its mean share over that stretch (percent)."""

    seconds: float
    utilization: float


class GpuStarvation:
    """Track, per key, the stretch during which a busy holder's GPU share stays low."""

    def __init__(self, below: float = STARVED_BELOW, after: float = STARVED_AFTER) -> None:
        self.below = below
        self.after = after
        self._low: dict[str, tuple[float, list[float]]] = {}  # key -> (start, readings)

    def observe(
        self,
        key: str,
        *,
        busy: bool,
        gpu_memory: int | None,
        utilization: float | None,
        now: float,
    ) -> Starved | None:
        """Feed one tick's reading; return the stretch once it has lasted ``after`` seconds.

        An unknown utilisation (the GPU does not report per-process samples) never counts as
        low: it ends the stretch rather than claiming a wait nobody measured.
        """
        if not (busy and gpu_memory and utilization is not None and utilization < self.below):
            self._low.pop(key, None)
            return None
        start, readings = self._low.get(key, (now, []))
        readings = [*readings[-(_KEEP - 1) :], utilization]
        self._low[key] = (start, readings)
        if now - start < self.after:
            return None
        return Starved(now - start, sum(readings) / len(readings))

    def forget(self, keep: set[str] | frozenset[str]) -> None:
        """Drop the stretches of keys not in ``keep`` (kernels that are gone)."""
        for key in set(self._low) - set(keep):
            del self._low[key]
