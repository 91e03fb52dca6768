"""ETA after a slow start: 5 steps of 2 s (CUDA start-up, torch.compile), then steps of 10 ms.

By step 30 every display's ETA must be within 10% of the true remaining time (970 x 10 ms).
An average since the start would say about 5.5 minutes here. For ``tl.progress`` that is the
``skip_warmup=True`` option on top of tqdm's moving average.
"""

from __future__ import annotations

import io
import re

import pytest
import torch

from jupyter_torchlab.train.callbacks import FitState
from jupyter_torchlab.train.history import History
from jupyter_torchlab.train.text import TextProgress
from jupyter_torchlab.widgets import fit_display
from jupyter_torchlab.widgets.progress import progress

TOTAL = 1000
TRUE_REMAINING = (TOTAL - 30) * 0.01


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def steps():
    """Yield the time each step takes: a slow start, then the real pace."""
    yield from [2.0] * 5
    yield from [0.01] * 25


def _seconds(text: str) -> float:
    minutes, seconds = text.split(":")[-2:]
    return 60 * int(minutes) + int(seconds)


def test_tl_progress_eta_ignores_the_slow_start_with_skip_warmup():
    clock = Clock()
    out = io.StringIO()
    bar = progress(total=TOTAL, widget=False, file=out, timer=clock, skip_warmup=True)
    for dt in steps():
        clock.t += dt
        bar.update()
    assert bar.n == 30
    eta = (TOTAL - bar.n) / bar.format_dict["rate"]
    assert eta == pytest.approx(TRUE_REMAINING, rel=0.1)
    bar.refresh()
    shown = re.findall(r"<(\d+:\d\d)", out.getvalue())[-1]  # tqdm's line, our rate
    assert _seconds(shown) == pytest.approx(TRUE_REMAINING, rel=0.1, abs=1)
    bar.close()


def _state() -> FitState:
    state = FitState(
        model=None, optimizer=None, device=torch.device("cpu"), epochs=1, history=History()
    )
    state.batches = TOTAL
    return state


def test_fit_widget_display_eta_ignores_the_slow_start(monkeypatch):
    monkeypatch.setattr(fit_display, "show", lambda widget, text: object())
    monkeypatch.setattr(fit_display, "replace", lambda handle, html, text: None)
    clock = Clock()
    display = fit_display.FitProgress(timer=clock)
    state = _state()
    display.on_fit_start(state)
    display.on_epoch_start(state)
    for dt in steps():
        clock.t += dt
        state.batch += 1
        state.samples += 4
        display.on_batch_end(state)
    display._refresh(state)
    shown = re.search(r"30/1000 \[\d+:\d\d&lt;(\d+:\d\d)", display._batch_stats.value)
    assert shown is not None, display._batch_stats.value
    assert _seconds(shown.group(1)) == pytest.approx(TRUE_REMAINING, rel=0.1, abs=1)
    # images per second at the recent pace too: 4 images per 10 ms step
    assert "400.00img/s" in display._batch_stats.value
    state.status = "done"
    display.on_fit_end(state)


def test_fit_text_display_eta_ignores_the_slow_start():
    clock = Clock()
    display = TextProgress(io.StringIO(), timer=clock, interval=1e9)
    state = _state()
    display.on_fit_start(state)
    display.on_epoch_start(state)
    for dt in steps():
        clock.t += dt
        state.batch += 1
        state.samples += 4
        display.on_batch_end(state)
    line = display.batch_line(state, clock())
    shown = re.search(r"ETA (\d+:\d\d)", line)
    assert shown is not None, line
    assert _seconds(shown.group(1)) == pytest.approx(TRUE_REMAINING, rel=0.1, abs=1)
    assert "400.00img/s" in line


def test_fit_widget_epoch_eta_follows_the_latest_epoch_not_the_warm_up(monkeypatch):
    monkeypatch.setattr(fit_display, "show", lambda widget, text: object())
    monkeypatch.setattr(fit_display, "replace", lambda handle, html, text: None)
    clock = Clock()
    display = fit_display.FitProgress(timer=clock)
    state = _state()
    state.epochs, state.batches = 5, 10
    display.on_fit_start(state)
    # the first epoch takes 60 s (50 of them compiling), the next one 10 s
    for epoch, seconds in enumerate([60.0, 10.0]):
        state.epoch = epoch
        display.on_epoch_start(state)
        clock.t += seconds
        display.on_epoch_end(state)
    # 3 epochs left at 10 s each (an average since the start would say 1:45); tqdm's clock format
    assert "2/5 [01:10&lt;00:30]" in display._epoch_stats.value
    state.status = "done"
    display.on_fit_end(state)
