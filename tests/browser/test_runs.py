"""Training you can leave and come back to, in a real browser (JupyterLab 4.6; Notebook 7 in
test_runs_notebook7.py).

Kernels publish their runs (``tl.progress``, the tqdm drop-in, ``tl.fit``) to the server, which
streams them to every page. Here, with real kernels and real loops:

- a page that reloads while a cell runs shows the run again under that cell within 2 s, its
  counts moving, whether the notebook was saved with the widget in it or not, and keeps the
  run's final record when it ends; a saved widget view that cannot render (ipywidgets' "Loading
  widget...") is hidden while the run is drawn, and one display is left when the run ends;
- a run that ends while its notebook's tab is closed is told on another notebook's page, with
  "Go to cell"; one that ends while no page is open is told once when a page next opens, and
  not again after a reload;
- the panel lists the runs of every notebook, and the status bar the current notebook's run.
"""

from __future__ import annotations

import contextlib
import json
import re
import time
from typing import Any

import pytest
from playwright.sync_api import TimeoutError as PlaywrightTimeout
from playwright.sync_api import expect

from .conftest import Server
from .test_lab import current_tab, open_notebook_and_wait_idle

pytestmark = [pytest.mark.browser, pytest.mark.slow]

#: the issue's promise: the display is back this soon after the notebook shows
BACK_WITHIN = 2.0

#: the page's own record of when each cell, and each cell's run view, first showed (checked
#: every frame, on the page's clock): the bound is timed in the page, not by Playwright's polling,
#: which on a loaded machine can notice an element a second or more after it showed
FIRST_SHOWN = """(() => {
  if (window.__torchlabShown) return;
  const seen = (window.__torchlabShown = {cells: {}, views: {}, anyView: null});
  const shows = (els) => Array.from(els).some((el) => el.getClientRects().length > 0);
  const look = () => {
    const now = performance.now();
    document.querySelectorAll('.jp-Notebook .jp-Cell').forEach((cell, i) => {
      if (!(i in seen.cells) && shows([cell])) seen.cells[i] = now;
      if (!(i in seen.views) && shows(cell.querySelectorAll('.jp-torchlab-run-view'))) {
        seen.views[i] = now;
      }
    });
    if (seen.anyView === null && shows(document.querySelectorAll('.jp-torchlab-run-view'))) {
      seen.anyView = now;
    }
    requestAnimationFrame(look);
  };
  requestAnimationFrame(look);
})()"""


def reload_timed(page: Any) -> None:
    """Reload the page with :data:`FIRST_SHOWN` recording from its first frame."""
    if not page.evaluate("() => Boolean(window.__torchlabShown)"):
        page.add_init_script(FIRST_SHOWN)  # runs at every later load of this page
    page.reload()


def first_shown(page: Any) -> dict[str, Any]:
    """The page's record: ms on its clock when each cell and run view first showed."""
    return page.evaluate("() => window.__torchlabShown")


PROGRESS = (
    "import time\nimport jupyter_torchlab as tl\n"
    "for _ in tl.progress(range(600), desc='progress'):\n    time.sleep(0.1)"
)
TQDM = (
    "import time\nfrom jupyter_torchlab.tqdm import tqdm\n"
    "for _ in tqdm(range(600), desc='dropin'):\n    time.sleep(0.1)"
)
# tiny real data and model, slow enough to reload during (as tests/browser/test_busy.py)
FIT = """import time
import torch
import jupyter_torchlab as tl

class SlowData(torch.utils.data.Dataset):
    def __len__(self):
        return 48
    def __getitem__(self, i):
        time.sleep(0.05)
        return torch.randn(3, 32, 32), i % 10

history = tl.fit(tl.TutorialNet(), SlowData(), epochs=40, batch_size=8, device="cpu")"""
NESTED = (
    "import time\nimport jupyter_torchlab as tl\nfrom jupyter_torchlab.tqdm import tqdm\n"
    "for _ in tl.progress(range(20), desc='epochs'):\n"
    "    for _ in tqdm(range(50), desc='batches', leave=False):\n        time.sleep(0.1)"
)
SHORT = (
    "import time\nimport jupyter_torchlab as tl\n"
    "for _ in tl.progress(range(60), desc='short'):\n    time.sleep(0.1)"
)


