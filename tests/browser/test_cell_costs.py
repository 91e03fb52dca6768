"""What each cell cost, under the cell and kept in the notebook: JupyterLab 4.6 and Notebook 7.

A real server measures real cells; the page stores each record in the cell's metadata, draws the
line under the cell from it, saves it with the notebook and draws it again after a reload. The
monitor panel lists the cells by cost. Turned off in the settings, nothing is drawn or stored.
"""

from __future__ import annotations

import json
import re
import time
from typing import Any

import pytest
from playwright.sync_api import expect

from .conftest import Server

pytestmark = [pytest.mark.browser, pytest.mark.slow]

MiB = 2**20
CELLS = (
    "x = 1",
    # about 500 MB, every page touched, then freed: a peak, and no lasting change
    "b = bytearray(500 * 2**20)\nb[::4096] = b'x' * len(b[::4096])\ndel b",
    "import time\ntime.sleep(2)",
)
SETTINGS = "lab/api/settings/jupyter-torchlab:plugin"


def wait_idle_kernel(server: Server, name: str) -> None:
    deadline = time.monotonic() + 60
    while not any(
        k["path"] == name and k["execution_state"] == "idle"
        for k in server.api("GET", "torchlab/api/metrics")["kernels"]
    ):
        assert time.monotonic() < deadline, f"{name}'s kernel did not start:\n{server.tail_log()}"
        time.sleep(0.2)


def limits_key(doc: dict[str, Any]) -> str:
    """The limits a line's colour is weighed against (cellCost.ts pressureLimitsKey)."""
    host = doc["host"]
    mark = host["memory_limit"] if host["memory_limit"] is not None else host["memory_total"]
    gpus = sorted(f"{g['index']}:{g['memory_total'] or ''}" for g in doc.get("gpus") or [])
    return f"{mark if mark is not None else ''}|{','.join(gpus)}"


def expected_pressure(cost: dict[str, Any], doc: dict[str, Any]) -> str:
    """Amber at 80%, red at 95% of the memory limit (no GPU figure in these cells)."""
    host = doc["host"]
    share = cost["peak_memory"] / (host["memory_limit"] or host["memory_total"])
    return "danger" if share >= 0.95 else "warn" if share >= 0.8 else "ok"


def open_notebook(page: Any, server: Server, name: str, lab: bool) -> Any:
    path = f"lab/tree/{name}" if lab else f"notebooks/{name}"
    page.goto(server.page_url(path, **({"reset": ""} if lab else {})))
    cells = page.locator(".jp-Notebook .jp-Cell")
    expect(cells.first).to_be_visible(timeout=60_000)
    return cells


def run_all(page: Any, cells: Any) -> None:
    cells.first.locator(".jp-InputArea-editor").click()
    for _ in CELLS:
        page.keyboard.press("Shift+Enter")


def saved_costs(server: Server, name: str) -> list[dict[str, Any] | None]:
    notebook = json.loads((server.root / name).read_text())
    # Shift+Enter on the last cell adds an empty one below it
    return [cell["metadata"].get("torchlab") for cell in notebook["cells"][: len(CELLS)]]


