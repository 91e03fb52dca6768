"""The lowest versions we declare, in a real browser: JupyterLab 4.0 and Notebook 7.0.

These run in the minimum-versions environment that scripts/test-min-versions.sh builds (the
wheel installed with no extras beside the pins of scripts/min-versions.txt): the `minversions`
marker keeps them out of the normal run (pyproject's addopts say `-m "not minversions"`) and the
script selects them. Nothing here depends on those versions, so they pass on newer ones too.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from .conftest import Server

pytestmark = [pytest.mark.browser, pytest.mark.minversions]

# webpack's complaint when a bundle asks for a newer shared package than the page has, e.g.
# "Unsatisfied version 4.0.2 from @jupyterlab/application-top of shared singleton module
# @jupyterlab/apputils (required ^4.6.4)"; other extensions (jupyterlab_widgets) have their own
UNSATISFIED = re.compile(
    r"Unsatisfied version \S+ from \S+ of shared singleton module (\S+) \(required ([^)]+)\)"
)
# what a bundle's remoteEntry says it consumes: shareKey: "@jupyterlab/apputils", ...,
# requiredVersion: "^4.0.0"
CONSUMES = re.compile(r'shareKey:\s*"([^"]+)"[^}]*?requiredVersion:\s*"([^"]*)"')
# jupyter_server's log line for a request answered 5xx, and for the exception behind it
SERVER_ERROR = re.compile(
    r"\b5\d\d (?:GET|POST|PUT|PATCH|DELETE|HEAD|OPTIONS) \S+|Uncaught exception"
)
OPENS = 20


def our_shared_requirements() -> set[tuple[str, str]]:
    """Return (package, range) for each shared package our installed bundle asks the page for."""
    from jupyter_core.paths import jupyter_path

    # the first one on the path is the one the page loads
    entries = [
        entry
        for folder in jupyter_path("labextensions")
        for entry in sorted((Path(folder) / "jupyter-torchlab" / "static").glob("remoteEntry.*.js"))
    ]
    assert entries, "the jupyter-torchlab labextension is not installed"
    found = set(CONSUMES.findall(entries[0].read_text(encoding="utf-8")))
    # every extension consumes the application: without it the check below would see nothing
    assert "@jupyterlab/application" in dict(found), f"no shared packages read from {entries[0]}"
    return found


class Console:
    """What a page says in its console and what it throws, kept for the assertions."""

    def __init__(self, page: Any) -> None:
        self.ours_required = our_shared_requirements()
        self.messages: list[str] = []
        page.on("console", lambda m: self.messages.append(f"{m.type}: {m.text}"))
        page.on("pageerror", lambda e: self.messages.append(f"pageerror: {e}\n{e.stack or ''}"))

    def ours(self) -> list[str]:
        """Errors and warnings that our extension caused.

        Lumino names the plugin whose activation failed ("Plugin 'jupyter-torchlab:status'
        failed to activate"); our own messages and stack frames name the package; webpack's
        "Unsatisfied version" names the package and the range that was asked for, which is ours
        when our bundle asks for exactly that.
        """
        return [
            m
            for m in self.messages
            if m.startswith(("error", "warning", "pageerror"))
            and (
                "torchlab" in m.lower()
                or any(u.groups() in self.ours_required for u in UNSATISFIED.finditer(m))
            )
        ]


def server_errors(server: Server) -> list[str]:
    return [
        line
        for line in server.log.read_text(errors="replace").splitlines()
        if SERVER_ERROR.search(line)
    ]


def test_jupyterlab_shows_the_kernel_in_the_status_item_and_the_panel(
    page: Any, lab_server: Server
) -> None:
    console = Console(page)
    lab_server.write_notebook("smoke.ipynb", "import time\ntime.sleep(3)")
    page.goto(lab_server.page_url("lab/tree/smoke.ipynb", reset=""))
    status = page.locator(".jp-torchlab-status")
    expect(status).to_contain_text("idle", timeout=60_000)
    expect(status).to_contain_text(re.compile(r"CPU \d+%"))

    # the kernel runs a cell: busy while it runs, idle after
    page.locator(".jp-Notebook .jp-Cell .jp-InputArea-editor").first.click()
    page.keyboard.press("Shift+Enter")
    expect(status).to_contain_text("busy", timeout=15_000)
    expect(status).to_contain_text("idle", timeout=30_000)

    status.click()
    panel = page.locator("#jupyter-torchlab-monitor")
    expect(panel).to_be_visible()
    expect(panel.locator(".jp-torchlab-host")).to_contain_text("CPU")
    row = panel.locator(".jp-torchlab-kernel-row", has=page.locator("[title='smoke.ipynb']"))
    expect(row).to_have_attribute("data-state", "idle")

    assert console.ours() == [], "\n".join(console.messages)
    assert server_errors(lab_server) == [], lab_server.tail_log()


def test_opening_a_notebook_20_times_in_notebook_7_never_fails_on_the_server(
    page: Any, notebook_server: Server
) -> None:
    """Each open starts a kernel while the sampler watches the server's kernels.

    The race this guards: an observer of ours ran inside jupyter_server's own kernel start, before
    that start had set last_activity, raised, and `POST /api/sessions` answered 500 (the notebook
    never got its kernel). One open in a few hit it, so the test opens one twenty times.
    """
    console = Console(page)
    for i in range(OPENS):
        name = f"open{i:02}.ipynb"
        notebook_server.write_notebook(name, "x = 1")
        page.goto(notebook_server.page_url(f"notebooks/{name}"))
        expect(page.locator(".jp-Notebook .jp-Cell").first).to_be_visible(timeout=60_000)
        # the page created the session and connected to its kernel: only then is it idle
        deadline = time.monotonic() + 60
        while not any(
            s["path"] == name and s["kernel"]["execution_state"] == "idle"
            for s in notebook_server.api("GET", "api/sessions")
        ):
            assert time.monotonic() < deadline, (
                f"open {i + 1} of {OPENS}: {name} got no idle kernel; sessions "
                f"{notebook_server.api('GET', 'api/sessions')}\n{notebook_server.tail_log()}"
            )
            time.sleep(0.2)
        assert server_errors(notebook_server) == [], (
            f"open {i + 1} of {OPENS}:\n{notebook_server.tail_log()}"
        )
        notebook_server.shut_down_kernels()

    assert console.ours() == [], "\n".join(console.messages)
