"""JupyterLab in a real browser: the launcher tile, the status bar item and the monitor panel."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from jupyter_torchlab.tutorial import tutorial_path

from .conftest import Server

pytestmark = pytest.mark.browser

TUTORIAL = "first_pytorch_classifier.ipynb"
TILE = "PyTorch classifier tutorial"


def open_lab(page: Any, server: Server, path: str = "lab") -> None:
    page.goto(server.page_url(path, reset=""))
    expect(page.locator("#jp-main-dock-panel")).to_be_visible(timeout=60_000)


def wait_for_file(path: Path, timeout: float = 20.0) -> bytes:
    deadline = time.monotonic() + timeout
    while not path.is_file():
        assert time.monotonic() < deadline, f"{path.name} was not created"
        time.sleep(0.1)
    return path.read_bytes()


def current_tab(page: Any) -> Any:
    return page.locator("#jp-main-dock-panel .lm-TabBar-tab.lm-mod-current .lm-TabBar-tabLabel")


def open_notebook_and_wait_idle(page: Any, server: Server, name: str) -> Any:
    open_lab(page, server, f"lab/tree/{name}")
    expect(current_tab(page)).to_have_text(name)
    status = page.locator(".jp-torchlab-status")
    try:
        expect(status).to_contain_text("idle", timeout=60_000)
    except AssertionError as e:
        # say why the notebook has no idle kernel: a dialog, the sessions, the server's log
        dialogs = page.locator(".jp-Dialog").all_inner_texts()
        sessions = server.api("GET", "api/sessions")
        raise AssertionError(
            f"{e}\ndialogs: {dialogs}\nsessions: {sessions}\nserver log:\n{server.tail_log()}"
        ) from None
    return status


def run_first_cell(page: Any) -> None:
    page.locator(".jp-Notebook .jp-Cell .jp-InputArea-editor").first.click()
    page.keyboard.press("Shift+Enter")


def wait_for_kernel(server: Server, path: str, timeout: float = 15.0) -> dict[str, Any]:
    """Return the snapshot's row for the kernel of `path` once the sampler has seen it."""
    # The status bar says idle as soon as the kernel connects; the sampler's snapshot may lag
    # a tick behind.
    deadline = time.monotonic() + timeout
    while True:
        doc = server.api("GET", "torchlab/api/metrics")
        rows = [k for k in doc["kernels"] if k["path"] == path]
        if rows:
            (row,) = rows
            return row
        assert time.monotonic() < deadline, f"no kernel for {path} in {doc['kernels']}"
        time.sleep(0.2)


def launcher_tabs(page: Any) -> Any:
    return page.locator("#jp-main-dock-panel .lm-TabBar-tab", has_text="Launcher")


def test_launcher_tile_copies_the_tutorial_and_never_overwrites(page: Any, lab_server: Server):
    open_lab(page, lab_server)
    expect(launcher_tabs(page)).to_have_count(1)
    section = page.locator(".jp-Launcher-section", has_text="Notebook").first
    tile = section.locator(".jp-LauncherCard", has_text=TILE)
    expect(tile).to_be_visible()
    # our own icon, not a generic one
    expect(tile.locator("img")).to_have_attribute(
        "src", re.compile(r"^data:image/svg\+xml,.*EE4C2C")
    )

    tile.click()
    first = lab_server.root / TUTORIAL
    # The tab opens once the server has answered, i.e. after the copy is complete.
    expect(current_tab(page)).to_have_text(TUTORIAL)
    expect(page.locator(".jp-NotebookPanel:visible .jp-Cell").first).to_be_visible()
    # like JupyterLab's own cards: the notebook takes the place of the launcher it came from
    expect(launcher_tabs(page)).to_have_count(0)
    bundled = tutorial_path().read_bytes()
    assert wait_for_file(first) == bundled

    page.evaluate("window.jupyterapp.commands.execute('launcher:create')")
    expect(launcher_tabs(page)).to_have_count(1)
    page.locator(".jp-LauncherCard:visible", has_text=TILE).click()
    second = lab_server.root / "first_pytorch_classifier-1.ipynb"
    expect(current_tab(page)).to_have_text(second.name)
    expect(launcher_tabs(page)).to_have_count(0)
    assert wait_for_file(second) == bundled
    assert first.read_bytes() == bundled


