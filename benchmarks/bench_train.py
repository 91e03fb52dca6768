"""Benchmark fit() against the official tutorial's hand-written loop (issue 2's Benchmark).

In one run, alternating rounds, TutorialNet on the CIFAR-10 stand-in:
  (a)  the tutorial's loop: DataLoader(batch_size=4, shuffle=True, num_workers=2), SGD(lr=0.001,
       momentum=0.9), CrossEntropyLoss, ``running_loss += loss.item()`` every batch
  (b)  fit() on the same loader, model and optimizer, progress=False
  (b') the same with fit's default text progress writing to a non-TTY stream (a pipe or log)
  (c)  fit() with the recommended CPU settings (RECOMMENDED_CPU below)
Every run starts from the same seed and trains on the same number of images; the test accuracy of
each is measured afterwards. (a) and (b) draw the same shuffles, so their accuracies should agree.

    python benchmarks/bench_train.py                 # full run (~4 min on an idle 2-core box)
    python benchmarks/bench_train.py --quick         # ~30 s
    python benchmarks/bench_train.py --threads 1     # steadier when other work shares the cores
    python benchmarks/bench_train.py --device cuda   # also (c) and ResNet9 on CUDA
    python benchmarks/bench_train.py --json out.json

Targets: (b)/(a) >= 0.99, (c)/(a) >= 5 at equal or better accuracy.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch
from torch import nn
from torch.utils.data import DataLoader

from jupyter_torchlab.train.data import cifar10
from jupyter_torchlab.train.fit.evaluate import evaluate
from jupyter_torchlab.train.fit.loop import fit
from jupyter_torchlab.train.models import ResNet9, TutorialNet
from jupyter_torchlab.train.text import TextProgress

# The recommended CPU settings, measured on a 2-core box (see README "Performance"):
# - the tutorial transform is deterministic, so apply it once (cifar10(in_memory=True)): per-image
#   PIL decode + ToTensor + Normalize costs ~85 us, more than the network itself at batch 64;
# - batch 64 with lr 0.05: ~16x fewer optimizer steps, each one far better vectorised;
# - no loader workers: on 2 cores they only compete with the two training threads;
# - channels_last measured within noise (0-10%) for this small net on a 2-core AVX512 box, and
#   bf16 autocast only helps CPUs with native bf16 and changes the numerics: both stay off.
RECOMMENDED_CPU = {"batch_size": 64, "lr": 0.05, "momentum": 0.9, "num_workers": 0}
# CUDA: big batches, mixed precision, channels_last; ResNet-9 with a short SGD schedule
RECOMMENDED_CUDA = {"batch_size": 512, "lr": 0.2, "momentum": 0.9}
RESNET9_CUDA = {"batch_size": 512, "lr": 0.1, "momentum": 0.9, "weight_decay": 5e-4, "epochs": 8}


class NullPipe:
    """A write-only non-TTY stream, like stdout redirected to a pipe or a log."""

    def write(self, text: str) -> int:
        return len(text)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return False


def tutorial_loop(net: nn.Module, loader: DataLoader, epochs: int) -> float:
    """Run the official tutorial's training loop; return seconds."""
    criterion = nn.CrossEntropyLoss()
    optimizer = torch.optim.SGD(net.parameters(), lr=0.001, momentum=0.9)
    t0 = time.perf_counter()
    for epoch in range(epochs):
        running_loss = 0.0
        for i, data in enumerate(loader, 0):
            inputs, labels = data
            optimizer.zero_grad()
            outputs = net(inputs)
            loss = criterion(outputs, labels)
            loss.backward()
            optimizer.step()
            running_loss += loss.item()
            if i % 2000 == 1999:
                print(f"[{epoch + 1}, {i + 1:5d}] loss: {running_loss / 2000:.3f}", file=NULL)
                running_loss = 0.0
    return time.perf_counter() - t0


NULL: Any = NullPipe()


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def run_variant(
    name: str, data: Any, epochs: int, seed: int, device: str = "cpu"
) -> dict[str, Any]:
    torch.manual_seed(seed)
    images = len(data.train) * epochs
    if name == "a":
        net = TutorialNet()
        loader = DataLoader(data.train, batch_size=4, shuffle=True, num_workers=2)
        seconds = tutorial_loop(net, loader, epochs)
    elif name in ("b", "b_text"):
        net = TutorialNet()
        loader = DataLoader(data.train, batch_size=4, shuffle=True, num_workers=2)
        opt = torch.optim.SGD(net.parameters(), lr=0.001, momentum=0.9)
        progress: Any = TextProgress(NULL) if name == "b_text" else False
        t0 = time.perf_counter()
        fit(net, loader, epochs=epochs, optimizer=opt, device="cpu", progress=progress)
        seconds = time.perf_counter() - t0
    elif name == "c":
        net = TutorialNet()
        s = RECOMMENDED_CPU
        opt = torch.optim.SGD(net.parameters(), lr=s["lr"], momentum=s["momentum"])
        t0 = time.perf_counter()
        fit(
            net,
            data.train_mem,
            epochs=epochs,
            optimizer=opt,
            batch_size=s["batch_size"],
            num_workers=s["num_workers"],
            device="cpu",
            progress=False,
        )
        seconds = time.perf_counter() - t0
    elif name == "c_cuda":
        net = TutorialNet()
        s = RECOMMENDED_CUDA
        opt = torch.optim.SGD(net.parameters(), lr=s["lr"], momentum=s["momentum"])
        t0 = time.perf_counter()
        fit(
            net,
            data.train_mem,
            epochs=epochs,
            optimizer=opt,
            batch_size=s["batch_size"],
            device=device,
            amp="auto",
            channels_last=True,
            progress=False,
        )
        _sync(device)
        seconds = time.perf_counter() - t0
    elif name == "resnet9_cuda":
        net = ResNet9()
        s = RESNET9_CUDA
        epochs = int(s["epochs"])
        images = len(data.train) * epochs
        opt = torch.optim.SGD(
            net.parameters(),
            lr=s["lr"],
            momentum=s["momentum"],
            weight_decay=s["weight_decay"],
            nesterov=True,
        )
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)
        t0 = time.perf_counter()
        fit(
            net,
            data.train_mem,
            epochs=epochs,
            optimizer=opt,
            scheduler=sched,
            batch_size=int(s["batch_size"]),
            device=device,
            amp="auto",
            channels_last=True,
            progress=False,
        )
        _sync(device)
        seconds = time.perf_counter() - t0
    else:
        raise ValueError(name)
    acc = evaluate(net, data.test_mem, batch_size=512).accuracy
    return {
        "variant": name,
        "images": images,
        "seconds": seconds,
        "images_per_s": images / seconds,
        "accuracy": acc,
    }


