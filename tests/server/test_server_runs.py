"""Runs known to the server: a real server, real kernels running tl.progress and tl.fit in cells.

Each kernel writes its runs file beside its connection file; the server reads it on its tick and
serves the runs in the metrics document, on the stream, at ``GET torchlab/api/runs`` and as
Prometheus series, and adds what only it can know (a kernel that died, one that was shut down).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
from pathlib import Path
from typing import Any

import pytest
from tornado.httpclient import HTTPClientError

from jupyter_torchlab._runtime_files import (
    CellGpuRecord,
    cells_path,
    runs_file_name,
    write_cell_gpu,
)

from .conftest import execute_request, kernel_entry

pytestmark = pytest.mark.slow

LONG_LOOP = (
    "import time, jupyter_torchlab as tl\n"
    "bar = tl.progress(range(100_000), desc={desc!r})\n"
    "for i in bar:\n"
    "    bar.set_postfix(loss=1.0 / (i + 1))\n"
    "    time.sleep(0.02)\n"
)


@pytest.fixture
def open_notebook(jp_ws_fetch: Any, start_kernel: Any, wait_metrics: Any) -> Any:
    """Start a kernel for a notebook and connect to it as a page does."""

    async def open_(path: str) -> tuple[str, Any]:
        kid = await start_kernel(path=path)
        ws = await jp_ws_fetch("api", "kernels", kid, "channels")
        await wait_metrics(lambda d: (k := kernel_entry(d, kid)) and k["execution_state"] == "idle")
        return kid, ws

    return open_


def kernel_runs(doc: dict[str, Any], kid: str) -> list[dict[str, Any]]:
    entry = kernel_entry(doc, kid)
    return [] if entry is None else entry["runs"]


def run_of(doc: dict[str, Any], kid: str, desc: str) -> dict[str, Any] | None:
    return next((r for r in kernel_runs(doc, kid) if r["desc"] == desc), None)


async def get_runs(jp_fetch: Any, **params: str) -> list[dict[str, Any]]:
    r = await jp_fetch("torchlab", "api", "runs", params=params)
    return json.loads(r.body)["runs"]


async def run_series(jp_fetch: Any, kid: str) -> dict[str, list[str]]:
    """Return the torchlab_run_* lines of the server's /metrics: HELP/TYPE, and this kernel's."""
    text = (await jp_fetch("metrics")).body.decode()
    lines = [line for line in text.splitlines() if "torchlab_run_" in line]
    return {
        "meta": [line for line in lines if line.startswith("#")],
        "kernel": [line for line in lines if f'kernel="{kid}"' in line],
    }


async def test_a_running_progress_is_served_everywhere_and_goes_with_its_kernel(
    jp_fetch: Any, jp_ws_fetch: Any, jp_serverapp: Any, open_notebook: Any, wait_metrics: Any
) -> None:
    kid, ws = await open_notebook("train.ipynb")
    await ws.write_message(execute_request(LONG_LOOP.format(desc="train")))
    doc = await wait_metrics(lambda d: (r := run_of(d, kid, "train")) and r["n"] > 5, timeout=60)
    run = run_of(doc, kid, "train")
    assert run is not None
    assert (run["kernel_id"], run["path"], run["state"], run["kind"]) == (
        kid,
        "train.ipynb",
        "running",
        "progress",
    )
    assert run["total"] == 100_000
    assert run["rate"] > 0
    assert run["eta"] > 0
    assert run["metrics"]["loss"] > 0
    later = await wait_metrics(lambda d: run_of(d, kid, "train")["n"] > run["n"])
    assert run_of(later, kid, "train")["updated"] > run["updated"]  # it moves

    # GET torchlab/api/runs, across kernels, and by state
    served = await get_runs(jp_fetch)
    assert [(r["kernel_id"], r["desc"]) for r in served if r["kernel_id"] == kid] == [
        (kid, "train")
    ]
    assert any(r["kernel_id"] == kid for r in await get_runs(jp_fetch, state="running"))
    assert not any(r["kernel_id"] == kid for r in await get_runs(jp_fetch, state="finished"))

    # the stream carries the same document
    stream = await jp_ws_fetch("torchlab", "api", "stream")
    pushed = json.loads(await asyncio.wait_for(stream.read_message(), 10))
    assert run_of(pushed, kid, "train")["state"] == "running"
    stream.close()

    # Prometheus: the three series, with HELP and TYPE, labelled kernel, path and desc
    series = await run_series(jp_fetch, kid)
    for name in (
        "torchlab_run_progress_ratio",
        "torchlab_run_eta_seconds",
        "torchlab_run_items_per_second",
    ):
        assert f"# TYPE {name} gauge" in series["meta"]
        assert any(line.startswith(f"# HELP {name} ") for line in series["meta"])
        (line,) = [s for s in series["kernel"] if s.startswith(name + "{")]
        assert 'path="train.ipynb"' in line
        assert 'desc="train"' in line
        assert float(line.rsplit(" ", 1)[1]) > 0

    # shut down with the run still running: its runs, series and file go with it
    runs_file = Path(jp_serverapp.runtime_dir) / runs_file_name(kid)
    assert runs_file.exists()
    # the cells file a kernel that used CUDA keeps beside it (no CUDA here: written as it would)
    cells_file = Path(cells_path(jp_serverapp.runtime_dir, kid))
    write_cell_gpu(str(cells_file), [CellGpuRecord(msg_id="m", devices={"0": 1})])
    ws.close()
    await jp_fetch("api", "kernels", kid, method="DELETE")
    await wait_metrics(lambda d: kernel_entry(d, kid) is None)
    await asyncio.sleep(0.5)  # a tick after the kernel left the registry
    assert not any(r["kernel_id"] == kid for r in await get_runs(jp_fetch))
    assert (await run_series(jp_fetch, kid))["kernel"] == []
    assert not runs_file.exists()
    assert not cells_file.exists()


async def test_cells_that_finish_fail_or_are_interrupted_and_a_fit(
    jp_fetch: Any, open_notebook: Any, wait_metrics: Any
) -> None:
    kid, ws = await open_notebook("states.ipynb")
    await ws.write_message(
        execute_request(
            "import time, jupyter_torchlab as tl\n"
            "for i in tl.progress(range(50), desc='finishes'):\n"
            "    time.sleep(0.01)\n"
        )
    )
    await ws.write_message(
        execute_request(
            "for i in tl.progress(range(50), desc='fails'):\n"
            "    if i == 20:\n"
            "        raise ValueError('no such file: data.csv')\n"
        )
    )
    doc = await wait_metrics(lambda d: run_of(d, kid, "fails") is not None, timeout=60)
    doc = await wait_metrics(lambda d: run_of(d, kid, "fails")["state"] != "running")
    assert run_of(doc, kid, "finishes")["state"] == "finished"
    assert run_of(doc, kid, "finishes")["n"] == 50
    fails = run_of(doc, kid, "fails")
    assert (fails["state"], fails["n"], fails["error"]) == (
        "failed",
        20,
        "ValueError: no such file: data.csv",
    )

    # interrupted through the server's interrupt route
    await ws.write_message(execute_request(LONG_LOOP.format(desc="interrupted")))
    await wait_metrics(lambda d: (r := run_of(d, kid, "interrupted")) and r["n"] > 3, timeout=30)
    await jp_fetch("api", "kernels", kid, "interrupt", method="POST", body="")
    doc = await wait_metrics(lambda d: run_of(d, kid, "interrupted")["state"] != "running")
    assert run_of(doc, kid, "interrupted")["state"] == "interrupted"
    assert run_of(doc, kid, "interrupted")["error"] is None

    # tl.fit on tiny real data: one run with its epochs, batches and loss
    await ws.write_message(
        execute_request(
            "import torch, torch.nn as nn\n"
            "from torch.utils.data import DataLoader, TensorDataset\n"
            "torch.manual_seed(0)\n"
            "data = TensorDataset(torch.randn(48, 4), torch.randint(0, 3, (48,)))\n"
            "model = nn.Linear(4, 3)\n"
            "tl.fit(model, DataLoader(data, batch_size=8), epochs=2,\n"
            "       optimizer=torch.optim.SGD(model.parameters(), lr=0.1))\n"
        )
    )
    doc = await wait_metrics(
        lambda d: (r := run_of(d, kid, "fit")) and r["state"] != "running", timeout=90
    )
    fit = run_of(doc, kid, "fit")
    assert (fit["kind"], fit["state"], fit["epoch"], fit["epochs"]) == ("fit", "finished", 2, 2)
    assert (fit["n"], fit["total"], fit["fraction"]) == (6, 6, 1.0)
    assert fit["metrics"]["loss"] > 0

    # GET runs: running first, then the most recently ended first
    served = [r for r in await get_runs(jp_fetch) if r["kernel_id"] == kid]
    assert [r["desc"] for r in served] == ["fit", "interrupted", "fails", "finishes"]
    ws.close()


async def test_a_kernel_killed_mid_run_leaves_its_run_failed(
    open_notebook: Any, wait_metrics: Any
) -> None:
    kid, ws = await open_notebook("killed.ipynb")
    await ws.write_message(execute_request(LONG_LOOP.format(desc="doomed")))
    doc = await wait_metrics(lambda d: (r := run_of(d, kid, "doomed")) and r["n"] > 3, timeout=60)
    os.kill(kernel_entry(doc, kid)["pid"], signal.SIGKILL)
    doc = await wait_metrics(lambda d: run_of(d, kid, "doomed")["state"] != "running", timeout=30)
    run = run_of(doc, kid, "doomed")
    assert (run["state"], run["error"]) == ("failed", "the kernel died")
    assert run["ended"] is not None
    # the restarted kernel's process writes its own file; the run of the one before stays
    await wait_metrics(
        lambda d: (k := kernel_entry(d, kid)) and k["execution_state"] == "idle", timeout=60
    )
    await asyncio.sleep(1)
    doc = await wait_metrics(lambda d: run_of(d, kid, "doomed") is not None)
    assert run_of(doc, kid, "doomed")["state"] == "failed"
    ws.close()


@pytest.mark.parametrize("state", ["done", "RUNNING", "running,failed"])
async def test_runs_rejects_an_unknown_state_with_a_message(jp_fetch: Any, state: str) -> None:
    with pytest.raises(HTTPClientError) as e:
        await jp_fetch("torchlab", "api", "runs", params={"state": state})
    assert e.value.code == 400
    message = json.loads(e.value.response.body)["message"]
    assert "state must be one of running, finished, failed, interrupted" in message


async def test_a_run_that_ended_stays_served_while_its_kernel_lives(
    jp_fetch: Any, jp_serverapp: Any, open_notebook: Any, wait_metrics: Any
) -> None:
    """The kernel's file forgets ended runs after ten minutes; a page that opens an hour later
    still learns how training ended, from the server."""
    kid, ws = await open_notebook("left.ipynb")
    await ws.write_message(
        execute_request(
            "import time, jupyter_torchlab as tl\n"
            "for i in tl.progress(range(30), desc='overnight'):\n"
            "    time.sleep(0.01)\n"
        )
    )
    doc = await wait_metrics(
        lambda d: (r := run_of(d, kid, "overnight")) and r["state"] == "finished", timeout=60
    )
    ended = run_of(doc, kid, "overnight")
    # the kernel's own file lets it go (as it does ten minutes on), when the next bar writes
    await ws.write_message(
        execute_request(
            "from jupyter_torchlab.widgets import _runs\n"
            "_runs.ENDED_SECONDS = 0.5\n"
            "time.sleep(1.0)\n"
            "for i in tl.progress(range(5), desc='next'):\n"
            "    time.sleep(0.01)\n"
        )
    )
    runs_file = Path(jp_serverapp.runtime_dir) / runs_file_name(kid)

    def file_descs() -> list[str]:
        return [r["desc"] for r in json.loads(runs_file.read_text())["runs"]]

    doc = await wait_metrics(
        lambda d: (r := run_of(d, kid, "next")) and r["state"] == "finished", timeout=60
    )
    assert "overnight" not in file_descs()
    await asyncio.sleep(1.5)  # ticks after the file dropped it
    kept = [r for r in await get_runs(jp_fetch, state="finished") if r["kernel_id"] == kid]
    assert [r["desc"] for r in kept] == ["next", "overnight"]
    assert kept[1]["ended"] == ended["ended"]
    assert (kept[1]["n"], kept[1]["path"]) == (30, "left.ipynb")
    ws.close()
