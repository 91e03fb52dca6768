"""What a user sees in the browser when the server extension did not load, and Notebook 7's console.

One `jupyter lab` is started with an invalid TorchlabExtension setting: the server log has the
reason at ERROR, and the status item and the monitor panel show the cause and the fix.
"""

from __future__ import annotations

import json
import re
import urllib.error
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import expect

from .conftest import Server, _start

pytestmark = pytest.mark.browser

CAUSE = "TorchlabExtension.sample_interval must be between 0.05 and 3600 seconds, got -1.0"
FIX = "Correct c.TorchlabExtension.sample_interval where it is set"


@pytest.fixture(scope="module")
def broken_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """`jupyter lab` with ``--TorchlabExtension.sample_interval=-1``, in its own directories."""
    yield from _start(
        "lab",
        tmp_path_factory.mktemp("broken"),
        extra_args=("--TorchlabExtension.sample_interval=-1",),
        torchlab_routes=False,
    )


def test_the_server_log_says_why_at_error(broken_lab: Server) -> None:
    lines = broken_lab.log.read_text(errors="replace").splitlines()
    ours = [line for line in lines if "jupyter_torchlab did not load:" in line]
    assert ours, broken_lab.tail_log()
    assert re.match(r"\[E [\d-]+ [\d:.]+ ServerApp\] jupyter_torchlab did not load: ", ours[0])
    assert CAUSE in ours[0]
    assert FIX in ours[0]
    with pytest.raises(urllib.error.HTTPError) as refused:
        broken_lab.api("GET", "torchlab/api/metrics")
    assert refused.value.code == 503
    assert CAUSE in json.loads(refused.value.read())["message"]


def test_the_status_item_and_the_panel_show_the_cause_and_the_fix(
    page: Any, broken_lab: Server
) -> None:
    sockets: list[str] = []
    page.on("websocket", lambda ws: sockets.append(ws.url))
    broken_lab.write_notebook("broken.ipynb", "x = 1")
    page.goto(broken_lab.page_url("lab/tree/broken.ipynb", reset=""))
    expect(page.locator(".jp-NotebookPanel:visible .jp-Cell").first).to_be_visible(timeout=60_000)

    status = page.locator(".jp-torchlab-status-inner")
    expect(status).to_have_attribute("data-unavailable", "true")
    expect(status).to_contain_text("monitor off: server extension not loaded")
    title = status.get_attribute("title") or ""
    assert CAUSE in title
    assert FIX in title
    assert "enable" not in title

    status.click()
    reason = page.locator("#jupyter-torchlab-monitor .jp-torchlab-unavailable")
    expect(reason).to_be_visible()
    expect(reason).to_contain_text("The server extension did not load")
    expect(reason).to_contain_text(f"jupyter_torchlab did not load: {CAUSE}. {FIX}")
    expect(reason).to_contain_text("then restart the Jupyter server.")
    expect(page.locator("#jupyter-torchlab-monitor .jp-torchlab-badge")).to_have_text("not loaded")
    # the page config said why: the lab did not try the stream that cannot answer
    assert not [url for url in sockets if "torchlab/api" in url], sockets


def test_notebook_7_logs_no_error_of_ours(page: Any, notebook_server: Server) -> None:
    # a required token that Notebook 7 does not provide (IStatusBar) fails a plugin on every page
    problems: list[str] = []
    page.on(
        "console",
        lambda msg: (
            problems.append(f"{msg.type}: {msg.text}") if msg.type in ("error", "warning") else None
        ),
    )
    page.on("pageerror", lambda error: problems.append(f"pageerror: {error}"))
    notebook_server.write_notebook("quiet.ipynb", "x = 1")
    page.goto(notebook_server.page_url("tree"))
    expect(page.locator(".jp-DirListing-content")).to_be_visible(timeout=60_000)
    page.goto(notebook_server.page_url("notebooks/quiet.ipynb"))
    expect(page.locator(".jp-Notebook .jp-Cell").first).to_be_visible(timeout=60_000)
    # the kernel is connected once the toolbar shows its state; every plugin has activated
    expect(page.locator(".jp-Notebook-ExecutionIndicator")).to_have_attribute(
        "data-status", "idle", timeout=60_000
    )
    ours = [p for p in problems if re.search(r"torchlab|IStatusBar|No provider", p, re.I)]
    assert ours == [], ours
