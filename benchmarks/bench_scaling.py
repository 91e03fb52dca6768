"""Scaling efficiency of data-parallel fit(): 2 CPU processes against 1 on the same global batch.

Every run is a fresh subprocess training the same model (TutorialNet, or
ResNet9 with --model) from the same seed on the offline CIFAR-10 stand-in, in memory, for E epochs:

  CPU (default; the global batch B is the same in every row):
  (a) 1 process:  ``python bench_scaling.py --worker``, batch B, torch threads = T (all cores)
  (a') the same with T/2 threads: the resources of one process of (b), the baseline of the
      textbook efficiency (b) / (2 x (a')) (on a 2-core box (a) already has every core)
  (b) 2 processes: ``python -m torch.distributed.run --standalone --nproc_per_node=2
      bench_scaling.py --worker``, batch B/2 per process, T/2 threads each (gloo, DDP)
  (c) 2 processes through ``tl.launch(fn, nprocs=2)`` from a plain Python process (forked
      workers, torch's elastic launcher), batch B/2 and T/2 threads each (--no-launch skips it)

  CUDA (--device cuda; needs an NVIDIA GPU; the CPU rows are not run):
  (a) 1 process on cuda:0, plain fit (no process group)
  (b) 1 process under torchrun with fit(distributed=True): DDP over NCCL with one rank, so
      (b)/(a) is the cost of DDP + NCCL itself
  (n) with N > 1 visible GPUs: N processes, batch B/N each

Threads are set explicitly in each process (OMP_NUM_THREADS, MKL_NUM_THREADS and
torch.set_num_threads). The throughput of a run is its steady state: the median images/s of its
epochs after the first (fit reports the global images/s: all processes' samples / epoch time).
Rounds alternate the order of the runs; the table gives the median over rounds and the spread
(min-max), and (b)/(a) is also given per round, since the cores may be shared. Scaling efficiency
= ((b)/(a)) / processes, and against N x (a'). Final train loss should be close across rows: the
global batch is equal (the shuffles differ: DistributedSampler draws its own order). "wall s" is the
whole subprocess as the parent sees it (interpreter start, imports, data, process group, fit), so
(b) against (c) shows what torchrun's fresh interpreters cost against tl.launch's forks.

    python benchmarks/bench_scaling.py                  # full run (~3 min on a 2-core box)
    python benchmarks/bench_scaling.py --quick          # ~50 s
    python benchmarks/bench_scaling.py --device cuda    # DDP/NCCL overhead record on a GPU box
    python benchmarks/bench_scaling.py --batch 256 --lr 0.1   # bigger steps: less gloo per image
    python benchmarks/bench_scaling.py --json out.json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SCRIPT = Path(__file__).resolve()
sys.path.insert(0, str(REPO))

#: rank 0 prints its result on one stdout line behind this tag; everything else is log
TAG = "@@bench_scaling "
#: per-device defaults: global batch, SGD lr per model, images, epochs (fit's recommended
#: settings from bench_train.py; amp and channels_last on CUDA)
DEFAULTS: dict[str, dict[str, Any]] = {
    "cpu": {
        "batch": 64,
        "lr": {"tutorial": 0.05, "resnet9": 0.05},
        "train_size": 10_000,
        "quick_train_size": 5_000,
        "epochs": 5,
        "quick_epochs": 3,
    },
    "cuda": {
        "batch": 512,
        "lr": {"tutorial": 0.2, "resnet9": 0.1},
        "train_size": 50_000,
        "quick_train_size": 20_000,
        "epochs": 5,
        "quick_epochs": 3,
    },
}
#: torchrun's variables: the single-process baseline must not inherit them from a caller
DIST_ENV = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


# ----------------------------------------------------------------------------------------------
# worker side (runs in the timed processes)


def train(cfg: dict[str, Any]) -> dict[str, Any]:
    """Train as ``cfg`` says in this process; return rank 0's per-epoch figures."""
    import torch

    from jupyter_torchlab.train.data import cifar10
    from jupyter_torchlab.train.fit.loop import fit
    from jupyter_torchlab.train.models import ResNet9, TutorialNet

    torch.set_num_threads(cfg["threads"])
    data = cifar10(
        cfg["data"],
        standin=True,
        standin_size=tuple(cfg["standin_size"]),
        train_size=cfg["train_size"],
        in_memory=True,
    )
    torch.manual_seed(cfg["seed"])  # the same initial weights in every run (DDP copies rank 0's)
    model = ResNet9() if cfg["model"] == "resnet9" else TutorialNet()
    opt = torch.optim.SGD(model.parameters(), lr=cfg["lr"], momentum=0.9)
    cuda = cfg["device"] == "cuda"
    t0 = time.perf_counter()
    history = fit(
        model,
        data.train,
        epochs=cfg["epochs"],
        optimizer=opt,
        batch_size=cfg["batch"],
        num_workers=0,
        device=cfg["device"],
        amp="auto" if cuda else False,
        channels_last=cuda,
        progress=False,
        seed=cfg["seed"],
        distributed=True if cfg["distributed"] else None,
    )
    fit_seconds = time.perf_counter() - t0
    return {
        "world_size": int(os.environ.get("WORLD_SIZE", "1")),
        "threads": torch.get_num_threads(),
        "batch_per_process": cfg["batch"],
        "fit_seconds": fit_seconds,
        "images_per_s": [e["images_per_s"] for e in history.epochs],
        "train_loss": [e["train_loss"] for e in history.epochs],
        "epoch_time": [e["time"] for e in history.epochs],
        "status": history.status,
        "device": cfg["device"],
    }


