"""tl.launch from a real kernel: two forked gloo workers, rank 0's progress in the notebook."""

from __future__ import annotations

import json
import os
import time

import nbformat
import pytest
import torch

import jupyter_torchlab as tl
from tests.widgets.conftest import Kernel, kernel_env

SETUP = """
import psutil, torch
import jupyter_torchlab as tl
from jupyter_torchlab.train.data import cifar10
data = cifar10({root!r}, standin=True, train_size=256, test_size=64, in_memory=True)
torch.manual_seed(0)
_ = tl.TutorialNet()(torch.randn(2, 3, 32, 32))  # the notebook ran torch before forking

def train(epochs=2):
    model = tl.TutorialNet()
    return tl.fit(model, data.train, epochs=epochs, batch_size=16, val_data=data.test)
"""


def _html(output: dict) -> str:
    return output.get("data", {}).get("text/html", "")


@pytest.mark.slow
def test_launch_from_a_notebook_returns_rank_zeros_history_and_shows_its_progress(standin_root):
    from nbclient import NotebookClient

    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell(SETUP.format(root=str(standin_root))),
        nbformat.v4.new_code_cell("history = tl.launch(train, nprocs=2)"),
        nbformat.v4.new_code_cell(
            "import json\n"
            "print(json.dumps({'type': type(history).__name__, 'status': history.status,\n"
            "    'epochs': history.epochs,\n"
            "    'children': len(psutil.Process().children(recursive=True))}))"
        ),
        nbformat.v4.new_code_cell(
            "def bad():\n"
            "    import os\n"
            "    if os.environ['RANK'] == '1':\n"
            "        raise ValueError('bad labels on purpose')\n"
            "    return train(epochs=50)\n"
            "try:\n"
            "    tl.launch(bad, nprocs=2)\n"
            "except tl.LaunchError as e:\n"
            "    err = e\n"
            "print(json.dumps({'rank': err.rank, 'message': str(err).splitlines()[0],\n"
            "    'has_traceback': 'on purpose' in err.worker_traceback,\n"
            "    'children': len(psutil.Process().children(recursive=True))}))"
        ),
        nbformat.v4.new_code_cell(
            "def bars():\n"
            "    for _ in tl.progress(range(3), desc='worker bar'):\n"
            "        pass\n"
            "    print('printed by a worker')\n"
            "tl.launch(bars, nprocs=1)\n"
            "model = tl.launch(tl.TutorialNet, nprocs=2)\n"
            "try:\n"
            "    tl.launch(lambda: (lambda: 1), nprocs=2)\n"
            "except tl.LaunchError as e:\n"
            "    unpicklable = str(e).splitlines()[0]\n"
            "print(json.dumps({'model': type(model).__name__,\n"
            "    'device': str(next(model.parameters()).device), 'unpicklable': unpicklable}))"
        ),
    ]
    NotebookClient(nb, kernel_name="python3", timeout=300).execute(env=kernel_env())

    records = [o for o in nb.cells[1].outputs if 'class="torchlab-fit"' in _html(o)]
    assert len(records) == 1, nb.cells[1].outputs  # one display for the run: rank 0's
    record = _html(records[0])
    assert 'data-status="done"' in record
    assert "2 processes" in record
    assert record.count("<tr") >= 3  # the header and one row per epoch, replayed from rank 0

    got = json.loads(nb.cells[2].outputs[-1]["text"])
    assert got["type"] == "History"
    assert got["status"] == "done"
    assert len(got["epochs"]) == 2
    assert got["epochs"][1]["train_loss"] < got["epochs"][0]["train_loss"]
    assert got["epochs"][0]["val_acc"] is not None
    assert got["children"] == 0  # the workers are gone

    failed = json.loads(nb.cells[3].outputs[-1]["text"])
    assert failed["rank"] == 1
    assert failed["message"] == "rank 1 of 2 raised ValueError: bad labels on purpose"
    assert failed["has_traceback"]
    assert failed["children"] == 0  # rank 0 was stopped, not left training for 50 epochs

    streams = "".join(o.get("text", "") for o in nb.cells[4].outputs)
    assert "printed by a worker" in streams
    assert "worker bar" in streams  # a text bar: no widget from a forked worker
    widgets = [o for o in nb.cells[4].outputs if o.get("output_type") == "display_data"]
    assert widgets == []
    returned = json.loads(nb.cells[4].outputs[-1]["text"])
    assert returned["model"] == "TutorialNet"
    assert returned["device"] == "cpu"
    assert returned["unpicklable"].startswith("rank 0 of 2 raised TypeError: tl.launch returns")
    assert "cannot be pickled" in returned["unpicklable"]


@pytest.fixture
def kernel(standin_root, tmp_path):
    """A fresh kernel with SETUP run (these tests interrupt or kill it)."""
    from jupyter_client.manager import KernelManager

    km = KernelManager(kernel_name="python3")
    km.start_kernel(cwd=str(tmp_path), env=kernel_env())
    k = Kernel(km)
    try:
        k.execute(SETUP.format(root=str(standin_root)))
        yield k
    finally:
        k.kc.stop_channels()
        km.shutdown_kernel(now=True)


