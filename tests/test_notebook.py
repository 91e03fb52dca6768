import ast
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from jupyter_torchlab.cli.run import inject_parameters
from jupyter_torchlab.tutorial import tutorial_path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def small_params(data_root):
    """Parameters that run the whole tutorial in well under a minute on a CPU."""
    return {
        "EPOCHS": 1,
        "TRAIN_SIZE": 400,
        "TEST_SIZE": 200,
        "BENCH_IMAGES": 96,
        "FAST_BATCH_SIZE": 32,
        "FAST_EPOCHS": 1,
        "DATA_ROOT": str(data_root),
        "DOWNLOAD": False,
    }


def outputs_text(nb):
    """Return every text output of the notebook, joined."""
    parts = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if out["output_type"] == "stream":
                parts.append(out["text"])
            elif "data" in out:
                parts.append(out["data"].get("text/plain", ""))
    return "\n".join(parts)


def errors(nb):
    return [
        (i, out.get("ename"), out.get("evalue"))
        for i, cell in enumerate(nb.cells)
        for out in cell.get("outputs", [])
        if out["output_type"] == "error"
    ]


def images(nb):
    return sum(
        "image/png" in out.get("data", {}) for cell in nb.cells for out in cell.get("outputs", [])
    )


# -- the stored notebook -----------------------------------------------------------------------


def test_stored_notebook_is_clean_and_valid():
    nb = nbformat.read(tutorial_path(), as_version=4)
    nbformat.validate(nb)
    assert nb.metadata.kernelspec.name == "python3"
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.outputs == [] and c.execution_count is None for c in code)
    # every cell id is stable (no random ids that change on each regeneration)
    assert [c.id for c in nb.cells] == [f"cell-{i:02d}" for i in range(len(nb.cells))]


def test_first_code_cell_holds_the_parameters():
    nb = nbformat.read(tutorial_path(), as_version=4)
    first = next(c for c in nb.cells if c.cell_type == "code")
    assert "parameters" in first.metadata.tags
    names = {t.id for node in ast.parse(first.source).body for t in node.targets}
    assert {"EPOCHS", "BATCH_SIZE", "TRAIN_SIZE", "TEST_SIZE", "DATA_ROOT", "FAST_EPOCHS"} <= names
    # the official tutorial's settings are the defaults
    assert "EPOCHS = 2" in first.source
    assert "BATCH_SIZE = 4" in first.source


def test_notebook_matches_its_generator():
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "make_notebook.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr


# -- executed end to end -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    """Build the offline stand-in once for both runs (the notebook reuses it)."""
    import jupyter_torchlab as tl

    root = tmp_path_factory.mktemp("data")
    tl.cifar10(root, download=False)
    return root


@pytest.mark.slow
def test_tutorial_runs_end_to_end_in_a_kernel(tmp_path, data_root):
    """Run it as Jupyter would (widgets on), with small parameters, offline."""
    from nbclient import NotebookClient

    nb = nbformat.read(tutorial_path(), as_version=4)
    inject_parameters(nb, small_params(data_root))
    env = {k: v for k, v in os.environ.items() if k != "JUPYTER_TORCHLAB_PROGRESS"}
    client = NotebookClient(
        nb,
        kernel_name="python3",
        timeout=300,
        resources={"metadata": {"path": str(tmp_path)}},
        allow_errors=True,  # so a failure shows which cell, not only the first traceback
    )
    client.execute(env=env)

    assert errors(nb) == []
    text = outputs_text(nb)
    assert "Stand-in data: these are NOT the CIFAR-10 images" in text
    assert "Accuracy of the network on the 200 test images:" in text
    assert text.count("Accuracy for class:") == 10
    assert "parameters" in text  # TutorialNet's parameter count
    assert "Loaded cifar_net.pth, saved after epoch 1" in text
    assert (tmp_path / "cifar_net.pth").is_file()
    import torch

    if not torch.cuda.is_available():
        assert "No GPU or other accelerator is visible to PyTorch" in text
        assert "Skipped: there is no accelerator on this machine." in text
        assert "mixed precision: skipped" in text
    for step in ("batch 32", "2 loader workers", "data in memory", "channels_last", "ResNet9"):
        assert step in text
    assert "TutorialNet, fast recipe" in text
    # training images, loss curve, test images, two confusion matrices
    assert images(nb) == 5


@pytest.mark.slow
def test_accelerator_branches_run(tmp_path, data_root):
    """Take the GPU code paths on the CPU: no GPU here, but their code must run too."""
    from nbclient import NotebookClient

    nb = nbformat.read(tutorial_path(), as_version=4)
    params = {**small_params(data_root), "TRAIN_SIZE": 200, "TEST_SIZE": 100, "BENCH_IMAGES": 64}
    inject_parameters(nb, params)
    switch = 'HAVE_ACCELERATOR = device.type != "cpu"'
    cells = [c for c in nb.cells if switch in c.source]
    assert len(cells) == 1
    cells[0].source = cells[0].source.replace(switch, "HAVE_ACCELERATOR = True")
    client = NotebookClient(
        nb,
        kernel_name="python3",
        timeout=300,
        resources={"metadata": {"path": str(tmp_path)}},
        allow_errors=True,
    )
    client.execute(env={**os.environ, "JUPYTER_TORCHLAB_PROGRESS": "text"})

    assert errors(nb) == []
    text = outputs_text(nb)
    assert "x the CPU" in text  # the accelerator/CPU speed comparison
    assert "test accuracy" in text  # the tutorial training repeated on the accelerator
    assert "mixed precision " in text  # measured, not skipped
    assert "ResNet9(width=64)" in text


@pytest.mark.slow
def test_jupyter_torchlab_run_runs_the_tutorial_by_default(tmp_path, data_root):
    params = small_params(data_root)
    args = [arg for name, value in params.items() for arg in ("-p", f"{name}={value!r}")]
    result = subprocess.run(
        [str(BIN / "jupyter-torchlab"), "run", *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "Accuracy of the network on the 200 test images:" in result.stdout  # streamed live
    executed = nbformat.read(tmp_path / "first_pytorch_classifier.executed.ipynb", as_version=4)
    assert errors(executed) == []
    assert "Accuracy for class:" in outputs_text(executed)
    # headless: fit printed text progress, not widgets
    assert "application/vnd.jupyter.widget-view+json" not in nbformat.writes(executed)
