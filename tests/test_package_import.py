"""Importing the package defines names and nothing else; using one sets up the kernel side."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

PROBE = """
import json, sys
before = set(sys.modules)
import jupyter_torchlab as tl
loaded = sorted(set(sys.modules) - before)
from jupyter_torchlab.train import display  # what fit(progress=True) would use, were it used
print(json.dumps({"loaded": loaded, "default": display._default is not None, "all": tl.__all__}))
"""


def _run(code: str) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def test_importing_the_package_loads_no_kernel_side_module_and_sets_nothing():
    result = _run(PROBE)
    loaded = result["loaded"]
    ours = [m for m in loaded if m.startswith("jupyter_torchlab")]
    assert ours == ["jupyter_torchlab"], ours
    for heavy in ("torch", "ipywidgets", "IPython", "ipykernel", "tqdm", "numpy"):
        assert not any(m == heavy or m.startswith(heavy + ".") for m in loaded), heavy
    assert result["default"] is False  # fit's default display is not set by the import


def test_the_public_list_is_complete_and_each_name_loads():
    import jupyter_torchlab as tl

    names = [n for n in tl.__all__ if n != "__version__"]
    assert len(names) == len(set(names))
    for name in names:
        assert getattr(tl, name) is not None
    assert sorted(tl.__all__) == sorted(n for n in dir(tl) if n in tl.__all__)
    with pytest.raises(AttributeError, match="no attribute 'fitt'"):
        tl.fitt  # noqa: B018


# the shell's pre_run_cell and post_run_cell callbacks of ours, by module, as a cell prints them
COUNT = """
import IPython
_ev = IPython.get_ipython().events.callbacks
print({e: sorted(f.__module__ for f in _ev[e] if f.__module__.startswith('jupyter_torchlab'))
       for e in ('pre_run_cell', 'post_run_cell')})
"""
HOOKS = {
    "pre_run_cell": [
        "jupyter_torchlab.widgets._cell_cost",
        "jupyter_torchlab.widgets.memory_guard_note",
    ],
    "post_run_cell": [
        "jupyter_torchlab.widgets._cell",
        "jupyter_torchlab.widgets._cell_cost",
        "jupyter_torchlab.widgets.memory_guard_note",
        "jupyter_torchlab.widgets.oom_display",
    ],
}
NONE = {"pre_run_cell": [], "post_run_cell": []}


def _printed(*cells: str) -> list[object]:
    """Run the cells in one fresh kernel; return what each printed last, evaluated."""
    import ast

    from nbclient import NotebookClient
    from nbformat.v4 import new_code_cell, new_notebook

    nb = new_notebook(cells=[new_code_cell(code + COUNT) for code in cells])
    NotebookClient(nb, timeout=120, kernel_name="python3").execute()
    return [
        ast.literal_eval(cell.outputs[-1]["text"].strip().splitlines()[-1]) for cell in nb.cells
    ]


def test_in_a_kernel_load_ext_registers_the_hooks_once():
    printed = _printed(
        "import jupyter_torchlab\n",
        "%load_ext jupyter_torchlab\n",
        "import jupyter_torchlab as tl\ntl.progress\n",
    )
    assert printed[0] == NONE  # the import alone registered nothing, before or after a cell
    assert printed[1] == HOOKS
    assert printed[2] == HOOKS  # once: using a name afterwards adds none


def test_in_a_kernel_the_tqdm_drop_in_sets_up_the_kernel_side_at_its_first_bar():
    # the drop-in uses no tl.* name: its first bar runs the setup (the OOM note, the cell's
    # GPU peak for the server, the memory guard's note), and a second bar adds nothing
    printed = _printed(
        "from jupyter_torchlab.tqdm import tqdm\n",
        "list(tqdm(range(3)))\n",
        "list(tqdm(range(3)))\n",
    )
    assert printed[0] == NONE  # importing the drop-in registered nothing
    assert printed[1] == HOOKS
    assert printed[2] == HOOKS
