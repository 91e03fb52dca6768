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
hooks = {}
try:
    import IPython.core.events as ev
except ImportError:
    pass
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


def test_in_a_kernel_load_ext_registers_the_hooks_once(tmp_path):
    from nbclient import NotebookClient
    from nbformat.v4 import new_code_cell, new_notebook

    count = (
        "import IPython\nev = IPython.get_ipython().events.callbacks['post_run_cell']\n"
        "print(sorted(f.__module__ for f in ev if f.__module__.startswith('jupyter_torchlab')))"
    )
    nb = new_notebook(
        cells=[
            new_code_cell("import jupyter_torchlab\n" + count),
            new_code_cell("%load_ext jupyter_torchlab\n" + count),
            new_code_cell("import jupyter_torchlab as tl\ntl.progress\n" + count),
        ]
    )
    NotebookClient(nb, timeout=120, kernel_name="python3").execute()
    printed = [cell.outputs[-1]["text"].strip() for cell in nb.cells]
    assert printed[0] == "[]"  # the import alone registered nothing
    hooks = str(
        [
            "jupyter_torchlab.widgets._cell",
            "jupyter_torchlab.widgets._cell_cost",
            "jupyter_torchlab.widgets.memory_guard_note",
            "jupyter_torchlab.widgets.oom_display",
        ]
    )
    assert printed[1] == hooks
    assert printed[2] == hooks  # once: using a name afterwards adds none
