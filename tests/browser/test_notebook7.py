"""Notebook 7 in a real browser: it has no launcher, so the command is in Help and the palette."""

from __future__ import annotations

import re
import time
from typing import Any

import pytest
from playwright.sync_api import expect

from .conftest import Server

pytestmark = pytest.mark.browser

TUTORIAL = "first_pytorch_classifier.ipynb"
LABEL = "PyTorch classifier tutorial"


def test_help_menu_creates_and_opens_the_tutorial(page: Any, notebook_server: Server):
    page.goto(notebook_server.page_url("tree"))
    menu_bar = page.locator("#menu-panel")
    expect(menu_bar).to_be_visible(timeout=60_000)
    menu_bar.get_by_text("Help", exact=True).click()
    item = page.locator(".lm-Menu-item", has_text=LABEL)
    expect(item).to_be_visible()

    with page.context.expect_page() as opened:
        item.click()
    notebook = opened.value
    notebook.wait_for_load_state()
    assert f"notebooks/{TUTORIAL}" in notebook.url
    deadline = time.monotonic() + 20
    while not (notebook_server.root / TUTORIAL).is_file():
        assert time.monotonic() < deadline, "the tutorial was not created"
        time.sleep(0.1)
    expect(notebook.locator(".jp-Notebook .jp-Cell").first).to_be_visible(timeout=60_000)


def test_command_palette_offers_the_tutorial(page: Any, notebook_server: Server):
    page.goto(notebook_server.page_url("tree"))
    expect(page.locator("#menu-panel")).to_be_visible(timeout=60_000)
    page.locator(".jp-DirListing-content").click()
    page.keyboard.press("Control+Shift+c")
    search = page.locator(".lm-CommandPalette-input")
    expect(search).to_be_visible()
    search.fill("PyTorch")
    expect(page.locator(".lm-CommandPalette-item", has_text=LABEL)).to_be_visible()


def test_monitor_panel_opens_in_the_notebook_view(page: Any, notebook_server: Server):
    notebook_server.write_notebook("nb7.ipynb", "x = 1")
    page.goto(notebook_server.page_url("notebooks/nb7.ipynb"))
    expect(page.locator(".jp-Notebook .jp-Cell").first).to_be_visible(timeout=60_000)
    page.locator("#menu-panel").get_by_text("Help", exact=True).click()
    page.locator(".lm-Menu-item", has_text="PyTorch kernel monitor").click()
    panel = page.locator("#jupyter-torchlab-monitor")
    expect(panel).to_be_visible()
    row = panel.locator(".jp-torchlab-kernel-row", has=page.locator("[title='nb7.ipynb']"))
    expect(row).to_have_attribute("data-state", "idle", timeout=60_000)  # the kernel starts


HIDE_PAGE = """() => {
  Object.defineProperty(document, 'visibilityState', {value: 'hidden', configurable: true});
  document.hasFocus = () => false;
  document.dispatchEvent(new Event('visibilitychange'));
  window.dispatchEvent(new Event('blur'));
}"""
SHOW_PAGE = """() => {
  delete document.visibilityState;
  delete document.hasFocus;
  document.dispatchEvent(new Event('visibilitychange'));
  window.dispatchEvent(new Event('focus'));
}"""


