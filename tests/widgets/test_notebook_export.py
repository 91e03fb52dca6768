"""An executed notebook keeps a static record of each finished display, so exports show it."""

import nbformat
import pytest
from nbclient import NotebookClient
from nbconvert import HTMLExporter

from .conftest import kernel_env

pytestmark = pytest.mark.slow

WIDGET = "application/vnd.jupyter.widget-view+json"


def test_exported_html_contains_the_final_progress_summary(tmp_path, monkeypatch):
    for key, value in kernel_env().items():
        monkeypatch.setenv(key, value)
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell(
            "import jupyter_torchlab as tl\n"
            "bar = tl.progress(range(500), desc='export-me')\n"
            "for i in bar:\n"
            "    bar.log(loss=1.0 / (i + 1))\n"
        ),
        nbformat.v4.new_code_cell(
            "for i in tl.progress(range(100), desc='cut-short'):\n    if i == 30:\n        break\n"
        ),
    ]
    NotebookClient(
        nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    for cell in nb.cells:
        (output,) = cell.outputs
        assert WIDGET not in output["data"]  # the live widget was replaced by the record
    html, _ = HTMLExporter().from_notebook_node(nb)
    assert "export-me" in html
    assert "500/500" in html
    assert 'data-status="done"' in html
    assert "loss=" in html
    assert "30/100" in html
    assert 'data-status="stopped"' in html
    assert "model not found" not in html
    text = nb.cells[0].outputs[0]["data"]["text/plain"]
    assert text.startswith("export-me: 100%|")  # tqdm's line
    assert "| 500/500 [" in text
