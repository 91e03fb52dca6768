import pytest

from jupyter_torchlab.widgets import _budget
from jupyter_torchlab.widgets._budget import RefreshBudget


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def drive(throttle, clock, steps, dt):
    """Iterate ``steps`` times, ``dt`` seconds each, the way a bar's hot loop does."""
    refreshes = 0
    n = throttle._last_check_n
    reads = 0
    for _ in range(steps):
        clock.t += dt
        n += 1
        if n >= throttle.next_check:
            reads += 1
            if throttle.due(n):
                refreshes += 1
    return refreshes, reads


def test_refreshes_per_second_are_bounded_whatever_the_iteration_rate():
    for dt in (1e-7, 1e-5, 1e-3, 0.05):
        clock = Clock()
        budget = RefreshBudget(rate=4, timer=clock)
        throttle = budget.throttle()
        steps = int(10 / dt) if dt >= 1e-5 else 2_000_000
        refreshes, _ = drive(throttle, clock, steps, dt)
        elapsed = steps * dt
        assert refreshes <= elapsed * 4 + 1, (dt, refreshes, elapsed)
        if elapsed >= 1:
            assert refreshes >= elapsed * 4 * 0.8, (dt, refreshes)


def test_clock_is_read_rarely_in_tight_loops():
    clock = Clock()
    throttle = RefreshBudget(rate=4, timer=clock).throttle()
    _, reads = drive(throttle, clock, 1_000_000, 1e-6)  # one second of a 1 MHz loop
    # one read per MAX_STRIDE steps once the stride has adapted, not one per step
    assert throttle.stride == _budget.MAX_STRIDE
    assert reads <= 1_000_000 / _budget.MAX_STRIDE + 20


def test_stride_shrinks_when_the_loop_slows_down():
    clock = Clock()
    throttle = RefreshBudget(rate=4, timer=clock).throttle()
    drive(throttle, clock, 100_000, 1e-6)
    assert throttle.stride == _budget.MAX_STRIDE
    refreshes, _ = drive(throttle, clock, 400, 0.05)  # now 20 steps/s for 20 s
    assert throttle.stride == 1
    # looked at again within MAX_STRIDE slow steps (3.2 s), then refreshed every 5-6 steps
    assert refreshes >= (20 - 64 * 0.05) / 0.3 - 1


def test_live_displays_share_the_budget():
    clock = Clock()
    budget = RefreshBudget(rate=4, timer=clock)
    a, b = budget.throttle(), budget.throttle()
    assert budget.interval() == pytest.approx(0.5)
    ra = rb = 0
    for n in range(1, 1001):  # 10 s, both checked every 10 ms
        clock.t += 0.01
        ra += a.due(n)
        rb += b.due(n)
    assert ra + rb <= 4 * 10 + 2
    assert ra >= 15
    assert rb >= 15
    a.release()
    assert budget.interval() == pytest.approx(0.25)


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
