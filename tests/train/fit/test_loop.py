from __future__ import annotations

import math
import os
import signal

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset, TensorDataset

from jupyter_torchlab.train.callbacks import Callback, FitState
from jupyter_torchlab.train.fit.evaluate import evaluate
from jupyter_torchlab.train.fit.loop import fit
from jupyter_torchlab.train.fit.window import NonFiniteLossError
from jupyter_torchlab.train.history import COLUMNS, History
from jupyter_torchlab.train.models import TutorialNet


def _toy(n: int = 64, classes: int = 3, seed: int = 0) -> TensorDataset:
    """Linearly separable blobs: class k sits around a one-hot direction."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % classes
    x = torch.nn.functional.one_hot(y, 8).float() * 3 + 0.3 * torch.randn(n, 8, generator=g)
    return TensorDataset(x, y)


def _mlp(classes: int = 3) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, classes))


class Recorder(Callback):
    def __init__(self) -> None:
        self.events: list[tuple[str, int, int]] = []
        self.final: str | None = None

    def on_fit_start(self, state: FitState) -> None:
        self.events.append(("fit_start", state.epoch, state.batch))

    def on_epoch_start(self, state: FitState) -> None:
        self.events.append(("epoch_start", state.epoch, state.batch))

    def on_batch_end(self, state: FitState) -> None:
        assert isinstance(state.loss, torch.Tensor)
        self.events.append(("batch", state.epoch, state.batch))

    def on_epoch_end(self, state: FitState) -> None:
        self.events.append(("epoch_end", state.epoch, state.batch))

    def on_fit_end(self, state: FitState) -> None:
        self.final = state.status
        self.events.append(("fit_end", state.epoch, state.batch))


@pytest.mark.slow
def test_fit_learns_the_standin(standin):
    torch.manual_seed(0)
    net = TutorialNet()
    opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
    history = fit(
        net,
        standin.train,
        epochs=6,
        optimizer=opt,
        batch_size=32,
        progress=False,
        val_data=standin.test,
        seed=0,
    )
    assert history.status == "done"
    assert len(history) == 6
    result = evaluate(net, standin.test)
    assert result.accuracy == pytest.approx(history[-1]["val_acc"])
    assert result.accuracy > 0.25, result  # chance is 0.10
    assert history[-1]["train_loss"] < history[0]["train_loss"]


def test_history_columns_and_callback_order():
    rec = Recorder()
    history = fit(
        _mlp(),
        _toy(24),
        epochs=2,
        batch_size=8,
        progress=False,
        callbacks=[rec],
        val_data=_toy(12, seed=1),
    )
    assert len(history) == 2
    assert list(history[0]) == list(COLUMNS)
    cols = history.as_dict()
    assert cols["epoch"] == [1, 2]
    assert all(isinstance(v, float) for v in cols["train_loss"] + cols["val_acc"])
    assert cols["lr"] == [0.001, 0.001]
    assert all(v > 0 for v in cols["images_per_s"])
    assert rec.final == "done"
    assert [e[0] for e in rec.events] == [
        "fit_start",
        "epoch_start",
        "batch",
        "batch",
        "batch",
        "epoch_end",
        "epoch_start",
        "batch",
        "batch",
        "batch",
        "epoch_end",
        "fit_end",
    ]
    assert [e[2] for e in rec.events if e[0] == "batch"] == [1, 2, 3, 1, 2, 3]


def test_no_host_conversion_per_batch(monkeypatch):
    """Tensor -> Python conversions during fit must not grow with the number of batches."""
    counts = {"n": 0}
    for name in ("item", "__float__", "__int__", "__bool__", "tolist", "cpu", "numpy"):
        original = getattr(torch.Tensor, name)

        def counting(self, *a, _original=original, **k):
            counts["n"] += 1
            return _original(self, *a, **k)

        monkeypatch.setattr(torch.Tensor, name, counting)

    def conversions(n_samples: int) -> int:
        counts["n"] = 0
        fit(_mlp(), _toy(n_samples), epochs=1, batch_size=4, progress=False, check_every=10_000)
        return counts["n"]

    small, large = conversions(40), conversions(400)  # 10 vs 100 batches
    assert small == large
    assert large < 10


def test_default_window_converts_once_per_window(monkeypatch):
    calls = {"n": 0}
    original = torch.Tensor.__bool__

    def counting(self):
        calls["n"] += 1
        return original(self)

    monkeypatch.setattr(torch.Tensor, "__bool__", counting)
    fit(_mlp(), _toy(400), epochs=1, batch_size=4, progress=False, check_every=25)
    assert calls["n"] <= 100 // 25 + 2  # one finite check per window, not per batch


def test_evaluate_exact_metrics_and_mode_restored():
    model = nn.Linear(3, 3, bias=False)
    with torch.no_grad():
        model.weight.copy_(torch.eye(3))
    # inputs one-hot at the predicted class, labels the true class
    pred = torch.tensor([0, 0, 1, 1, 2, 2, 2, 0])
    true = torch.tensor([0, 1, 1, 1, 2, 0, 2, 0])
    x = torch.nn.functional.one_hot(pred, 3).float()
    data = TensorDataset(x, true)
    for training in (True, False):
        model.train(training)
        result = evaluate(model, data, classes=["a", "b", "c"], batch_size=3)
        assert model.training is training
    assert result.count == 8
    assert result.accuracy == pytest.approx(6 / 8)
    assert result.per_class == pytest.approx({"a": 2 / 3, "b": 2 / 3, "c": 1.0})
    assert result.confusion.tolist() == [[2, 0, 1], [1, 2, 0], [0, 0, 2]]
    expected = nn.functional.cross_entropy(x, true).item()
    assert result.loss == pytest.approx(expected, rel=1e-6)
    assert model.weight.grad is None
    text = repr(result)
    assert "accuracy 75.0% on 8 samples" in text
    assert "c  100.0%" in text


def test_evaluate_finds_class_names_through_subsets(standin):
    net = TutorialNet()
    result = evaluate(net, Subset(standin.test, range(20)))
    assert result.classes == tuple(standin.classes)
    assert set(result.per_class) == set(standin.classes)
    assert int(result.confusion.sum()) == 20


def test_nan_loss_names_epoch_and_batch():
    calls = {"n": 0}
    ce = nn.CrossEntropyLoss()

    def loss_fn(out, y):
        calls["n"] += 1
        loss = ce(out, y)
        return loss * float("nan") if calls["n"] == 17 else loss  # epoch 2, batch 7

    history = History()
    loader = DataLoader(_toy(40), batch_size=4)  # 10 batches
    rec = Recorder()
    with pytest.raises(NonFiniteLossError, match=r"became nan at epoch 2, batch 7") as info:
        fit(
            _mlp(),
            loader,
            epochs=3,
            loss_fn=loss_fn,
            progress=False,
            history=history,
            callbacks=[rec],
        )
    err = info.value
    assert (err.epoch, err.batch) == (2, 7)
    assert "Lower the learning rate" in str(err)
    assert err.history is history
    assert history.status == "failed"
    assert len(history) == 1
    assert history.stopped_at == (2, 7)
    assert rec.final == "failed"


class InterruptAt(Callback):
    def __init__(self, epoch: int, batch: int) -> None:
        self.at = (epoch, batch)

    def on_batch_end(self, state: FitState) -> None:
        if (state.epoch, state.batch) == self.at:
            raise KeyboardInterrupt


def test_keyboard_interrupt_keeps_history_and_model():
    model = _mlp()
    model.eval()
    history = History()
    rec = Recorder()
    with pytest.raises(KeyboardInterrupt) as info:
        fit(
            model,
            _toy(40),
            epochs=3,
            batch_size=4,
            progress=False,
            history=history,
            callbacks=[InterruptAt(1, 3), rec],
        )
    assert info.value.history is history
    assert history.status == "interrupted"
    assert len(history) == 1  # the finished epoch; the cut one is not recorded
    assert history.stopped_at == (2, 3)
    assert rec.final == "interrupted"
    assert model.training is False  # mode from before fit
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert evaluate(model, _toy(12)).accuracy >= 0.0  # still usable
    again = fit(model, _toy(40), epochs=1, batch_size=4, progress=False)
    assert again.status == "done"


def test_sigint_is_deferred_to_the_end_of_the_batch():
    class SendSigint(Callback):
        def on_batch_end(self, state: FitState) -> None:
            if state.batch == 2:
                os.kill(os.getpid(), signal.SIGINT)

    rec = Recorder()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    with pytest.raises(KeyboardInterrupt) as info:
        fit(_mlp(), _toy(40), epochs=1, batch_size=4, progress=False, callbacks=[SendSigint(), rec])
    # the callback after the signalling one still saw batch 2: the step finished cleanly
    assert ("batch", 0, 2) in rec.events
    assert ("batch", 0, 3) not in rec.events
    assert info.value.history.stopped_at == (1, 2)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handler restored


def test_stop_training_from_a_callback_returns():
    class Stop(Callback):
        def on_epoch_end(self, state: FitState) -> None:
            state.stop_training = True

    history = fit(_mlp(), _toy(16), epochs=5, batch_size=4, progress=False, callbacks=[Stop()])
    assert history.status == "stopped"
    assert len(history) == 1


def test_bad_inputs_say_what_to_change():
    model = _mlp()
    with pytest.raises(TypeError, match=r"must be a torch DataLoader or Dataset.*TensorDataset"):
        fit(model, [(torch.zeros(8), 0)], epochs=1, progress=False)
    with pytest.raises(TypeError, match=r"model must be a torch.nn.Module"):
        fit(lambda x: x, _toy(), epochs=1, progress=False)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"train_data is empty: 0 batches \(0 samples"):
        fit(
            model,
            TensorDataset(torch.zeros(0, 8), torch.zeros(0, dtype=torch.long)),
            epochs=1,
            progress=False,
        )
    with pytest.raises(ValueError, match=r"epochs must be"):
        fit(model, _toy(), epochs=-1, progress=False)
    x = torch.randn(8, 8)
    with pytest.raises(ValueError, match=r"labels have shape \(4, 1\).*squeeze"):
        fit(model, TensorDataset(x, torch.zeros(8, 1, dtype=torch.long)), epochs=1, progress=False)
    with pytest.raises(ValueError, match=r"CrossEntropyLoss wants class indices as int64"):
        fit(model, TensorDataset(x, torch.zeros(8)), epochs=1, progress=False)
    with pytest.raises(ValueError, match=r"label 7 is out of range for a model with 3 outputs"):
        fit(model, TensorDataset(x, torch.full((8,), 7)), epochs=1, progress=False)

    class DictData(Dataset):
        def __len__(self) -> int:
            return 4

        def __getitem__(self, i: int):
            return {"x": torch.zeros(8), "y": 0}

    with pytest.raises(TypeError, match=r"must be \(inputs, labels\).*dict with keys \['x', 'y'\]"):
        fit(model, DictData(), epochs=1, progress=False)


def test_model_and_data_on_different_devices():
    class KeepsATensor(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(8, 3)
            self.scale = torch.ones(3, device="meta")  # plain attribute: .to() does not move it

        def forward(self, x):
            return self.fc(x) * self.scale

    with pytest.raises(RuntimeError, match=r"(?s)different devices.*register_buffer.*device="):
        fit(KeepsATensor(), _toy(), epochs=1, progress=False, device="cpu")


def test_history_plot_and_repr():
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    history = fit(_mlp(), _toy(16), epochs=2, batch_size=4, progress=False, val_data=_toy(8))
    ax_loss, ax_acc = history.plot()
    assert len(ax_loss.get_lines()) == 2
    assert len(ax_acc.get_lines()) == 2
    _fig, ax = plt.subplots()
    history.plot(ax=ax)
    plt.close("all")
    text = repr(history)
    assert "status='done', 2 epochs" in text
    assert "val loss" in text
    assert not math.isnan(history[0]["train_loss"])
    assert len(History()) == 0
    assert "no epochs" in repr(History())


def test_interrupt_during_validation_is_not_swallowed():
    class SigintAtEpochEnd(Callback):
        def on_epoch_end(self, state: FitState) -> None:
            os.kill(os.getpid(), signal.SIGINT)

    history = History()
    with pytest.raises(KeyboardInterrupt):
        fit(
            _mlp(),
            _toy(16),
            epochs=1,
            batch_size=4,
            progress=False,
            history=history,
            callbacks=[SigintAtEpochEnd()],
        )
    assert len(history) == 1  # the epoch had finished
    assert history.status == "interrupted"


def test_error_after_an_interrupt_request_reports_the_interrupt():
    calls = {"n": 0}

    def loss_fn(out, y):
        calls["n"] += 1
        if calls["n"] == 3:
            # a terminal's Ctrl-C reaches the loader's workers too; the next step then fails
            os.kill(os.getpid(), signal.SIGINT)
            raise RuntimeError("DataLoader worker exited unexpectedly")
        return nn.functional.cross_entropy(out, y)

    with pytest.raises(KeyboardInterrupt) as info:
        fit(_mlp(), _toy(40), epochs=1, batch_size=4, progress=False, loss_fn=loss_fn)
    assert info.value.history.status == "interrupted"
    assert isinstance(info.value.__cause__, RuntimeError)
