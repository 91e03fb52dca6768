"""What each cell cost, measured by a real server around a real kernel's cells.

The cells are sent over the kernel WebSocket as a page sends them; the records come from
``GET torchlab/api/cells``. The CPU seconds and the peak memory are exact (cumulative counters
and the kernel's own peak RSS, reset where each cell ends and the next begins), so they are held
to tight bounds.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest
from tornado.httpclient import HTTPClientError

from .conftest import execute_request, kernel_entry, server_config

pytestmark = pytest.mark.slow

MB = 1024 * 1024


@pytest.fixture
def open_kernel(jp_ws_fetch: Any, start_kernel: Any, wait_metrics: Any, jp_fetch: Any) -> Any:
    """Start a kernel, connect as a page does, wait until idle; no cell has a record yet."""

    async def open_() -> tuple[str, Any]:
        kid = await start_kernel(path="cost.ipynb")
        ws = await jp_ws_fetch("api", "kernels", kid, "channels")
        await wait_metrics(lambda d: (k := kernel_entry(d, kid)) and k["execution_state"] == "idle")
        r = await jp_fetch("torchlab", "api", "cells", params={"kernel": kid})
        assert json.loads(r.body)["cells"] == []
        return kid, ws

    return open_


async def run(ws: Any, code: str, timeout: float = 60.0) -> str:
    """Send one cell and read the WebSocket until its idle; return its msg_id."""
    request = execute_request(code)
    msg_id = json.loads(request)["header"]["msg_id"]
    await ws.write_message(request)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        raw = await asyncio.wait_for(ws.read_message(), deadline - time.monotonic())
        assert raw is not None, "the kernel WebSocket closed"
        msg = json.loads(raw)
        if (
            msg["msg_type"] == "status"
            and msg["parent_header"].get("msg_id") == msg_id
            and msg["content"]["execution_state"] == "idle"
        ):
            return msg_id
    raise AssertionError(f"no idle for {code!r} within {timeout} s")


async def cost(jp_fetch: Any, kid: str, msg_id: str) -> dict[str, Any]:
    r = await jp_fetch(
        "torchlab", "api", "cells", params={"kernel": kid, "msg_id": msg_id, "wait": "10"}
    )
    record = json.loads(r.body)["cell"]
    assert record is not None, f"no record for {msg_id}"
    return record


async def test_peak_memory_of_a_cell_that_allocates_and_frees_is_exact(
    jp_fetch: Any, open_kernel: Any
) -> None:
    kid, ws = await open_kernel()
    await run(ws, "x = 1")  # the kernel's first cell loads things; measure from the second on
    msg_id = await run(ws, "b = bytearray(300 * 2**20)\nb[::4096] = b'x' * len(b[::4096])\ndel b")
    record = await cost(jp_fetch, kid, msg_id)
    above = (record["peak_memory"] - record["memory_start"]) / MB
    assert 295 <= above <= 330, record
    assert abs(record["memory_delta"]) < 20 * MB, record  # freed: back to where it started
    assert "peak_memory" in record["exact"]
    assert "memory_delta" in record["exact"]
    # the next cell's peak starts over: nothing of the 300 MB is in it
    msg_id = await run(ws, "y = 2")
    record = await cost(jp_fetch, kid, msg_id)
    assert record["peak_memory"] - record["memory_start"] < 20 * MB, record


async def test_cpu_seconds_are_exact_and_wall_time_is_the_cells(
    jp_fetch: Any, open_kernel: Any
) -> None:
    kid, ws = await open_kernel()
    spin = await run(
        ws, "import time\nt = time.process_time()\nwhile time.process_time() - t < 1.5:\n    pass"
    )
    sleep = await run(ws, "time.sleep(1.5)")
    spun, slept = await cost(jp_fetch, kid, spin), await cost(jp_fetch, kid, sleep)
    # the CPU seconds are the kernel's own count (to its 10 ms ticks), whatever the machine's
    # load; the wall time on a loaded machine may be longer than the CPU time, never shorter
    assert 1.45 <= spun["cpu_s"] <= 1.75, spun
    assert spun["cpu_s"] - 0.05 <= spun["wall_s"] <= 10, spun
    assert spun["cpu_percent"] == pytest.approx(100 * spun["cpu_s"] / spun["wall_s"]), spun
    assert spun["cpu_percent"] <= 105, spun
    assert slept["cpu_s"] < 0.1, slept
    assert 1.5 <= slept["wall_s"] <= 2.5, slept
    assert slept["cpu_percent"] < 10, slept
    assert {"wall_s", "cpu_s"} <= set(slept["exact"])
    r = await jp_fetch("torchlab", "api", "cells", params={"kernel": kid})
    kept = [c["msg_id"] for c in json.loads(r.body)["cells"]]
    assert kept == [spin, sleep]


async def test_queued_cells_each_get_their_own_record(jp_fetch: Any, open_kernel: Any) -> None:
    kid, ws = await open_kernel()
    requests = [execute_request(f"import time; time.sleep({s})") for s in (0.3, 0.6, 0.9)]
    for request in requests:  # all sent at once: the kernel queues them (Run All)
        await ws.write_message(request)
    walls = []
    for request in requests:
        record = await cost(jp_fetch, kid, json.loads(request)["header"]["msg_id"])
        walls.append(record["wall_s"])
    # each its own: never shorter than its sleep, and not the stretch of all three (a loaded
    # machine can add tenths of a second to a sleep)
    for wall, slept in zip(walls, (0.3, 0.6, 0.9), strict=True):
        assert slept - 0.02 <= wall <= slept + 0.5, walls


async def test_cells_run_at_once_after_the_kernel_starts_each_get_a_record(
    jp_fetch: Any, jp_ws_fetch: Any, start_kernel: Any, monitor: Any
) -> None:
    """Run All right after opening a notebook: no request for the kernel's cells comes first."""
    kid = await start_kernel(path="at_once.ipynb")
    ws = await jp_ws_fetch("api", "kernels", kid, "channels")
    codes = ["x = 1", "import time\ntime.sleep(0.5)", "y = 2"]
    requests = [execute_request(code) for code in codes]
    for request in requests:  # sent at once, as soon as the WebSocket is open: queued
        await ws.write_message(request)
    msg_ids = [json.loads(r)["header"]["msg_id"] for r in requests]
    await run(ws, "z = 3")  # read the WebSocket until every cell before it has ended
    records = [await cost(jp_fetch, kid, msg_id) for msg_id in msg_ids]
    assert [r["msg_id"] for r in monitor.cells.records(kid)[:3]] == msg_ids
    for record in records:
        assert record["wall_s"] >= 0, record
        assert record["cpu_s"] is not None, record  # the kernel's process was known
        assert record["peak_memory"] is not None, record
    # each its own: the sleep's time is the second cell's alone
    assert 0.48 <= records[1]["wall_s"] <= 1.5, records[1]
    assert records[2]["wall_s"] < 0.3, records[2]


