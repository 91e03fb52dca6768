"""What the torchlab server extension costs a real ``jupyter server``, beside resource-usage.

Three measurements, each against a baseline taken in the same run:

1. Request cost. One server on 127.0.0.1 with a token, N kernels (sessions with notebook paths),
   torchlab and jupyter-resource-usage both enabled. Batches of sequential keep-alive GETs of
   ``torchlab/api/metrics`` (ours: per-kernel CPU, memory, GPU memory, host, GPUs),
   ``api/metrics/v1`` (jupyter-resource-usage, out of the box: one memory total for the server and
   all kernels) and ``api/status`` (the server's floor), in rotating order. Reported: median and
   p95 latency, and server CPU per request (the server process's CPU time over each batch divided
   by its size; background work such as our sampler is included for every route alike).
2. Idle cost. Two servers with N kernels each, idle over the same window: torchlab enabled vs not
   (jupyter-resource-usage off in both). Reported: each server's CPU use in % of one core. With
   ``--runs``, every kernel of both servers first starts a cell that holds a running, published
   ``tl.progress`` run (a sleeping loop redrawn at the display's refresh budget, so its runs file
   is rewritten a few times a second), and the torchlab server reads and serves all of them.
3. Load. On the first server: 20 WebSocket subscribers of ``torchlab/api/stream`` plus an open-loop
   50 requests/s of ``torchlab/api/metrics`` for ``--load-seconds``. Reported: errors, latency
   percentiles, snapshots received per subscriber, server RSS before and after.

Loopback only; every loop is bounded; servers and kernels are shut down at the end.

    python benchmarks/bench_server.py                     # about 3 minutes
    python benchmarks/bench_server.py --quick             # about 40 s, a smoke run
    python benchmarks/bench_server.py --load-seconds 20
    python benchmarks/bench_server.py --phases idle --kernels 24 --fake-gpus 8
    python benchmarks/bench_server.py --phases idle --kernels 24 --runs
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import http.client
import json
import os
import platform
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parents[1]
OURS = "torchlab/api/metrics"
RUSAGE = "api/metrics/v1"
FLOOR = "api/status"
MB = 1024 * 1024


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def process_cpu_clock(pid: int) -> int | None:
    """Return the clock id of another process's CPU-time clock (nanoseconds), if the OS has one."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        clock = ctypes.c_int()
        if libc.clock_getcpuclockid(pid, ctypes.byref(clock)) != 0:
            return None
        time.clock_gettime(clock.value)
    except (OSError, AttributeError):
        return None
    return clock.value


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[k]


