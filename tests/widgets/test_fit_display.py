"""fit's display: the figures it derives from fit's state, without a kernel."""

import os
from types import SimpleNamespace

import pytest
import torch

from jupyter_torchlab.train.fit.inputs import input_advice
from jupyter_torchlab.widgets.fit_display import INPUT_BOUND, FitProgress, _text_table


def state(data_time, step_time, device="cpu", loader=None):
    return SimpleNamespace(
        data_time=data_time, step_time=step_time, device=device, peak_memory=None, loader=loader
    )


@pytest.mark.parametrize(
    ("data", "step", "hinted"),
    [(0.0, 10.0, False), (2.0, 8.0, False), (4.0, 6.0, True), (0.0, 0.0, False)],
)
def test_input_bound_hint_above_the_threshold(data, step, hinted):
    fp = FitProgress()
    fp._device = "cpu"
    footer = fp._footer_text(state(data, step))
    assert ("Input-bound" in footer) is hinted
    if data + step:
        assert f"waiting for data {round(100 * data / (data + step))}% of step time" in footer
    assert INPUT_BOUND == 0.3


class Transformed(torch.utils.data.Dataset):
    """A dataset that transforms each image on access, like torchvision's CIFAR10."""

    transform = staticmethod(lambda x: x)

    def __len__(self):
        return 8

    def __getitem__(self, i):
        return torch.zeros(3), 0


def test_the_input_bound_hint_names_the_knobs_of_the_loader_fit_uses(monkeypatch):
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: {0, 1, 2, 3})
    fp = FitProgress()
    fp._device = "cuda:0"
    loader = torch.utils.data.DataLoader(Transformed(), batch_size=32)
    footer = fp._footer_text(state(6.0, 4.0, device=torch.device("cuda:0"), loader=loader))
    assert "Input-bound: the GPU waits for data 60% of the time." in footer
    assert "num_workers=3 (it is 0)" in footer
    assert "pin_memory=True" in footer
    assert "tl.cifar10(in_memory=True)" in footer
    assert "a larger batch (batch_size=128; it is 32)" in footer

    # a loader that already does all of that: only what is left is named
    tensors = torch.utils.data.TensorDataset(torch.zeros(8, 3), torch.zeros(8))
    tuned = torch.utils.data.DataLoader(
        tensors, batch_size=512, num_workers=2, pin_memory=True, persistent_workers=True
    )
    assert input_advice(tuned, "cuda") == []
    workers = torch.utils.data.DataLoader(tensors, batch_size=512, num_workers=2)
    assert input_advice(workers, "cpu") == ["persistent_workers=True (workers restart every epoch)"]
    footer = fp._footer_text(state(6.0, 4.0, device=torch.device("cpu"), loader=tuned))
    assert "Input-bound: the model waits for data 60% of the time." in footer


def test_the_hint_joins_what_the_kernel_monitor_measured_of_the_gpu(monkeypatch):
    from jupyter_torchlab.metrics.starvation import Starved

    monkeypatch.setattr("os.sched_getaffinity", lambda pid: {0, 1, 2, 3})
    fp = FitProgress()
    fp._device = "cuda:0"
    loader = torch.utils.data.DataLoader(Transformed(), batch_size=32)
    cuda = torch.device("cuda:0")
    monkeypatch.setattr("jupyter_torchlab.widgets.kernel_monitor.gpu_waiting", lambda: None)
    assert "Input-bound" not in fp._footer_text(state(2.0, 8.0, device=cuda, loader=loader))
    # the monitor saw the GPU nearly idle for 70 s: said even where the data wait looks small
    waited = Starved(seconds=70.0, utilization=4.2)
    monkeypatch.setattr("jupyter_torchlab.widgets.kernel_monitor.gpu_waiting", lambda: waited)
    footer = fp._footer_text(state(2.0, 8.0, device=cuda, loader=loader))
    assert "Input-bound: the GPU stayed 4% busy for 1 min 10 s. Try num_workers=3" in footer
    footer = fp._footer_text(state(6.0, 4.0, device=cuda, loader=loader))
    assert (
        "Input-bound: the GPU waits for data 60% of the time and stayed 4% busy for 1 min 10 s. "
        "Try " in footer
    )
    # on the CPU the GPU's share says nothing about this fit
    assert "Input-bound" not in fp._footer_text(state(2.0, 8.0, device="cpu", loader=loader))


def test_epoch_table_as_text():
    rows = [
        {
            "epoch": 1,
            "train_loss": 2.1,
            "val_loss": 1.9,
            "val_acc": 0.31,
            "time": 65.0,
            "images_per_s": 771.2,
        },
        {
            "epoch": 2,
            "train_loss": 1.6,
            "val_loss": None,
            "val_acc": None,
            "time": 61.0,
            "images_per_s": 820.0,
        },
    ]
    lines = _text_table(rows).splitlines()
    assert lines[0].split() == [
        "epoch",
        "train",
        "loss",
        "val",
        "loss",
        "val",
        "acc",
        "time",
        "images/s",
    ]
    assert lines[1].split() == ["1", "2.1", "1.9", "31.0%", "1:05", "771"]
    assert lines[2].split() == ["2", "1.6", "1:01", "820"]


class Slow(torch.utils.data.Dataset):
    """Each sample takes 20 ms to prepare: the loop waits for data most of the time."""

    def __len__(self):
        return 32

    def __getitem__(self, i):
        import time

        time.sleep(0.02)
        return torch.randn(8), i % 2


def test_a_data_starved_fit_is_called_input_bound():
    from jupyter_torchlab.train.callbacks import Callback
    from jupyter_torchlab.train.fit.loop import fit

    class Keep(Callback):
        def on_epoch_end(self, state):
            self.footer = FitProgress()._footer_text(state)

    keep = Keep()
    model = torch.nn.Linear(8, 2)
    fit(model, Slow(), epochs=1, batch_size=8, num_workers=0, progress=False, callbacks=[keep])
    assert "Input-bound: the model waits for data" in keep.footer
    assert "num_workers=" in keep.footer or len(os.sched_getaffinity(0)) == 1
