"""The user's path: the wheel, no extras, into a fresh environment that only has JupyterLab.

Our own scripts install test and benchmark extras; a user runs ``pip install jupyter-torchlab``
into the Jupyter they already have. This builds the wheel from the checkout, installs it that way
into a new virtual environment (no access to ours), checks that both extensions are enabled
there, and runs the bundled tutorial with small parameters through the user's own command.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]

SMALL = {
    "EPOCHS": 1,
    "TRAIN_SIZE": 300,
    "TEST_SIZE": 100,
    "BENCH_IMAGES": 64,
    "FAST_BATCH_SIZE": 32,
    "FAST_EPOCHS": 1,
    "DOWNLOAD": False,
}


def _user_env(venv: Path, home: Path) -> dict[str, str]:
    """An environment like a user's shell with that venv activated: nothing of ours leaks in."""
    keep = ("LANG", "LC_ALL", "TMPDIR", "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE")
    env = {k: v for k, v in os.environ.items() if k.startswith("PIP_") or k in keep}
    env["HOME"] = str(home)
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}/usr/local/bin:/usr/bin:/bin"
    env["VIRTUAL_ENV"] = str(venv)
    # the pip cache of the machine, so packages already downloaded are not fetched again
    env["PIP_CACHE_DIR"] = str(Path.home() / ".cache" / "pip")
    return env


def _run(args: list[str], env: dict[str, str], cwd: Path, timeout: float) -> str:
    done = subprocess.run(
        args, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert done.returncode == 0, f"{args} failed:\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
    return done.stdout + done.stderr


def test_a_bare_install_into_a_fresh_jupyterlab_runs_the_tutorial(tmp_path: Path) -> None:
    wheels, venv, home, work = (tmp_path / d for d in ("wheels", "venv", "home", "work"))
    for folder in (home, work):
        folder.mkdir()
    # the wheel, as `pip install jupyter-torchlab` would get it from the registry
    _run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(wheels), str(ROOT)],
        {**os.environ},
        tmp_path,
        900,
    )
    (wheel,) = wheels.glob("jupyter_torchlab-*.whl")

    base = getattr(sys, "_base_executable", sys.executable)
    _run([base, "-m", "venv", str(venv)], {**os.environ}, tmp_path, 300)
    env = _user_env(venv, home)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q"]
    _run([*pip, "jupyterlab"], env, work, 900)  # the Jupyter the user already has
    _run([*pip, str(wheel)], env, work, 900)  # no extras

    servers = _run([str(venv / "bin" / "jupyter"), "server", "extension", "list"], env, work, 120)
    assert re.search(r"jupyter_torchlab\s.*enabled", servers), servers
    labs = _run([str(venv / "bin" / "jupyter"), "labextension", "list"], env, work, 120)
    assert re.search(r"jupyter-torchlab v[\d.]+\s.*enabled.*OK", labs), labs
    # nothing of the checkout is importable there but the installed package
    where = _run(
        [
            str(venv / "bin" / "python"),
            "-c",
            "import jupyter_torchlab; print(jupyter_torchlab.__file__)",
        ],
        env,
        work,
        120,
    )
    assert where.strip().startswith(str(venv)), where

    params = {**SMALL, "DATA_ROOT": str(work / "data")}
    args = [arg for name, value in params.items() for arg in ("-p", f"{name}={value!r}")]
    log = _run([str(venv / "bin" / "jupyter"), "torchlab", "run", *args], env, work, 900)
    assert "Accuracy of the network on the 100 test images:" in log
    executed = nbformat.read(work / "first_pytorch_classifier.executed.ipynb", as_version=4)
    errors = [
        out
        for cell in executed.cells
        for out in cell.get("outputs", [])
        if out.get("output_type") == "error"
    ]
    assert errors == []
    # the plotting cells ran: matplotlib came with the bare install
    images = [
        out
        for cell in executed.cells
        for out in cell.get("outputs", [])
        if "image/png" in out.get("data", {})
    ]
    assert len(images) >= 3
