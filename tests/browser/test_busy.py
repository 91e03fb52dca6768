"""Busy means busy while a cell with a widget runs: JupyterLab 4.6 and Notebook 7, ipykernel 7.

When a widget renders, the page opens a kernel subshell (and asks comm_info and kernel_info);
the kernel publishes a busy/idle pair for each of those requests. Every reader of ours must still
say busy until the cell ends, then idle within one sample interval (plus the short wait for a
queued cell): the status item, the panel, ``torchlab/api/metrics`` and Prometheus ``/metrics``.
"""

from __future__ import annotations

import re
import time
import urllib.request
from typing import Any

import pytest
from playwright.sync_api import expect

from jupyter_torchlab.server.executions import QUEUE_GAP

from .conftest import Server

pytestmark = [pytest.mark.browser, pytest.mark.slow]

INTERVAL = 0.5  # the browser servers' TorchlabExtension.sample_interval (conftest)
# what a reader may lag behind the end of a cell: one sample, the queue gap, and the page's
# own polling of 0.1 s here plus the loop's latency on a loaded 2-core runner
IDLE_WITHIN = INTERVAL + QUEUE_GAP + 1.0

PROGRESS = (
    "import time\nimport jupyter_torchlab as tl\n"
    "for _ in tl.progress(range(90)):\n    time.sleep(0.1)"
)
FIT = """import time
import torch
import jupyter_torchlab as tl

class SlowData(torch.utils.data.Dataset):  # a slow loader: the GPU-starved case, on a CPU
    def __len__(self):
        return 48
    def __getitem__(self, i):
        time.sleep(0.07)
        return torch.randn(3, 32, 32), i % 10

history = tl.fit(tl.TutorialNet(), SlowData(), epochs=2, batch_size=8, device="cpu")"""
TQDM = "import time\nfrom tqdm.auto import tqdm\nfor _ in tqdm(range(90)):\n    time.sleep(0.1)"
SLIDER = (
    "import time\nimport ipywidgets as widgets\n"
    "display(widgets.IntSlider(description='lr'))\ntime.sleep(9)"
)
CELLS = [("tl.progress", PROGRESS), ("tl.fit", FIT), ("tqdm.auto", TQDM), ("slider", SLIDER)]


def prometheus_busy(server: Server, kernel_id: str) -> float | None:
    request = urllib.request.Request(
        f"{server.url}metrics", headers={"Authorization": f"token {server.token}"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        text = response.read().decode()
    for line in text.splitlines():
        if line.startswith("torchlab_kernel_busy{") and f'kernel_id="{kernel_id}"' in line:
            return float(line.rsplit(" ", 1)[1])
    return None


def api_row(server: Server, path: str) -> dict[str, Any]:
    doc = server.api("GET", "torchlab/api/metrics")
    (row,) = [k for k in doc["kernels"] if k["path"] == path]
    return row


def run_cells_and_check(page: Any, server: Server, name: str, status: Any | None) -> None:
    """Run each cell; while it runs every reader says busy, after it ends idle."""
    panel = page.locator("#jupyter-torchlab-monitor")
    row = panel.locator(".jp-torchlab-kernel-row", has=page.locator(f"[title='{name}']"))
    expect(row).to_have_attribute("data-state", "idle", timeout=30_000)
    cells = page.locator(".jp-Notebook .jp-Cell")
    server_states: dict[str, set[str]] = {}
    for index, (label, _) in enumerate(CELLS):
        cell = cells.nth(index)
        cell.locator(".jp-InputArea-editor").click()
        page.keyboard.press("Control+Enter")
        prompt = cell.locator(".jp-InputPrompt")
        expect(prompt).to_have_text(re.compile(r"\[\*\]"), timeout=10_000)
        # the widget has rendered (the page has opened its subshell by now)
        expect(cell.locator(".jp-OutputArea-output").first).to_be_visible(timeout=30_000)
        kid = row.get_attribute("data-kernel-id")
        assert kid
        # a snapshot taken before the kernel started the cell may still be the latest
        expect(row).to_have_attribute("data-state", "busy", timeout=IDLE_WITHIN * 1000)
        checks = 0
        seen_server = server_states.setdefault(label, set())
        while "[*]" in prompt.inner_text() and checks < 12:
            api = api_row(server, name)
            prom = prometheus_busy(server, kid)
            if "[*]" not in prompt.inner_text():
                break  # the cell ended while we read: nothing to hold against the readers
            assert api["execution_state"] == "busy", f"{label}: the API says {api}"
            assert prom == 1.0, f"{label}: /metrics says torchlab_kernel_busy {prom}"
            assert row.get_attribute("data-state") == "busy", f"{label}: the panel is not busy"
            if status is not None:
                assert status.inner_text().startswith("busy"), f"{label}: {status.inner_text()}"
            seen_server.add(server.api("GET", f"api/kernels/{kid}")["execution_state"])
            checks += 1
            time.sleep(0.4)
        assert checks >= 3, f"{label}: the cell ended before it could be checked"
        expect(prompt).to_have_text(re.compile(r"\[\d+\]"), timeout=120_000)
        ended = time.monotonic()
        while api_row(server, name)["execution_state"] != "idle":
            assert time.monotonic() - ended < IDLE_WITHIN, f"{label}: still busy after its end"
            time.sleep(0.1)
        if status is not None:
            expect(status).to_contain_text("idle", timeout=IDLE_WITHIN * 1000)
        expect(row).to_have_attribute("data-state", "idle", timeout=IDLE_WITHIN * 1000)
        assert prometheus_busy(server, kid) == 0.0
    # for the record: what jupyter_server's own execution_state said while those cells ran
    print("jupyter_server's execution_state during each cell:", server_states)


def test_lab_stays_busy_through_widget_cells(page: Any, lab_server: Server) -> None:
    from .test_lab import open_notebook_and_wait_idle

    name = "widgets_busy.ipynb"
    lab_server.write_notebook(name, *(source for _, source in CELLS))
    status = open_notebook_and_wait_idle(page, lab_server, name)
    status.click()  # opens the panel beside the notebook
    expect(page.locator("#jupyter-torchlab-monitor")).to_be_visible()
    run_cells_and_check(page, lab_server, name, status)


def test_notebook7_stays_busy_through_widget_cells(page: Any, notebook_server: Server) -> None:
    name = "widgets_busy_nb7.ipynb"
    notebook_server.write_notebook(name, *(source for _, source in CELLS))
    page.goto(notebook_server.page_url(f"notebooks/{name}"))
    expect(page.locator(".jp-Notebook .jp-Cell").first).to_be_visible(timeout=60_000)
    page.locator("#menu-panel").get_by_text("Help", exact=True).click()
    page.locator(".lm-Menu-item", has_text="PyTorch kernel monitor").click()
    expect(page.locator("#jupyter-torchlab-monitor")).to_be_visible()
    run_cells_and_check(page, notebook_server, name, None)