def run_cell(page: Any, index: int) -> Any:
    """Run the cell at ``index`` from its editor; return the cell once its prompt says [*]."""
    cell = page.locator(".jp-Notebook .jp-Cell").nth(index)
    cell.locator(".jp-InputArea-editor").click()
    page.keyboard.press("Control+Enter")
    expect(cell.locator(".jp-InputPrompt")).to_have_text(re.compile(r"\[\*\]"), timeout=10_000)
    return cell


def wait_for_running_run(server: Server, path: str, desc: str, timeout: float = 60.0) -> dict:
    """The server's record of a running run of ``path`` with this description."""
    deadline = time.monotonic() + timeout
    while True:
        runs = server.api("GET", "torchlab/api/runs")["runs"]
        found = [
            r for r in runs if r["path"] == path and r["desc"] == desc and r["state"] == "running"
        ]
        if found:
            return found[0]
        assert time.monotonic() < deadline, f"no running {desc!r} run of {path}: {runs}"
        time.sleep(0.2)


def reload_and_check(page: Any, cell_index: int, label: str) -> float:
    """Reload the page: the cell shows the run within BACK_WITHIN s of the notebook showing, and
    its count moves. Returns the seconds it took."""
    reloaded = time.monotonic()
    reload_timed(page)
    cell = page.locator(".jp-Notebook .jp-Cell").nth(cell_index)
    expect(cell).to_be_visible(timeout=60_000)
    view = cell.locator(".jp-torchlab-run-view")
    expect(view).to_be_visible(timeout=20_000)
    back = time.monotonic()
    seen = first_shown(page)
    took = (seen["views"][str(cell_index)] - seen["cells"][str(cell_index)]) / 1000
    assert took <= BACK_WITHIN, f"{label}: the display came back after {took:.2f} s"
    expect(view).to_have_attribute("data-state", "running")
    bar = view.locator(".jp-torchlab-run-view-bar").first
    first = float(bar.get_attribute("data-n") or "nan")
    deadline = time.monotonic() + BACK_WITHIN + 1
    while float(bar.get_attribute("data-n") or "nan") <= first:
        assert time.monotonic() < deadline, f"{label}: the count stayed at {first}"
        time.sleep(0.1)
    assert view.locator(".jp-torchlab-run-view-line").first.inner_text().strip()
    print(
        f"{label}: display back {took:.2f} s after the notebook showed, "
        f"{back - reloaded:.1f} s after the reload began"
    )
    return took


#: ipywidgets' renderer's texts for a view whose model it does not have (yet)
PLACEHOLDER = re.compile("Loading widget|Error displaying widget")


def widget_views(cell: Any) -> Any:
    """The cell's ipywidgets outputs: rendered views, or the renderer's placeholder text."""
    outputs = cell.locator(".jp-OutputArea-output")
    return outputs.filter(has=cell.page.locator(".jupyter-widgets")), outputs.filter(
        has_text=PLACEHOLDER
    )


def assert_placeholder_hidden(cell: Any, label: str) -> None:
    """The saved widget view is in the cell but its placeholder is not shown over the run."""
    _rendered, placeholders = widget_views(cell)
    assert placeholders.count() >= 1, f"{label}: the saved notebook has no widget view"
    for i in range(placeholders.count()):
        assert not placeholders.nth(i).is_visible(), f"{label}: 'Loading widget...' is shown"
    expect(cell.locator(".jp-torchlab-run-view")).to_be_visible()


def one_display_after_the_end(cell: Any, label: str) -> str:
    """Once the cell ended and the widget manager settled, exactly one display of the run is
    visible: the drawn final record or the real widget. Returns which."""
    rendered, placeholders = widget_views(cell)
    # the manager restores models once the kernel answers: no view is left loading
    expect(cell.locator(".jp-OutputArea-output", has_text="Loading widget")).to_have_count(
        0, timeout=30_000
    )
    time.sleep(0.5)  # a view that renders now would replace the record in this time
    record = cell.locator(".jp-torchlab-run-view")
    shown = {
        "the drawn final record": sum(record.nth(i).is_visible() for i in range(record.count())),
        "the real widget": sum(rendered.nth(i).is_visible() for i in range(rendered.count())),
        "a placeholder": sum(placeholders.nth(i).is_visible() for i in range(placeholders.count())),
    }
    visible = [name for name, count in shown.items() for _ in range(count)]
    assert len(visible) == 1, f"{label}: after the end, visible displays: {shown}"
    print(f"{label}: after the end one display is left: {visible[0]}")
    return visible[0]