def test_status_bar_shows_busy_with_running_time_then_idle(page: Any, lab_server: Server):
    lab_server.write_notebook("busy.ipynb", "import time\ntime.sleep(5)")
    status = open_notebook_and_wait_idle(page, lab_server, "busy.ipynb")
    expect(status).to_contain_text(re.compile(r"CPU \d+%"))
    expect(status).to_contain_text(re.compile(r"Mem \d"))

    run_first_cell(page)
    seen: list[str] = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        text = status.inner_text()
        if not seen or seen[-1] != text:
            seen.append(text)
        if text.startswith("idle") and any(t.startswith("busy") for t in seen):
            break
        time.sleep(0.2)
    busy = [t for t in seen if t.startswith("busy")]
    assert busy, f"never busy: {seen}"
    assert seen[-1].startswith("idle"), f"never idle again: {seen}"
    # The running time counts up while the cell runs (ticks locally between samples).
    seconds = {int(m.group(1)) for t in busy if (m := re.match(r"busy 0:(\d\d)", t))}
    assert len(seconds) >= 3, f"running time did not count up: {busy}"
    assert max(seconds) >= 3


def test_panel_lists_kernel_with_notebook_and_interrupts_it(page: Any, lab_server: Server):
    lab_server.write_notebook("interrupt.ipynb", "import time\ntime.sleep(300)")
    status = open_notebook_and_wait_idle(page, lab_server, "interrupt.ipynb")
    run_first_cell(page)
    expect(status).to_contain_text("busy")

    status.click()
    panel = page.locator("#jupyter-torchlab-monitor")
    expect(panel).to_be_visible()
    expect(panel.locator(".jp-torchlab-host")).to_contain_text("CPU")
    expect(panel.locator(".jp-torchlab-host")).to_contain_text("Memory")
    row = panel.locator(".jp-torchlab-kernel-row", has=page.locator("[title='interrupt.ipynb']"))
    expect(row).to_have_attribute("data-state", "busy")
    expect(row).to_contain_text("interrupt.ipynb")
    expect(row.locator(".jp-torchlab-busy")).to_have_text(re.compile(r"\d+:\d\d"))

    row.get_by_role("button", name="Interrupt").click()
    expect(row).to_have_attribute("data-state", "idle", timeout=15_000)
    expect(page.locator(".jp-NotebookPanel:visible .jp-OutputArea-output")).to_contain_text(
        "KeyboardInterrupt"
    )
    expect(status).to_contain_text("idle")


def test_a_stopped_kernel_shows_in_the_status_bar_and_the_panel(page: Any, lab_server: Server):
    import os
    import signal

    lab_server.write_notebook("frozen.ipynb", "x = 1")
    status = open_notebook_and_wait_idle(page, lab_server, "frozen.ipynb")
    kernel = wait_for_kernel(lab_server, "frozen.ipynb")
    os.kill(kernel["pid"], signal.SIGSTOP)
    try:
        expect(status).to_contain_text("stopped", timeout=15_000)
        assert "process stopped (SIGSTOP?)" in (
            page.locator(".jp-torchlab-status-inner").get_attribute("title") or ""
        )
        status.click()
        panel = page.locator("#jupyter-torchlab-monitor")
        row = panel.locator(".jp-torchlab-kernel-row", has=page.locator("[title='frozen.ipynb']"))
        state = row.locator(".jp-torchlab-state")
        expect(state).to_have_text("stopped")
        expect(state).to_have_attribute("title", re.compile(r"^process stopped \(SIGSTOP\?\)"))
    finally:
        os.kill(kernel["pid"], signal.SIGCONT)
    expect(status).to_contain_text("idle", timeout=15_000)
    expect(state).to_have_text("idle")


