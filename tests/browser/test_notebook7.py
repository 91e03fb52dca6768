"""Notebook 7 in a real browser: it has no launcher, so the command is in Help and the palette."""

from __future__ import annotations

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
    expect(row).to_have_attribute("data-state", "idle")