def interrupt(server: Server, path: str) -> None:
    (kernel,) = [
        k for k in server.api("GET", "torchlab/api/metrics")["kernels"] if k["path"] == path
    ]
    server.api("POST", f"api/kernels/{kernel['id']}/interrupt")


#: the MIME type of an ipywidgets view in a saved cell's outputs
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
#: the reload cases of the notebook written with PROGRESS, FIT and TQDM: cell, label, run's desc
RELOAD_CASES = [(0, "tl.progress", "progress"), (1, "tl.fit", "fit"), (2, "tqdm drop-in", "dropin")]


def save_with_the_widget(page: Any, server: Server, name: str, index: int) -> None:
    """Save the notebook (Ctrl+S); wait until the file holds cell ``index``'s widget view."""
    page.keyboard.press("Control+s")
    deadline = time.monotonic() + 10
    while True:
        with contextlib.suppress(ValueError):  # read while being written
            cell = json.loads((server.root / name).read_text())["cells"][index]
            if any(WIDGET_VIEW in out.get("data", {}) for out in cell["outputs"]):
                return
        assert time.monotonic() < deadline, f"{name} was not saved with cell {index}'s widget"
        time.sleep(0.2)


def wait_kernel_idle(server: Server, path: str, timeout: float = 60.0) -> None:
    """Wait until the server says the kernel of ``path`` is idle."""
    deadline = time.monotonic() + timeout
    while not any(
        k["path"] == path and k["execution_state"] == "idle"
        for k in server.api("GET", "torchlab/api/metrics")["kernels"]
    ):
        assert time.monotonic() < deadline, f"the kernel of {path} is not idle"
        time.sleep(0.2)


def reload_each_display(
    page: Any,
    server: Server,
    name: str,
    cases: list[tuple[int, str, str, bool]],
    idle: Any,
    app: str = "",
) -> None:
    """For each (cell, label, desc, saved): run the cell, save it if ``saved``, reload while it
    runs, check the display is back and counting, interrupt it, and check the final record stays
    (and is the one display left, when saved). ``idle()`` waits for the kernel to be idle."""
    cells = page.locator(".jp-Notebook .jp-Cell")
    for index, label, desc, saved in cases:
        cell = run_cell(page, index)
        # the page's own live widget shows it: nothing is drawn over it
        expect(cell.locator(".jp-OutputArea-output").first).to_be_visible(timeout=60_000)
        wait_for_running_run(server, name, desc)
        assert cell.locator(".jp-torchlab-run-view").count() == 0, f"{label}: drawn twice"
        if saved:
            save_with_the_widget(page, server, name, index)
        case = f"{app}{label}, {'saved' if saved else 'unsaved'}"
        reload_and_check(page, index, case)
        if saved:
            assert_placeholder_hidden(cells.nth(index), case)
        interrupt(server, name)
        view = cells.nth(index).locator(".jp-torchlab-run-view")
        # the final record stays until the cell runs again
        expect(view).to_have_attribute("data-state", re.compile("interrupted|failed"))
        expect(view.locator(".jp-torchlab-run-view-end").first).to_be_visible()
        if saved:
            # our bars close their widgets at the end: the model is gone, the record stays
            left = one_display_after_the_end(cells.nth(index), case)
            assert left == "the drawn final record", f"{case}: {left}"
        idle()


def test_lab_reload_brings_each_display_back(page: Any, lab_server: Server) -> None:
    """tl.progress, tl.fit and a tqdm drop-in loop; reloaded unsaved, then saved."""
    name = "reload_runs.ipynb"
    lab_server.write_notebook(name, PROGRESS, FIT, TQDM)
    status = open_notebook_and_wait_idle(page, lab_server, name)
    cases = [(i, label, desc, saved) for i, label, desc in RELOAD_CASES for saved in (False, True)]
    reload_each_display(
        page,
        lab_server,
        name,
        cases,
        lambda: expect(status).to_contain_text("idle", timeout=30_000),
    )