def test_a_killed_kernel_is_explained_in_a_notification(page: Any, lab_server: Server):
    import os
    import signal

    lab_server.write_notebook("doomed.ipynb", "x = 1")
    open_notebook_and_wait_idle(page, lab_server, "doomed.ipynb")
    kernel = wait_for_kernel(lab_server, "doomed.ipynb")
    os.kill(kernel["pid"], signal.SIGKILL)
    toast = page.locator(".Toastify__toast", has_text="doomed.ipynb")
    expect(toast).to_be_visible(timeout=30_000)
    expect(toast).to_contain_text("The kernel of doomed.ipynb was killed by signal 9 (SIGKILL)")
    expect(toast).to_contain_text("A new kernel is starting")
    expect(toast.get_by_role("button", name="Open the monitor")).to_be_visible()


def test_shut_down_asks_first(page: Any, lab_server: Server):
    lab_server.write_notebook("shutdown.ipynb", "x = 1")
    status = open_notebook_and_wait_idle(page, lab_server, "shutdown.ipynb")
    status.click()
    row = page.locator(
        "#jupyter-torchlab-monitor .jp-torchlab-kernel-row",
        has=page.locator("[title='shutdown.ipynb']"),
    )
    kernel_id = row.get_attribute("data-kernel-id")
    row.get_by_role("button", name="Shut down").click()
    dialog = page.locator(".jp-Dialog")
    expect(dialog).to_contain_text("Shut down kernel?")
    dialog.get_by_role("button", name="Cancel").click()
    assert kernel_id in {k["id"] for k in lab_server.api("GET", "api/kernels")}

    row.get_by_role("button", name="Shut down").click()
    page.locator(".jp-Dialog").get_by_role("button", name="Shut down").click()
    expect(row).to_have_count(0, timeout=15_000)
    assert kernel_id not in {k["id"] for k in lab_server.api("GET", "api/kernels")}


def test_tutorial_error_is_shown_with_the_servers_message(page: Any, lab_server: Server):
    open_lab(page, lab_server)
    # As if the folder shown in the file browser was deleted meanwhile.
    # (not awaited: the command resolves only once its error dialog is closed)
    page.evaluate(
        "() => { window.jupyterapp.commands.execute('torchlab:create-tutorial',"
        " {cwd: 'gone/away'}); }"
    )
    dialog = page.locator(".jp-Dialog")
    expect(dialog).to_contain_text("Could not create the PyTorch tutorial")
    expect(dialog).to_contain_text("gone/away")
    dialog.get_by_role("button").last.click()
    assert not (lab_server.root / "gone").exists()


FAKE_GPU = {
    "index": 0,
    "name": "NVIDIA H100 80GB HBM3",
    "uuid": "GPU-fake-0",
    "utilization_gpu": 87,
    "utilization_memory": 40,
    "memory_used": 20 * 2**30,
    "memory_total": 80 * 2**30,
    "temperature": 61,
    "power_watts": 402.5,
    "power_limit_watts": 700.0,
    "source": "nvml",
}


def test_gpu_readings_show_in_status_bar_and_panel(page: Any, lab_server: Server):
    """There is no GPU here: add one to the real stream's snapshots on their way to the page."""

    def add_gpu(message: str | bytes) -> str:
        snapshot = json.loads(message)
        snapshot["gpus"], snapshot["gpu_reason"] = [FAKE_GPU], None
        for kernel in snapshot["kernels"]:
            kernel["gpu_memory"] = 2 * 2**30
        return json.dumps(snapshot)

    def route(ws: Any) -> None:
        server = ws.connect_to_server()
        server.on_message(lambda message: ws.send(add_gpu(message)))

    page.route_web_socket(re.compile(r"/torchlab/api/stream"), route)
    lab_server.write_notebook("gpu.ipynb", "x = 1")
    status = open_notebook_and_wait_idle(page, lab_server, "gpu.ipynb")
    expect(status).to_contain_text("GPU 2.0 GiB")

    status.click()
    gpus = page.locator("#jupyter-torchlab-monitor .jp-torchlab-gpus")
    expect(gpus).to_contain_text("NVIDIA H100 80GB HBM3")
    expect(gpus).to_contain_text("87%")
    expect(gpus).to_contain_text("20 GiB / 80 GiB")
    expect(gpus.locator(".jp-torchlab-spark polyline").first).to_have_attribute(
        "points", re.compile(r"\d")
    )
    row = page.locator(
        "#jupyter-torchlab-monitor .jp-torchlab-kernel-row",
        has=page.locator("[title='gpu.ipynb']"),
    )
    expect(row).to_contain_text("2.0 GiB")


