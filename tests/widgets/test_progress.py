"""tl.progress in this process: how bars end, lazy tensors, tqdm's text, the widget's budget."""

import io
from typing import ClassVar

import pytest
import torch
from torch.overrides import TorchFunctionMode
from tqdm.std import tqdm as std_tqdm

from jupyter_torchlab.widgets import _smoothing as progress_mod
from jupyter_torchlab.widgets import progress as progress_module
from jupyter_torchlab.widgets._budget import DEFAULT_RATE, set_refresh_rate
from jupyter_torchlab.widgets._smoothing import Metrics, Series
from jupyter_torchlab.widgets.progress import progress


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


class Counting(progress):
    """Our class, subclassed the way libraries do, counting its redraws."""

    displays = 0

    def display(self, *args, **kwargs):
        type(self).displays += 1
        return super().display(*args, **kwargs)


# --- how a bar ended ------------------------------------------------------------------------


def test_iterating_to_the_end_is_done_and_a_break_is_stopped():
    bar, _ = text_bar(range(10))
    assert list(bar) == list(range(10))
    assert (bar.status, bar.n) == ("done", 10)
    bar, _ = text_bar(range(100))
    for i in bar:
        if i == 41:
            break
    assert (bar.status, bar.n) == ("stopped", 41)


def test_interrupt_or_error_inside_the_iterable_propagates_and_is_marked():
    def data(exc):
        yield 1
        yield 2
        raise exc

    bar, _ = text_bar(data(KeyboardInterrupt), total=5)
    with pytest.raises(KeyboardInterrupt):
        for _ in bar:
            pass
    assert bar.status == "interrupted"
    bar, _ = text_bar(data(RuntimeError("disk gone")))
    with pytest.raises(RuntimeError, match="disk gone"):
        list(bar)
    assert bar.status == "failed"
    assert isinstance(bar.error, RuntimeError)


def test_context_manager_statuses():
    with progress(total=4, widget=False, file=io.StringIO()) as bar:
        bar.update(4)
    assert bar.status == "done"
    with progress(total=4, widget=False, file=io.StringIO()) as short:
        short.update(2)
    assert short.status == "stopped"
    bar2 = progress(total=4, widget=False, file=io.StringIO())
    with pytest.raises(KeyboardInterrupt), bar2:
        raise KeyboardInterrupt
    assert bar2.status == "interrupted"
    bar3 = progress(total=4, widget=False, file=io.StringIO())
    with pytest.raises(ValueError, match="boom"), bar3:
        raise ValueError("boom")
    assert bar3.status == "failed"


# --- text: tqdm's own, byte for byte ----------------------------------------------------------


def test_text_is_tqdms_own_output_byte_for_byte():
    def run(cls, postfix):
        clock = Clock()
        out = io.StringIO()
        bar = cls(total=50, desc="train", file=out, mininterval=0.5, unit="img")
        bar._time = clock
        bar.start_t = bar.last_print_t = clock()
        for i in range(50):
            clock.t += 0.1
            bar.set_postfix(loss=postfix(i), lr=0.01, refresh=False)
            bar.update()
            if i == 20:
                bar.set_description("epoch 2")
        bar.close()
        return out.getvalue()

    ours = run(lambda **kw: progress(widget=False, **kw), lambda i: torch.tensor(1 / (i + 1)))
    theirs = run(std_tqdm, lambda i: torch.tensor(1 / (i + 1)).item())
    assert ours == theirs
    assert "loss=0.02, lr=0.01]" in ours  # the tensor was read at a redraw, formatted by tqdm


def test_log_keeps_tensors_and_converts_only_at_a_redraw():
    clock = Clock()
    Counting.displays = 0
    # miniters=1: tqdm looks at the clock every step (its dynamic miniters would otherwise
    # jump after the 5,000 steps at a standstill)
    bar = Counting(total=10_000, widget=False, file=io.StringIO(), timer=clock, miniters=1)
    losses = [torch.tensor(float(i)) for i in range(10_000)]
    with CountSyncs() as mode:
        for loss in losses[:5000]:
            bar.log(loss=loss)
            bar.set_postfix(last=loss)
            bar.update()
    assert mode.syncs == 0  # the clock never moved: no redraw, so nothing converted
    before = Counting.displays
    with CountSyncs() as mode:
        for loss in losses[5000:]:
            clock.t += 1e-3
            bar.log(loss=loss)
            bar.set_postfix(last=loss)
            bar.update()
    redraws = Counting.displays - before
    assert 5 / 0.1 - 2 <= redraws <= 5 / 0.1 + 1  # tqdm's mininterval (0.1 s) over 5 s
    assert mode.syncs <= 2 * redraws  # the postfix and the logged values: one read each
    bar.close()
    assert bar.postfix == "last=1e+4"  # the last value, as tqdm's format_num writes 9999
    assert bar.metrics["loss"] > 9000  # smoothed towards the recent values
    assert bar.format_dict["postfix"].startswith("last=1e+4, loss=")


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
        "__format__",
        "__repr__",
    }

    def __init__(self) -> None:
        super().__init__()
        self.syncs = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if getattr(func, "__name__", "") in self.SYNCS:
            self.syncs += 1
        return func(*args, **(kwargs or {}))