def worker_main(cfg: dict[str, Any]) -> int:
    """Entry of a timed process started directly or by torchrun: rank 0 prints the result."""
    result = train(cfg)
    if int(os.environ.get("RANK", "0")) == 0:
        print(TAG + json.dumps(result), flush=True)
    return 0


def launcher_main(cfg: dict[str, Any], nprocs: int) -> int:
    """Entry of the tl.launch run: a plain process that launches ``nprocs`` forked workers."""
    from jupyter_torchlab.train.parallel.launch import launch

    result = launch(train, (cfg,), nprocs=nprocs, threads=cfg["threads"], progress=False)
    print(TAG + json.dumps(result), flush=True)
    return 0


# ----------------------------------------------------------------------------------------------
# parent side


def run_child(
    name: str, argv: list[str], threads: int, cfg: dict[str, Any], timeout: float
) -> dict[str, Any]:
    """Run one timed subprocess; return its result with the wall time the parent saw."""
    env = {k: v for k, v in os.environ.items() if k not in DIST_ENV}
    # torchrun would set OMP_NUM_THREADS=1 itself; set it (and MKL's) to what the row says
    env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(threads)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    cmd = [*argv, "--config", json.dumps(cfg)]
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(
            cmd, env=env, capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired as err:
        raise SystemExit(f"run {name} took more than {timeout:.0f} s: {shlex.join(cmd)}") from err
    wall = time.perf_counter() - t0
    found = [line[len(TAG) :] for line in proc.stdout.splitlines() if line.startswith(TAG)]
    if proc.returncode != 0 or not found:
        tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-40:])
        raise SystemExit(
            f"run {name} failed (exit {proc.returncode}): {shlex.join(cmd)}\n"
            f"--- the end of its output:\n{tail}"
        )
    result: dict[str, Any] = json.loads(found[-1])
    result["wall_seconds"] = wall
    result["steady_images_per_s"] = steady(result["images_per_s"])
    return result


def steady(per_epoch: list[float]) -> float:
    """Return the steady-state throughput: median of the epochs after the first (warm-up)."""
    later = per_epoch[1:] or per_epoch
    return statistics.median(later)


