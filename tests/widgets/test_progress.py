"""tl.progress outside a notebook kernel: states, metrics, text output (in-process and piped)."""

import io
import subprocess
import sys
import textwrap
from typing import ClassVar

import pytest
import torch
from torch.overrides import TorchFunctionMode

from jupyter_torchlab.widgets import _smoothing as progress_mod
from jupyter_torchlab.widgets._smoothing import Metrics, Series
from jupyter_torchlab.widgets.progress import progress

from .conftest import ROOT, kernel_env


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def text_bar(iterable=None, clock=None, **kw):
    out = kw.pop("file", io.StringIO())
    bar = progress(iterable, widget=False, file=out, timer=clock or Clock(), **kw)
    return bar, out


def test_iterating_to_the_end_is_done_with_counts_and_rate():
    clock = Clock()
    bar, out = text_bar(range(10), clock, desc="train", log_interval=1e9)
    for _ in bar:
        clock.t += 0.5
    assert bar.status == "done"
    assert bar.n == 10
    assert out.getvalue().splitlines()[-1] == (
        "train: 100% |####################| 10/10 [0:05, 2.00it/s] done"
    )


def test_break_is_stopped_not_failed():
    bar, out = text_bar(range(100))
    for i in bar:
        if i == 41:
            break
    assert bar.status == "stopped"
    assert bar.n == 41
    assert out.getvalue().rstrip().endswith("41/100 [0:00, ?it/s] stopped")


def test_interrupt_inside_the_iterable_propagates_and_is_marked():
    def data():
        yield 1
        yield 2
        raise KeyboardInterrupt

    bar, out = text_bar(data(), total=5)
    with pytest.raises(KeyboardInterrupt):
        for _ in bar:
            pass
    assert bar.status == "interrupted"
    assert "interrupted at 2" in out.getvalue()


def test_error_in_the_iterable_is_failed():
    def data():
        yield 1
        raise RuntimeError("disk gone")

    bar, _ = text_bar(data())
    with pytest.raises(RuntimeError, match="disk gone"):
        list(bar)
    assert bar.status == "failed"
    assert isinstance(bar.error, RuntimeError)


def test_context_manager_and_update():
    clock = Clock()
    with progress(total=4, widget=False, file=io.StringIO(), timer=clock) as bar:
        bar.update(3)
        bar.update()
    assert bar.status == "done"
    with progress(total=4, widget=False, file=io.StringIO(), timer=clock) as short:
        short.update(2)
    assert short.status == "stopped"
    bar2 = progress(total=4, widget=False, file=io.StringIO(), timer=clock)
    with pytest.raises(KeyboardInterrupt), bar2:
        raise KeyboardInterrupt
    assert bar2.status == "interrupted"
    bar3 = progress(total=4, widget=False, file=io.StringIO(), timer=clock)
    with pytest.raises(ValueError, match="boom"), bar3:
        raise ValueError("boom")
    assert bar3.status == "failed"


def test_iterating_a_bar_without_iterable_says_what_to_do():
    bar, _ = text_bar(total=3)
    with pytest.raises(TypeError, match="update"):
        iter(bar).__next__()
    with pytest.raises(ValueError, match="total"):
        progress(total=-1, widget=False, file=io.StringIO())


class CountSyncs(TorchFunctionMode):
    """Count the torch calls that turn a tensor into Python numbers (each a device sync)."""

    SYNCS: ClassVar[set[str]] = {
        "item",
        "tolist",
        "__float__",
        "__bool__",
        "__int__",
        "cpu",
        "numpy",
    }

    def __init__(self) -> None:
        super().__init__()
        self.syncs = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if getattr(func, "__name__", "") in self.SYNCS:
            self.syncs += 1
        return func(*args, **(kwargs or {}))


def test_log_keeps_tensors_and_converts_only_at_refresh():
    clock = Clock()
    bar, _ = text_bar(total=10_000, clock=clock, log_interval=1e9)
    losses = [torch.tensor(float(i)) for i in range(10_000)]
    with CountSyncs() as mode:
        for loss in losses[:5000]:
            bar.log(loss=loss)
            bar.update()
    assert mode.syncs == 0  # the clock never moved: no refresh, so nothing converted
    with CountSyncs() as mode:
        for loss in losses[5000:]:
            clock.t += 1e-3
            bar.log(loss=loss)
            bar.update()
    refreshes = bar._throttle.refreshes
    assert 0 < refreshes <= 10 * 4 + 1
    assert mode.syncs <= refreshes  # one batched conversion per refresh at most
    assert bar.status == "running"
    bar.close()
    assert bar.metrics["loss"] > 9000  # smoothed towards the recent values


def test_metrics_window_stays_small_and_smoothing_is_an_ema():
    m = Metrics()
    for i in range(100_000):
        m.log({"loss": float(i)})
    assert len(m._window["loss"]) < 2 * progress_mod.WINDOW_SAMPLES
    first = m.flush()["loss"]
    assert 40_000 < first < 60_000  # the mean of the window, not just the last value
    for _ in range(1000):
        m.log({"loss": 0.0})
    second = m.flush()["loss"]
    assert second == pytest.approx((1 - progress_mod.SMOOTHING) * first)
    # the stride adapted to ~1000 logs a window: sampling costs O(1) per log
    assert m._stride == 1000 // progress_mod.WINDOW_SAMPLES


def test_flush_drops_tensor_references():
    m = Metrics()
    loss = torch.tensor(2.0, requires_grad=True) * 3
    m.log({"loss": loss})
    m.flush()
    assert m.latest == {"loss": 6.0}
    assert m._window["loss"] == []


def test_series_is_bounded_and_keeps_equal_buckets():
    s = Series(max_points=10)
    for i in range(10_000):
        s.add(float(i))
    assert len(s.values()) <= 21
    assert s.values()[0] < s.values()[-1]


def test_tty_text_updates_one_line_in_place():
    clock = Clock()
    out = Tty()
    bar = progress(range(40), widget=False, file=out, timer=clock)
    for _ in bar:
        clock.t += 0.125
    text = out.getvalue()
    assert text.count("\n") == 1
    assert text.endswith("\n")
    assert (
        text.split("\r")[-1].rstrip() == "100% |####################| 40/40 [0:05, 8.00it/s] done"
    )
    assert text.count("\r") > 5  # redrawn in place, at the refresh budget's pace
    assert "\x1b" not in text


def test_piped_text_prints_a_plain_line_every_interval():
    clock = Clock()
    bar, out = text_bar(range(100), clock, log_interval=2.0)
    for _ in bar:
        clock.t += 0.1  # 10 s in all: a line about every 2 s plus the final one
    lines = out.getvalue().splitlines()
    assert 4 <= len(lines) <= 7
    assert "\r" not in out.getvalue()


def test_text_mode_in_a_subprocess_without_tty_has_no_control_characters(tmp_path):
    script = textwrap.dedent(
        """
        import time
        import jupyter_torchlab as tl
        bar = tl.progress(range(30), desc="epoch")
        for i in bar:
            bar.log(loss=1.0 / (i + 1))
            time.sleep(0.01)
        for i in tl.progress(range(10), desc="short"):
            if i == 3:
                break
        print("end")
        """
    )
    env = kernel_env(JUPYTER_TORCHLAB_LOG_INTERVAL="0.1")
    res = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=60,
        check=True,
    )
    out = res.stdout + res.stderr
    assert not any(ord(c) < 32 and c != "\n" for c in out), repr(out)
    assert "epoch: 100% |####################| 30/30" in res.stderr
    assert "short:  30%" in res.stderr
    assert "stopped" in res.stderr
    assert res.stdout == "end\n"