def test_the_panel_shows_each_kernels_gpu_use_and_frees_an_idle_holder(
    page: Any, lab_server: Server
):
    """Per-kernel GPU rows, the idle holder's notification and "Free it", in the side bar."""

    def add_gpu(message: str | bytes) -> str:
        snapshot = json.loads(message)
        snapshot["gpus"], snapshot["gpu_reason"] = [FAKE_GPU], None
        for kernel in snapshot["kernels"]:
            kernel["gpu_memory"] = 6 * 2**30
            kernel["gpu_devices"] = [0]
            kernel["gpu_utilization"] = 42.0
            if kernel["path"] == "holder.ipynb" and kernel["execution_state"] == "idle":
                kernel["holding_idle"] = {"seconds": 2400.0, "bytes": 6 * 2**30}
        return json.dumps(snapshot)

    def route(ws: Any) -> None:
        server = ws.connect_to_server()
        server.on_message(lambda message: ws.send(add_gpu(message)))

    page.route_web_socket(re.compile(r"/torchlab/api/stream"), route)
    lab_server.write_notebook("holder.ipynb", "import time\ntime.sleep(3)")
    open_notebook_and_wait_idle(page, lab_server, "holder.ipynb")
    kernel_id = wait_for_kernel(lab_server, "holder.ipynb")["id"]

    # one notification for the idle stretch, naming the notebook, with "Free it"
    toast = page.locator(".Toastify__toast", has_text="holder.ipynb: Idle for 40 min 00 s")
    expect(toast).to_be_visible(timeout=20_000)
    expect(toast).to_contain_text("holding 6.0 GiB of GPU memory")
    expect(toast.get_by_role("button", name="Free it")).to_be_visible()
    page.wait_for_timeout(1500)  # more snapshots arrive: still one notification
    expect(page.locator(".Toastify__toast", has_text="holder.ipynb: Idle for")).to_have_count(1)

    # the kernel is used again: the warning is stale and goes; idle again: a new stretch, a new one
    first_id = toast.get_attribute("id")
    run_first_cell(page)
    expect(page.locator(f"[id='{first_id}']")).to_have_count(0, timeout=15_000)
    expect(toast).to_be_visible(timeout=20_000)
    assert toast.get_attribute("id") != first_id

    # the toast sits over the side bar's lower half: its "Open the monitor" opens the panel and
    # withdraws the notification, which stays withdrawn while more snapshots arrive
    toast.get_by_role("button", name="Open the monitor").click()
    panel = page.locator("#jupyter-torchlab-monitor")
    expect(panel).to_be_visible()
    page.wait_for_timeout(1500)
    expect(toast).to_have_count(0)
    row = panel.locator(f".jp-torchlab-kernel-row[data-kernel-id='{kernel_id}']")
    expect(row.locator(".jp-torchlab-kernel-gpu")).to_contain_text("GPU use")
    expect(row.locator(".jp-torchlab-kernel-gpu")).to_contain_text("42%")
    expect(row.locator(".jp-torchlab-kernel-gpu")).to_contain_text("6.0 GiB")
    expect(
        row.locator(".jp-torchlab-kernel-gpu .jp-torchlab-spark polyline").first
    ).to_have_attribute("points", re.compile(r"\d"))
    expect(row.locator(".jp-torchlab-idle-holder")).to_contain_text("Idle for 40 min 00 s")

    # the side bar at its default width: nothing in a kernel's block is cut off
    panel_box = panel.bounding_box()
    assert panel_box is not None
    for name in ("Interrupt", "Shut down", "Free it"):
        box = row.get_by_role("button", name=name).bounding_box()
        assert box is not None, name
        assert box["x"] >= panel_box["x"], name
        assert box["x"] + box["width"] <= panel_box["x"] + panel_box["width"], name
    overflow = row.evaluate(
        "row => [...row.querySelectorAll('*')].filter(e => e.scrollWidth > e.clientWidth + 1"
        " && getComputedStyle(e).textOverflow !== 'ellipsis' && e.clientWidth > 0)"
        ".map(e => e.className.baseVal ?? e.className)"
    )
    assert overflow == [], overflow

    # "Free it" offers both; Cancel keeps it, Shut down frees it
    row.get_by_role("button", name="Free it").click()
    dialog = page.locator(".jp-Dialog")
    expect(dialog).to_contain_text("Free the GPU memory of holder.ipynb?")
    expect(dialog.get_by_role("button", name="Interrupt")).to_be_visible()
    dialog.get_by_role("button", name="Cancel").click()
    assert kernel_id in {k["id"] for k in lab_server.api("GET", "api/kernels")}
    row.get_by_role("button", name="Free it").click()
    page.locator(".jp-Dialog").get_by_role("button", name="Shut down").click()
    expect(row).to_have_count(0, timeout=15_000)
    assert kernel_id not in {k["id"] for k in lab_server.api("GET", "api/kernels")}


