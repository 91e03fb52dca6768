"""What explaining out-of-memory errors costs: nothing per cell, and under a second per report.

1. Per-cell overhead of the hook: two real kernels, one that imported ``jupyter_torchlab`` (its
   ``post_run_cell`` hook installed) and one that did not, run the same trivial cells in
   alternating rounds; reported as the ratio of their median round-trip times per cell.
2. The report for a namespace of 10,000 tensors (and a model and an optimizer), built in this
   process on the CPU build against a real ``torch.OutOfMemoryError``: median time over rounds.

    python benchmarks/bench_oom.py [--cells 200] [--rounds 5] [--tensors 10000]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

from jupyter_client.manager import KernelManager

ROOT = Path(__file__).resolve().parents[1]


def start_kernel(setup: str) -> tuple[KernelManager, object]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    km = KernelManager(kernel_name="python3")
    km.start_kernel(env=env)
    kc = km.client()
    kc.start_channels()
    kc.wait_for_ready(timeout=60)
    kc.execute_interactive(setup, timeout=120)
    return km, kc


def per_cell(kc: object, cells: int) -> float:
    """Return the median seconds one trivial cell takes, executed and acknowledged."""
    times = []
    for i in range(cells):
        t0 = time.perf_counter()
        kc.execute_interactive(f"x = {i}", timeout=30, output_hook=lambda msg: None)  # type: ignore[attr-defined]
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def report_time(tensors: int, rounds: int) -> tuple[float, int]:
    import torch

    from jupyter_torchlab.train.oom import build_report

    namespace: dict[str, object] = {f"t{i}": torch.zeros(16) for i in range(tensors)}
    model = torch.nn.Sequential(torch.nn.Linear(256, 256), torch.nn.Linear(256, 10))
    opt = torch.optim.Adam(model.parameters())
    model(torch.randn(4, 256)).sum().backward()
    opt.step()
    namespace.update(model=model, opt=opt, batch=[torch.zeros(1000) for _ in range(100)])
    error = torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB.")
    times = []
    listed = 0
    for _ in range(rounds):
        t0 = time.perf_counter()
        report = build_report(
            error,
            namespace,
            device=torch.device("cpu"),
            stats=lambda d: {},
            processes=lambda d: [],
        )
        times.append(time.perf_counter() - t0)
        listed = len(report.tensors)
    return statistics.median(times), listed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=int, default=200, help="trivial cells per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--tensors", type=int, default=10_000)
    args = parser.parse_args()

    plain_km, plain = start_kernel("import torch")
    hooked_km, hooked = start_kernel("import torch\nimport jupyter_torchlab as tl")
    try:
        without, with_hook = [], []
        for r in range(args.rounds):
            pair = [(plain, without), (hooked, with_hook)]
            for kc, out in pair if r % 2 == 0 else reversed(pair):
                out.append(per_cell(kc, args.cells))
    finally:
        for km, kc in ((plain_km, plain), (hooked_km, hooked)):
            kc.stop_channels()  # type: ignore[attr-defined]
            km.shutdown_kernel(now=True)
    seconds, listed = report_time(args.tensors, args.rounds)
    base, hook = statistics.median(without), statistics.median(with_hook)
    print(f"\n{os.cpu_count()} CPUs, Python {sys.version.split()[0]}\n")
    print("| measure | result |")
    print("|---|---|")
    print(
        f"| trivial cell round trip, hook installed vs none ({args.cells} cells x "
        f"{args.rounds} alternating rounds) | {hook * 1e3:.2f} ms vs {base * 1e3:.2f} ms = "
        f"{hook / base:.3f} |"
    )
    print(
        f"| report for a namespace of {args.tensors:,} tensors + a model and optimizer "
        f"(median of {args.rounds}) | {seconds * 1e3:.0f} ms ({listed} largest listed); "
        f"target < 1 s: {'PASS' if seconds < 1 else 'FAIL'} |"
    )


if __name__ == "__main__":
    main()