@dataclass
class Server:
    """A ``jupyter server`` subprocess on loopback with its own config, runtime and root dirs."""

    name: str
    extensions: dict[str, bool]
    extra_config: dict[str, Any] = field(default_factory=dict)
    fake_gpus: int = 0  # > 0: the server's NVML is this many fake GPUs (benchmarks/_fake_gpus.py)
    port: int = 0
    token: str = ""
    proc: subprocess.Popen[bytes] | None = None
    home: Path | None = None

    def start(self, workdir: Path) -> None:
        self.home = workdir / self.name
        for sub in ("config", "runtime", "root", "data"):
            (self.home / sub).mkdir(parents=True, exist_ok=True)
        config = {"ServerApp": {"jpserver_extensions": self.extensions}, **self.extra_config}
        (self.home / "config" / "jupyter_server_config.json").write_text(json.dumps(config))
        self.port = free_port()
        self.token = secrets.token_hex(16)
        env = {
            **os.environ,
            "JUPYTER_CONFIG_DIR": str(self.home / "config"),
            "JUPYTER_RUNTIME_DIR": str(self.home / "runtime"),
            "JUPYTER_DATA_DIR": str(self.home / "data"),
            "JUPYTER_PLATFORM_DIRS": "1",
            "PYTHONWARNINGS": "ignore",
        }
        log = (self.home / "server.log").open("wb")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                *(
                    [str(ROOT / "benchmarks" / "_fake_gpus.py"), str(self.fake_gpus)]
                    if self.fake_gpus
                    else ["-m", "jupyter_server"]
                ),
                "--ServerApp.ip=127.0.0.1",
                f"--ServerApp.port={self.port}",
                "--ServerApp.port_retries=0",
                "--ServerApp.open_browser=False",
                f"--ServerApp.root_dir={self.home / 'root'}",
                f"--IdentityProvider.token={self.token}",
                "--ServerApp.log_level=WARN",
                *(["--allow-root"] if os.geteuid() == 0 else []),
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=self.home,
        )
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} server exited:\n{self.log_tail()}")
            with contextlib.suppress(OSError, http.client.HTTPException):
                if self.client().get(FLOOR)[0] == 200:
                    return
            time.sleep(0.2)
        raise RuntimeError(f"{self.name} server did not answer within 90 s:\n{self.log_tail()}")

    def log_tail(self) -> str:
        assert self.home is not None
        return (self.home / "server.log").read_text(errors="replace")[-3000:]

    def client(self) -> Client:
        return Client(self.port, self.token)

    @property
    def process(self) -> psutil.Process:
        assert self.proc is not None
        return psutil.Process(self.proc.pid)

    def cpu_seconds(self) -> float:
        """Return the server process's CPU time (all threads, exited ones too), in seconds."""
        assert self.proc is not None
        clock = process_cpu_clock(self.proc.pid)
        if clock is not None:
            return time.clock_gettime(clock)
        t = self.process.cpu_times()  # 10 ms clock ticks: coarse for millisecond requests
        return t.user + t.system

    def start_kernels(self, n: int) -> list[str]:
        c = self.client()
        ids = []
        for i in range(n):
            body = {
                "path": f"nb{i}.ipynb",
                "name": f"nb{i}.ipynb",
                "type": "notebook",
                "kernel": {"name": "python3"},
            }
            status, data, _ = c.request("POST", "api/sessions", json.dumps(body))
            if status != 201:
                raise RuntimeError(f"{self.name}: starting a kernel gave {status}: {data[:300]!r}")
            ids.append(json.loads(data)["kernel"]["id"])
        return ids

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            children = self.process.children(recursive=True)
        except psutil.Error:
            children = []
        self.proc.send_signal(signal.SIGTERM)  # the server shuts its kernels down
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        for child in children:  # only processes this server started
            with contextlib.suppress(psutil.Error):
                child.kill()


class Client:
    """A keep-alive HTTP client with the server's token."""

    def __init__(self, port: int, token: str) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        self.headers = {"Authorization": f"token {token}"}

    def request(self, method: str, path: str, body: str | None = None) -> tuple[int, bytes, float]:
        t0 = time.perf_counter()
        self.conn.request(method, "/" + path, body=body, headers=self.headers)
        r = self.conn.getresponse()
        data = r.read()
        return r.status, data, time.perf_counter() - t0

    def get(self, path: str) -> tuple[int, bytes, float]:
        return self.request("GET", path)


def wait_for_kernels(server: Server, ids: list[str], timeout: float = 120) -> dict[str, Any]:
    """Wait until torchlab reports every kernel with a measured process; return that snapshot."""
    c = server.client()
    deadline = time.monotonic() + timeout
    doc: dict[str, Any] = {}
    while time.monotonic() < deadline:
        status, data, _ = c.get(OURS)
        if status == 200:
            doc = json.loads(data)
            measured = {k["id"] for k in doc["kernels"] if k["memory"] is not None}
            if set(ids) <= measured:
                return doc
        time.sleep(0.25)
    raise RuntimeError(f"kernels not all measured within {timeout} s: {doc}")


# --- 1. request cost ---------------------------------------------------------------------------


def request_cost(server: Server, rounds: int, batch: int) -> dict[str, dict[str, float]]:
    c = server.client()
    routes = [OURS, RUSAGE, FLOOR]
    for route in routes:  # warm up caches, connections and psutil state
        for _ in range(5):
            c.get(route)
    latencies: dict[str, list[float]] = {r: [] for r in routes}
    cpu: dict[str, float] = dict.fromkeys(routes, 0.0)
    for i in range(rounds):
        order = routes[i % 3 :] + routes[: i % 3]  # rotate so no route always follows another
        for route in order:
            before = server.cpu_seconds()
            for _ in range(batch):
                status, _, dt = c.get(route)
                if status != 200:
                    raise RuntimeError(f"GET {route} gave {status}")
                latencies[route].append(dt)
            cpu[route] += server.cpu_seconds() - before
    n = rounds * batch
    return {
        r: {
            "median_ms": statistics.median(latencies[r]) * 1e3,
            "p95_ms": percentile(latencies[r], 95) * 1e3,
            "cpu_ms": cpu[r] / n * 1e3,
        }
        for r in routes
    }


# --- 2. idle cost ------------------------------------------------------------------------------

