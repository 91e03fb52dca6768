"""The memory guard's reaction time: from a kernel crossing its threshold to the interrupt.

A real Jupyter server (``TorchlabExtension.memory_guard``) runs a real kernel in a real
memory-limited cgroup (root and a writable memory cgroup; cgroup v1 or v2). A cell grows the way a
training run does, a chunk at a time with a pause between (the pace is a parameter); right after
each allocation it reads the guard's own measure (its cgroup's usage minus file cache, what
``server/memory_guard.py`` compares) and records ``time.time()`` when that first reaches the
threshold; ``except KeyboardInterrupt`` records when the interrupt arrived. The reaction time is
the difference. Between runs the cell's memory is freed, so the guard re-arms.

Reported per sampling interval, each against a baseline in the same run (the same server with
the guard reading on the sampler's tick alone, its close watch patched off in that process):
the median and the worst reaction, and their ratio to the interval (the guard's tick reads on
the sampler's interval; a kernel near its threshold, or racing towards it, is read every 50 ms in
between), how many runs were interrupted inside the very allocation that crossed (the guard read
the charge rising before the cell could record the time: faster than timed), and how many runs
the OOM killer won instead.

    sudo python benchmarks/bench_guard.py [--intervals 1.0 0.25] [--runs 7] [--limit-mib 1024]
        [--guard 0.8] [--chunk-mib 100] [--pace 0.5]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

from jupyter_client.blocking import BlockingKernelClient

TOKEN = "bench-guard"

# runs in the kernel: the guard's measure of its own cgroup, read right after each allocation
CELL = """
import json, os, time

def _unreclaimable():
    for line in open('/proc/self/cgroup'):
        _, controllers, path = line.strip().split(':', 2)
        if 'memory' in controllers.split(','):
            folder = '/sys/fs/cgroup/memory' + path
            usage, prefix = 'memory.usage_in_bytes', 'total_'
            break
    else:
        folder, usage, prefix = '/sys/fs/cgroup' + path, 'memory.current', ''
    stat = dict(l.split() for l in open(folder + '/memory.stat'))
    cache = int(stat.get(prefix + 'active_file', 0)) + int(stat.get(prefix + 'inactive_file', 0))
    return int(open(folder + '/' + usage).read()) - cache

held, crossed, arrived = [], None, None
try:
    for i in range(64):
        held.append(bytearray(b'x') * ({chunk}))
        if crossed is None and _unreclaimable() >= {threshold}:
            crossed = time.time()
        time.sleep({pace})
except KeyboardInterrupt:
    arrived = time.time()
print(json.dumps({{"crossed": crossed, "arrived": arrived, "chunks": len(held)}}))
del held
"""


@contextlib.contextmanager
def limited_cgroup(limit: int) -> Iterator[Path]:
    """Yield a child of this process's memory cgroup limited to ``limit`` bytes; remove it after."""
    parent = None
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if "memory" in controllers.split(","):
            parent = Path("/sys/fs/cgroup/memory") / path.lstrip("/")
        elif controllers == "" and Path("/sys/fs/cgroup/cgroup.controllers").is_file():
            parent = parent or Path("/sys/fs/cgroup") / path.lstrip("/")
    if parent is None or not parent.is_dir():
        sys.exit("bench_guard: no memory cgroup here (run as root where cgroups are writable)")
    child = parent / f"torchlab-bench-{uuid.uuid4().hex[:8]}"
    child.mkdir()
    try:
        if (child / "memory.limit_in_bytes").exists():
            (child / "memory.limit_in_bytes").write_text(str(limit))
            with contextlib.suppress(FileNotFoundError):
                (child / "memory.memsw.limit_in_bytes").write_text(str(limit))
        else:
            (child / "memory.max").write_text(str(limit))
            with contextlib.suppress(FileNotFoundError):
                (child / "memory.swap.max").write_text("0")
        yield child
    finally:
        for _ in range(50):
            try:
                child.rmdir()
                break
            except OSError:
                time.sleep(0.1)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def api(port: int, path: str, method: str = "GET", body: object = None) -> object:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/{path}",
        data=data,
        method=method,
        headers={"Authorization": f"token {TOKEN}"},
    )
    with urllib.request.urlopen(request, timeout=30) as r:
        raw = r.read()
    return json.loads(raw) if raw else None


