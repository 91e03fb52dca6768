"""The typed events between tl.launch's workers and the notebook, without processes."""

from __future__ import annotations

import pickle
import time

import torch

import jupyter_torchlab as tl
from jupyter_torchlab.train.callbacks import Callback, FitState
from jupyter_torchlab.train.parallel.events import (
    Batch,
    Counters,
    EpochEnd,
    EpochStart,
    EventSender,
    FitEnd,
    FitStart,
    Mirror,
)


def _state(**kw) -> FitState:
    return FitState(
        model=None,
        optimizer=None,
        device=torch.device("cpu"),
        epochs=2,
        history=tl.History(),
        **kw,
    )


def test_worker_progress_events_are_throttled():
    """Rank 0 sends a handful of events per second however fast the batches come."""
    sent: list[object] = []
    sender = EventSender(sent.append, interval=0.25)
    state = _state()
    sender.on_fit_start(state)
    start = time.monotonic()
    while time.monotonic() - start < 0.6:
        state.batch += 1
        state.loss = torch.tensor(1.0)
        sender.on_batch_end(state)
    batches = [e for e in sent if isinstance(e, Batch)]
    assert state.batch > 1000
    assert 1 <= len(batches) <= 3
    assert batches[-1].counters.loss == 1.0  # a plain float: the notebook never holds a tensor


class Recorder(Callback):
    def __init__(self) -> None:
        self.calls: list[tuple[str, dict]] = []

    def _snap(self, hook: str, state: FitState) -> None:
        self.calls.append(
            (
                hook,
                {
                    "device": state.device,
                    "label": state.device_label,
                    "epoch": state.epoch,
                    "batch": state.batch,
                    "loss": state.loss,
                    "peak": state.peak_memory,
                    "epochs_done": len(state.history),
                    "status": state.status,
                },
            )
        )

    def on_fit_start(self, state):
        self._snap("fit_start", state)

    def on_epoch_start(self, state):
        self._snap("epoch_start", state)

    def on_batch_end(self, state):
        self._snap("batch", state)

    def on_epoch_end(self, state):
        self._snap("epoch_end", state)

    def on_fit_end(self, state):
        self._snap("fit_end", state)


def test_events_replay_into_a_display_with_fits_types():
    """What a worker's fit reports arrives in the notebook's display as a plain fit's state."""
    sent: list[object] = []
    sender = EventSender(sent.append, interval=0.0)
    worker = _state(batches=3, device_label="cuda:1 (Some GPU)")
    worker.device = torch.device("cuda", 1)  # only a name here: nothing touches CUDA
    sender.on_fit_start(worker)
    worker.reset_epoch(0)
    sender.on_epoch_start(worker)
    worker.batch, worker.samples, worker.loss = 2, 8, torch.tensor(0.5)
    worker.peak_memory = 123_456_789
    sender.on_batch_end(worker)
    worker.epoch_metrics = {"epoch": 1, "train_loss": 0.5, "time": 1.0}
    sender.on_epoch_end(worker)
    worker.status = "done"
    sender.on_fit_end(worker)

    # every event survives the pipe (pickle) as the same dataclass
    events = [pickle.loads(pickle.dumps(e)) for e in sent]
    assert [type(e) for e in events] == [FitStart, EpochStart, Batch, EpochEnd, FitEnd]
    assert isinstance(events[2].counters, Counters)

    shown = Recorder()
    mirror = Mirror(display=lambda: shown)
    for event in events:
        mirror.handle(event)
    hooks = [hook for hook, _ in shown.calls]
    assert hooks == ["fit_start", "epoch_start", "batch", "epoch_end", "fit_end"]
    batch = dict(shown.calls)["batch"]
    assert batch["device"] == torch.device("cuda", 1)  # a torch.device, as in a plain fit
    assert batch["label"] == "cuda:1 (Some GPU)"
    assert batch["loss"] == 0.5
    assert batch["peak"] == 123_456_789
    end = dict(shown.calls)["fit_end"]
    assert end["epochs_done"] == 1
    assert end["status"] == "done"
    assert mirror.history.status == "done"


def test_epoch_start_resets_the_mirrors_counters():
    shown = Recorder()
    mirror = Mirror(display=lambda: shown)
    mirror.handle(FitStart("cpu", "cpu", 2, 0, 4, 2))
    counters = Counters(0, 4, 4, 4, 16, 0.3, 0.3, 0.9, 1.0, 2.0, None)
    mirror.handle(Batch(counters))
    mirror.handle(EpochStart(1, 4))
    state = mirror.state
    assert state is not None
    assert (state.epoch, state.batch, state.samples, state.loss) == (1, 0, 0, None)
    assert state.data_time == state.step_time == 0.0