def test_lab_saved_reload_a_widget_that_renders_after_the_cell_shows_again(
    page: Any, lab_server: Server
) -> None:
    """A saved cell with a slider and a bar: both views are hidden while the run is drawn; when
    the cell ends, the slider's model is restored and it shows, while the bar's closed widget
    never renders and the drawn record stays in its place."""
    name = "runs_slider.ipynb"
    lab_server.write_notebook(
        name,
        "import time, ipywidgets\nimport jupyter_torchlab as tl\n"
        "display(ipywidgets.IntSlider(3))\n"
        "for _ in tl.progress(range(600), desc='slider'):\n    time.sleep(0.1)",
    )
    open_notebook_and_wait_idle(page, lab_server, name)
    run_cell(page, 0)
    wait_for_running_run(lab_server, name, "slider")
    page.keyboard.press("Control+s")
    expect(current_tab(page).locator("xpath=..")).not_to_have_class(
        re.compile(r"jp-mod-dirty"), timeout=10_000
    )
    reload_and_check(page, 0, "slider and bar, saved")
    cell = page.locator(".jp-Notebook .jp-Cell").first
    assert_placeholder_hidden(cell, "slider and bar, saved")
    _rendered, placeholders = widget_views(cell)
    assert placeholders.count() == 2
    interrupt(lab_server, name)
    slider = cell.locator(".jp-OutputArea-output .widget-slider")
    expect(slider).to_be_visible(timeout=30_000)  # restored once the kernel answered
    view = cell.locator(".jp-torchlab-run-view")
    expect(view).to_have_attribute("data-state", "interrupted")
    expect(cell.locator(".jp-OutputArea-output", has_text="Error displaying widget")).to_be_hidden()
    assert view.is_visible()


def test_lab_a_run_in_a_cell_that_was_never_saved_comes_back_above_the_notebook(
    page: Any, lab_server: Server
) -> None:
    name = "runs_new_cell.ipynb"
    lab_server.write_notebook(name, "x = 0")
    open_notebook_and_wait_idle(page, lab_server, name)
    page.locator(".jp-Notebook .jp-Cell").first.locator(".jp-InputArea-editor").click()
    page.keyboard.press("Escape")
    page.keyboard.press("b")  # a new cell below: its id is in no saved file
    page.keyboard.press("Enter")
    page.keyboard.type("import time, jupyter_torchlab as tl")
    page.keyboard.press("Enter")
    page.keyboard.type("for _ in tl.progress(range(600), desc='new'): time.sleep(0.1)")
    run_cell(page, 1)
    wait_for_running_run(lab_server, name, "new")
    reloaded = time.monotonic()
    reload_timed(page)
    expect(page.locator(".jp-Notebook .jp-Cell").first).to_be_visible(timeout=60_000)
    view = page.locator(".jp-torchlab-run-view-header .jp-torchlab-run-view")
    expect(view).to_be_visible(timeout=20_000)
    seen = first_shown(page)
    took = (seen["anyView"] - seen["cells"]["0"]) / 1000
    assert took <= BACK_WITHIN, f"the display came back after {took:.2f} s"
    expect(view).to_contain_text("new:")
    assert page.locator(".jp-Notebook .jp-Cell").count() == 1  # the file's one cell
    print(
        f"a never-saved cell: back {took:.2f} s after the notebook showed, "
        f"{time.monotonic() - reloaded:.1f} s after the reload began"
    )
    interrupt(lab_server, name)
    expect(view).to_have_attribute("data-state", "interrupted")


def test_lab_panel_lists_runs_of_two_notebooks_and_the_status_bar_the_current_one(
    page: Any, lab_server: Server
) -> None:
    lab_server.write_notebook("runs_nested.ipynb", "x = 0", NESTED)
    lab_server.write_notebook("runs_fit.ipynb", FIT)
    status = open_notebook_and_wait_idle(page, lab_server, "runs_nested.ipynb")
    run_cell(page, 1)
    page.locator(".jp-Notebook .jp-Cell").first.locator(".jp-InputArea-editor").click()
    open_notebook_and_wait_idle(page, lab_server, "runs_fit.ipynb")
    run_cell(page, 0)
    wait_for_running_run(lab_server, "runs_fit.ipynb", "fit")
    # the status bar: the current notebook's run
    expect(status).to_contain_text(re.compile(r"fit \d+% · epoch \d+/40 · ETA"), timeout=20_000)
    status.click()  # opens the panel
    panel = page.locator("#jupyter-torchlab-monitor")
    running = panel.locator(".jp-torchlab-run-row[data-state='running']")
    expect(running).to_have_count(3, timeout=20_000)
    paths = {running.nth(i).get_attribute("data-path") for i in range(3)}
    assert paths == {"runs_nested.ipynb", "runs_fit.ipynb"}
    expect(running.first).to_contain_text(re.compile(r"\d+/\d+ (it|batch)"))
    # clicking a run opens its notebook at its cell
    running.filter(has_text="batches").click()
    expect(current_tab(page)).to_have_text("runs_nested.ipynb")
    cells = page.locator(".jp-NotebookPanel:visible .jp-Cell")
    expect(cells.nth(1)).to_have_class(re.compile(r"\bjp-mod-active\b"))
    expect(cells.nth(0)).not_to_have_class(re.compile(r"\bjp-mod-active\b"))
    expect(status).to_contain_text(re.compile(r"epochs \d+% · ETA"))


