"""What a launched worker tells the notebook: one dataclass per event, sent over a pipe.

Rank 0's fit in a worker reports through :class:`EventSender` (a Callback); the notebook replays
the events into its own progress display through :class:`Mirror`, which keeps a
:class:`~jupyter_torchlab.train.callbacks.FitState` of the same types as a plain fit's (the device
is a ``torch.device``; losses arrive as floats, which displays read like tensors). Per batch that
is at most a few events a second, never one per batch.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, fields
from typing import Any

import torch

from ..callbacks import Callback, FitState, as_number
from ..display import DisplayFactory, current_display

__all__ = [
    "Batch",
    "Counters",
    "EpochEnd",
    "EpochStart",
    "Event",
    "EventSender",
    "FitEnd",
    "FitStart",
    "Hello",
    "Mirror",
    "WorkerError",
]

#: seconds between two progress events from rank 0 (the display refreshes about this often)
EVENT_INTERVAL = 0.25


@dataclass(frozen=True)
class Hello:
    """A worker started: its rank and pid (the notebook signals it on an interrupt)."""

    rank: int
    pid: int


@dataclass(frozen=True)
class WorkerError:
    """A worker raised: the first such event is the cause the notebook reports."""

    rank: int
    type: str
    message: str
    traceback: str


@dataclass(frozen=True)
class FitStart:
    """Rank 0's fit began: what the display needs to lay itself out."""

    device: str  # torch.device's string form ("cuda:0"); the label asked CUDA in the worker
    device_label: str
    epochs: int
    start_epoch: int
    batches: int | None
    world_size: int
    history: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class EpochStart:
    """An epoch began."""

    epoch: int
    batches: int | None


@dataclass(frozen=True)
class Counters:
    """The running figures of an epoch, as plain numbers (converted a few times a second)."""

    epoch: int
    batch: int
    batches: int | None
    batch_size: int | None
    samples: int
    loss: float | None
    running_loss: float | None
    running_acc: float | None
    data_time: float
    step_time: float
    peak_memory: int | None

    @classmethod
    def of(cls, state: FitState) -> Counters:
        """Read the counters off ``state`` (converting its tensors: a device sync)."""
        return cls(
            epoch=state.epoch,
            batch=state.batch,
            batches=state.batches,
            batch_size=state.batch_size,
            samples=state.samples,
            loss=as_number(state.loss),
            running_loss=as_number(state.running_loss),
            running_acc=as_number(state.running_acc),
            data_time=state.data_time,
            step_time=state.step_time,
            peak_memory=state.peak_memory,
        )

    def apply(self, state: FitState) -> None:
        """Write the counters into ``state``."""
        for f in fields(self):
            setattr(state, f.name, getattr(self, f.name))


@dataclass(frozen=True)
class Batch:
    """Progress within an epoch (throttled)."""

    counters: Counters


@dataclass(frozen=True)
class EpochEnd:
    """An epoch finished, with its History record."""

    counters: Counters
    record: dict[str, Any]


@dataclass(frozen=True)
class FitEnd:
    """Rank 0's fit ended."""

    status: str
    error: str | None
    epoch: int
    batch: int
    stopped_at: tuple[int, int] | None


Event = Hello | WorkerError | FitStart | EpochStart | Batch | EpochEnd | FitEnd


class EventSender(Callback):
    """Rank 0's progress display in a launched worker: forwards fit's hooks as events."""

    def __init__(self, send: Any, interval: float = EVENT_INTERVAL) -> None:
        self.send = send
        self.interval = interval
        self._next = 0.0

    def on_fit_start(self, state: FitState) -> None:
        """Send what the display needs to lay itself out."""
        self.send(
            FitStart(
                device=str(state.device),
                device_label=state.device_label,  # the notebook cannot ask CUDA itself
                epochs=state.epochs,
                start_epoch=state.start_epoch,
                batches=state.batches,
                world_size=state.world_size,
                history=[dict(e) for e in state.history.epochs],
            )
        )
        self._next = time.monotonic() + self.interval

    def on_epoch_start(self, state: FitState) -> None:
        """Send the epoch number."""
        self.send(EpochStart(state.epoch, state.batches))

    def on_batch_end(self, state: FitState) -> None:
        """Send the counters at most every ``interval`` seconds (O(1) otherwise)."""
        now = time.monotonic()
        if now < self._next:
            return
        self._next = now + self.interval
        self.send(Batch(Counters.of(state)))

    def on_epoch_end(self, state: FitState) -> None:
        """Send the finished epoch's record."""
        self.send(EpochEnd(Counters.of(state), dict(state.epoch_metrics)))

    def on_fit_end(self, state: FitState) -> None:
        """Send how fit ended."""
        error = None if state.error is None else f"{type(state.error).__name__}: {state.error}"
        self.send(FitEnd(state.status, error, state.epoch, state.batch, state.history.stopped_at))


class Mirror:
    """Replay rank 0's events into this process's progress display."""

    def __init__(self, display: DisplayFactory | None = None) -> None:
        self._factory = display
        self.state: FitState | None = None
        self.display: Callback | None = None
        self.history: Any = None

    def handle(self, event: Event) -> None:
        """Apply one event to the state and call the matching display hook."""
        from ..history import History

        if isinstance(event, FitStart):
            self.history = History(event.history)
            self.history.status = "running"
            self.state = FitState(
                model=None,
                optimizer=None,
                device=torch.device(event.device),
                epochs=event.epochs,
                history=self.history,
                epoch=event.start_epoch,
                start_epoch=event.start_epoch,
                batches=event.batches,
                world_size=event.world_size,
            )
            self.state.device_label = event.device_label
            self.display = (self._factory or current_display())()
            self.display.on_fit_start(self.state)
            return
        state, display = self.state, self.display
        if state is None or display is None:
            return
        if isinstance(event, EpochStart):
            state.reset_epoch(event.epoch)
            state.batches = event.batches
            display.on_epoch_start(state)
        elif isinstance(event, Batch):
            event.counters.apply(state)
            display.on_batch_end(state)
        elif isinstance(event, EpochEnd):
            event.counters.apply(state)
            state.epoch_metrics = event.record
            state.history.epochs.append(dict(event.record))
            display.on_epoch_end(state)
        elif isinstance(event, FitEnd):
            state.epoch, state.batch = event.epoch, event.batch
            stopped = event.stopped_at
            state.history.stopped_at = (stopped[0], stopped[1]) if stopped else None
            self.finish(event.status, event.error)

    def finish(self, status: str, error: str | None) -> None:
        """End the display (once) with ``status``."""
        state, display = self.state, self.display
        if state is None or display is None:
            return
        self.state = self.display = None
        state.status = state.history.status = status
        if status == "interrupted" and state.history.stopped_at is None:
            state.history.stopped_at = (state.epoch + 1, state.batch)
        state.error = RuntimeError(error) if error else None
        display.on_fit_end(state)
