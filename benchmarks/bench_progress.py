"""What a progress display costs the tutorial's training loop, measured in a real kernel.

``tl.progress`` is a subclass of tqdm's own class (``tqdm.asyncio.tqdm_asyncio``) that changes
only the display, so the tight-loop rows compare the same counting code with and without our
display. What it must keep (issue 18): at least 0.99 of the plain loop with
``set_postfix(loss=tensor)``, at most 5 iopub messages a second, a tight loop no more than 0.1 µs
a step over tqdm's, and ``disable=True`` costing about nothing.

The tutorial's network (TutorialNet) at batch size 4 on stand-in data already in memory, so the
step itself is all there is to slow down. Variants, run in alternating order each round:

- plain:        the bare loop
- tl.progress:  ``bar.log(loss=loss)`` each batch
- tl.progress:  ``bar.set_postfix(loss=loss)`` each batch, the tensor itself (the tqdm idiom)
- tqdm.auto:    ``bar.set_postfix(loss=loss.item())`` each batch (its notebook widget)
- fastprogress: ``pb.comment = f"{loss.item():.3f}"`` each batch
- the plain loop and tl.progress again with ``tl.monitor()`` displayed

Reported: images/s (median over rounds), the ratio to the plain loop, the same ratio in images per
CPU-second of the kernel process (steadier on a shared machine), and iopub messages per second sent
to the frontend; then the per-step cost in microseconds of a tight loop (``for _ in bar: pass``
and with a ``set_postfix`` each step) for tl.progress and tqdm, over the bare loop, in the same
kernel; then the idle monitor's CPU use (share of one core, ``time.process_time`` over an
idle period, minus the kernel's own idle use). Timings need a quiet machine: on a busy one the
noise between identical runs exceeds the differences measured here.

    python benchmarks/bench_progress.py            # 5-10 minutes on a quiet machine
    python benchmarks/bench_progress.py --quick    # under a minute, a smoke run
    python benchmarks/bench_progress.py --device cuda
"""

from __future__ import annotations

import argparse
import ast
import os
import platform
import queue
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

from jupyter_client.manager import KernelManager

ROOT = Path(__file__).resolve().parents[1]

SETUP = """
import os, time, torch, torch.nn as nn
import jupyter_torchlab as tl
torch.manual_seed(0)
if {threads}:
    torch.set_num_threads({threads})
DEVICE = torch.device({device!r})
try:
    Net = tl.TutorialNet
except Exception:  # the train module not available: the tutorial's network, inline
    import torch.nn.functional as F
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(3, 6, 5); self.pool = nn.MaxPool2d(2, 2)
            self.conv2 = nn.Conv2d(6, 16, 5); self.fc1 = nn.Linear(16 * 5 * 5, 120)
            self.fc2 = nn.Linear(120, 84); self.fc3 = nn.Linear(84, 10)
        def forward(self, x):
            x = self.pool(F.relu(self.conv1(x))); x = self.pool(F.relu(self.conv2(x)))
            x = torch.flatten(x, 1); x = F.relu(self.fc1(x)); x = F.relu(self.fc2(x))
            return self.fc3(x)
net = Net().to(DEVICE)
opt = torch.optim.SGD(net.parameters(), lr=0.001, momentum=0.9)
crit = nn.CrossEntropyLoss()
BATCHES = [(torch.randn(4, 3, 32, 32, device=DEVICE), torch.randint(0, 10, (4,), device=DEVICE))
           for _ in range({steps})]

def step(x, y):
    opt.zero_grad()
    loss = crit(net(x), y)
    loss.backward()
    opt.step()
    return loss

def sync():
    if DEVICE.type == "cuda":
        torch.cuda.synchronize()

def timed(loop):
    sync(); t0, c0 = time.perf_counter(), time.process_time(); loop(); sync()
    images = 4 * len(BATCHES)
    return images / (time.perf_counter() - t0), images / (time.process_time() - c0)

def plain():
    for x, y in BATCHES:
        step(x, y)

def ours():
    bar = tl.progress(BATCHES, desc="tl")
    for x, y in bar:
        loss = step(x, y)
        bar.log(loss=loss)

def ours_postfix():
    bar = tl.progress(BATCHES, desc="tl")
    for x, y in bar:
        loss = step(x, y)
        bar.set_postfix(loss=loss)

from tqdm.auto import tqdm
def with_tqdm():
    bar = tqdm(BATCHES, desc="tqdm")
    for x, y in bar:
        loss = step(x, y)
        bar.set_postfix(loss=loss.item())

from fastprogress.fastprogress import progress_bar
def with_fastprogress():
    pb = progress_bar(BATCHES)
    for x, y in pb:
        loss = step(x, y)
        pb.comment = f"loss {{loss.item():.3f}}"

for _f in (plain, ours, ours_postfix, with_tqdm, with_fastprogress):  # warm up every path once
    _f()
"""

