"""The optional sampling thread: a fixed grid, a fast stop, and no hang at interpreter exit."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import time

import pytest

from jupyter_torchlab.metrics import Ticker
from jupyter_torchlab.metrics.ticker import next_deadline


def test_start_stop_is_fast_and_leaves_no_thread():
    first = threading.Event()
    ticker = Ticker(first.set, 60.0)
    start = time.monotonic()
    ticker.start()
    ticker.start()  # idempotent
    assert first.wait(5), "the first tick happens at once, not after an interval"
    assert ticker.running
    assert ticker.stop()
    # stop wakes the 60 s wait instead of sleeping through it
    assert time.monotonic() - start < 1.0
    assert not ticker.running
    assert ticker.stop()  # twice is harmless


def test_thread_survives_a_failing_tick_and_logs_it_once(caplog):
    calls: list[int] = []
    enough = threading.Event()

    def flaky() -> None:
        calls.append(1)
        if len(calls) >= 3:
            enough.set()
        raise RuntimeError("tick bug")

    ticker = Ticker(flaky, 0.01, name="flaky-ticker")
    with caplog.at_level(logging.ERROR, logger="jupyter_torchlab.metrics"):
        ticker.start()
        try:
            assert enough.wait(10)
            assert ticker.running
        finally:
            ticker.stop()
    assert len([r for r in caplog.records if "flaky-ticker" in r.getMessage()]) == 1


def test_stop_from_a_tick_does_not_deadlock_and_on_stop_runs_on_the_thread():
    stopped = threading.Event()
    closed: list[str] = []
    ticker: Ticker

    def stop_now() -> None:
        assert ticker.stop() is False  # cannot join itself: it ends after this tick
        stopped.set()

    ticker = Ticker(stop_now, 0.01, on_stop=lambda: closed.append(threading.current_thread().name))
    ticker.start()
    assert stopped.wait(5)
    assert ticker._thread is not None
    ticker._thread.join(5)
    assert not ticker.running
    assert closed == ["torchlab-ticker"]


def test_ticks_stay_on_a_fixed_grid():
    assert next_deadline(0.0, 1.0, now=0.3) == 1.0  # time spent sampling does not shift ticks
    assert next_deadline(1.0, 1.0, now=1.999) == 2.0
    assert next_deadline(0.0, 1.0, now=1.0) == 2.0
    assert next_deadline(0.0, 1.0, now=3.5) == 4.0  # overran: skip missed ticks, stay on grid
    deadline = 0.0
    for _ in range(1000):
        deadline = next_deadline(deadline, 0.1, now=deadline + 0.05)
    assert deadline == pytest.approx(100.0)  # no accumulated drift


def test_invalid_interval_says_what_is_wrong():
    with pytest.raises(ValueError, match="interval must be a positive number of seconds"):
        Ticker(lambda: None, 0)


def test_a_running_ticker_does_not_hang_interpreter_exit():
    code = (
        "from jupyter_torchlab.metrics import Sampler, Ticker\n"
        "import os\n"
        "s = Sampler()\n"
        "t = Ticker(lambda: s.sample_once({'me': os.getpid()}), 0.05, on_stop=s.close)\n"
        "t.start()\n"
        "print('started', flush=True)\n"
    )
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0, done.stderr
    assert "started" in done.stdout