@pytest.mark.slow
def test_interrupting_the_kernel_stops_the_workers_and_keeps_the_history(kernel):
    k, km = kernel, kernel.km
    msg_id = k.kc.execute("tl.launch(train, args=(200,), nprocs=2)")
    deadline = time.monotonic() + 120
    seen_epoch = False
    while not seen_epoch and time.monotonic() < deadline:
        msg = k.kc.get_iopub_msg(timeout=120)
        # the table's first row arrives when rank 0 finishes epoch 1
        state = msg["content"].get("data", {}).get("state", {})
        seen_epoch = "<td" in str(state.get("value", ""))
    assert seen_epoch, "rank 0's first epoch never reached the notebook"
    km.interrupt_kernel()
    msgs = k.collect(msg_id, timeout=60)
    errors = [m["content"]["ename"] for m in msgs if m["msg_type"] == "error"]
    assert errors == ["KeyboardInterrupt"]
    k.execute("import sys\nerr = sys.last_value  # what the interrupted cell raised")
    after = k.value(
        "(err.history.status, len(err.history.epochs) >= 1, "
        "len(psutil.Process().children(recursive=True)))"
    )
    assert after == ("interrupted", True, 0)
    # the kernel is usable, and can launch again
    assert k.value("tl.launch(train, args=(1,), nprocs=2).status") == "done"


@pytest.mark.slow
def test_shutting_the_kernel_down_mid_launch_leaves_no_worker_behind(kernel):
    import psutil

    k, km = kernel, kernel.km
    k.kc.execute("tl.launch(train, args=(200,), nprocs=2)")
    parent = psutil.Process(km.provisioner.process.pid)  # type: ignore[union-attr]
    deadline = time.monotonic() + 120
    workers: list[psutil.Process] = []
    while len(workers) < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
        # the workers lead process groups of their own, so the kernel's group kill misses them
        workers = [p for p in parent.children() if os.getpgid(p.pid) == p.pid]
    assert len(workers) == 2, parent.children()
    time.sleep(1.0)  # training
    k.kc.stop_channels()
    km.shutdown_kernel(now=True)
    _, alive = psutil.wait_procs(workers, timeout=20)
    assert alive == [], f"workers outlived their kernel: {alive}"


def test_launch_refuses_when_cuda_is_already_initialised(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)
    with pytest.raises(RuntimeError, match="CUDA is already initialised in this kernel") as err:
        tl.launch(print, nprocs=2)
    assert "Restart the kernel and call tl.launch before anything touches CUDA" in str(err.value)
    assert "torchrun --nproc_per_node=N" in str(err.value)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the machine without a GPU")
def test_launch_without_a_gpu_asks_for_nprocs():
    with pytest.raises(ValueError, match="pass nprocs=N"):
        tl.launch(print)
    with pytest.raises(ValueError, match="nprocs must be a positive int"):
        tl.launch(print, nprocs=0)
    with pytest.raises(TypeError, match="fn must be a function"):
        tl.launch("train.py", nprocs=2)  # type: ignore[arg-type]


@pytest.mark.slow
def test_a_launched_run_shows_the_same_peak_memory_line_as_a_plain_fit(standin_root):
    """The worker's peak accelerator memory reaches the notebook's display with the events.

    No GPU here: the allocator's reading is replaced in the kernel before the workers fork, so
    both runs read the same figure through fit's own path.
    """
    from nbclient import NotebookClient

    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell(
            SETUP.format(root=str(standin_root))
            + "import jupyter_torchlab.train.device as _devices\n"
            + "_devices.peak_memory = lambda device: 3 * 2**30\n"
        ),
        nbformat.v4.new_code_cell("plain = train(epochs=1)"),
        nbformat.v4.new_code_cell("launched = tl.launch(train, kwargs={'epochs': 1}, nprocs=2)"),
    ]
    NotebookClient(nb, kernel_name="python3", timeout=300).execute(env=kernel_env())

    def record_text(cell: int) -> str:
        records = [o for o in nb.cells[cell].outputs if 'class="torchlab-fit"' in _html(o)]
        assert len(records) == 1, nb.cells[cell].outputs
        return records[0]["data"]["text/plain"]

    plain, launched = record_text(1), record_text(2)
    # the footer line, and the epoch table's peak-memory column, in both runs
    footers = [line for line in plain.splitlines() if "peak memory 3.0 GiB" in line]
    assert footers, plain
    assert "peak memory 3.0 GiB" in launched
    for text in (plain, launched):
        header, row = text.splitlines()[1:3]
        assert header.split()[-2:] == ["peak", "memory"]
        assert row.split()[-2:] == ["3.0", "GiB"]
    assert "2 processes" in launched