def test_a_long_cell_that_ends_while_another_tab_is_in_front_says_so(
    page: Any, notebook_server: Server
):
    import json

    notebook_server.api(
        "PUT",
        "lab/api/settings/jupyter-torchlab:plugin",
        {"raw": json.dumps({"longCellSeconds": 1})},
    )
    try:
        notebook_server.write_notebook("long7.ipynb", "import time\ntime.sleep(2.5)")
        page.goto(notebook_server.page_url("notebooks/long7.ipynb"))
        cell = page.locator(".jp-Notebook .jp-Cell").first
        expect(cell).to_be_visible(timeout=60_000)
        deadline = time.monotonic() + 60
        while not any(
            k["path"] == "long7.ipynb" and k["execution_state"] == "idle"
            for k in notebook_server.api("GET", "torchlab/api/metrics")["kernels"]
        ):
            assert time.monotonic() < deadline, "the notebook's kernel did not start"
            time.sleep(0.2)
        cell.locator(".jp-InputArea-editor").click()
        page.keyboard.press("Shift+Enter")
        # The user goes on in another browser tab. Headless Chromium keeps every tab visible and
        # focused, so the page is told what a real tab switch tells it.
        page.evaluate(HIDE_PAGE)
        toast = page.locator(".Toastify__toast", has_text="long7.ipynb")
        expect(toast).to_be_visible(timeout=20_000)
        expect(toast).to_contain_text("long7.ipynb, cell 1 [1] finished after 3 s")
        page.evaluate(SHOW_PAGE)
        toast.get_by_role("button", name="Go to cell").click()
        expect(cell).to_have_class(re.compile(r"\bjp-mod-active\b"))
    finally:
        notebook_server.api("PUT", "lab/api/settings/jupyter-torchlab:plugin", {"raw": "{}"})


def test_the_notebook_views_panel_shows_gpu_rows_and_free_it(page: Any, notebook_server: Server):
    import json

    def add_gpu(message: str | bytes) -> str:
        snapshot = json.loads(message)
        snapshot["gpus"] = [
            {
                "index": 0,
                "name": "NVIDIA Fake",
                "uuid": "GPU-fake",
                "utilization_gpu": 50,
                "utilization_memory": 10,
                "memory_used": 8 * 2**30,
                "memory_total": 16 * 2**30,
                "temperature": 50,
                "power_watts": 100.0,
                "power_limit_watts": 300.0,
                "source": "nvml",
            }
        ]
        snapshot["gpu_reason"] = None
        for kernel in snapshot["kernels"]:
            kernel.update(gpu_memory=3 * 2**30, gpu_devices=[0], gpu_utilization=7.0)
            if kernel["path"] == "gpu7.ipynb" and kernel["execution_state"] == "idle":
                kernel["holding_idle"] = {"seconds": 3900.0, "bytes": 3 * 2**30}
        return json.dumps(snapshot)

    page.route_web_socket(
        re.compile(r"/torchlab/api/stream"),
        lambda ws: ws.connect_to_server().on_message(lambda m: ws.send(add_gpu(m))),
    )
    notebook_server.write_notebook("gpu7.ipynb", "x = 1")
    page.goto(notebook_server.page_url("notebooks/gpu7.ipynb"))
    expect(page.locator(".jp-Notebook .jp-Cell").first).to_be_visible(timeout=60_000)
    # the idle holder's notification; its "Open the monitor" hides it and opens the panel
    toast = page.locator(".Toastify__toast", has_text="gpu7.ipynb: Idle for 1 h 05 min")
    expect(toast).to_be_visible(timeout=30_000)
    toast.get_by_role("button", name="Open the monitor").click()
    expect(toast).to_have_count(0)
    panel = page.locator("#jupyter-torchlab-monitor")
    row = panel.locator(".jp-torchlab-kernel-row", has=page.locator("[title='gpu7.ipynb']"))
    expect(row.locator(".jp-torchlab-kernel-gpu")).to_contain_text("7%", timeout=30_000)
    expect(row.locator(".jp-torchlab-idle-holder")).to_contain_text(
        "Idle for 1 h 05 min holding 3.0 GiB of GPU memory"
    )
    row.get_by_role("button", name="Free it").click()
    dialog = page.locator(".jp-Dialog")
    expect(dialog).to_contain_text("Free the GPU memory of gpu7.ipynb?")
    dialog.get_by_role("button", name="Interrupt").click()
    expect(page.locator(".Toastify__toast", has_text="Interrupted gpu7.ipynb")).to_be_visible()
