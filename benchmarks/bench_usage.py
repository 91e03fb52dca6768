"""Cost of asking kernels for their usage (usage_request) against sampling them locally.

For kernels that are not local processes the server sends ipykernel's ``usage_request`` on each
kernel's control channel from the sampler thread (``jupyter_torchlab.server.usage.UsagePoller``).
This starts N real ipykernels and measures, per round: the sampler thread's CPU time, the round's
wall time (it waits for the replies at most ``--wait`` seconds, the in-tick budget) and each
reply's latency (request to reading the reply: a reply that misses the budget is read at the
next round, so its latency includes the pause between rounds). Baseline, same kernels, same run:
the local path the server takes for kernels it can see (``ProcessTreeSampler.sample_many`` over
their pids). Also: N endpoints that never answer (a bound socket nobody reads) cost one in-tick
wait per round for all of them together, not one each and never the timeout.

    python benchmarks/bench_usage.py [--kernels 1 4 8] [--rounds 40] [--wait 0.05] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from jupyter_client.manager import KernelManager

from jupyter_torchlab.metrics.process import ProcessTreeSampler
from jupyter_torchlab.server.monitor import USAGE_WAIT_MAX
from jupyter_torchlab.server.usage import UsagePoller


def start_kernels(n: int) -> list[KernelManager]:
    kms = []
    for _ in range(n):
        km = KernelManager(kernel_name="python3")
        km.start_kernel(stderr=subprocess.DEVNULL)  # the kernels' startup warnings
        kms.append(km)
    for km in kms:  # every kernel answers before timing starts
        client = km.client()
        client.start_channels()
        client.wait_for_ready(timeout=60)
        client.stop_channels()
    return kms


def p90(values: list[float]) -> float:
    return statistics.quantiles(values, n=10)[-1] if len(values) > 1 else values[0]


def measure_usage(
    endpoints: dict, rounds: int, timeout: float, wait: float, settle: float = 5.0
) -> dict[str, float]:
    poller = UsagePoller(interval=0.0001, timeout=timeout, wait=wait)
    try:
        # connect, then poll until every kernel has a real CPU figure (its second reply)
        readings = poller.poll(endpoints)
        deadline = time.monotonic() + settle
        while time.monotonic() < deadline:
            if all(u.cpu_percent is not None for u in readings.values()):
                break
            time.sleep(0.05)
            readings = poller.poll(endpoints)
        walls, cpus, latencies = [], [], []
        for _ in range(rounds):
            c0 = time.thread_time()
            readings = poller.poll(endpoints)
            cpus.append((time.thread_time() - c0) * 1000)
            walls.append(poller.last_round_seconds * 1000)
            latencies += [u.latency * 1000 for u in readings.values() if u.latency is not None]
            time.sleep(0.05)
        answered = sum(u.cpu_percent is not None for u in readings.values())
    finally:
        poller.close()
    return {
        "cpu_ms": statistics.median(cpus),
        "wall_ms": statistics.median(walls),
        "wall_p90_ms": p90(walls),
        "latency_ms": statistics.median(latencies) if latencies else float("nan"),
        "latency_max_ms": max(latencies) if latencies else float("nan"),
        "wall_max_ms": max(walls),
        "answered": answered,
        "late": sum("did not answer" in (u.reason or "") for u in readings.values()),
    }


def measure_local(pids: list[int], rounds: int) -> float:
    sampler = ProcessTreeSampler()
    sampler.sample_many(pids)
    cpus = []
    for _ in range(rounds):
        c0 = time.thread_time()
        sampler.sample_many(pids)
        cpus.append((time.thread_time() - c0) * 1000)
        time.sleep(0.05)
    return statistics.median(cpus)


def silent_endpoints(n: int) -> tuple[dict, list[socket.socket]]:
    """Return connection infos whose control ports are bound and listening but never answer."""
    socks, endpoints = [], {}
    for i in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        s.listen()
        socks.append(s)
        port = s.getsockname()[1]
        endpoints[f"silent{i}"] = {
            "transport": "tcp",
            "ip": "127.0.0.1",
            "control_port": port,
            "shell_port": port,
            "iopub_port": port,
            "stdin_port": port,
            "hb_port": port,
            "key": "x",
            "signature_scheme": "hmac-sha256",
        }
    return endpoints, socks


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--kernels", type=int, nargs="+", default=[1, 4, 8])
    ap.add_argument("--rounds", type=int, default=40)
    ap.add_argument("--timeout", type=float, default=1.0)
    ap.add_argument(
        "--wait",
        type=float,
        default=USAGE_WAIT_MAX,
        help="in-tick wait for replies (the server uses min(timeout, 0.2 * interval, 0.05))",
    )
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()

    results: dict = {"rounds": args.rounds, "timeout": args.timeout, "wait": args.wait, "rows": []}
    kms = start_kernels(max(args.kernels))
    try:
        print(
            f"{'kernels':>7} | {'usage round: thread CPU':>23} | {'wall (median/p90)':>17} | "
            f"{'reply latency (median/max)':>26} | {'local /proc: thread CPU':>23} | ratio"
        )
        for n in args.kernels:
            chosen = kms[:n]
            endpoints = {str(i): km.get_connection_info() for i, km in enumerate(chosen)}
            usage = measure_usage(endpoints, args.rounds, args.timeout, args.wait)
            pids = [km.provisioner.process.pid for km in chosen]  # type: ignore[union-attr]
            local = measure_local(pids, args.rounds)
            ratio = usage["cpu_ms"] / local if local > 0 else float("nan")
            print(
                f"{n:>7} | {usage['cpu_ms']:>20.2f} ms | "
                f"{usage['wall_ms']:>6.1f} / {usage['wall_p90_ms']:>5.1f} ms | "
                f"{usage['latency_ms']:>11.1f} / {usage['latency_max_ms']:>6.1f} ms | "
                f"{local:>20.2f} ms | {ratio:>4.1f}x"
            )
            if usage["answered"] != n:
                raise SystemExit(f"only {usage['answered']} of {n} kernels reported CPU")
            results["rows"].append({"kernels": n, **usage, "local_cpu_ms": local, "ratio": ratio})
    finally:
        for km in kms:
            km.shutdown_kernel(now=True)

    n = max(args.kernels)
    endpoints, socks = silent_endpoints(n)
    silent_timeout = 0.3
    try:
        silent = measure_usage(endpoints, 10, silent_timeout, args.wait, settle=0.0)
    finally:
        for s in socks:
            s.close()
    print(
        f"\n{n} endpoints that never answer (a request to each every round), in-tick wait "
        f"{args.wait * 1000:.0f} ms, timeout {silent_timeout:g} s: round wall median "
        f"{silent['wall_ms']:.0f} ms / max {silent['wall_max_ms']:.0f} ms (one wait for all "
        f"{n}), thread CPU {silent['cpu_ms']:.2f} ms; reported as not answering: "
        f"{silent['late']} of {n}"
    )
    results["silent"] = {"endpoints": n, **silent}
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