LABELS = {
    "a": "(a) tutorial loop, batch 4",
    "b": "(b) fit, same loader/opt, progress=False",
    "b_text": "(b') fit, same, text progress to a pipe",
    "c": "(c) fit, recommended CPU settings",
    "c_cuda": "(c) on CUDA: batch 512, amp, channels_last",
    "resnet9_cuda": "ResNet9 on CUDA (8 epochs)",
}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer images and rounds")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument(
        "--rounds", type=int, default=None, help="alternating rounds (default 3, quick 2)"
    )
    ap.add_argument("--epochs", type=int, default=2, help="epochs per run (the tutorial: 2)")
    ap.add_argument("--train-size", type=int, default=None, help="default 10000, quick 4000")
    ap.add_argument("--data", default=None, help="dataset root (default: a temporary folder)")
    ap.add_argument("--json", default=None, help="write the results as JSON here")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    rounds = args.rounds or (2 if args.quick else 3)
    train_size = args.train_size or (4000 if args.quick else 10000)
    epochs = 1 if args.quick else args.epochs

    tmp = None
    root = args.data
    if root is None:
        tmp = tempfile.TemporaryDirectory(prefix="bench_train_")
        root = tmp.name
    data = cifar10(root, standin=True, standin_size=(10000, 2000), train_size=train_size)
    mem = cifar10(
        root, standin=True, standin_size=(10000, 2000), train_size=train_size, in_memory=True
    )
    data.train_mem, data.test_mem = mem.train, mem.test  # type: ignore[attr-defined]

    variants = ["a", "b", "b_text", "c"]
    results: dict[str, list[dict[str, Any]]] = {v: [] for v in variants}
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, cpu_count "
        f"{os.cpu_count()}, {train_size} stand-in images x {epochs} epoch(s), {rounds} rounds",
        file=sys.stderr,
    )
    for r in range(rounds):
        order = variants if r % 2 == 0 else variants[::-1]  # alternate to spread drift
        for v in order:
            res = run_variant(v, data, epochs, seed=0)
            results[v].append(res)
            print(
                f"round {r + 1} {v:7s} {res['images_per_s']:8.0f} img/s  acc {res['accuracy']:.3f}",
                file=sys.stderr,
            )
    if args.device == "cuda":
        if not torch.cuda.is_available():
            print("--device cuda: no CUDA device here", file=sys.stderr)
            return 2
        for v in ("c_cuda", "resnet9_cuda"):
            results[v] = []
            run_variant(v, data, 1, seed=0, device="cuda")  # warm-up: cuDNN autotune, allocator
            for _ in range(rounds):
                results[v].append(run_variant(v, data, epochs, seed=0, device="cuda"))

    summary: dict[str, dict[str, float]] = {}
    for v, runs in results.items():
        summary[v] = {
            "images_per_s": statistics.median(x["images_per_s"] for x in runs),
            "accuracy": statistics.median(x["accuracy"] for x in runs),
            "images": runs[0]["images"],
        }
    base = summary["a"]["images_per_s"]
    lines = [
        "| run | images/s (median) | vs (a) | test accuracy | images trained |",
        "|---|---:|---:|---:|---:|",
    ]
    for v, s in summary.items():
        lines.append(
            f"| {LABELS[v]} | {s['images_per_s']:,.0f} | {s['images_per_s'] / base:.2f}x | "
            f"{s['accuracy']:.1%} | {s['images']:,} |"
        )
    ratios = {
        "b_over_a": summary["b"]["images_per_s"] / base,
        "b_text_over_a": summary["b_text"]["images_per_s"] / base,
        "c_over_a": summary["c"]["images_per_s"] / base,
    }
    print()
    print("\n".join(lines))
    print()
    print(
        f"(b)/(a) = {ratios['b_over_a']:.3f} (target >= 0.99), (b')/(a) = "
        f"{ratios['b_text_over_a']:.3f}, (c)/(a) = {ratios['c_over_a']:.2f}x (target >= 5x); "
        f"accuracy (a) {summary['a']['accuracy']:.1%} vs (c) {summary['c']['accuracy']:.1%}"
    )
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads; stand-in data "
        "(NOT CIFAR-10)"
    )
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {
                    "summary": summary,
                    "ratios": ratios,
                    "runs": results,
                    "rounds": rounds,
                    "epochs": epochs,
                    "train_size": train_size,
                    "torch": torch.__version__,
                    "threads": torch.get_num_threads(),
                    "cpu_count": os.cpu_count(),
                    "quick": args.quick,
                    "device": args.device,
                },
                indent=2,
            )
        )
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