def check_costs(page: Any, server: Server, name: str, lab: bool) -> None:
    server.write_notebook(name, *CELLS)
    cells = open_notebook(page, server, name, lab)
    wait_idle_kernel(server, name)
    run_all(page, cells)
    footers = [cells.nth(i).locator(".jp-torchlab-cellcost") for i in range(len(CELLS))]
    for footer in footers:
        expect(footer).to_be_visible(timeout=60_000)
    # the sleep: about 2 s, to a tenth
    expect(footers[2]).to_have_text(re.compile(r"^2\.\d s · peak "))
    assert 1.95 <= float(footers[2].get_attribute("data-wall") or 0) <= 2.6
    expect(footers[1]).to_contain_text("peak ")

    page.keyboard.press("Control+s")
    deadline = time.monotonic() + 20
    while None in saved_costs(server, name):
        assert time.monotonic() < deadline, f"not saved: {saved_costs(server, name)}"
        time.sleep(0.2)
    baseline, allocated, slept = saved_costs(server, name)
    assert baseline
    assert allocated
    assert slept
    for cost in (baseline, allocated, slept):
        assert {"wall_s", "peak_memory", "memory_delta", "gpu_peak_memory", "cpu_s"} <= set(cost)
        assert {"wall_s", "cpu_s"} <= set(cost["exact"])
    # a peak about 500 MiB above the start and above the baseline cell's, and a small change
    above_start = (allocated["peak_memory"] - allocated["memory_start"]) / MiB
    above_baseline = (allocated["peak_memory"] - baseline["peak_memory"]) / MiB
    assert 480 <= above_start <= 560, allocated
    assert 450 <= above_baseline <= 560, (baseline, allocated)
    assert abs(allocated["memory_delta"]) < 30 * MiB, allocated
    assert 1.95 <= slept["wall_s"] <= 2.6, slept
    assert slept["cpu_s"] < 0.2, slept
    texts = [footer.inner_text() for footer in footers]

    # the panel lists them by cost; a click goes to the cell
    if lab:
        page.locator(".jp-torchlab-status").click()
    else:
        page.locator("#menu-panel").get_by_text("Help", exact=True).click()
        page.locator(".lm-Menu-item", has_text="PyTorch kernel monitor").click()
    rows = page.locator("#jupyter-torchlab-monitor .jp-torchlab-cellcost-row")
    expect(rows).to_have_count(3)
    expect(rows.first).to_contain_text("import time")  # by time: the 2 s sleep first
    page.locator(".jp-torchlab-cellcosts-order").select_option("memory")
    expect(rows.first).to_contain_text("bytearray")
    rows.first.click()
    expect(cells.nth(1)).to_have_class(re.compile(r"\bjp-mod-active\b"))

    # after a reload the lines are drawn from the saved metadata; here before the page has any
    # snapshot (the metrics are held back until the lines are there)
    held = [True]

    def hold_stream(ws: Any) -> None:
        upstream = ws.connect_to_server()
        upstream.on_message(lambda message: None if held[0] else ws.send(message))

    page.route_web_socket(re.compile(r"/torchlab/api/stream"), hold_stream)
    page.route(
        re.compile(r"/torchlab/api/metrics"),
        lambda route: route.abort() if held[0] else route.continue_(),
    )
    page.reload()
    cells = page.locator(".jp-Notebook .jp-Cell")
    footers = [cells.nth(i).locator(".jp-torchlab-cellcost") for i in range(len(CELLS))]
    for footer, text in zip(footers, texts, strict=True):
        expect(footer).to_have_text(text, timeout=60_000)
        expect(footer).to_have_attribute("data-limits", "")  # no limits known yet
    # the first snapshot comes: each line's colour is drawn again, weighed against this
    # server's real limits (the container's memory limit, else the host's memory)
    held[0] = False
    doc = server.api("GET", "torchlab/api/metrics")
    for footer, cost in zip(footers, (baseline, allocated, slept), strict=True):
        expect(footer).to_have_attribute("data-limits", limits_key(doc), timeout=30_000)
        expect(footer).to_have_attribute("data-pressure", expected_pressure(cost, doc))


def test_lab_shows_and_keeps_each_cells_cost(page: Any, lab_server: Server) -> None:
    check_costs(page, lab_server, "costs.ipynb", lab=True)


def test_notebook7_shows_and_keeps_each_cells_cost(page: Any, notebook_server: Server) -> None:
    check_costs(page, notebook_server, "costs7.ipynb", lab=False)


def test_turned_off_nothing_is_drawn_stored_or_asked(page: Any, lab_server: Server) -> None:
    lab_server.api("PUT", SETTINGS, {"raw": json.dumps({"cellCost": False})})
    try:
        name = "costs_off.ipynb"
        lab_server.write_notebook(name, "import time\ntime.sleep(0.5)")
        requests: list[str] = []
        page.on(
            "request", lambda r: requests.append(r.url) if "torchlab/api/cells" in r.url else None
        )
        cells = open_notebook(page, lab_server, name, lab=True)
        wait_idle_kernel(lab_server, name)
        cells.first.locator(".jp-InputArea-editor").click()
        page.keyboard.press("Shift+Enter")
        expect(cells.first.locator(".jp-InputPrompt")).to_have_text(
            re.compile(r"\[1\]"), timeout=30_000
        )
        time.sleep(1.0)
        expect(page.locator(".jp-torchlab-cellcost")).to_have_count(0)
        page.keyboard.press("Control+s")
        time.sleep(1.0)
        assert saved_costs(lab_server, name)[0] is None
        assert requests == []
    finally:
        lab_server.api("PUT", SETTINGS, {"raw": "{}"})
