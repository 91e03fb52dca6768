"""Runs published by a real kernel: the file beside its connection file, as the server reads it."""

from __future__ import annotations

import json
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from jupyter_client.manager import KernelManager

from jupyter_torchlab._runtime_files import read_runs, runs_file_name
from jupyter_torchlab.widgets import _runs

from .conftest import Kernel, comm_updates, kernel_env

pytestmark = pytest.mark.slow


class RunsKernel(Kernel):
    """A kernel whose connection file is named as a Jupyter server names it, and its runs file."""

    runs_file: Path

    def runs(self) -> list[dict[str, Any]]:
        found = read_runs(str(self.runs_file))
        return [] if found is None else list(found["runs"])  # type: ignore[arg-type]

    def run(self, desc: str) -> dict[str, Any] | None:
        return next((r for r in reversed(self.runs()) if r["desc"] == desc), None)

    def wait_run(self, desc: str, predicate: Any, timeout: float = 30) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        run = None
        while time.monotonic() < deadline:
            run = self.run(desc)
            if run is not None and predicate(run):
                return run
            time.sleep(0.05)
        raise AssertionError(f"run {desc!r} never matched; last: {run}")


@pytest.fixture(scope="module")
def kernel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunsKernel]:
    runtime = tmp_path_factory.mktemp("runtime")
    kid = uuid.uuid4().hex
    km = KernelManager(kernel_name="python3", connection_file=str(runtime / f"kernel-{kid}.json"))
    km.start_kernel(cwd=str(runtime), env=kernel_env())
    k = RunsKernel(km)
    k.runs_file = runtime / runs_file_name(kid)
    try:
        k.execute("import time, torch, jupyter_torchlab as tl")
        yield k
    finally:
        k.kc.stop_channels()
        km.shutdown_kernel(now=True)


def test_a_running_bar_publishes_records_that_move_then_its_end(kernel: RunsKernel):
    msg_id = kernel.kc.execute(
        "bar = tl.progress(range(60), desc='moving', unit='batch')\n"
        "for i in bar:\n"
        "    bar.log(loss=torch.tensor(10.0 / (i + 1)))\n"
        "    bar.set_postfix(lr=torch.tensor(0.5))\n"
        "    time.sleep(0.05)\n"
    )
    first = kernel.wait_run("moving", lambda r: r["state"] == "running" and r["n"] > 0)
    later = kernel.wait_run("moving", lambda r: r["n"] > first["n"] + 5)
    assert later["updated"] > first["updated"]
    assert later["total"] == 60
    assert later["unit"] == "batch"
    assert later["kind"] == "progress"
    assert 0 < later["fraction"] < 1
    assert later["rate"] > 0
    assert later["eta"] > 0
    assert later["started"] == pytest.approx(first["started"])
    assert later["msg_id"] == msg_id  # the execute request that started it
    assert "moving:" in later["line"]
    assert "/60 [" in later["line"]
    kernel.collect(msg_id)
    done = kernel.run("moving")
    assert done is not None
    assert (done["state"], done["n"], done["error"], done["eta"]) == ("finished", 60, None, None)
    assert done["ended"] >= done["started"]
    assert set(done["metrics"]) == {"loss", "lr"}  # numbers, read at the redraws
    assert done["metrics"]["lr"] == 0.5
    assert 0 < done["metrics"]["loss"] < 10
    assert done["line"].endswith("done")
    assert json.loads(kernel.runs_file.read_text())["pid"] == kernel.value(
        "__import__('os').getpid()"
    )


def test_a_cell_that_raises_in_the_loop_publishes_failed_with_the_first_line(kernel: RunsKernel):
    kernel.execute(
        "for i in tl.progress(range(100), desc='raises'):\n"
        "    if i == 30:\n"
        "        raise ValueError('the batch was empty\\nsecond line')\n",
        allow_error=True,
    )
    run = kernel.run("raises")
    assert run is not None
    assert (run["state"], run["n"], run["error"]) == (
        "failed",
        30,
        "ValueError: the batch was empty",
    )


def test_an_interrupt_publishes_interrupted(kernel: RunsKernel):
    msg_id = kernel.kc.execute(
        "for i in tl.progress(range(10_000), desc='stopped by hand'):\n    time.sleep(0.01)\n"
    )
    kernel.wait_run("stopped by hand", lambda r: r["n"] > 10)
    kernel.km.interrupt_kernel()
    kernel.collect(msg_id)
    run = kernel.run("stopped by hand")
    assert run is not None
    assert (run["state"], run["error"]) == ("interrupted", None)
    assert 10 < run["n"] < 10_000


def test_an_interrupted_comprehension_ends_its_run_with_the_cell(kernel: RunsKernel):
    # the comprehension's generator is never closed (the traceback IPython keeps holds it): the
    # cell's end ends the bar, on the page and in the runs file
    msg_id = kernel.kc.execute(
        "squares = [i * i for i in tl.progress(range(10_000), desc='comprehension')\n"
        "           if time.sleep(0.01) is None]\n"
    )
    kernel.wait_run("comprehension", lambda r: r["n"] > 10)
    kernel.km.interrupt_kernel()
    kernel.collect(msg_id)
    run = kernel.run("comprehension")
    assert run is not None
    assert (run["state"], run["error"]) == ("interrupted", None)
    # and the next cell leaves it ended
    kernel.execute("x = 1")
    assert kernel.run("comprehension")["state"] == "interrupted"