# --- the widget, without a kernel ---------------------------------------------------------------


class FakeView:
    """Stands in for the HTML widget: records what each redraw would send."""

    views: ClassVar[list] = []

    def __init__(self, html: str, text: str) -> None:
        self.sent = [(html, text)]
        self.final = None
        FakeView.views.append(self)

    def refresh(self, html: str, text: str) -> None:
        self.sent.append((html, text))

    def finish(self, html: str, text: str, leave: bool) -> None:
        self.final = (html, text, leave)

    def relabel(self, html: str, text: str, leave: bool) -> None:
        self.final = (html, text, leave)


@pytest.fixture
def views(monkeypatch):
    FakeView.views = []
    monkeypatch.setattr(progress_module, "WidgetView", FakeView)
    monkeypatch.setattr(progress_module._cell, "hook_shell", lambda: None)
    return FakeView.views


def widget_bar(iterable=None, clock=None, **kw):
    return progress(iterable, widget=True, timer=clock or Clock(), **kw)


def test_a_widget_redraws_within_the_kernel_budget_whatever_is_asked(views):
    clock = Clock()
    bar = widget_bar(total=100_000, clock=clock, desc="w")
    for _ in range(100_000):  # 10 s at 10 kHz, a postfix string and a refresh asked every step
        clock.t += 1e-4
        bar.set_postfix_str("x")
        bar.refresh()
        bar.update()
    bar.close()
    (view,) = views
    assert len(view.sent) <= 10 * DEFAULT_RATE / 0.9 + 2
    assert len(view.sent) >= 10 * DEFAULT_RATE * 0.8
    html, text, leave = view.final
    assert leave
    assert 'data-status="done"' in html
    assert text.startswith("w: 100%|")
    assert "100000/100000" in html


def test_mininterval_and_maxinterval_bound_a_widgets_share_of_the_budget(views):
    assert widget_bar(total=10, mininterval=2.0, maxinterval=3.0).mininterval == 2.0
    assert widget_bar(total=10, mininterval=0).mininterval >= 1 / DEFAULT_RATE
    set_refresh_rate(0.1)  # one redraw per 10 s for the kernel: maxinterval=1 still lifts it
    try:
        assert widget_bar(total=10, maxinterval=1.0).mininterval == 1.0
    finally:
        set_refresh_rate(DEFAULT_RATE)
    assert widget_bar(total=10, mininterval=0.5).mininterval >= 0.5


def test_a_description_set_at_the_top_of_a_slow_step_shows_during_it(views):
    clock = Clock()
    bar = widget_bar(range(3), clock=clock)
    during = []
    for epoch in bar:
        bar.set_description(f"epoch {epoch}")
        during.append(views[0].sent[-1][1])  # what the widget shows while the step runs
        bar.set_description(f"epoch {epoch} (still)")  # a second one waits for the budget
        bar.set_postfix(loss=torch.tensor(1.0 / (epoch + 1)))
        clock.t += 60  # a minute a step
    assert [line.split("|")[0] for line in during] == [
        "epoch 0:   0%",
        "epoch 1:  33%",
        "epoch 2:  67%",
    ]
    _, text, _ = views[0].final
    assert text.startswith("epoch 2 (still): 100%|")
    assert "loss=0.333" in text


def test_a_break_leaves_a_stopped_record_and_leave_false_leaves_nothing(views):
    for i in widget_bar(range(10), desc="b"):
        if i == 3:
            break
    html, text, _ = views[0].final
    assert 'data-status="stopped"' in html
    assert text.endswith(" stopped")
    assert "3/10" in text
    list(widget_bar(range(2), leave=False))
    assert views[1].final[2] is False


def test_disable_in_a_notebook_draws_nothing(views):
    bar = widget_bar(range(5), disable=True)
    assert list(bar) == [0, 1, 2, 3, 4]
    bar.close()
    assert views == []