# a cell that holds a running run for the rest of the benchmark: a step every {step} s, redrawn
# (and its runs file rewritten) at the display's refresh budget
RUN_CELL = """
import time, jupyter_torchlab as tl
for _ in tl.progress(range(10**9), desc="held run"):
    time.sleep({step})
"""


def start_runs(server: Server, ids: list[str], step: float) -> None:
    """Start a cell holding a published tl.progress run in each kernel (over its ZMQ channels)."""
    from jupyter_client import BlockingKernelClient

    assert server.home is not None
    for kid in ids:
        kc = BlockingKernelClient(
            connection_file=str(server.home / "runtime" / f"kernel-{kid}.json")
        )
        kc.load_connection_file()
        kc.start_channels()
        try:
            kc.wait_for_ready(timeout=60)
            kc.execute(RUN_CELL.format(step=step))
        finally:
            kc.stop_channels()


def wait_for_runs(server: Server, ids: list[str], timeout: float = 120) -> int:
    """Wait until the torchlab server serves a running run for every kernel; return how many."""
    c = server.client()
    deadline = time.monotonic() + timeout
    running: set[str] = set()
    while time.monotonic() < deadline:
        status, data, _ = c.get("torchlab/api/runs?state=running")
        if status == 200:
            running = {r["kernel_id"] for r in json.loads(data)["runs"]}
            if set(ids) <= running:
                return len(running)
        time.sleep(0.25)
    raise RuntimeError(f"runs of {len(set(ids) - running)} kernels not served within {timeout} s")


def runs_files(server: Server) -> int:
    """Return how many kernels of ``server`` wrote a runs file (the baseline's publish too)."""
    assert server.home is not None
    return len(list((server.home / "runtime").glob("torchlab-runs-*.json")))


def idle_cost(servers: list[Server], seconds: float) -> dict[str, float]:
    """Return each server's CPU use over the same idle window, in % of one core."""
    time.sleep(2.0)  # let kernel start-up work settle
    before = {s.name: s.cpu_seconds() for s in servers}
    t0 = time.monotonic()
    time.sleep(seconds)
    elapsed = time.monotonic() - t0
    return {s.name: (s.cpu_seconds() - before[s.name]) / elapsed * 100 for s in servers}


# --- 3. load -----------------------------------------------------------------------------------


async def load(server: Server, seconds: float, rate: float, subscribers: int) -> dict[str, Any]:
    from tornado.httpclient import AsyncHTTPClient, HTTPRequest
    from tornado.websocket import websocket_connect

    base = f"127.0.0.1:{server.port}"
    headers = {"Authorization": f"token {server.token}"}
    http = AsyncHTTPClient(max_clients=64)
    errors: list[str] = []
    latencies: list[float] = []
    received = [0] * subscribers
    out_of_order = 0
    stop = asyncio.Event()

    async def subscribe(i: int) -> None:
        nonlocal out_of_order
        try:
            ws = await websocket_connect(
                HTTPRequest(f"ws://{base}/torchlab/api/stream", headers=headers)
            )
        except Exception as e:  # noqa: BLE001 - counted as an error of the run
            errors.append(f"ws connect: {e!r}")
            return
        last = 0.0
        while not stop.is_set():
            try:
                msg = await asyncio.wait_for(ws.read_message(), timeout=0.5)
            except asyncio.TimeoutError:
                continue
            if msg is None:
                errors.append(f"ws {i} closed by the server")
                return
            t = json.loads(msg)["time"]
            out_of_order += t <= last
            last = t
            received[i] += 1
        ws.close()

    async def one_request() -> None:
        t0 = time.perf_counter()
        try:
            r = await http.fetch(
                HTTPRequest(f"http://{base}/{OURS}", headers=headers, request_timeout=30),
                raise_error=False,
            )
            if r.code != 200:
                errors.append(f"GET {OURS}: {r.code}")
                return
            json.loads(r.body)
        except Exception as e:  # noqa: BLE001 - counted as an error of the run
            errors.append(f"GET {OURS}: {e!r}")
            return
        latencies.append(time.perf_counter() - t0)

    subs = [asyncio.create_task(subscribe(i)) for i in range(subscribers)]
    await asyncio.sleep(1.0)
    rss_before = server.process.memory_info().rss
    t0 = time.perf_counter()
    n = int(seconds * rate)
    requests = []
    for i in range(n):  # open loop: a slow reply does not lower the offered rate
        delay = t0 + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        requests.append(asyncio.create_task(one_request()))
    await asyncio.gather(*requests)
    elapsed = time.perf_counter() - t0
    stop.set()
    await asyncio.gather(*subs)
    rss_after = server.process.memory_info().rss
    http.close()
    return {
        "requests": n,
        "elapsed": elapsed,
        "errors": errors,
        "p50_ms": percentile(latencies, 50) * 1e3,
        "p95_ms": percentile(latencies, 95) * 1e3,
        "p99_ms": percentile(latencies, 99) * 1e3,
        "max_ms": max(latencies, default=float("nan")) * 1e3,
        "received_min": min(received),
        "received_max": max(received),
        "out_of_order": out_of_order,
        "rss_before": rss_before,
        "rss_after": rss_after,
    }


