"""fit's display: the figures it derives from fit's state, without a kernel."""

from types import SimpleNamespace

import pytest

from jupyter_torchlab.widgets.fit_display import INPUT_BOUND, FitProgress, _text_table


def state(data_time, step_time, device="cpu"):
    return SimpleNamespace(
        data_time=data_time, step_time=step_time, device=device, peak_memory=None
    )


@pytest.mark.parametrize(
    ("data", "step", "hinted"),
    [(0.0, 10.0, False), (2.0, 8.0, False), (4.0, 6.0, True), (0.0, 0.0, False)],
)
def test_input_bound_hint_above_the_threshold(data, step, hinted):
    fp = FitProgress()
    fp._device = "cpu"
    footer = fp._footer_text(state(data, step))
    assert ("input-bound" in footer) is hinted
    if data + step:
        assert f"waiting for data {round(100 * data / (data + step))}% of step time" in footer
    assert INPUT_BOUND == 0.3


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
