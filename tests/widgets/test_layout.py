"""How the monitor and fit's display look: geometry in a real Chromium, and the live header."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from typing import Any

import pytest

from jupyter_torchlab.train.callbacks import FitState
from jupyter_torchlab.widgets.fit_display import FitProgress
from jupyter_torchlab.widgets.kernel_monitor import KernelActivity, render_monitor

from .test_kernel_monitor import snapshot

CHROMIUM = os.environ.get("TORCHLAB_CHROMIUM", "/usr/bin/chromium")
#: a long reason like the real one from the GPU sampler on a machine without a driver
REASON = (
    "NVIDIA driver library (libnvidia-ml) not found: no NVIDIA driver is installed, or this "
    "container was started without GPU access (e.g. `docker run --gpus all`)"
)
#: the width of a cell's output area in a ~700px wide notebook
OUTPUT_WIDTH = 590


def monitor_html() -> str:
    busy = KernelActivity(busy=True, since=time.time(), duration=55, cell="import torch")
    history = {"kernel_cpu": [10.0, 50.0, 40.0], "host_cpu": [90.0, 100.0, 95.0]}
    import collections

    deques = {k: collections.deque(v) for k, v in history.items()}
    return render_monitor(snapshot(gpu_reason=REASON), busy, deques)[0]


def test_monitor_is_a_left_packed_grid_with_nowrap_labels_and_a_muted_reason():
    html = monitor_html()
    assert "display:grid" in html
    assert "text-align:right" not in html  # values sit next to their labels
    assert html.count('class="torchlab-monitor-label"') == 5
    assert "white-space:nowrap" in html.split('class="torchlab-monitor-label"')[1][:200]
    assert "grid-template-columns:8em auto auto;justify-content:start" in html
    # the reason is not a grid cell (it would widen the value column) but its own line
    grid, reason = html.split('class="torchlab-monitor-reason"')
    assert REASON not in grid
    assert "`docker run --gpus all`)" in reason
    assert "var(--jp-content-font-color2" in reason  # muted, and follows the theme
    assert "var(--jp-content-font-color1" in html


@pytest.fixture(scope="module")
def chromium_page() -> Iterator[Any]:
    if not os.access(CHROMIUM, os.X_OK):
        pytest.skip(f"Chromium not found at {CHROMIUM}: apt-get install chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            yield browser.new_page(viewport={"width": 800, "height": 600})
        finally:
            browser.close()


@pytest.mark.browser
def test_monitor_layout_in_a_narrow_notebook(chromium_page: Any):
    page = chromium_page
    page.set_content(
        f'<body style="margin:0;font-family:sans-serif;font-size:13px">'
        f'<div id="out" style="width:{OUTPUT_WIDTH}px">{monitor_html()}</div></body>'
    )

    def boxes(selector: str) -> list[dict[str, float]]:
        return [el.bounding_box() for el in page.query_selector_all(selector)]

    labels = boxes(".torchlab-monitor-label")
    values = boxes(".torchlab-monitor-value")
    sparks = boxes(".torchlab-monitor-spark svg")
    line = min(label["height"] for label in labels)
    assert max(label["height"] for label in labels) < 1.3 * line, "a row label wraps"
    assert len({round(label["width"]) for label in labels}) == 1  # one fixed label column
    for label, value in zip(labels, values, strict=True):
        gap = value["x"] - (label["x"] + label["width"])
        assert 0 <= gap < 20, f"value {gap}px away from its label"
        assert value["height"] < 1.3 * line, "a value wraps"
    value_right = max(v["x"] + v["width"] for v in values)
    for spark in sparks:
        assert 0 <= spark["x"] - value_right < 30, "sparkline not right after the values"
    reason = page.query_selector(".torchlab-monitor-reason").bounding_box()
    assert reason["x"] + reason["width"] <= OUTPUT_WIDTH + 1  # wraps within the widget
    assert reason["height"] < 4 * line  # a few lines, not a tall narrow block
    assert reason["y"] >= max(v["y"] + v["height"] for v in values) - 1  # under the rows
    assert abs(reason["x"] - values[0]["x"]) < 2  # lined up with the values
    size = page.evaluate(
        "[getComputedStyle(document.querySelector('.torchlab-monitor-reason')).fontSize,"
        " getComputedStyle(document.querySelector('.torchlab-monitor-value')).fontSize]"
    )
    assert float(size[0].removesuffix("px")) < float(size[1].removesuffix("px"))


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def fit_state(**kw: Any) -> FitState:
    import torch

    from jupyter_torchlab.train.history import History

    state = FitState(
        model=None, optimizer=None, device=torch.device("cpu"), epochs=3, history=History()
    )
    state.batches = 100
    for key, value in kw.items():
        setattr(state, key, value)
    return state


def test_fit_header_elapsed_time_advances_and_the_record_shows_the_total(monkeypatch):
    from jupyter_torchlab.widgets import fit_display as progress_mod

    shown: list[tuple[str, str]] = []
    monkeypatch.setattr(progress_mod, "show", lambda widget, text: object())
    monkeypatch.setattr(progress_mod, "replace", lambda h, html, text: shown.append((html, text)))
    clock = Clock()
    fp = FitProgress(timer=clock)
    st = fit_state()
    fp.on_fit_start(st)
    fp.on_epoch_start(st)
    assert "training on cpu [0:00]" in fp._header.value
    for batch, t in ((10, 5.0), (20, 12.0), (30, 75.0)):
        clock.t += t - (clock.t - 1000.0)
        st.batch = st.samples = batch
        fp._refresh(st)
        expected = f"{int(t) // 60}:{int(t) % 60:02d}"
        assert f"training on cpu [{expected}]" in fp._header.value
    clock.t = 1000.0 + 130
    st.status = "done"
    st.epoch = 2
    fp.on_fit_end(st)
    html, text = shown[-1]
    assert text.startswith("done: 3 epochs on cpu [2:10]")
    assert "[2:10]" in html


def test_fit_bar_numbers_stay_on_one_line(monkeypatch):
    from jupyter_torchlab.widgets import fit_display as progress_mod

    monkeypatch.setattr(progress_mod, "show", lambda widget, text: object())
    monkeypatch.setattr(progress_mod, "replace", lambda h, html, text: None)
    fp = FitProgress(timer=Clock())
    st = fit_state()
    fp.on_fit_start(st)
    fp.on_epoch_start(st)
    st.batch = st.samples = 32
    st.loss = 2.3
    fp.on_batch_end(st)
    fp._refresh(st)
    assert fp._batch_stats.value.startswith('<span style="white-space:nowrap">')
    assert "loss 2.3" in fp._batch_stats.value
    assert fp._epoch_stats.value.startswith('<span style="white-space:nowrap">')
    # the bars shrink first, the numbers never do
    assert fp._batch_bar.layout.flex.startswith("0 1")
    assert fp._batch_stats.layout.flex.startswith("1 0")
    fp.on_fit_end(st)