# --- report ------------------------------------------------------------------------------------


def machine() -> str:
    return (
        f"{platform.processor() or platform.machine()}, {psutil.cpu_count()} CPUs, "
        f"{psutil.virtual_memory().total / 2**30:.0f} GiB, load average "
        f"{' '.join(f'{x:.1f}' for x in os.getloadavg())}, Python {platform.python_version()}"
    )


@contextlib.contextmanager
def servers_running(*servers: Server) -> Iterator[None]:
    workdir = Path(tempfile.mkdtemp(prefix="bench_server-"))
    try:
        for s in servers:
            s.start(workdir)
        yield
    finally:
        for s in servers:
            s.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def report_cost(args: argparse.Namespace, cost: dict[str, dict[str, float]], doc: dict) -> None:
    per_kernel = all(
        k["cpu_percent"] is not None and k["memory"] is not None for k in doc["kernels"]
    )
    floor, ours, rusage = cost[FLOOR], cost[OURS], cost[RUSAGE]
    print(f"## Request cost ({args.rounds} x {args.batch} sequential keep-alive GETs per route)\n")
    print("| route | median ms | p95 ms | server CPU ms/request | median vs floor |")
    print("|---|---:|---:|---:|---:|")
    for route, label in ((OURS, "ours"), (RUSAGE, "jupyter-resource-usage"), (FLOOR, "floor")):
        c = cost[route]
        print(
            f"| `{route}` ({label}) | {c['median_ms']:.2f} | {c['p95_ms']:.2f} | "
            f"{c['cpu_ms']:.2f} | {c['median_ms'] / floor['median_ms']:.2f}x |"
        )
    print()
    print(
        f"- ours vs floor (median latency): {ours['median_ms'] / floor['median_ms']:.2f}x "
        "(target <= 1.3x)"
    )
    print(
        f"- `{RUSAGE}` vs ours: {rusage['median_ms'] / ours['median_ms']:.1f}x the latency, "
        f"{rusage['cpu_ms'] / max(ours['cpu_ms'], 1e-9):.1f}x the server CPU (target >= 4x)"
    )
    print(
        f"- ours reports per-kernel CPU and memory for {len(doc['kernels'])} kernels: "
        f"{'yes' if per_kernel else 'NO'}; GPUs: {len(doc['gpus'])} "
        f"({doc['gpu_reason'] or 'readable'})\n"
    )


def report_idle(args: argparse.Namespace, idle: dict[str, float], doc: dict[str, Any]) -> None:
    added = idle["torchlab-on"] - idle["torchlab-off"]
    gpus = (
        f", {args.fake_gpus} fake GPUs on the torchlab server, each listing every kernel"
        if args.fake_gpus
        else ""
    )
    print(
        f"## Idle cost ({args.kernels} kernels each{gpus}, {args.idle_seconds:.0f} s, "
        "same window)\n"
    )
    print("| server | CPU, % of one core |")
    print("|---|---:|")
    print(f"| torchlab enabled | {idle['torchlab-on']:.2f} |")
    print(f"| torchlab disabled | {idle['torchlab-off']:.2f} |")
    print(f"| **added by torchlab** | **{added:.2f}** (target <= 1.00) |\n")
    if args.runs:
        print(
            f"- runs published: each kernel of both servers holds a running tl.progress run "
            f"(a step every {args.run_step:g} s); the torchlab server served "
            f"{doc['runs_served']} running runs, the baseline's kernels wrote "
            f"{doc['runs_files_off']} runs files"
        )
    shares = [k.get("gpu_utilization") for k in doc["kernels"]]
    print(
        f"- the torchlab server read {len(doc['gpus'])} GPUs ({doc['gpu_reason'] or 'readable'}); "
        f"kernels with a GPU share: {sum(u is not None for u in shares)} of {len(shares)}\n"
    )


