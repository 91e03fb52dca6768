"""What publishing runs to the server costs a tight ``tl.progress`` loop, measured in a real kernel.

A notebook bar writes its run to the kernel's runs file (``torchlab-runs-<kernel id>.json``,
:mod:`jupyter_torchlab.widgets._runs`) at the redraws its widget makes anyway and once at its end.
This measures that against the same bar with publishing turned off
(``_runs.set_publishing(False)``, as ``JUPYTER_TORCHLAB_PUBLISH_RUNS=0`` does), in one kernel
started as a Jupyter server starts it (a connection file ``kernel-<id>.json`` in a runtime dir),
in alternating order each round:

- bare:        ``for _ in range(N): pass``
- not published / published: ``for _ in tl.progress(range(N)): pass``
- the same two with ``bar.log(loss=tensor)`` each step

Reported: µs per step (median over rounds), in wall time and in the kernel process's CPU time
(steadier on a shared machine), and the difference published minus not published; the writes a
second while publishing (the display's refresh budget, 4 a second by default, plus the first and
the last of each bar) and the time of one write (median, wall), so the cost per second of a
slower loop follows too. Rounds alternate the order of the variants.

    python benchmarks/bench_runs.py            # about a minute
    python benchmarks/bench_runs.py --quick    # a smoke run
"""

from __future__ import annotations

import argparse
import ast
import os
import platform
import queue
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

from jupyter_client.manager import KernelManager

ROOT = Path(__file__).resolve().parents[1]

SETUP = """
import time, torch, jupyter_torchlab as tl
from jupyter_torchlab.widgets import _runs
_writes = []
_write = _runs.write_runs
def _counted(*a):
    t0 = time.perf_counter()
    _write(*a)
    _writes.append(time.perf_counter() - t0)
_runs.write_runs = _counted
loss = torch.tensor(0.5)

def variant(name, n):
    _runs.set_publishing(name.startswith("published"))
    del _writes[:]
    t0, c0 = time.perf_counter(), time.process_time()
    if name == "bare":
        for _ in range(n):
            pass
    elif name.endswith("log"):
        bar = tl.progress(range(n), desc=name)
        for _ in bar:
            bar.log(loss=loss)
    else:
        for _ in tl.progress(range(n), desc=name):
            pass
    elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
    return elapsed, cpu, len(_writes), sorted(_writes)[len(_writes) // 2] if _writes else 0.0
"""

VARIANTS = ["bare", "not published", "published", "not published, log", "published, log"]


class Kernel:
    def __init__(self, runtime: Path) -> None:
        kid = uuid.uuid4().hex
        self.runs_file = runtime / f"torchlab-runs-{kid}.json"
        self.km = KernelManager(
            kernel_name="python3", connection_file=str(runtime / f"kernel-{kid}.json")
        )
        env = {"PYTHONPATH": str(ROOT), "JUPYTER_TORCHLAB_PUBLISH_RUNS": "1"}
        self.km.start_kernel(cwd=str(runtime), env={**os.environ, **env})
        self.kc = self.km.client()
        self.kc.start_channels()
        self.kc.wait_for_ready(timeout=60)

    def run(self, code: str, timeout: float = 300) -> str:
        msg_id = self.kc.execute(code)
        out: list[str] = []
        deadline = time.monotonic() + timeout
        while True:
            try:
                msg = self.kc.get_iopub_msg(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                raise RuntimeError(f"no reply within {timeout} s") from None
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            if msg["msg_type"] == "stream":
                out.append(msg["content"]["text"])
            elif msg["msg_type"] == "error":
                raise RuntimeError("\n".join(msg["content"]["traceback"]))
            elif msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
                return "".join(out)

    def close(self) -> None:
        self.kc.stop_channels()
        self.km.shutdown_kernel(now=True)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--steps", type=int, default=2_000_000, help="steps per measured loop")
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--quick", action="store_true")
    args = p.parse_args()
    if args.quick:
        args.steps, args.rounds = 200_000, 2

    with tempfile.TemporaryDirectory() as tmp:
        kernel = Kernel(Path(tmp))
        try:
            kernel.run(SETUP)
            kernel.run(f"variant('published', {args.steps // 10})")  # warm up, imports
            times: dict[str, list[float]] = {v: [] for v in VARIANTS}
            cpus: dict[str, list[float]] = {v: [] for v in VARIANTS}
            writes: dict[str, list[tuple[float, int, float]]] = {v: [] for v in VARIANTS}
            for r in range(args.rounds):
                order = VARIANTS[r % len(VARIANTS) :] + VARIANTS[: r % len(VARIANTS)]
                for name in order:
                    out = kernel.run(f"print(repr(variant({name!r}, {args.steps})))")
                    elapsed, cpu, count, write_s = ast.literal_eval(out.strip())
                    times[name].append(elapsed / args.steps * 1e6)
                    cpus[name].append(cpu / args.steps * 1e6)
                    writes[name].append((elapsed, count, write_s))
            published = kernel.runs_file.exists()
        finally:
            kernel.close()

    print(
        f"# bench_runs: {args.steps} steps x {args.rounds} rounds on {platform.machine()}, "
        f"Python {platform.python_version()}\n"
    )
    print(
        "| loop | µs/step, wall (median; min-max) | µs/step, kernel CPU (median) | "
        "writes/s while publishing | ms per write (median) |"
    )
    print("|---|---:|---:|---:|---:|")
    med = {v: statistics.median(t) for v, t in times.items()}
    cpu_med = {v: statistics.median(t) for v, t in cpus.items()}
    for name in VARIANTS:
        rows = writes[name]
        rate = sum(c for _, c, _ in rows) / sum(e for e, _, _ in rows)
        per_write = statistics.median([w for _, c, w in rows if c]) * 1e3 if rate else 0.0
        shown = f"{rate:.1f}" if name.startswith("published") else "-"
        write = f"{per_write:.3f}" if name.startswith("published") else "-"
        spread = f"{min(times[name]):.3f}-{max(times[name]):.3f}"
        print(f"| {name} | {med[name]:.3f} ({spread}) | {cpu_med[name]:.3f} | {shown} | {write} |")
    print()
    for body in ("", ", log"):
        on, off = med[f"published{body}"], med[f"not published{body}"]
        con, coff = cpu_med[f"published{body}"], cpu_med[f"not published{body}"]
        print(
            f"- publishing{' (with log)' if body else ''}: {on - off:+.3f} µs/step wall "
            f"({on / off:.3f}x the unpublished bar's), {con - coff:+.3f} µs/step CPU "
            f"({con / coff:.3f}x)"
        )
    print(f"- the kernel's runs file was written: {'yes' if published else 'NO'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
