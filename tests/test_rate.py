"""The pace behind every rate and ETA: a slow start is left out, the recent pace is kept."""

import pytest

from jupyter_torchlab._rate import Rate


def run(rate: Rate, steps: list[float], n: float = 0, t: float = 0.0, every: int = 1):
    for i, dt in enumerate(steps, 1):
        t += dt
        if i % every == 0:
            rate.mark(n + i, t)
    return n + len(steps), t


def test_a_slow_start_is_left_out():
    rate = Rate(0, 0.0)
    run(rate, [2.0] * 5 + [0.01] * 25, every=1)
    assert rate.per_second() == pytest.approx(100.0)
    assert rate.eta(970) == pytest.approx(9.7)


def test_a_steady_loop_reads_its_average():
    rate = Rate(0, 0.0)
    run(rate, [0.5] * 10)
    assert rate.per_second() == pytest.approx(2.0)


def test_a_loop_that_slows_down_is_not_mistaken_for_warm_up():
    rate = Rate(0, 0.0)
    run(rate, [0.01] * 10 + [0.1] * 5)  # fast first, slower later: nothing to drop
    assert rate.per_second() == pytest.approx(15 / 0.6)


def test_unknown_until_two_marks_and_after_a_reset():
    rate = Rate()
    assert rate.per_second() is None
    assert rate.eta(10) is None
    rate.mark(0, 1.0)
    assert rate.per_second() is None
    rate.mark(5, 2.0)
    assert rate.per_second() == pytest.approx(5.0)
    rate.reset(0, 10.0)
    assert rate.per_second() is None
    rate.mark(4, 12.0)
    assert rate.per_second() == pytest.approx(2.0)


def test_going_back_starts_over_and_marks_too_close_are_skipped():
    rate = Rate(0, 0.0, min_gap=0.5)
    rate.mark(10, 1.0)
    rate.mark(11, 1.1)  # too soon: skipped, the next mark measures the whole stretch
    rate.mark(20, 2.0)
    assert rate.per_second() == pytest.approx(10.0)
    rate.mark(3, 3.0)  # a reset bar: n went back
    assert rate.per_second() is None