def report_load(args: argparse.Namespace, loaded: dict[str, Any]) -> None:
    growth = (loaded["rss_after"] - loaded["rss_before"]) / MB
    print(
        f"## Load ({args.subscribers} WebSocket subscribers + {args.rate:.0f} GET/s of "
        f"`{OURS}` for {args.load_seconds:.0f} s)\n"
    )
    print(
        "| requests | errors | p50 ms | p95 ms | p99 ms | max ms | snapshots/subscriber | RSS MB |"
    )
    print("|---:|---:|---:|---:|---:|---:|---|---|")
    print(
        f"| {loaded['requests']} | {len(loaded['errors'])} | {loaded['p50_ms']:.1f} | "
        f"{loaded['p95_ms']:.1f} | {loaded['p99_ms']:.1f} | {loaded['max_ms']:.1f} | "
        f"{loaded['received_min']}-{loaded['received_max']} "
        f"(out of order: {loaded['out_of_order']}) | "
        f"{loaded['rss_before'] / MB:.0f} -> {loaded['rss_after'] / MB:.0f} ({growth:+.1f}) |"
    )
    print()
    print(
        f"- zero errors: {'yes' if not loaded['errors'] else 'NO'}; p99 < 50 ms: "
        f"{'yes' if loaded['p99_ms'] < 50 else 'NO'}; RSS growth < 20 MB: "
        f"{'yes' if growth < 20 else 'NO'}"
    )
    for e in loaded["errors"][:5]:
        print(f"  - {e}")
    print()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--kernels", type=int, default=8)
    p.add_argument("--rounds", type=int, default=10, help="rounds of request batches")
    p.add_argument("--batch", type=int, default=30, help="requests per batch")
    p.add_argument("--idle-seconds", type=float, default=30.0)
    p.add_argument("--load-seconds", type=float, default=60.0)
    p.add_argument("--rate", type=float, default=50.0, help="requests/s during the load test")
    p.add_argument("--subscribers", type=int, default=20)
    p.add_argument(
        "--phases", default="cost,idle,load", help="comma-separated subset of cost,idle,load"
    )
    p.add_argument(
        "--fake-gpus",
        type=int,
        default=0,
        help="idle phase: the torchlab server sees N fake GPUs holding every kernel",
    )
    p.add_argument(
        "--runs",
        action="store_true",
        help="idle phase: every kernel holds a running, published tl.progress run",
    )
    p.add_argument(
        "--run-step", type=float, default=0.1, help="--runs: seconds each loop step sleeps"
    )
    p.add_argument("--quick", action="store_true", help="a smoke run: fewer kernels, shorter")
    args = p.parse_args()
    if args.quick:
        args.kernels, args.rounds, args.batch = 2, 3, 10
        args.idle_seconds, args.load_seconds = 5.0, 5.0
    phases = set(args.phases.split(","))

    print(f"# bench_server: {args.kernels} kernels on {machine()}\n")

    if "idle" in phases:
        # two fresh servers side by side, measured over the same window
        on = Server(
            "torchlab-on",
            {"jupyter_torchlab": True, "jupyter_resource_usage": False},
            fake_gpus=args.fake_gpus,
        )
        off = Server("torchlab-off", {"jupyter_torchlab": False, "jupyter_resource_usage": False})
        with servers_running(on, off):
            ids = on.start_kernels(args.kernels)
            off_ids = off.start_kernels(args.kernels)
            wait_for_kernels(on, ids)
            served = 0
            if args.runs:
                start_runs(on, ids, args.run_step)
                start_runs(off, off_ids, args.run_step)
                served = wait_for_runs(on, ids)
            idle = idle_cost([on, off], args.idle_seconds)
            _, data, _ = on.client().get(OURS)
            doc = json.loads(data)
            doc["runs_served"] = served
            doc["runs_files_off"] = runs_files(off)
        report_idle(args, idle, doc)

    if phases & {"cost", "load"}:
        both = Server("both", {"jupyter_torchlab": True, "jupyter_resource_usage": True})
        with servers_running(both):
            ids = both.start_kernels(args.kernels)
            doc = wait_for_kernels(both, ids)
            if "cost" in phases:
                report_cost(args, request_cost(both, args.rounds, args.batch), doc)
            if "load" in phases:
                loaded = asyncio.run(load(both, args.load_seconds, args.rate, args.subscribers))
                report_load(args, loaded)
    return 0


if __name__ == "__main__":
    sys.exit(main())
