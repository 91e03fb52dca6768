"""What measuring each cell's cost adds to a cell's round trip, against the same server without it.

One ``jupyter server`` with torchlab on loopback, two kernels started the same way. The page side
is played by this script over the kernel WebSocket: an ``execute_request`` of a trivial cell, timed
from sending it to its ``status: idle`` (the round trip a user waits for). Kernel A is measured
(``GET torchlab/api/cells?kernel=A`` asks the server to, as the lab extension does) and, after each
of its cells, the record is fetched as the page fetches it (``msg_id`` and ``wait``); kernel B is
not measured (no page asked: the server does nothing for it, which is what the setting's "off"
leaves). Cells alternate A, B, A, B, ... in one run.

A calibration round first runs both kernels unmeasured, so the two kernels' own difference is
known; the reported ratio is the measured kernel's median round trip over the unmeasured one's,
with the calibration ratio beside it.

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


async def run(args: argparse.Namespace, server: Server) -> dict[str, Any]:
    a_id, b_id = server.start_kernels(2)
    wait_for_kernels(server, [a_id, b_id])
    a, b = Page(server, a_id), Page(server, b_id)
    await a.connect()
    await b.connect()
    await alternate(a, b, 10, measured=False)  # warm up both kernels and connections
    calibration = await alternate(a, b, args.calibration, measured=False)
    await a.get(f"torchlab/api/cells?kernel={a_id}")  # the page asks: A is measured from now
    measured = await alternate(a, b, args.cells, measured=True)
    kept = (await a.get(f"torchlab/api/cells?kernel={a_id}"))["cells"]
    b_kept = (await b.get(f"torchlab/api/cells?kernel={b_id}"))["cells"]
    return {"calibration": calibration, "measured": measured, "kept": len(kept), "b": b_kept}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--cells", type=int, default=200, help="cells per kernel, measured round")
    parser.add_argument("--calibration", type=int, default=100, help="cells per kernel, first")
    args = parser.parse_args()
    server = Server("cells", {"jupyter_torchlab": True}, {"TorchlabExtension": {}})
    with tempfile.TemporaryDirectory(prefix="bench-cells-") as tmp:
        try:
            server.start(Path(tmp))
            result = asyncio.run(run(args, server))
        finally:
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
    print(f"calibration, both unmeasured: A {summary(cal['a'])}; B {summary(cal['b'])}")
    print(f"calibration ratio A/B: {cal_ratio:.3f}")
    print(f"measured A: {summary(meas['a'])}")
    print(f"unmeasured B: {summary(meas['b'])}")
    print(f"A's record fetched (send -> record in hand): {summary(meas['a_record'])}")
    print(f"ratio measured/unmeasured (round trip): {ratio:.3f}")
    print(f"ratio, corrected by the calibration: {ratio / cal_ratio:.3f}")
    print(f"paired ratio (median of A_i/B_i): {paired:.3f}; calibration {cal_paired:.3f}")
    print(f"records kept for A: {result['kept']}; for B (never asked): {len(result['b'])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