VARIANTS = {
    "plain loop": "plain",
    "tl.progress + log(loss=loss)": "ours",
    "tl.progress + set_postfix(loss=loss), a tensor": "ours_postfix",
    "tqdm.auto + set_postfix(loss=loss.item())": "with_tqdm",
    "fastprogress + comment each batch": "with_fastprogress",
}
MONITORED = {
    "plain loop, tl.monitor() shown": "plain",
    "tl.progress, tl.monitor() shown": "ours",
}

# microseconds per step of a loop that does nothing else, over the bare loop, in the kernel
TIGHT = """
def _tight(make, n, postfix=None):
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        bar = make(range(n))
        if postfix is None:
            for _ in bar:
                pass
        else:
            for _ in bar:
                postfix(bar)
        if hasattr(bar, "close"):
            bar.close()
        best = min(best, time.perf_counter() - t0)
    return best / n * 1e6
_t = torch.tensor(0.5)
_N = {n}
_bare = _tight(lambda r: r, _N)
_rows = {{
    "tl.progress": _tight(lambda r: tl.progress(r, desc="t"), _N),
    "tl.progress(disable=True)": _tight(lambda r: tl.progress(r, disable=True), _N),
    "tl.progress + set_postfix(loss=tensor)": _tight(
        lambda r: tl.progress(r, desc="t"), _N, lambda b: b.set_postfix(loss=_t)),
    "tqdm.auto": _tight(lambda r: tqdm(r, desc="t"), _N),
    "tqdm.auto(disable=True)": _tight(lambda r: tqdm(r, disable=True), _N),
    "tqdm.auto + set_postfix(loss=tensor.item())": _tight(
        lambda r: tqdm(r, desc="t"), _N, lambda b: b.set_postfix(loss=_t.item())),
}}
print(repr({{k: v - _bare for k, v in _rows.items()}}))
"""

IDLE = """
import time
_c0, _w0 = time.process_time(), time.monotonic()
time.sleep({seconds})
print(repr((time.process_time() - _c0) / (time.monotonic() - _w0)))
"""


class Kernel:
    def __init__(self) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
        env.pop("JUPYTER_TORCHLAB_PROGRESS", None)
        self.km = KernelManager(kernel_name="python3")
        self.km.start_kernel(cwd=str(ROOT), env=env)
        self.kc = self.km.client()
        self.kc.start_channels()
        self.kc.wait_for_ready(timeout=60)

    def run(self, code: str, timeout: float = 600) -> tuple[str, Counter[str]]:
        """Execute; return stdout and a count of iopub message types the frontend received."""
        msg_id = self.kc.execute(code)
        out: list[str] = []
        counts: Counter[str] = Counter()
        deadline = time.monotonic() + timeout
        while True:
            try:
                msg = self.kc.get_iopub_msg(timeout=max(deadline - time.monotonic(), 0.1))
            except queue.Empty:
                raise RuntimeError(f"kernel did not finish within {timeout}s") from None
            kind = msg["msg_type"]
            counts[kind] += 1
            if kind == "stream" and msg["content"]["name"] == "stdout":
                out.append(msg["content"]["text"])
            if kind == "error":
                raise RuntimeError("\n".join(msg["content"]["traceback"]))
            if (
                kind == "status"
                and msg["parent_header"].get("msg_id") == msg_id
                and msg["content"]["execution_state"] == "idle"
            ):
                return "".join(out), counts

    def close(self) -> None:
        self.kc.stop_channels()
        self.km.shutdown_kernel(now=True)