def test_a_break_is_a_finished_run_and_leave_false_bars_leave_the_file(kernel: RunsKernel):
    kernel.execute(
        "for epoch in tl.progress(range(3), desc='outer'):\n"
        "    for i in tl.progress(range(50), desc=f'inner {epoch}', leave=False):\n"
        "        pass\n"
        "for i in tl.progress(range(100), desc='broken off'):\n"
        "    if i == 7:\n"
        "        break\n"
    )
    descs = [r["desc"] for r in kernel.runs()]
    assert "outer" in descs
    assert not any(d.startswith("inner") for d in descs)
    broken = kernel.run("broken off")
    assert broken is not None
    assert (broken["state"], broken["n"]) == ("finished", 7)


def test_one_write_per_refresh_plus_one_at_the_end(kernel: RunsKernel):
    msgs = kernel.execute(
        "from jupyter_torchlab.widgets import _runs\n"
        "_writes = []\n"
        "_write = _runs.write_runs\n"
        "_runs.write_runs = lambda *a: (_writes.append(1), _write(*a))\n"
        "for i in tl.progress(range(300_000), desc='tight'):\n"
        "    pass\n"
        "_runs.write_runs = _write\n"
        "print(len(_writes))\n"
    )
    writes = int("".join(m["content"]["text"] for m in msgs if m["msg_type"] == "stream"))
    refreshes = len(comm_updates(msgs))  # one widget message per refresh
    assert 2 <= writes <= refreshes + 2, (writes, refreshes)  # the first draw, the end


def test_fit_publishes_one_run_with_epochs_and_its_loss(kernel: RunsKernel):
    kernel.execute(
        "import torch.nn as nn\n"
        "from torch.utils.data import DataLoader, TensorDataset\n"
        "torch.manual_seed(0)\n"
        "_data = TensorDataset(torch.randn(64, 8), torch.randint(0, 2, (64,)))\n"
        "_model = nn.Linear(8, 2)\n"
        "tl.fit(_model, DataLoader(_data, batch_size=8), epochs=3,\n"
        "       optimizer=torch.optim.SGD(_model.parameters(), lr=0.1))\n"
    )
    fits = [r for r in kernel.runs() if r["kind"] == "fit"]
    assert len(fits) == 1
    run = fits[0]
    assert (run["desc"], run["unit"], run["state"]) == ("fit", "batch", "finished")
    assert (run["epoch"], run["epochs"], run["n"], run["total"]) == (3, 3, 8, 8)
    assert run["fraction"] == 1.0
    assert run["metrics"]["loss"] > 0
    assert run["line"].startswith("epoch 3/3")


def test_a_fit_that_fails_publishes_failed(kernel: RunsKernel):
    kernel.execute(
        "class _Boom(nn.Module):\n"
        "    def __init__(self):\n"
        "        super().__init__(); self.lin = nn.Linear(8, 2); self.calls = 0\n"
        "    def forward(self, x):\n"
        "        self.calls += 1\n"
        "        if self.calls == 5:\n"
        "            raise RuntimeError('shape mismatch in batch 5')\n"
        "        return self.lin(x)\n"
        "_boom = _Boom()\n"
        "tl.fit(_boom, DataLoader(_data, batch_size=8), epochs=2,\n"
        "       optimizer=torch.optim.SGD(_boom.parameters(), lr=0.1))\n",
        allow_error=True,
    )
    run = [r for r in kernel.runs() if r["kind"] == "fit"][-1]
    assert run["state"] == "failed"
    assert "shape mismatch in batch 5" in run["error"]


def test_an_unwritable_runtime_dir_means_no_publishing_not_an_error(tmp_path: Path):
    kid = uuid.uuid4().hex
    km = KernelManager(kernel_name="python3", connection_file=str(tmp_path / f"kernel-{kid}.json"))
    (tmp_path / runs_file_name(kid)).mkdir()  # the file cannot be replaced (even by root)
    km.start_kernel(cwd=str(tmp_path), env=kernel_env())
    k = Kernel(km)
    try:
        n = k.value(
            "[i for i in __import__('jupyter_torchlab').progress(range(20_000), desc='x')][-1]"
        )
        assert n == 19_999
        assert (tmp_path / runs_file_name(kid)).is_dir()
    finally:
        k.kc.stop_channels()
        km.shutdown_kernel(now=True)


def test_outside_a_kernel_nothing_is_published():
    assert "ipykernel" not in sys.modules or _runs.kernel_runs_file() is None
    assert _runs.start_run(kind="progress") is None


def test_ended_runs_are_kept_ten_minutes_at_most_twenty(tmp_path: Path):
    now = [1000.0]
    publisher = _runs._Publisher(str(tmp_path / "runs.json"), clock=lambda: now[0])
    live = publisher.start({"desc": "live"})
    for i in range(25):
        publisher.start({"desc": f"ended {i}"}).end("finished")
    descs = [r["desc"] for r in publisher_runs(tmp_path)]
    assert descs == ["live"] + [f"ended {i}" for i in range(5, 25)]
    now[0] += _runs.ENDED_SECONDS + 1
    live.update(n=3)
    assert [(r["desc"], r["n"]) for r in publisher_runs(tmp_path)] == [("live", 3)]


def publisher_runs(folder: Path) -> list[dict[str, Any]]:
    found = read_runs(str(folder / "runs.json"))
    assert found is not None
    return list(found["runs"])  # type: ignore[arg-type]