async def test_the_kernels_torch_peak_replaces_the_sampled_gpu_figure(
    jp_fetch: Any, open_kernel: Any
) -> None:
    """What the kernel side writes for a cell (torch's allocator peak) is read at its end."""
    kid, ws = await open_kernel()
    msg_id = await run(
        ws,
        "from jupyter_torchlab._runtime_files import kernel_cells_file, write_cell_gpu\n"
        "from jupyter_torchlab.widgets._cell_cost import _parent_msg_id\n"
        "write_cell_gpu(kernel_cells_file(), [{'msg_id': _parent_msg_id(),\n"
        "                                      'devices': {'0': 7 * 2**30, '1': 2**30}}])",
    )
    record = await cost(jp_fetch, kid, msg_id)
    assert record["gpu_peak_memory"] == 8 * 2**30
    assert record["gpu_devices"] == {"0": 7 * 2**30, "1": 2**30}
    assert "gpu_peak_memory" in record["exact"]
    other = await cost(jp_fetch, kid, await run(ws, "x = 1"))
    assert other["gpu_peak_memory"] is None
    assert "gpu_peak_memory" not in other["exact"]


async def test_an_unknown_kernel_is_a_404_that_says_what_to_pass(jp_fetch: Any) -> None:
    with pytest.raises(HTTPClientError) as e:
        await jp_fetch("torchlab", "api", "cells", params={"kernel": "nope"})
    assert e.value.code == 404
    assert "?kernel=<id>" in e.value.response.body.decode()


@pytest.mark.parametrize("jp_server_config", [server_config(sample_interval=0.2, cell_costs=False)])
async def test_turned_off_on_the_server_the_route_says_how_to_turn_it_on(
    jp_fetch: Any, start_kernel: Any, monitor: Any
) -> None:
    kid = await start_kernel()
    assert monitor.cells is None
    with pytest.raises(HTTPClientError) as e:
        await jp_fetch("torchlab", "api", "cells", params={"kernel": kid})
    assert e.value.code == 404
    assert "TorchlabExtension.cell_costs = False" in e.value.response.body.decode()
