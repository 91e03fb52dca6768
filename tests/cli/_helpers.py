"""What the command-line tests share: run the installed console script as a user does."""

import os
import subprocess
import sys
from pathlib import Path

import nbformat

BIN = Path(sys.executable).parent
SCRIPT = BIN / "jupyter-torchlab"
JUPYTER = BIN / "jupyter"


def cli(*args, cwd=None, env=None, timeout=120):
    """Run the installed console script, the way a user does."""
    return subprocess.run(
        [str(SCRIPT), *args],
        cwd=cwd,
        env=env or user_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def user_env(**extra):
    # `jupyter torchlab` finds `jupyter-torchlab` on PATH, as in an activated environment
    return {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", **extra}


def make_notebook(path, *sources, params=None):
    nb = nbformat.v4.new_notebook()
    nb.metadata.kernelspec = {"name": "python3", "display_name": "Python 3", "language": "python"}
    cells = [nbformat.v4.new_markdown_cell("# a test notebook")]
    if params is not None:
        cells.append(nbformat.v4.new_code_cell(params, metadata={"tags": ["parameters"]}))
    cells += [nbformat.v4.new_code_cell(s) for s in sources]
    nb.cells = cells
    nbformat.write(nb, path)
    return path


def line_of(output, label):
    return next(line for line in output.splitlines() if line[5:].startswith(label + " "))
