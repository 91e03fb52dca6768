"""What measuring each cell's cost adds to a cell's round trip, against the same server without it.

Two Jupyter servers with torchlab on loopback, the same but for
``TorchlabExtension.cell_costs``: on (server A: every kernel's cells are measured from its start)
and off (server B: nothing is measured, which is what the setting's "off" leaves). One kernel on
each, started the same way. The page side is played by this script over the kernel WebSocket: an
``execute_request`` of a trivial cell, timed from sending it to its ``status: idle`` (the round
trip a user waits for); on A the record is then fetched as the page fetches it (``msg_id`` and
``wait``). Cells alternate A, B, A, B, ... in one run.

A calibration round first runs both without fetching records (A still measures), then the
measured round fetches A's records; the reported ratio is A's median round trip over B's, with
the paired ratio (the median of each A cell over the B cell after it, which share the machine's
load) beside it.

    python benchmarks/bench_cells.py                 # 200 cells each, about a minute
    python benchmarks/bench_cells.py --cells 50      # a smoke run
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import sys
import tempfile
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from tornado.httpclient import AsyncHTTPClient, HTTPRequest
from tornado.websocket import websocket_connect

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_server import Server, machine, percentile, wait_for_kernels

CELL = "x = 1"


def execute_request(code: str) -> tuple[str, str]:
    msg_id = uuid.uuid4().hex
    msg = {
        "header": {
            "msg_id": msg_id,
            "msg_type": "execute_request",
            "username": "bench",
            "session": uuid.uuid4().hex,
            "date": datetime.now(timezone.utc).isoformat(),
            "version": "5.3",
        },
        "parent_header": {},
        "metadata": {},
        "content": {
            "code": code,
            "silent": False,
            "store_history": True,
            "user_expressions": {},
            "allow_stdin": False,
            "stop_on_error": True,
        },
        "channel": "shell",
        "buffers": [],
    }
    return msg_id, json.dumps(msg)


class Page:
    """One kernel's WebSocket, as a notebook page holds it."""

    def __init__(self, server: Server, kid: str) -> None:
        self.server, self.kid = server, kid
        self.http = AsyncHTTPClient()
        self.ws: Any = None

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server.port}/{path}"

    async def connect(self) -> None:
        request = HTTPRequest(
            f"ws://127.0.0.1:{self.server.port}/api/kernels/{self.kid}/channels",
            headers={"Authorization": f"token {self.server.token}"},
        )
        self.ws = await websocket_connect(request)

    async def get(self, path: str) -> dict[str, Any]:
        response = await self.http.fetch(
            self.url(path), headers={"Authorization": f"token {self.server.token}"}
        )
        return json.loads(response.body)

    async def cell(self, fetch_cost: bool) -> tuple[float, float | None]:
        """Run one cell; return (send -> idle, send -> record) in seconds."""
        msg_id, raw = execute_request(CELL)
        t0 = time.perf_counter()
        await self.ws.write_message(raw)
        while True:
            msg = json.loads(await self.ws.read_message())
            if (
                msg["msg_type"] == "status"
                and msg["parent_header"].get("msg_id") == msg_id
                and msg["content"]["execution_state"] == "idle"
            ):
                break
        idle = time.perf_counter() - t0
        if not fetch_cost:
            return idle, None
        reply = await self.get(f"torchlab/api/cells?kernel={self.kid}&msg_id={msg_id}&wait=10")
        if reply["cell"] is None:
            raise RuntimeError(f"no record for a measured cell: {reply}")
        return idle, time.perf_counter() - t0


async def alternate(a: Page, b: Page, n: int, measured: bool) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {"a": [], "b": [], "a_record": []}
    for i in range(2 * n):
        page = a if i % 2 == 0 else b
        idle, record = await page.cell(fetch_cost=measured and page is a)
        times["a" if page is a else "b"].append(idle)
        if record is not None:
            times["a_record"].append(record)
    return times


def summary(values: list[float]) -> str:
    return (
        f"median {statistics.median(values) * 1000:.2f} ms, "
        f"p90 {percentile(values, 90) * 1000:.2f} ms (n={len(values)})"
    )


async def run(args: argparse.Namespace, on: Server, off: Server) -> dict[str, Any]:
    (a_id,), (b_id,) = on.start_kernels(1), off.start_kernels(1)
    wait_for_kernels(on, [a_id])
    wait_for_kernels(off, [b_id])
    a, b = Page(on, a_id), Page(off, b_id)
    await a.connect()
    await b.connect()
    await alternate(a, b, 10, measured=False)  # warm up both kernels and connections
    calibration = await alternate(a, b, args.calibration, measured=False)
    measured = await alternate(a, b, args.cells, measured=True)
    kept = (await a.get(f"torchlab/api/cells?kernel={a_id}"))["cells"]
    return {"calibration": calibration, "measured": measured, "kept": len(kept)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--cells", type=int, default=200, help="cells per kernel, measured round")
    parser.add_argument("--calibration", type=int, default=100, help="cells per kernel, first")
    args = parser.parse_args()
    on = Server("cells-on", {"jupyter_torchlab": True}, {"TorchlabExtension": {}})
    off = Server(
        "cells-off", {"jupyter_torchlab": True}, {"TorchlabExtension": {"cell_costs": False}}
    )
    with tempfile.TemporaryDirectory(prefix="bench-cells-") as tmp:
        try:
            on.start(Path(tmp))
            off.start(Path(tmp))
            result = asyncio.run(run(args, on, off))
        finally:
            for server in (on, off):
                with contextlib.suppress(Exception):
                    server.stop()
    cal, meas = result["calibration"], result["measured"]
    cal_ratio = statistics.median(cal["a"]) / statistics.median(cal["b"])
    ratio = statistics.median(meas["a"]) / statistics.median(meas["b"])
    # each A cell against the B cell right after it: neighbours share the machine's load
    cal_paired = statistics.median(x / y for x, y in zip(cal["a"], cal["b"], strict=True))
    paired = statistics.median(x / y for x, y in zip(meas["a"], meas["b"], strict=True))
    print(f"# bench_cells: {machine()}")
    print(f"# trivial cell {CELL!r}, round trip = execute_request sent -> its status: idle")
    print(f"calibration, no record fetched: A {summary(cal['a'])}; B {summary(cal['b'])}")
    print(f"calibration ratio A/B: {cal_ratio:.3f}")
    print(f"A (cell_costs on, records fetched): {summary(meas['a'])}")
    print(f"B (cell_costs off): {summary(meas['b'])}")
    print(f"A's record fetched (send -> record in hand): {summary(meas['a_record'])}")
    print(f"ratio on/off (round trip): {ratio:.3f}")
    print(f"paired ratio (median of A_i/B_i): {paired:.3f}; calibration {cal_paired:.3f}")
    print(f"records kept for A: {result['kept']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
