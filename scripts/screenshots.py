#!/usr/bin/env python
"""Capture the README screenshots from a real JupyterLab in Debian's Chromium.

    .venv/bin/python scripts/screenshots.py [--out docs] [--chromium /usr/bin/chromium]

Starts `jupyter lab` in a temporary directory (the installed jupyter-torchlab, so run
`pip install -e .` first), drives it with Playwright and writes launcher.png, statusbar.png,
panel.png, panel-dark.png and widgets.png. Nothing is downloaded: the training screenshot uses
random tensors shaped like CIFAR-10.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

TRAINING_CELLS = [
    "import jupyter_torchlab as tl\ntl.monitor()",
    "import torch\n"
    "from torch.utils.data import TensorDataset\n"
    "\n"
    "# random tensors shaped like CIFAR-10, so the screenshot needs no download\n"
    "train = TensorDataset(torch.randn(6000, 3, 32, 32), torch.randint(0, 10, (6000,)))\n"
    "val = TensorDataset(torch.randn(1000, 3, 32, 32), torch.randint(0, 10, (1000,)))\n"
    "model = tl.TutorialNet()\n"
    "history = tl.fit(model, train, val_data=val, epochs=3, batch_size=32)",
]


def _notebook(*sources: str) -> str:
    cells = [
        {
            "cell_type": "code",
            "execution_count": None,
            "id": f"c{i}",
            "metadata": {},
            "outputs": [],
            "source": src,
        }
        for i, src in enumerate(sources)
    ]
    return json.dumps(
        {
            "cells": cells,
            "metadata": {
                "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
                "language_info": {"name": "python"},
            },
            "nbformat": 4,
            "nbformat_minor": 5,
        }
    )


@contextlib.contextmanager
def jupyter_lab(root: Path) -> Iterator[str]:
    """Run jupyter lab on a free port in `root`; yield its URL with the token query."""
    home = root.parent / "home"
    news = home / "settings" / "@jupyterlab" / "apputils-extension"
    news.mkdir(parents=True)
    (news / "notification.jupyterlab-settings").write_text('{"fetchNews": "false"}')
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    token = secrets.token_hex(16)
    env = dict(
        os.environ,
        JUPYTER_CONFIG_DIR=str(home / "config"),
        JUPYTERLAB_SETTINGS_DIR=str(home / "settings"),
        JUPYTERLAB_WORKSPACES_DIR=str(home / "workspaces"),
    )
    args = [
        sys.executable,
        "-m",
        "jupyterlab",
        "--no-browser",
        "--ip=127.0.0.1",
        f"--port={port}",
        f"--ServerApp.token={token}",
        f"--ServerApp.root_dir={root}",
        "--LabApp.expose_app_in_browser=True",
    ]
    if os.geteuid() == 0:
        args.append("--allow-root")
    log = (root.parent / "lab.log").open("wb")
    proc = subprocess.Popen(
        args, cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    base = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 90
        while True:
            if proc.poll() is not None:
                raise SystemExit(f"jupyter lab exited; see {log.name}")
            try:
                urllib.request.urlopen(f"{base}torchlab/api/metrics?token={token}", timeout=5)
                break
            except (urllib.error.URLError, ConnectionError):
                if time.monotonic() > deadline:
                    raise SystemExit("jupyter lab did not start in 90 s") from None
                time.sleep(0.3)
        yield f"{base}|{token}"
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()


def _open(page: Any, server: str, path: str) -> None:
    base, token = server.split("|")
    page.goto(f"{base}{path}?token={token}&reset")
    page.locator("#jp-main-dock-panel").wait_for(state="visible", timeout=60_000)


def _run_cell(page: Any, index: int) -> None:
    page.locator(".jp-NotebookPanel:visible .jp-Cell").nth(index).locator(
        ".jp-InputArea-editor"
    ).click()
    page.keyboard.press("Shift+Enter")


def _clip(box: dict[str, float], pad: float = 6, **override: float) -> dict[str, float]:
    clip = {
        "x": max(0, box["x"] - pad),
        "y": max(0, box["y"] - pad),
        "width": box["width"] + 2 * pad,
        "height": box["height"] + 2 * pad,
    }
    clip.update(override)
    return clip


def _box(locator: Any) -> dict[str, float]:
    box = locator.bounding_box()
    if box is None:
        raise RuntimeError(f"{locator} is not visible")
    return dict(box)


def capture(out: Path, chromium: str) -> list[Path]:
    """Write the screenshots into `out`; return their paths."""
    from playwright.sync_api import expect, sync_playwright

    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "workspace"
        root.mkdir()
        (root / "busy.ipynb").write_text(
            _notebook("import time\nfor step in range(120):\n    time.sleep(0.5)")
        )
        (root / "train.ipynb").write_text(_notebook(*TRAINING_CELLS))
        with jupyter_lab(root) as server, sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            page.set_default_timeout(60_000)

            # 1. The launcher tile, in the Notebook section.
            _open(page, server, "lab")
            section = page.locator(".jp-Launcher-section", has_text="Notebook").first
            section.locator(".jp-LauncherCard", has_text="PyTorch classifier tutorial").wait_for()
            path = out / "launcher.png"
            section.screenshot(path=path)
            written.append(path)

            # 2. The status bar while a cell runs.
            _open(page, server, "lab/tree/busy.ipynb")
            status = page.locator(".jp-torchlab-status")
            expect(status).to_contain_text("idle")
            _run_cell(page, 0)
            expect(status).to_contain_text("busy 0:04", timeout=30_000)
            bar = _box(page.locator("#jp-main-statusbar"))
            item = _box(status)
            path = out / "statusbar.png"
            page.screenshot(
                path=path,
                clip={
                    "x": 0,
                    "y": bar["y"] - 4,
                    "width": min(bar["width"], item["x"] + item["width"] + 160),
                    "height": bar["height"] + 8,
                },
            )
            written.append(path)

            # 3. The monitor panel, opened from the status bar item, light and dark.
            status.click()
            panel = page.locator("#jupyter-torchlab-monitor")
            expect(panel.locator(".jp-torchlab-kernel-row")).to_have_count(1)
            # Side bars open narrow; widen it like a user would, by dragging its edge.
            stack = _box(page.locator("#jp-right-stack"))
            page.mouse.move(stack["x"] - 2, stack["y"] + 300)
            page.mouse.down()
            page.mouse.move(stack["x"] - 120, stack["y"] + 300, steps=5)
            page.mouse.up()
            page.wait_for_timeout(6000)  # let the history charts fill a little
            path = out / "panel.png"
            panel.locator(".jp-torchlab-panel-body").screenshot(path=path)
            written.append(path)
            page.evaluate(
                "window.jupyterapp.commands.execute('apputils:change-theme',"
                " {theme: 'JupyterLab Dark'})"
            )
            page.locator("body[data-jp-theme-light='false']").wait_for(state="attached")
            page.wait_for_timeout(1500)
            path = out / "panel-dark.png"
            panel.locator(".jp-torchlab-panel-body").screenshot(path=path)
            written.append(path)
            page.evaluate(
                "window.jupyterapp.commands.execute('apputils:change-theme',"
                " {theme: 'JupyterLab Light'})"
            )
            page.locator("body[data-jp-theme-light='true']").wait_for(state="attached")
            row = panel.locator(".jp-torchlab-kernel-row")
            row.get_by_role("button", name="Interrupt").click()

            # 4. The notebook widgets during training: kernel monitor + fit progress.
            page.set_viewport_size({"width": 1280, "height": 1150})
            _open(page, server, "lab/tree/train.ipynb")
            expect(page.locator(".jp-torchlab-status")).to_contain_text("idle")
            page.evaluate("window.jupyterapp.commands.execute('application:toggle-right-area')")
            _run_cell(page, 0)
            _run_cell(page, 1)
            outputs = page.locator(".jp-NotebookPanel:visible .jp-OutputArea")
            # Into the second epoch, so the display has a finished epoch, a curve and an ETA.
            expect(outputs.nth(1)).to_contain_text("1/3", timeout=240_000)
            page.wait_for_timeout(4000)
            notebook = page.locator(".jp-NotebookPanel:visible .jp-WindowedPanel-outer")
            cells = page.locator(".jp-NotebookPanel:visible .jp-Cell")
            box, last = _box(notebook), _box(cells.nth(1))
            path = out / "widgets.png"
            bottom = last["y"] + last["height"] + 8
            page.screenshot(path=path, clip=_clip(box, pad=0, height=bottom - box["y"]))
            written.append(path)
            text = outputs.all_inner_texts()
            if any("Traceback" in t or "Error" in t for t in text):
                print("warning: the training cells raised:\n" + "\n".join(text), file=sys.stderr)
            page.evaluate("window.jupyterapp.commands.execute('notebook:interrupt-kernel')")
            browser.close()
    return written


def main() -> None:
    """Parse the command line and capture."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").strip().splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).parent.parent / "docs")
    parser.add_argument(
        "--chromium", default=os.environ.get("TORCHLAB_CHROMIUM", "/usr/bin/chromium")
    )
    args = parser.parse_args()
    if not os.access(args.chromium, os.X_OK):
        raise SystemExit(f"Chromium not found at {args.chromium}: apt-get install chromium")
    for path in capture(args.out, args.chromium):
        print(path)


if __name__ == "__main__":
    main()