def test_lab_a_run_that_ends_with_its_tab_closed_is_told_on_another_notebook(
    page: Any, lab_server: Server
) -> None:
    lab_server.write_notebook("runs_end.ipynb", "x = 0", SHORT)
    lab_server.write_notebook("runs_other.ipynb", "x = 1")
    open_notebook_and_wait_idle(page, lab_server, "runs_end.ipynb")
    run_cell(page, 1)
    wait_for_running_run(lab_server, "runs_end.ipynb", "short")
    page.evaluate(
        "() => window.jupyterapp.commands.execute('docmanager:open', {path: 'runs_other.ipynb'})"
    )
    expect(current_tab(page)).to_have_text("runs_other.ipynb")
    # close the run's notebook tab (its kernel keeps running), without saving
    tab = page.locator("#jp-main-dock-panel .lm-TabBar-tab", has_text="runs_end.ipynb")
    tab.locator(".lm-TabBar-tabCloseIcon").click()
    dialog = page.locator(".jp-Dialog")
    with contextlib.suppress(PlaywrightTimeout):
        dialog.get_by_role("button", name="Discard").click(timeout=3_000)
    expect(tab).to_have_count(0)
    toast = page.locator(".Toastify__toast", has_text="runs_end.ipynb")
    expect(toast).to_contain_text("short finished: 60/60 it", timeout=30_000)
    time.sleep(2)  # more documents arrive: still one notification for the run
    expect(toast).to_have_count(1)
    toast.get_by_role("button", name="Go to cell").click()
    expect(current_tab(page)).to_have_text("runs_end.ipynb")
    # the notebook opens with the run's cell (the second) the active one
    cells = page.locator(".jp-NotebookPanel:visible .jp-Cell")
    expect(cells).to_have_count(2)
    expect(cells.nth(1)).to_have_class(re.compile(r"\bjp-mod-active\b"))
    expect(cells.nth(0)).not_to_have_class(re.compile(r"\bjp-mod-active\b"))


def test_lab_a_run_that_ended_while_no_page_was_open_is_told_once_on_the_next_page(
    page: Any, lab_server: Server
) -> None:
    """Close every page while a run runs (the laptop closed); when a page next opens, one
    notification says how the run ended; a reload does not say it again."""
    lab_server.write_notebook("runs_away.ipynb", SHORT.replace("'short'", "'away'"))
    lab_server.write_notebook("runs_back.ipynb", "x = 1")
    open_notebook_and_wait_idle(page, lab_server, "runs_away.ipynb")
    run_cell(page, 0)
    wait_for_running_run(lab_server, "runs_away.ipynb", "away")
    context = page.context
    page.close()  # no page of this server is open now; the kernel runs on
    deadline = time.monotonic() + 60
    while not any(
        r["desc"] == "away" and r["state"] == "finished"
        for r in lab_server.api("GET", "torchlab/api/runs")["runs"]
    ):
        assert time.monotonic() < deadline, "the run did not finish"
        time.sleep(0.2)
    back = context.new_page()  # the same browser: its localStorage remembers
    open_notebook_and_wait_idle(back, lab_server, "runs_back.ipynb")
    toast = back.locator(".Toastify__toast", has_text="runs_away.ipynb")
    expect(toast).to_contain_text("away finished: 60/60 it", timeout=20_000)
    time.sleep(2)  # more documents arrive: still one notification for the run
    expect(toast).to_have_count(1)
    toast.get_by_role("button", name="Go to cell").click()
    expect(current_tab(back)).to_have_text("runs_away.ipynb")
    back.reload()
    expect(back.locator(".jp-Notebook .jp-Cell").first).to_be_visible(timeout=60_000)
    expect(back.locator(".jp-torchlab-status")).to_contain_text("idle", timeout=60_000)
    time.sleep(3)  # several documents: the run was told already
    expect(back.locator(".Toastify__toast", has_text="runs_away.ipynb")).to_have_count(0)