def plan(args: argparse.Namespace, threads: int) -> list[dict[str, Any]]:
    """Return the runs of this benchmark: name, label, command, processes, threads, batch."""
    py = [sys.executable]
    worker = [str(SCRIPT), "--worker"]

    def torchrun(n: int) -> list[str]:
        return [*py, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={n}"]

    batch = args.batch
    if args.device == "cpu":
        half = max(1, threads // 2)
        runs = [
            {
                "name": "a",
                "label": "(a) 1 process, plain fit",
                "argv": [*py, *worker],
                "procs": 1,
                "threads": threads,
                "batch": batch,
            },
            {
                # the resources of one of (b)'s processes: the baseline of the textbook
                # efficiency (b) / (2 x (a')), since (a) already has every core
                "name": "a_half",
                "label": "(a') 1 process, plain fit, half the threads",
                "argv": [*py, *worker],
                "procs": 1,
                "threads": half,
                "batch": batch,
            },
            {
                "name": "b",
                "label": "(b) 2 processes, torchrun, DDP gloo",
                "argv": [*torchrun(2), *worker],
                "procs": 2,
                "threads": half,
                "batch": batch // 2,
            },
        ]
        if args.launch:
            runs.append(
                {
                    "name": "c",
                    "label": "(c) 2 processes, tl.launch, DDP gloo",
                    "argv": [*py, str(SCRIPT), "--launcher", "2"],
                    "procs": 2,
                    "threads": half,
                    "batch": batch // 2,
                }
            )
        return runs
    runs = [
        {
            "name": "a",
            "label": "(a) 1 GPU, plain fit",
            "argv": [*py, *worker],
            "procs": 1,
            "threads": threads,
            "batch": batch,
        },
        {
            "name": "b",
            "label": "(b) 1 GPU, torchrun, DDP NCCL 1 rank",
            "argv": [*torchrun(1), *worker, "--distributed"],
            "procs": 1,
            "threads": threads,
            "batch": batch,
        },
    ]
    gpus = args.gpus
    if gpus > 1:
        runs.append(
            {
                "name": "n",
                "label": f"(n) {gpus} GPUs, torchrun, DDP NCCL",
                "argv": [*torchrun(gpus), *worker],
                "procs": gpus,
                "threads": max(1, threads // gpus),
                "batch": batch // gpus,
            }
        )
    return runs


def spread(values: list[float]) -> str:
    if len(values) < 2:
        return "-"
    lo, hi = min(values), max(values)
    return f"{lo:,.0f}-{hi:,.0f} (±{(hi - lo) / 2 / statistics.median(values):.0%})"


def cuda_gpus() -> int:
    """Return how many CUDA GPUs torch sees, without creating a CUDA context in this process."""
    import torch

    if not torch.backends.cuda.is_built():
        return 0
    return torch.cuda.device_count()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer images, epochs and rounds (~1 min)")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--model", default="tutorial", choices=["tutorial", "resnet9"])
    ap.add_argument("--repeats", type=int, default=None, help="rounds (default 3, quick 2)")
    ap.add_argument("--epochs", type=int, default=None, help="epochs per run (default 5, quick 3)")
    ap.add_argument("--train-size", type=int, default=None, help="images per epoch")
    ap.add_argument("--batch", type=int, default=None, help="GLOBAL batch (cpu 64, cuda 512)")
    ap.add_argument("--lr", type=float, default=None, help="SGD lr (momentum 0.9)")
    ap.add_argument(
        "--threads", type=int, default=None, help="torch threads in all (default: CPUs)"
    )
    ap.add_argument("--no-launch", dest="launch", action="store_false", help="skip row (c)")
    ap.add_argument("--data", default=None, help="dataset root (default: a temporary folder)")
    ap.add_argument("--json", default=None, help="write the results as JSON here")
    ap.add_argument("--timeout", type=float, default=600.0, help="seconds allowed per run")
    ap.add_argument("--seed", type=int, default=0)
    # internal: the timed processes
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--launcher", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--distributed", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--config", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.worker or args.launcher:
        cfg = json.loads(args.config)
        cfg["distributed"] = args.distributed
        return launcher_main(cfg, args.launcher) if args.launcher else worker_main(cfg)

    cpus = os.cpu_count() or 1
    threads = args.threads or cpus
    args.gpus = 0
    if args.device == "cuda":
        args.gpus = cuda_gpus()
        if args.gpus == 0:
            print(
                "--device cuda: no CUDA GPU is visible here (torch.cuda.device_count() == 0), so "
                "there is nothing to measure. Run it on a machine with an NVIDIA GPU, or leave "
                "--device out for the CPU scaling run.",
                file=sys.stderr,
            )
            return 2
    d = DEFAULTS[args.device]
    batch = args.batch or d["batch"]
    args.batch = batch
    procs_max = 2 if args.device == "cpu" else max(1, args.gpus)
    if batch % procs_max:
        print(f"--batch {batch} must split evenly over {procs_max} processes", file=sys.stderr)
        return 2
    if args.device == "cpu" and threads < 2:
        print(
            "this benchmark splits the CPU threads over 2 processes: it needs 2 or more "
            "(pass --threads 2)",
            file=sys.stderr,
        )
        return 2
    repeats = args.repeats or (2 if args.quick else 3)
    epochs = args.epochs or (d["quick_epochs"] if args.quick else d["epochs"])
    train_size = args.train_size or (d["quick_train_size"] if args.quick else d["train_size"])
    lr = args.lr or d["lr"][args.model]
    standin_size = (train_size, 1000)

    tmp = None
    root = args.data
    if root is None:
        tmp = tempfile.TemporaryDirectory(prefix="bench_scaling_")
        root = tmp.name
    # write the stand-in once here, so no timed process pays for (or races on) generating it
    from jupyter_torchlab.train.data import cifar10

    with contextlib.redirect_stdout(sys.stderr):  # its stand-in notice: log, not the table
        have = len(cifar10(root, standin=True, standin_size=standin_size).train)  # type: ignore[arg-type]
    if have < train_size:
        print(
            f"the stand-in in {root} has {have} training images, fewer than --train-size "
            f"{train_size}: pass a smaller --train-size or another --data folder",
            file=sys.stderr,
        )
        return 2

    runs = plan(args, threads)
    print(
        f"{args.device}, {cpus} CPUs, {args.gpus} GPUs; {args.model}, global batch {batch}, "
        f"lr {lr}, {train_size} stand-in images x {epochs} epochs, {repeats} rounds",
        file=sys.stderr,
    )
    results: dict[str, list[dict[str, Any]]] = {r["name"]: [] for r in runs}
    t_start = time.perf_counter()
    for rnd in range(repeats):
        order = runs if rnd % 2 == 0 else runs[::-1]  # alternate to spread drift and noise
        for run in order:
            cfg = {
                "data": root,
                "standin_size": standin_size,
                "train_size": train_size,
                "model": args.model,
                "epochs": epochs,
                "batch": run["batch"],
                "lr": lr,
                "threads": run["threads"],
                "device": args.device,
                "seed": args.seed,
            }
            res = run_child(run["name"], run["argv"], run["threads"], cfg, args.timeout)
            if res["world_size"] != run["procs"]:
                raise SystemExit(
                    f"run {run['name']} trained with {res['world_size']} processes, expected "
                    f"{run['procs']}"
                )
            results[run["name"]].append(res)
            per_epoch = " ".join(f"{v:,.0f}" for v in res["images_per_s"])
            print(
                f"round {rnd + 1} {run['name']}: steady {res['steady_images_per_s']:8,.0f} img/s "
                f"(epochs: {per_epoch}), loss {res['train_loss'][-1]:.4f}, "
                f"wall {res['wall_seconds']:.1f} s",
                file=sys.stderr,
            )
    total = time.perf_counter() - t_start

    summary: dict[str, dict[str, Any]] = {}
    for run in runs:
        rs = results[run["name"]]
        summary[run["name"]] = {
            "label": run["label"],
            "processes": run["procs"],
            "threads_per_process": run["threads"],
            "batch_per_process": run["batch"],
            "images_per_s": statistics.median(r["steady_images_per_s"] for r in rs),
            "images_per_s_runs": [r["steady_images_per_s"] for r in rs],
            "final_train_loss": statistics.median(r["train_loss"][-1] for r in rs),
            "wall_seconds": statistics.median(r["wall_seconds"] for r in rs),
            "fit_seconds": statistics.median(r["fit_seconds"] for r in rs),
        }
    base = summary["a"]["images_per_s"]
    ratios: dict[str, Any] = {}
    for name, s in summary.items():
        if name == "a":
            continue
        per_round = [
            x["steady_images_per_s"] / a["steady_images_per_s"]
            for x, a in zip(results[name], results["a"], strict=True)
        ]
        ratio = s["images_per_s"] / base
        ratios[name] = {
            "over_a": ratio,
            "efficiency": ratio / s["processes"],
            "per_round": per_round,
        }
        if "a_half" in summary and s["processes"] > 1:
            one = summary["a_half"]["images_per_s"] * s["processes"]
            ratios[name]["efficiency_vs_a_half"] = s["images_per_s"] / one

    lines = [
        "| run | processes x threads | batch/process | images/s (median) | spread over rounds "
        "| vs (a) | scaling eff. (vs (a)/N) | eff. vs N x (a') | final train loss "
        "| wall s (fit s) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, s in summary.items():
        r = ratios.get(name, {})
        vs = f"{r.get('over_a', 1.0):.2f}x"
        eff = f"{r['efficiency']:.0%}" if s["processes"] > 1 else "-"
        eff_half = f"{r['efficiency_vs_a_half']:.0%}" if "efficiency_vs_a_half" in r else "-"
        lines.append(
            f"| {s['label']} | {s['processes']} x {s['threads_per_process']} | "
            f"{s['batch_per_process']} | {s['images_per_s']:,.0f} | "
            f"{spread(s['images_per_s_runs'])} | {vs} | {eff} | {eff_half} | "
            f"{s['final_train_loss']:.4f} | {s['wall_seconds']:.1f} ({s['fit_seconds']:.1f}) |"
        )
    print()
    print("\n".join(lines))
    print()
    for name, r in ratios.items():
        rounds = ", ".join(f"{v:.2f}" for v in r["per_round"])
        procs = summary[name]["processes"]
        if name == "a_half":
            what = "one process on half the threads"
        elif procs > 1:
            what = f"scaling efficiency {r['efficiency']:.0%}"
            if "efficiency_vs_a_half" in r:
                what += f" ({r['efficiency_vs_a_half']:.0%} of {procs} x (a'))"
        else:
            what = f"DDP with one rank (NCCL on CUDA) costs {1 - r['over_a']:.1%}"
        short = "a'" if name == "a_half" else name
        print(f"({short})/(a) = {r['over_a']:.2f}x, {what}; per round: {rounds}")
    print(
        f"images/s: global (all processes), steady state = median of epochs 2..{epochs}; global "
        f"batch {batch}; threads set by OMP_NUM_THREADS/MKL_NUM_THREADS and "
        "torch.set_num_threads in each process; wall s = the whole subprocess (start-up, imports, "
        "data, process group) and fit s = the fit() call"
    )
    print(
        f"machine: {platform.processor() or platform.machine()}, {cpus} CPUs, {args.gpus} GPUs; "
        f"{args.model}, {train_size} stand-in images x {epochs} epochs, {repeats} rounds "
        f"(NOT CIFAR-10); benchmark took {total:.0f} s"
    )
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {
                    "summary": summary,
                    "ratios": ratios,
                    "runs": results,
                    "device": args.device,
                    "gpus": args.gpus,
                    "model": args.model,
                    "global_batch": batch,
                    "lr": lr,
                    "epochs": epochs,
                    "train_size": train_size,
                    "repeats": repeats,
                    "cpu_count": cpus,
                    "threads": threads,
                    "quick": args.quick,
                    "seconds": total,
                },
                indent=2,
            )
        )
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
