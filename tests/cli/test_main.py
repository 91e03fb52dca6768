"""``jupyter torchlab``: the tutorial command, help, and a cheap import."""

import subprocess
import sys
from pathlib import Path

from jupyter_torchlab.tutorial import TUTORIAL_NAME, tutorial_path

from ._helpers import JUPYTER, cli
from ._helpers import user_env as _env


def test_tutorial_prints_the_path_of_a_fresh_copy(tmp_path):
    first = cli("tutorial", str(tmp_path))
    assert first.returncode == 0, first.stderr
    path = Path(first.stdout.strip())
    assert path == tmp_path / TUTORIAL_NAME
    assert path.read_bytes() == tutorial_path().read_bytes()

    second = subprocess.run(
        [str(JUPYTER), "torchlab", "tutorial"],
        cwd=tmp_path,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert second.returncode == 0, second.stderr
    assert (tmp_path / second.stdout.strip()).resolve() == (
        tmp_path / "first_pytorch_classifier-1.ipynb"
    ).resolve()


def test_tutorial_into_a_missing_directory_fails_with_advice(tmp_path):
    result = cli("tutorial", str(tmp_path / "missing"))
    assert result.returncode == 1
    assert "no such directory; create it first" in result.stderr
    assert result.stdout == ""


def test_python_dash_m_and_help():
    result = subprocess.run(
        [sys.executable, "-m", "jupyter_torchlab", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0
    for command in ("tutorial", "doctor", "run"):
        assert command in result.stdout
    assert "usage: jupyter torchlab" in result.stdout


def test_no_command_prints_help_and_fails():
    result = cli()
    assert result.returncode == 2
    assert "usage: jupyter torchlab" in result.stdout


def test_importing_the_cli_does_not_import_torch():
    code = (
        "import sys, jupyter_torchlab.cli; print('torch' in sys.modules, 'nbclient' in sys.modules)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )
    assert result.stdout.split() == ["False", "False"]


def test_loading_the_server_extension_does_not_import_torch():
    # what jupyter_server does at start: import the package and load its extension module; torch
    # would add a second or more to every server start and memory to every user server on a hub
    code = (
        "import sys, importlib, jupyter_torchlab as tl\n"
        "for point in tl._jupyter_server_extension_points():\n"
        "    importlib.import_module(point['module'])\n"
        "print('torch' in sys.modules, 'ipywidgets' in sys.modules)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )
    assert result.stdout.split() == ["False", "False"], result.stderr
