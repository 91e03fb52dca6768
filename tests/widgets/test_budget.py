import pytest

from jupyter_torchlab.widgets import _budget
from jupyter_torchlab.widgets._budget import RefreshBudget


class Display:
    """Anything a budget counts (a bar, fit's display)."""


def test_live_displays_share_the_budget():
    budget = RefreshBudget(rate=4)
    a, b = Display(), Display()
    assert budget.register(a) == pytest.approx(0.25)
    assert budget.register(b) == pytest.approx(0.5)  # two displays: every 0.5 s each
    budget.release(a)
    assert budget.interval() == pytest.approx(0.25)
    del b  # a display that was never released stops counting once it is gone
    assert budget.interval() == pytest.approx(0.25)
    assert budget.active == 1


def test_widget_bars_of_one_kernel_together_stay_within_the_rate(monkeypatch):
    """Two nested widget bars in a tight loop: their redraws together stay near 4 a second."""
    from jupyter_torchlab.widgets import progress as progress_module

    from .test_progress import Clock, FakeView

    FakeView.views = []
    monkeypatch.setattr(progress_module, "WidgetView", FakeView)
    monkeypatch.setattr(progress_module._cell, "hook_shell", lambda: None)
    clock = Clock()
    outer = progress_module.progress(range(10), widget=True, timer=clock)
    for _ in outer:
        for _ in progress_module.progress(range(10_000), widget=True, timer=clock, leave=False):
            clock.t += 1e-4  # 1 s per inner loop, 10 s in all
    sent = sum(len(view.sent) for view in FakeView.views)
    # each bar at its share (every 0.5 s while both run), plus each bar's first and last draw
    assert sent <= 10 * 4 / 0.9 + 2 * 11


def test_rate_is_configurable(monkeypatch):
    monkeypatch.setenv(_budget.ENV_RATE, "10")
    assert _budget._rate_from_env() == 10
    monkeypatch.setenv(_budget.ENV_RATE, "fast")
    with pytest.raises(ValueError, match="JUPYTER_TORCHLAB_REFRESH_RATE"):
        _budget._rate_from_env()
    budget = RefreshBudget(rate=2)
    budget.set_rate(8)
    assert budget.rate == 8
    with pytest.raises(ValueError, match="positive"):
        budget.set_rate(0)


def test_set_refresh_rate_changes_the_kernel_budget():
    from jupyter_torchlab.widgets import set_refresh_rate

    budget = _budget.get_budget()
    old = budget.rate
    try:
        set_refresh_rate(2.5)
        assert _budget.get_budget().rate == 2.5
    finally:
        budget.set_rate(old)