def set_torchlab_settings(server: Server, **values: Any) -> None:
    """Write the user's jupyter-torchlab settings, as the Settings Editor does."""
    server.api("PUT", "lab/api/settings/jupyter-torchlab:plugin", {"raw": json.dumps(values)})


def test_a_long_cell_that_ends_out_of_view_says_so_and_goes_to_the_cell(
    page: Any, lab_server: Server
):
    set_torchlab_settings(lab_server, longCellSeconds=1)
    try:
        lab_server.write_notebook(
            "long.ipynb", "import time\ntime.sleep(2.5)", "time.sleep(0.1)  # short"
        )
        open_notebook_and_wait_idle(page, lab_server, "long.ipynb")
        run_first_cell(page)  # runs cell 1 and selects cell 2
        page.evaluate("() => window.jupyterapp.commands.execute('launcher:create')")
        expect(current_tab(page)).to_have_text("Launcher")
        toast = page.locator(".Toastify__toast", has_text="long.ipynb")
        expect(toast).to_be_visible(timeout=20_000)
        expect(toast).to_contain_text("long.ipynb, cell 1 [1] finished after 3 s")

        toast.get_by_role("button", name="Go to cell").click()
        expect(toast).to_have_count(0)  # the action closes it
        expect(current_tab(page)).to_have_text("long.ipynb")
        cells = page.locator(".jp-Notebook .jp-Cell")
        expect(cells.nth(0)).to_have_class(re.compile(r"\bjp-mod-active\b"))
        expect(cells.nth(1)).not_to_have_class(re.compile(r"\bjp-mod-active\b"))

        # a short cell, out of view: nothing
        cells.nth(1).locator(".jp-InputArea-editor").click()
        page.keyboard.press("Shift+Enter")
        page.evaluate("() => window.jupyterapp.commands.execute('launcher:create')")
        # a long cell while the user looks at its notebook: nothing either
        page.locator("#jp-main-dock-panel .lm-TabBar-tab", has_text="long.ipynb").click()
        cells.nth(0).locator(".jp-InputArea-editor").click()
        page.keyboard.press("Shift+Enter")
        expect(cells.nth(0).locator(".jp-InputPrompt")).to_have_text("[3]:", timeout=20_000)
        page.wait_for_timeout(1000)  # the notification would come right after the reply
        assert page.locator(".Toastify__toast", has_text="long.ipynb").count() == 0
    finally:
        set_torchlab_settings(lab_server)
