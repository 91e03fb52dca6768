from __future__ import annotations

import io
import re

import torch
from torch import nn
from torch.utils.data import TensorDataset

from jupyter_torchlab.train.callbacks import FitState
from jupyter_torchlab.train.fit.loop import fit
from jupyter_torchlab.train.history import History
from jupyter_torchlab.train.text import TextProgress

CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f\x7f]")  # everything but "\n"


class FakeTimer:
    """Advance by ``step`` seconds on every call."""

    def __init__(self, step: float) -> None:
        self.now, self.step = 0.0, step

    def __call__(self) -> float:
        self.now += self.step
        return self.now


class Pipe(io.StringIO):
    def isatty(self) -> bool:
        return False


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def _data(n: int = 80) -> TensorDataset:
    y = torch.arange(n) % 3
    return TensorDataset(torch.randn(n, 5) + y[:, None], y)


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Linear(5, 3)


def test_pipe_gets_plain_lines_without_control_characters():
    out = Pipe()
    progress = TextProgress(out, interval=10, timer=FakeTimer(1.0))
    fit(_model(), _data(), epochs=2, batch_size=4, progress=progress)
    text = out.getvalue()
    assert not CONTROL.search(text), repr(text)
    lines = text.splitlines()
    assert sum(line.startswith("epoch 1/2  batch") for line in lines) >= 1
    assert "epoch 1/2 done" in text
    assert "epoch 2/2 done" in text
    assert re.search(r"batch \d+/20 \(\d+%\)  loss \d\.\d{4}", text)
    # throttled: 20 batches per epoch, one timer second each, a line every 10 s at most
    assert sum("batch" in line for line in lines) <= 2 * 20 // 10 + 1


def test_tty_rewrites_one_line():
    out = Tty()
    fit(_model(), _data(), epochs=1, batch_size=4, progress=TextProgress(out, timer=FakeTimer(1.0)))
    text = out.getvalue()
    assert text.count("\r") > 3
    assert text.endswith("\n")
    assert "\x1b" not in text  # no ANSI escapes even on a terminal


def test_throttle_skips_conversion_until_printing(monkeypatch):
    calls = {"n": 0}
    original = torch.Tensor.item

    def counting(self):
        calls["n"] += 1
        return original(self)

    monkeypatch.setattr(torch.Tensor, "item", counting)
    timer = FakeTimer(0.0)
    progress = TextProgress(Pipe(), interval=5, timer=timer)
    state = FitState(model=None, optimizer=None, device="cpu", epochs=1, history=History())
    state.loss = torch.tensor(1.5)
    state.batches, state.batch, state.samples = 100, 1, 4
    progress.on_fit_start(state)
    progress.on_epoch_start(state)
    for _ in range(50):
        progress.on_batch_end(state)
    assert calls["n"] == 0
    timer.now += 10
    progress.on_batch_end(state)
    assert calls["n"] == 1
    assert "loss 1.5000" in progress.stream.getvalue()


def test_fit_end_reports_how_it_stopped():
    out = Pipe()
    progress = TextProgress(out, timer=FakeTimer(0.0))
    state = FitState(model=None, optimizer=None, device="cpu", epochs=3, history=History())
    state.epoch, state.batch, state.status = 1, 7, "interrupted"
    progress.on_fit_end(state)
    assert out.getvalue() == "training interrupted at epoch 2, batch 7\n"


def test_progress_true_uses_the_text_display(capsys):
    # the package's default display outside a kernel
    fit(_model(), _data(16), epochs=1, batch_size=4, progress=True)
    captured = capsys.readouterr().out
    assert "epoch 1/1 done" in captured
    assert not CONTROL.search(captured)