def log(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def measure(k: Kernel, fn: str) -> tuple[tuple[float, float], float]:
    """Return ((images/s, images per CPU-second), iopub messages/s) for one run of ``fn``."""
    log(f"run {fn}")
    t0 = time.perf_counter()
    out, counts = k.run(f"print(repr(timed({fn})))")
    wall = time.perf_counter() - t0
    msgs = sum(counts.values()) - counts["status"] - counts["execute_input"] - 1  # - our print
    wall_ips, cpu_ips = ast.literal_eval(out.strip())
    return (float(wall_ips), float(cpu_ips)), msgs / wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few short rounds (smoke run)")
    parser.add_argument("--device", default="cpu", help="torch device for the loop (cpu, cuda)")
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads in the kernel (0 = torch's default); one thread keeps the "
        "tiny batch-4 steps steady on a shared machine",
    )
    parser.add_argument("--steps", type=int, default=None, help="batches per run")
    args = parser.parse_args()
    # 5000 batches (a third of a tutorial epoch) so a bar's fixed cost (create, show, close) weighs
    # what it weighs in real use, not more
    rounds = args.rounds or (2 if args.quick else 7)
    steps = args.steps or (300 if args.quick else 5000)
    idle_seconds = 3 if args.quick else 15

    k = Kernel()
    try:
        log("kernel started; setting up and warming up")
        k.run(SETUP.format(device=args.device, steps=steps, threads=args.threads))
        threads = k.run("print(torch.get_num_threads())")[0].strip()
        results: dict[str, list[tuple[float, float]]] = {n: [] for n in [*VARIANTS, *MONITORED]}
        rates: dict[str, list[float]] = {name: [] for name in results}
        names = list(VARIANTS)
        for r in range(rounds):
            order = names[r % len(names) :] + names[: r % len(names)]  # rotate: no fixed slot
            for name in order:
                ips, mps = measure(k, VARIANTS[name])
                results[name].append(ips)
                rates[name].append(mps)
            k.run("tl.monitor()")
            time.sleep(1.5)  # let it take a couple of samples, as it would while you work
            mon = list(MONITORED) if r % 2 == 0 else list(reversed(MONITORED))
            for name in mon:
                ips, mps = measure(k, MONITORED[name])
                results[name].append(ips)
                rates[name].append(mps)
            k.run("from jupyter_torchlab.widgets import close_monitor; close_monitor()")

        log("tight loops")
        tight = ast.literal_eval(k.run(TIGHT.format(n=20_000 if args.quick else 200_000))[0])
        base_idle = float(k.run(IDLE.format(seconds=idle_seconds))[0])
        k.run("tl.monitor()")
        time.sleep(2)  # past its first samples (NVML probe, first /proc scan): steady state
        mon_idle = float(k.run(IDLE.format(seconds=idle_seconds))[0])
        k.run("from jupyter_torchlab.widgets import close_monitor; close_monitor()")
    finally:
        k.close()

    plain = statistics.median(w for w, _ in results["plain loop"])
    plain_cpu = statistics.median(c for _, c in results["plain loop"])
    print(
        f"\nTutorialNet, batch 4, {steps} batches per run, {rounds} alternating rounds, "
        f"device {args.device}, torch threads {threads}, {platform.processor() or 'cpu'} "
        f"({os.cpu_count()} CPUs), Python {sys.version.split()[0]}\n"
    )
    print("| loop | images/s (median) | vs plain loop | vs plain, CPU time | iopub msgs/s |")
    print("|---|---:|---:|---:|---:|")
    for name, values in results.items():
        med = statistics.median(w for w, _ in values)
        cpu = statistics.median(c for _, c in values)
        print(
            f"| {name} | {med:,.0f} | {med / plain:.3f} | {cpu / plain_cpu:.3f} "
            f"| {statistics.median(rates[name]):.1f} |"
        )
    print(
        "\n'vs plain, CPU time' compares images per CPU-second of the kernel process (all its "
        "threads): steadier than wall time on a busy machine."
    )
    print("\n| tight loop, in the kernel | µs per step over the bare loop |")
    print("|---|---:|")
    for name, micros in tight.items():
        print(f"| {name} | {micros:.2f} |")
    print(
        f"\nIdle kernel CPU over {idle_seconds}s: {base_idle * 100:.2f}% of one core without the "
        f"monitor, {mon_idle * 100:.2f}% with it shown "
        f"(monitor: {max(mon_idle - base_idle, 0) * 100:.2f}% of one core)"
    )


if __name__ == "__main__":
    main()
