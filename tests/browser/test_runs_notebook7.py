"""Training you can leave and come back to, in Notebook 7 (the JupyterLab tests: test_runs.py).

- a page that reloads while a cell runs ``tl.progress``, ``tl.fit`` or a tqdm drop-in loop shows
  the run again under that cell within 2 s, its counts moving, whether the notebook was saved
  with the widget in it or not; when saved, the widget's "Loading widget..." is hidden and one
  display (the drawn final record) is left after the end;
- a run that ends while its notebook is open nowhere is told on another notebook's page, and the
  panel (Help > PyTorch kernel monitor) lists it; clicking it opens the notebook at its cell.
"""

from __future__ import annotations

import re
import time
from typing import Any

import pytest
from playwright.sync_api import expect

from .conftest import Server
from .test_runs import (
    FIT,
    PROGRESS,
    RELOAD_CASES,
    TQDM,
    assert_placeholder_hidden,
    reload_and_check,
    reload_each_display,
    run_cell,
    wait_for_running_run,
    wait_kernel_idle,
)

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def open_notebook7_and_wait_idle(page: Any, server: Server, name: str) -> None:
    page.goto(server.page_url(f"notebooks/{name}"))
    expect(page.locator(".jp-Notebook .jp-Cell").first).to_be_visible(timeout=60_000)
    wait_kernel_idle(server, name)


def test_notebook7_reload_brings_each_display_back(page: Any, notebook_server: Server) -> None:
    """As in JupyterLab: tl.fit and a tqdm drop-in loop, unsaved then saved, and tl.progress
    unsaved (saved: the next test), in one kernel."""
    name = "nb7_reload_runs.ipynb"
    notebook_server.write_notebook(name, PROGRESS, FIT, TQDM)
    open_notebook7_and_wait_idle(page, notebook_server, name)
    cases = [(0, "tl.progress", "progress", False)] + [
        (i, label, desc, saved) for i, label, desc in RELOAD_CASES[1:] for saved in (False, True)
    ]
    reload_each_display(
        page,
        notebook_server,
        name,
        cases,
        lambda: wait_kernel_idle(notebook_server, name),
        "Notebook 7, ",
    )


def test_notebook7_reload_and_a_notification_on_another_notebooks_page(
    page: Any, notebook_server: Server
) -> None:
    notebook_server.write_notebook("nb7_run.ipynb", "x = 0", PROGRESS.replace("600", "300"))
    notebook_server.write_notebook("nb7_other.ipynb", "x = 1")
    open_notebook7_and_wait_idle(page, notebook_server, "nb7_run.ipynb")
    run_cell(page, 1)
    wait_for_running_run(notebook_server, "nb7_run.ipynb", "progress")
    # saved with the widget view in it: its "Loading widget..." is hidden after the reload
    page.keyboard.press("Control+s")
    deadline = time.monotonic() + 10
    while "widget-view+json" not in (notebook_server.root / "nb7_run.ipynb").read_text():
        assert time.monotonic() < deadline, "Notebook 7 did not save the widget view"
        time.sleep(0.2)
    reload_and_check(page, 1, "Notebook 7, tl.progress, saved")
    assert_placeholder_hidden(page.locator(".jp-Notebook .jp-Cell").nth(1), "Notebook 7")
    other = page.context.new_page()
    other.goto(notebook_server.page_url("notebooks/nb7_other.ipynb"))
    expect(other.locator(".jp-Notebook .jp-Cell").first).to_be_visible(timeout=60_000)
    page.close()  # the run's notebook is open nowhere now
    toast = other.locator(".Toastify__toast", has_text="nb7_run.ipynb")
    expect(toast).to_contain_text("progress finished: 300/300 it", timeout=60_000)
    # Notebook 7 has the panel on demand (Help > PyTorch kernel monitor): its run list has the
    # run, and clicking it opens the notebook in a new browser tab with the run's cell selected
    other.locator("#menu-panel").get_by_text("Help", exact=True).click()
    other.locator(".lm-Menu-item", has_text="PyTorch kernel monitor").click()
    panel = other.locator("#jupyter-torchlab-monitor")
    row = panel.locator(".jp-torchlab-run-row[data-path='nb7_run.ipynb']")
    expect(row).to_have_attribute("data-state", "finished")
    expect(row).to_contain_text("300/300 it")
    with other.context.expect_page() as opened:
        row.click()
    tab = opened.value
    expect(tab).to_have_url(re.compile(r"/notebooks/nb7_run\.ipynb"), timeout=30_000)
    cells = tab.locator(".jp-Notebook .jp-Cell")
    expect(cells).to_have_count(2, timeout=60_000)
    expect(cells.nth(1)).to_have_class(re.compile(r"\bjp-mod-active\b"), timeout=20_000)
    expect(cells.nth(0)).not_to_have_class(re.compile(r"\bjp-mod-active\b"))
