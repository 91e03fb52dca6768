"""Cost of watching kernels: our background Sampler against the per-request approach.

CPU mode (default): host + 8 process trees (each a sleeping Python process with two children).
Ours: one ``Sampler`` tick (host, 8 trees, GPU source), CPU time per tick measured with
``time.thread_time`` over many ticks, the clock advancing 1 s per tick so PSS re-reads happen at
their production rate. Naive: what popular extensions do per request, a fresh ``psutil.Process``
per tree, ``cpu_percent(interval=0.05)``, a recursive children walk and ``memory_info`` for each
process. Caller wait: ``Sampler.latest()`` while the sampler thread runs, against a naive request.

Fake-GPU mode (``--fake-gpus 8``): the same 8 trees and 8 fake GPUs (the tests' fake NVML, each
listing every tree's root as a compute process holding 1 GiB). What the per-process utilisation
queries add: a sampler whose NVML lacks ``nvmlDeviceGetProcessUtilization`` (before) against one
whose NVML returns 6 samples per process per second (after), in alternating blocks of 25 ticks
in one run.

GPU mode (``--gpu``, needs an NVIDIA GPU and torch): a child process runs matmuls on CUDA; the
readings must show utilisation rising and the child's GPU memory landing on the child's pid.
Needs only psutil, nvidia-ml-py and torch (no Jupyter).

    python benchmarks/bench_sampler.py [--ticks 200] [--requests 5] [--strict]
    python benchmarks/bench_sampler.py --fake-gpus 8 [--ticks 200]
    python benchmarks/bench_sampler.py --gpu
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import contextlib

from _fake_gpus import LiveFakeNvml, OlderFakeNvml

from jupyter_torchlab.metrics import GpuSampler, Sampler, Ticker

SLEEPER = (
    "import subprocess, sys, time\n"
    "kids = [subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(1e6)'])"
    " for _ in range(2)]\n"
    "time.sleep(1e6)\n"
)

TREES = 8


def start_trees(n: int) -> list[subprocess.Popen[bytes]]:
    procs = [subprocess.Popen([sys.executable, "-c", SLEEPER]) for _ in range(n)]
    deadline = time.monotonic() + 60
    for proc in procs:
        while len(psutil.Process(proc.pid).children()) < 2:
            if time.monotonic() > deadline:
                raise SystemExit("the process trees did not start within 60 s")
            time.sleep(0.05)
    return procs


def stop_trees(procs: list[subprocess.Popen[bytes]]) -> None:
    family = []
    for proc in procs:
        try:
            root = psutil.Process(proc.pid)
            family += [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            pass
    for p in family:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.kill()
    psutil.wait_procs(family, timeout=10)
    for proc in procs:
        proc.wait(10)


def naive_request(pids: list[int]) -> dict[int, tuple[float, int]]:
    """Serve one request the way the usual extensions do (see the module docstring)."""
    psutil.cpu_percent(interval=None)
    psutil.virtual_memory()
    out = {}
    for pid in pids:
        proc = psutil.Process(pid)
        cpu = proc.cpu_percent(interval=0.05)
        kids = proc.children(recursive=True)
        rss = proc.memory_info().rss + sum(k.memory_info().rss for k in kids)
        out[pid] = (cpu, rss)
    return out


def mib(value: int | None) -> str:
    return "None" if value is None else f"{value / 2**20:,.0f} MiB"


def fmt_ms(seconds: float) -> str:
    return f"{seconds * 1e3:.3f} ms"


def bench_cpu(args: argparse.Namespace) -> int:
    trees = start_trees(TREES)
    try:
        pids = [p.pid for p in trees]
        targets = {f"tree{i}": pid for i, pid in enumerate(pids)}

        # ours: synchronous ticks on this thread, clock advancing 1 s per tick
        fake_now = [0.0]
        sampler = Sampler(clock=lambda: fake_now[0])
        sampler.sample_once(targets)  # warm up: first reads, NVML probe
        per_tick = []
        for _ in range(args.ticks):
            fake_now[0] += 1.0
            start = time.thread_time()
            snap = sampler.sample_once(targets)
            per_tick.append(time.thread_time() - start)
        assert len(snap.trees) == TREES, snap.errors
        assert all(len(t.pids) == 3 for t in snap.trees.values())
        ours_cpu = statistics.mean(per_tick)
        ours_p95 = sorted(per_tick)[int(0.95 * len(per_tick)) - 1]

        # naive: per request
        naive_cpu, naive_wall = [], []
        for _ in range(args.requests):
            start_cpu, start_wall = time.thread_time(), time.perf_counter()
            naive_request(pids)
            naive_cpu.append(time.thread_time() - start_cpu)
            naive_wall.append(time.perf_counter() - start_wall)
        naive_cpu_mean = statistics.mean(naive_cpu)
        naive_wall_mean = statistics.mean(naive_wall)

        # caller wait: reading the latest snapshot while a sampling thread ticks (what the
        # server's GET does: the thread publishes, the caller reads a reference)
        live_sampler = Sampler()
        published: list[object] = []

        def publish() -> None:
            published.append(live_sampler.sample_once(targets))
            del published[:-1]

        live = Ticker(publish, 0.1, on_stop=live_sampler.close)

        def latest() -> object:
            return published[-1] if published else None

        live.start()
        try:
            while latest() is None:
                time.sleep(0.01)
            first_tick = time.monotonic()
            # requests arrive now and then (a tight loop would hog the GIL and starve the
            # sampler thread, which no real caller does)
            waits = []
            end = time.monotonic() + 1.0
            while time.monotonic() < end:
                start = time.perf_counter()
                latest()
                waits.append(time.perf_counter() - start)
                time.sleep(0.0005)
            ticks_seen = round((time.monotonic() - first_tick) / live.interval)
        finally:
            live.stop()
        waits.sort()
        wait_mean = statistics.mean(waits)
        wait_p99 = waits[int(0.99 * len(waits)) - 1]
        wait_max = waits[-1]
    finally:
        stop_trees(trees)

    cpu_ratio = naive_cpu_mean / ours_cpu
    wait_ratio = naive_wall_mean / wait_mean
    checks = [
        ("<= 2 ms CPU per tick for 8 trees", ours_cpu <= 0.002),
        (">= 10x cheaper than the naive approach", cpu_ratio >= 10),
        # the worst call may still be descheduled by the OS, but never for a sampling interval
        ("caller never waits for a sampling interval", wait_max < live.interval),
    ]
    print(
        f"host + {TREES} process trees of 3 processes; {os.cpu_count()} CPUs; "
        f"load average {os.getloadavg()[0]:.1f}; python {sys.version.split()[0]}"
    )
    print()
    print("| measure | jupyter_torchlab `Sampler` | naive per request | naive / ours |")
    print("|---|---|---|---|")
    print(
        f"| CPU per tick / request | {fmt_ms(ours_cpu)} (p95 {fmt_ms(ours_p95)}, "
        f"{args.ticks} ticks) | {fmt_ms(naive_cpu_mean)} ({args.requests} requests) "
        f"| {cpu_ratio:.1f}x |"
    )
    print(
        f"| wall time a caller waits | {wait_mean * 1e6:.2f} µs (`latest()`, p99 "
        f"{wait_p99 * 1e6:.1f} µs, max {wait_max * 1e6:.0f} µs, {len(waits)} calls over "
        f"{ticks_seen} live ticks) "
        f"| {fmt_ms(naive_wall_mean)} | {wait_ratio:,.0f}x |"
    )
    print()
    for name, ok in checks:
        print(f"- target {name}: {'PASS' if ok else 'FAIL'}")
    return 1 if args.strict and not all(ok for _, ok in checks) else 0


def bench_fake_gpus(args: argparse.Namespace) -> int:
    trees = start_trees(TREES)
    try:
        pids = [p.pid for p in trees]
        targets = {f"tree{i}": pid for i, pid in enumerate(pids)}

        def make(nvml_class: type[LiveFakeNvml]) -> tuple[Sampler, GpuSampler, list[float]]:
            # each variant has its own clock, advancing 1 s per tick of that variant
            now = [0.0]

            def clock() -> float:
                return now[0]

            gpu = GpuSampler(nvml_class(args.fake_gpus, lambda: pids, clock=clock), environ={})
            alone = GpuSampler(nvml_class(args.fake_gpus, lambda: pids, clock=clock), environ={})
            return Sampler(gpu=gpu, clock=clock), alone, now

        variants = {"before": make(OlderFakeNvml), "after": make(LiveFakeNvml)}
        tick: dict[str, list[float]] = {name: [] for name in variants}
        gpu_only: dict[str, list[float]] = {name: [] for name in variants}
        for sampler, gpu, _ in variants.values():  # warm up: first reads, NVML init
            sampler.sample_once(targets)
            gpu.sample()
        snaps = {}
        # alternating blocks of 25 ticks: ticks of one variant run back to back, as in
        # production (interleaving single ticks of two samplers costs both in CPU caches),
        # and drift in the machine's speed reaches both variants alike
        block = 25
        for i in range(max(1, args.ticks // block)):
            order = list(variants.items())
            if i % 2:
                order.reverse()
            for name, (sampler, _, now) in order:
                for _ in range(block):
                    now[0] += 1.0
                    start = time.thread_time()
                    snaps[name] = sampler.sample_once(targets)
                    tick[name].append(time.thread_time() - start)
        for i in range(max(1, args.ticks // block)):
            order = list(variants.items())
            if i % 2:
                order.reverse()
            for name, (_, gpu, now) in order:
                for _ in range(block):
                    now[0] += 1.0
                    start = time.thread_time()
                    gpu.sample()
                    gpu_only[name].append(time.thread_time() - start)
    finally:
        stop_trees(trees)

    before, after = snaps["before"], snaps["after"]
    assert len(after.gpus) == args.fake_gpus, after.gpu_reason
    assert all(len(g.processes) == TREES for g in after.gpus)
    utils_after = [t.gpu_utilization for t in after.trees.values()]
    utils_before = [t.gpu_utilization for t in before.trees.values()]
    mean = {name: statistics.mean(v) for name, v in tick.items()}
    gmean = {name: statistics.mean(v) for name, v in gpu_only.items()}
    added = mean["after"] - mean["before"]
    checks = [
        (
            f"<= 2 ms CPU per tick for {TREES} trees and {args.fake_gpus} GPUs, with per-process "
            "utilisation",
            mean["after"] <= 0.002,
        ),
        (
            "every tree gets a GPU utilisation share (after)",
            all(u is not None for u in utils_after),
        ),
        (
            "before: no share, and a reason",
            all(u is None for u in utils_before) and before.gpu_utilization_reason is not None,
        ),
    ]
    print(
        f"host + {TREES} process trees of 3 processes + {args.fake_gpus} fake GPUs, each listing "
        f"the {TREES} tree roots; {len(tick['after'])} ticks each, in alternating blocks; "
        f"{os.cpu_count()} CPUs; load average {os.getloadavg()[0]:.1f}; "
        f"python {sys.version.split()[0]}"
    )
    print()
    print("| CPU per tick | before (no per-process utilisation) | after | after / before |")
    print("|---|---|---|---|")
    for label, values in (
        ("whole tick (`Sampler.sample_once`)", tick),
        ("GPU source alone", gpu_only),
    ):
        b, a = statistics.mean(values["before"]), statistics.mean(values["after"])
        pb = sorted(values["before"])[int(0.95 * len(values["before"])) - 1]
        pa = sorted(values["after"])[int(0.95 * len(values["after"])) - 1]
        print(
            f"| {label} | {fmt_ms(b)} (p95 {fmt_ms(pb)}) | {fmt_ms(a)} (p95 {fmt_ms(pa)}) "
            f"| {a / b:.3f} |"
        )
    print()
    print(
        f"- added by the per-process queries: {added * 1e3:+.3f} ms per tick "
        f"({added / args.fake_gpus * 1e6:+.1f} µs per GPU; GPU source {gmean['before'] * 1e3:.3f} "
        f"-> {gmean['after'] * 1e3:.3f} ms); at one tick per second, "
        f"{added * 100:+.3f}% of one core"
    )
    print(f"- shares (after): {', '.join(f'{u:.0f}%' for u in utils_after if u is not None)}")
    print(f"- reason (before): {before.gpu_utilization_reason}")
    for name, ok in checks:
        print(f"- target {name}: {'PASS' if ok else 'FAIL'}")
    return 1 if args.strict and not all(ok for _, ok in checks) else 0


GPU_LOAD = (
    "import sys, time, torch\n"
    "x = torch.randn(8192, 8192, device='cuda')\n"
    "y = x @ x\n"
    "torch.cuda.synchronize()\n"
    "print('ready', flush=True)\n"
    "end = time.monotonic() + float(sys.argv[1])\n"
    "while time.monotonic() < end:\n"
    "    for _ in range(20):\n"
    "        y = x @ x\n"
    "    torch.cuda.synchronize()\n"
)


def bench_gpu(args: argparse.Namespace) -> int:
    probe = GpuSampler(torch_fallback=False)
    idle = probe.sample()
    probe.close()
    if not idle.gpus:
        print(f"no GPU readable through NVML: {idle.reason}")
        return 2
    print("idle:", [(g.index, g.name, g.utilization_gpu, g.memory_used) for g in idle.gpus])

    child = subprocess.Popen(
        [sys.executable, "-c", GPU_LOAD, str(args.seconds)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None
        if child.stdout.readline().strip() != "ready":
            print("the CUDA load did not start")
            return 2
        sampler = Sampler()
        gpu_targets = {"load": child.pid, "bench": os.getpid()}
        readings = []
        end = time.monotonic() + args.seconds - 1
        print()
        print("| t (s) | GPU util % | GPU memory used | load pid on GPU | load tree gpu_memory |")
        print("|---|---|---|---|---|")
        start = time.monotonic()
        while time.monotonic() < end and child.poll() is None:
            snap = sampler.sample_once(gpu_targets)
            gpu = snap.gpus[0] if snap.gpus else None
            tree = snap.trees.get("load")
            on_gpu = any(p.pid == child.pid for g in snap.gpus for p in g.processes)
            readings.append((gpu, tree, on_gpu, snap))
            print(
                f"| {time.monotonic() - start:.1f} | {gpu.utilization_gpu if gpu else None} "
                f"| {mib(gpu.memory_used if gpu else None)} | {on_gpu} "
                f"| {mib(tree.gpu_memory if tree else None)} |"
            )
            time.sleep(0.5)
        sampler.close()
        last = readings[-1][3] if readings else None
        bench_tree = last.trees.get("bench") if last else None
        load_tree = last.trees.get("load") if last else None
        self_on_gpu = any(
            p.pid == os.getpid() for snap in readings for g in snap[3].gpus for p in g.processes
        )
    finally:
        child.kill()
        child.wait(10)

    peak = max((g.utilization_gpu or 0.0) for g, _, _, _ in readings if g is not None)
    base = idle.gpus[0].utilization_gpu or 0.0
    lands = any(on and t is not None and (t.gpu_memory or 0) > 0 for _, t, on, _ in readings)
    checks = [
        (f"utilisation rises under load (idle {base:.0f}% -> peak {peak:.0f}%)", peak >= base + 30),
        ("per-process GPU memory lands on the load's pid and its tree", lands),
        (
            "the load's GPU memory also counts in its parent's (this script's) tree",
            bench_tree is not None
            and load_tree is not None
            and (bench_tree.gpu_memory or 0) >= (load_tree.gpu_memory or 0) > 0,
        ),
        ("this process itself holds no GPU memory", not self_on_gpu),
        ("torch was never imported by the sampler", "torch" not in sys.modules),
    ]
    print()
    for name, ok in checks:
        print(f"- {name}: {'PASS' if ok else 'FAIL'}")
    if readings and readings[-1][3].gpu_reason:
        print(f"- gpu_reason: {readings[-1][3].gpu_reason}")
    return 0 if all(ok for _, ok in checks) else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ticks", type=int, default=200, help="sampler ticks to average")
    parser.add_argument("--requests", type=int, default=5, help="naive requests to average")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    parser.add_argument("--gpu", action="store_true", help="check readings under a CUDA load")
    parser.add_argument("--seconds", type=float, default=8.0, help="length of the GPU load")
    parser.add_argument(
        "--fake-gpus", type=int, default=0, help="what per-process utilisation adds, N fake GPUs"
    )
    args = parser.parse_args()
    if args.gpu:
        return bench_gpu(args)
    return bench_fake_gpus(args) if args.fake_gpus else bench_cpu(args)


if __name__ == "__main__":
    raise SystemExit(main())