@contextlib.contextmanager
def server(
    home: Path, cgroup: Path, interval: float, guard: float, tick_only: bool
) -> Iterator[int]:
    """Run a Jupyter server with the guard and a kernel spec that starts kernels in ``cgroup``.

    ``tick_only``: the baseline, the guard reading only on the sampler's tick (its close watch
    patched off in that server process, nothing else changed).
    """
    data, config, runtime = home / "data", home / f"config-{interval}", home / f"rt-{interval}"
    spec = data / "kernels" / "python3-limited"
    spec.mkdir(parents=True, exist_ok=True)
    procs = cgroup / "cgroup.procs"
    shell = f'echo $$ > "{procs}" && exec "{sys.executable}" -m ipykernel_launcher -f "$0"'
    argv = ["/bin/sh", "-c", shell, "{connection_file}"]
    spec.joinpath("kernel.json").write_text(
        json.dumps({"argv": argv, "display_name": "limited", "language": "python"})
    )
    config.mkdir(parents=True, exist_ok=True)
    settings = {
        "ServerApp": {"jpserver_extensions": {"jupyter_torchlab": True}, "token": TOKEN},
        "TorchlabExtension": {"memory_guard": guard, "sample_interval": interval},
    }
    config.joinpath("jupyter_server_config.json").write_text(json.dumps(settings))
    env = dict(
        os.environ,
        JUPYTER_DATA_DIR=str(data),
        JUPYTER_CONFIG_DIR=str(config),
        JUPYTER_RUNTIME_DIR=str(runtime),
    )
    port = free_port()
    start = "from jupyter_server.serverapp import main; main()"
    if tick_only:
        start = "import jupyter_torchlab.server.memory_guard as g; g.NEAR = -1.0; g.AHEAD = 0.0; "
        start += "from jupyter_server.serverapp import main; main()"
    cmd = [sys.executable, "-c", start, "--no-browser", f"--port={port}"]
    cmd += [f"--ServerApp.root_dir={home}", "--allow-root"]
    log = open(home / f"server-{interval}.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                api(port, "api/status")
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise SystemExit(f"the server did not start; see {log.name}") from None
                time.sleep(0.2)
        yield port
    finally:
        proc.terminate()
        proc.wait(30)
        log.close()


def runs_at(
    home: Path, cgroup: Path, interval: float, args: argparse.Namespace, tick_only: bool
) -> dict:
    limit = args.limit_mib << 20
    threshold = int(args.guard * limit)
    code = CELL.format(chunk=args.chunk_mib << 20, threshold=threshold, pace=args.pace)
    reactions: list[float] = []
    killed = during = missed = 0
    with server(home, cgroup, interval, args.guard, tick_only) as port:
        kernel = api(port, "api/kernels", "POST", {"name": "python3-limited"})
        kid = kernel["id"]  # type: ignore[index]
        runtime = home / f"rt-{interval}"
        kc = BlockingKernelClient(connection_file=str(runtime / f"kernel-{kid}.json"))
        kc.load_connection_file()
        kc.start_channels()
        kc.wait_for_ready(timeout=60)
        for _ in range(args.runs):
            lines: list[str] = []

            def hook(msg: dict, lines: list[str] = lines) -> None:
                if msg["msg_type"] == "stream":
                    lines.append(msg["content"]["text"])

            try:
                kc.execute_interactive(code, timeout=120, output_hook=hook)
            except Exception:  # noqa: BLE001 - the kernel died: the OOM killer was faster
                killed += 1
                kc.wait_for_ready(timeout=60)
                continue
            result = json.loads("".join(lines).strip().splitlines()[-1])
            if result["crossed"] is None and result["arrived"] is not None:
                during += 1  # the guard read the crossing before the allocation returned
            elif result["crossed"] is None or result["arrived"] is None:
                missed += 1  # no crossing seen, or no interrupt: reported, not timed
            else:
                reactions.append(result["arrived"] - result["crossed"])
            time.sleep(3 * interval + 0.5)  # the guard re-arms once a tick sees the memory freed
        events = api(port, "torchlab/api/events")["memory_guard"]  # type: ignore[index]
        kc.stop_channels()
    return {
        "interval": interval,
        "reactions": reactions,
        "killed": killed,
        "during": during,
        "missed": missed,
        "events": len(events),
        "measures": sorted({e["measure"] for e in events}),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--intervals", type=float, nargs="+", default=[1.0, 0.25])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--limit-mib", type=int, default=1024)
    parser.add_argument("--guard", type=float, default=0.8)
    parser.add_argument("--chunk-mib", type=int, default=100)
    parser.add_argument("--pace", type=float, default=0.5, help="seconds between chunks")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench_guard: run as root (it makes a memory cgroup)")
    print(
        f"memory guard {args.guard} of a {args.limit_mib} MiB cgroup limit; the cell adds "
        f"{args.chunk_mib} MiB every {args.pace} s; {args.runs} runs per sampling interval"
    )
    with tempfile.TemporaryDirectory() as tmp, limited_cgroup(args.limit_mib << 20) as cgroup:
        for interval in args.intervals:
            for tick_only in (False, True):
                report(interval, tick_only, runs_at(Path(tmp), cgroup, interval, args, tick_only))


def report(interval: float, tick_only: bool, r: dict) -> None:
    times = r["reactions"]
    name = "tick only (baseline)" if tick_only else "guard as shipped"
    if times:
        median, worst = statistics.median(times), max(times)
        print(
            f"sample_interval {interval:g} s, {name}: reaction median {median * 1000:.0f} ms "
            f"({median / interval:.2f} of the interval), worst {worst * 1000:.0f} ms "
            f"({worst / interval:.2f}), best {min(times) * 1000:.0f} ms over "
            f"{len(times)} timed runs; interrupted inside the crossing allocation "
            f"(before the cell could time it) {r['during']}; OOM-killed {r['killed']}, "
            f"not interrupted {r['missed']}; "
            f"server events {r['events']} (measure {', '.join(r['measures'])})"
        )
    else:
        print(f"sample_interval {interval:g} s, {name}: no timed run ({r})")


if __name__ == "__main__":
    main()
