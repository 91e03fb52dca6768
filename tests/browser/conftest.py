"""Real servers and a real browser for the labextension tests.

Each server is a `jupyter lab` / `jupyter notebook` subprocess in a fresh root directory with its
own config, settings and workspace directories, a random token and a free port. The browser is
Debian's Chromium driven by Playwright; a missing browser fails the tests (CI must not go green
without having run them).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = os.environ.get("TORCHLAB_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SERVER_START_TIMEOUT = 90.0


@pytest.fixture(scope="session", autouse=True)
def _teardown_on_sigterm() -> Iterator[None]:
    """Turn SIGTERM (e.g. from `timeout`) into an interrupt so servers and kernels get stopped."""

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.getsignal(signal.SIGTERM)
    if previous is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, interrupt)
    yield
    if previous is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, previous)


@dataclass
class Server:
    """A running Jupyter server."""

    url: str
    token: str
    root: Path
    process: subprocess.Popen[bytes]
    log: Path

    def page_url(self, path: str, **query: str) -> str:
        params = "&".join([f"token={self.token}", *(f"{k}={v}" for k, v in query.items())])
        return f"{self.url}{path.lstrip('/')}?{params}"

    def api(self, method: str, path: str, body: Any = None) -> Any:
        """Call the server's REST API with the token; return the decoded JSON (or None)."""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            f"{self.url}{path.lstrip('/')}",
            data=data,
            method=method,
            headers={"Authorization": f"token {self.token}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            raw = response.read()
        return json.loads(raw) if raw else None

    def write_notebook(self, name: str, *sources: str) -> Path:
        """Write a python3 notebook with one code cell per source into the server root."""
        notebook = {
            "cells": [
                {
                    "cell_type": "code",
                    "execution_count": None,
                    "id": f"cell{i}",
                    "metadata": {},
                    "outputs": [],
                    "source": source,
                }
                for i, source in enumerate(sources)
            ],
            "metadata": {
                "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
                "language_info": {"name": "python"},
            },
            "nbformat": 4,
            "nbformat_minor": 5,
        }
        path = self.root / name
        path.write_text(json.dumps(notebook, indent=1))
        return path

    def tail_log(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]

    def shut_down_kernels(self) -> None:
        """Delete every session and kernel, so one test's kernels do not load the next one's.

        Best effort: a kernel that is already going (404) or slow to stop must not turn the test
        that used it into an error; the server's own shutdown stops whatever is left.
        """
        gone = (urllib.error.URLError, TimeoutError, ConnectionError)
        with contextlib.suppress(*gone):
            for session in self.api("GET", "api/sessions"):
                with contextlib.suppress(*gone):
                    self.api("DELETE", f"api/sessions/{session['id']}")
            for kernel in self.api("GET", "api/kernels"):
                with contextlib.suppress(*gone):
                    self.api("DELETE", f"api/kernels/{kernel['id']}")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _labextension_installed() -> bool:
    from jupyter_core.paths import jupyter_path

    return any(
        (Path(d) / "jupyter-torchlab" / "package.json").is_file()
        for d in jupyter_path("labextensions")
    )


def _start(
    app: str, tmp_path: Path, extra_args: tuple[str, ...] = (), torchlab_routes: bool = True
) -> Iterator[Server]:
    """Start ``jupyter <app>`` in fresh directories; ``extra_args`` come last (and win).

    It is ready once ``api/status`` answers and, with ``torchlab_routes``, our metrics route too
    (a server whose extension did not load answers 503 there for good).
    """
    if not _labextension_installed():
        pytest.fail(
            "the jupyter-torchlab labextension is not installed in this environment: run "
            "`pip install -e .` (or `pip install .`) from the repository root, which builds it"
        )
    root = tmp_path / "root"
    root.mkdir()
    home = tmp_path / "home"
    for sub in ("config", "settings", "workspaces", "runtime"):
        (home / sub).mkdir(parents=True)
    # No "get notified about Jupyter news?" toast over the UI under test.
    news = (
        home
        / "settings"
        / "@jupyterlab"
        / "apputils-extension"
        / "notification.jupyterlab-settings"
    )
    news.parent.mkdir(parents=True)
    news.write_text(json.dumps({"fetchNews": "false"}))
    token = secrets.token_hex(16)
    port = _free_port()
    env = dict(
        os.environ,
        # User-level state of this machine must not leak in (settings, workspaces, config).
        JUPYTER_CONFIG_DIR=str(home / "config"),
        JUPYTER_RUNTIME_DIR=str(home / "runtime"),
        JUPYTERLAB_SETTINGS_DIR=str(home / "settings"),
        JUPYTERLAB_WORKSPACES_DIR=str(home / "workspaces"),
        IPYTHONDIR=str(home / "ipython"),
        PYTHONWARNINGS="ignore",
    )
    log = tmp_path / f"{app}.log"
    args = [
        sys.executable,
        "-m",
        "jupyterlab" if app == "lab" else "notebook",
        "--no-browser",
        f"--port={port}",
        "--ip=127.0.0.1",
        f"--ServerApp.token={token}",
        f"--ServerApp.root_dir={root}",
        "--ServerApp.port_retries=0",
        "--TorchlabExtension.sample_interval=0.5",
    ]
    if app == "lab":
        args.append("--LabApp.expose_app_in_browser=True")
    # an option given twice is refused: the caller's replaces ours
    given = {arg.split("=", 1)[0] for arg in extra_args}
    args = [arg for arg in args if arg.split("=", 1)[0] not in given] + list(extra_args)
    if os.geteuid() == 0:
        args.append("--allow-root")
    with log.open("wb") as out:
        process = subprocess.Popen(
            args, cwd=root, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    server = Server(f"http://127.0.0.1:{port}/", token, root, process, log)
    try:
        deadline = time.monotonic() + SERVER_START_TIMEOUT
        while True:
            if process.poll() is not None:
                pytest.fail(f"jupyter {app} exited with {process.returncode}:\n{server.tail_log()}")
            try:
                server.api("GET", "api/status")
                if torchlab_routes:
                    server.api("GET", "torchlab/api/metrics")
                break
            except (urllib.error.URLError, ConnectionError):
                if time.monotonic() > deadline:
                    pytest.fail(f"jupyter {app} did not answer in time:\n{server.tail_log()}")
                time.sleep(0.25)
        yield server
    finally:
        _stop(process)


def _stop(process: subprocess.Popen[bytes]) -> None:
    """Stop the server like Ctrl-C would (it shuts its kernels down), then make sure."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
    # Kernels are in the same session: leave nothing behind even after a crash.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def _lab_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    yield from _start("lab", tmp_path_factory.mktemp("lab"))


@pytest.fixture(scope="module")
def _notebook_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    yield from _start("notebook", tmp_path_factory.mktemp("notebook"))


@pytest.fixture
def lab_server(_lab_server: Server) -> Iterator[Server]:
    """The module's `jupyter lab`; the kernels a test started are shut down after it."""
    yield _lab_server
    _lab_server.shut_down_kernels()


@pytest.fixture
def notebook_server(_notebook_server: Server) -> Iterator[Server]:
    """The module's `jupyter notebook`; the kernels a test started are shut down after it."""
    yield _notebook_server
    _notebook_server.shut_down_kernels()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(
            f"Chromium not found at {CHROMIUM}: install Debian's package "
            "(`apt-get install chromium`) or set TORCHLAB_CHROMIUM; the browser tests must run"
        )
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    from playwright.sync_api import expect

    context = browser.new_context(viewport={"width": 1400, "height": 900})
    context.set_default_timeout(30_000)
    # expect()'s own default (5 s) is not the context's: what the page shows after a user's
    # action may take longer on a loaded 2-core runner; a test that times something says so
    expect.set_options(timeout=15_000)
    page = context.new_page()
    try:
        yield page
    finally:
        context.close()
