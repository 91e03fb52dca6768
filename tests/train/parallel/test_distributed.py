"""fit under torchrun with two CPU processes (gloo), against one process with the same global batch.

The processes are real: ``python -m torch.distributed.run`` starts them, as a user's shell would.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader, IterableDataset, WeightedRandomSampler

import jupyter_torchlab as tl
from jupyter_torchlab.train.data import cifar10

WORKER = Path(__file__).with_name("ddp_worker.py")
ROOT = Path(__file__).resolve().parents[3]


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH", "")]))
    env["OMP_NUM_THREADS"] = "1"
    env["JUPYTER_TORCHLAB_PROGRESS"] = "text"
    return env


def run_single(mode: str, data: Path, out: Path, batch: int) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, str(WORKER), mode, str(data), str(out), str(batch)]
    return subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=300)


def run_torchrun(
    mode: str, data: Path, out: Path, batch: int, nprocs: int = 2
) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    cmd.append(f"--nproc_per_node={nprocs}")
    cmd += [str(WORKER), mode, str(data), str(out), str(batch)]
    return subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=300)


def load(path: Path) -> dict:
    return torch.load(path, weights_only=True)


def assert_ok(proc: subprocess.CompletedProcess[str]) -> None:
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"


def test_two_processes_train_exactly_like_one_with_the_same_global_batch(standin_root, tmp_path):
    """Sequential data: the two shards of each step are the one process's batch of 32."""
    multi, single = tmp_path / "multi", tmp_path / "single"
    multi.mkdir()
    single.mkdir()
    proc = run_torchrun("exact", standin_root, multi, 16)
    assert_ok(proc)
    assert_ok(run_single("exact", standin_root, single, 32))
    r0, r1, one = load(multi / "rank0.pt"), load(multi / "rank1.pt"), load(single / "single.pt")

    for name, w in r0["fitted"].items():  # DDP keeps every process's weights identical
        assert torch.equal(w, r1["fitted"][name]), name
        torch.testing.assert_close(w, one["fitted"][name], rtol=1e-4, atol=1e-5)
    assert r0["status"] == r1["status"] == one["status"] == "done"
    assert len(r0["epochs"]) == 2
    for mine, theirs, ref in zip(r0["epochs"], r1["epochs"], one["epochs"], strict=True):
        # epoch metrics are averaged over both processes: the same numbers on each, and the
        # same as one process that saw all the data (101 validation images split 51/50)
        for key in ("train_loss", "train_acc", "val_loss", "val_acc"):
            assert mine[key] == pytest.approx(theirs[key], rel=1e-6), key
            assert mine[key] == pytest.approx(ref[key], rel=1e-4, abs=1e-6), key
    assert r0["epochs"][-1]["train_loss"] < r0["epochs"][0]["train_loss"]

    # only rank 0 displays: one line per epoch, not two
    assert proc.stdout.count("epoch 1/2 done") == 1, proc.stdout
    assert proc.stdout.count("epoch 2/2 done") == 1, proc.stdout
    # only rank 0 writes the checkpoint; it holds the trained weights
    model = tl.TutorialNet()
    ckpt = tl.load_checkpoint(multi / "ckpt.pt", model)
    assert ckpt.epoch == 2
    for name, w in model.state_dict().items():
        assert torch.equal(w, r0["fitted"][name]), name
    # the group stays up for a second fit in the same processes, and goes down at exit
    assert r0["group_after_fit"] is True
    assert r0["group_after_exit"] is False  # fit's exit handler destroyed it
    assert len(r0["again"]) == 1
    assert r0["again"][0]["train_loss"] == pytest.approx(r1["again"][0]["train_loss"], rel=1e-6)


def test_shuffled_shards_cover_the_data_and_reshuffle_each_epoch(standin_root, tmp_path):
    proc = run_torchrun("shuffled", standin_root, tmp_path, 16)
    assert_ok(proc)
    assert_ok(run_single("shuffled", standin_root, tmp_path, 32))
    r0, r1, one = (load(tmp_path / f"{t}.pt") for t in ("rank0", "rank1", "single"))
    assert len(r0["reads"]) == 3
    for a, b in zip(r0["reads"], r1["reads"], strict=True):
        assert len(a) == len(b) == 128  # each process reads half of the 256 images
        assert sorted(a + b) == list(range(256))  # together: each image once per epoch
    assert r0["reads"][0] != r0["reads"][1] != r0["reads"][2]  # set_epoch reshuffles
    # each process draws its own random numbers (dropout, augmentation), reproducibly
    assert r0["draws"] != r1["draws"]
    assert r0["draws"][0] == one["draws"][0]  # rank 0 starts from the seed, like one process
    for name, w in r0["state"].items():
        assert torch.equal(w, r1["state"][name]), name
    # a different order than one process's shuffle, but the same learning
    last, ref = r0["epochs"][-1]["train_loss"], one["epochs"][-1]["train_loss"]
    assert last == pytest.approx(ref, rel=0.05)
    assert last < r0["epochs"][0]["train_loss"]


@pytest.mark.parametrize("mode", ["stop", "stop_epoch"])
def test_a_stop_asked_on_one_process_ends_every_process_after_the_epoch(
    standin_root, tmp_path, mode
):
    proc = run_torchrun(mode, standin_root, tmp_path, 16)
    assert_ok(proc)  # nobody hangs waiting for a process that left early
    r0, r1 = load(tmp_path / "rank0.pt"), load(tmp_path / "rank1.pt")
    assert r0["status"] == r1["status"] == "stopped"
    assert len(r0["epochs"]) == len(r1["epochs"]) == 1
    for name, w in r0["state"].items():
        assert torch.equal(w, r1["state"][name]), name


def test_two_nodes_rendezvous_and_train_as_one_job(standin_root, tmp_path):
    """Two torchrun agents (``--nnodes=2``) meet at one c10d endpoint; each has LOCAL_RANK 0."""
    port = _free_port()
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes=2", "--nproc_per_node=1"]
    cmd += ["--rdzv_backend=c10d", f"--rdzv_endpoint=127.0.0.1:{port}", "--rdzv_id=two-nodes"]
    cmd += ["--rdzv_conf=timeout=120"]
    cmd += [str(WORKER), "exact", str(standin_root), str(tmp_path), "16"]
    logs = [tmp_path / f"node{i}.log" for i in range(2)]
    nodes: list[subprocess.Popen[bytes]] = []
    try:
        for log in logs:
            with log.open("w") as f:
                nodes.append(subprocess.Popen(cmd, env=_env(), stdout=f, stderr=subprocess.STDOUT))
        for node, log in zip(nodes, logs, strict=True):
            assert node.wait(timeout=300) == 0, log.read_text()
    finally:
        for node in nodes:  # a failed node must not leave the other waiting for it
            if node.poll() is None:
                node.terminate()  # torchrun's agent stops its workers on SIGTERM
                try:
                    node.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    node.kill()
                    node.wait()
    r0, r1 = load(tmp_path / "rank0.pt"), load(tmp_path / "rank1.pt")
    for name, w in r0["fitted"].items():
        assert torch.equal(w, r1["fitted"][name]), name
    assert r0["epochs"][-1]["train_loss"] == pytest.approx(r1["epochs"][-1]["train_loss"], rel=1e-6)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs an NVIDIA GPU")
def test_on_gpus_each_process_takes_its_own_gpu_with_nccl_and_sync_batchnorm(
    standin_root, tmp_path
):
    nprocs = min(2, torch.cuda.device_count())  # one GPU still runs a real one-process NCCL group
    assert_ok(run_torchrun("gpu", standin_root, tmp_path, 32, nprocs=nprocs))
    results = [load(tmp_path / f"rank{r}.pt") for r in range(nprocs)]
    for rank, r in enumerate(results):
        assert r["status"] == "done"
        assert r["backend"] == "nccl"
        assert r["device"] == f"cuda:{rank}"
        assert r["param_device"] == f"cuda:{rank}"
        assert r["sync_bn"]
    for name, w in results[0]["state"].items():
        assert torch.equal(w, results[-1]["state"][name]), name


def test_an_error_on_one_process_ends_the_job_with_its_message(standin_root, tmp_path):
    start = time.monotonic()
    proc = run_torchrun("raise", standin_root, tmp_path, 16)
    assert proc.returncode != 0
    assert "rank 1 failed on purpose" in proc.stdout + proc.stderr
    assert time.monotonic() - start < 120  # torchrun stops rank 0 instead of leaving it waiting


def test_validation_with_fewer_images_than_processes(standin_root, tmp_path):
    assert_ok(run_torchrun("tinyval", standin_root, tmp_path, 16))
    r0, r1 = load(tmp_path / "rank0.pt"), load(tmp_path / "rank1.pt")
    e0, e1 = r0["epochs"][0], r1["epochs"][0]
    assert e0["val_acc"] in (0.0, 1.0)  # one image: right or wrong, on every process
    assert (e0["val_loss"], e0["val_acc"]) == (e1["val_loss"], e1["val_acc"])


def test_ranks_preparing_an_empty_data_folder_at_once_get_the_same_data(tmp_path):
    root, out = tmp_path / "data", tmp_path / "out"
    out.mkdir()
    assert_ok(run_torchrun("data", root, out, 0))
    a, b = load(out / "rank0.pt"), load(out / "rank1.pt")
    assert torch.equal(a["image"], b["image"])
    assert a["label"] == b["label"]
    again = cifar10(root, standin=True, standin_size=(2000, 500))  # intact, reused as it is
    assert torch.equal(again.train[1999][0], a["image"])


def test_rebuilt_loader_keeps_the_users_settings_and_splits_the_data():
    from torch.utils.data import TensorDataset

    from jupyter_torchlab.train.fit import distributed as ddp

    def collate(batch):
        return torch.stack([x for x, _ in batch]) * 2, torch.stack([y for _, y in batch])

    ds = TensorDataset(torch.arange(40.0).reshape(40, 1), torch.arange(40))
    loader = DataLoader(ds, batch_size=4, shuffle=True, collate_fn=collate, drop_last=True)
    info = ddp.DistInfo(rank=1, world_size=2)
    mine = ddp.train_loader(loader, info, seed=3, name="train_data")
    assert mine.batch_size == 4
    assert mine.drop_last is True
    assert mine.collate_fn is collate
    sampler = ddp.distributed_sampler(mine)
    assert sampler is not None
    assert (sampler.rank, sampler.num_replicas, sampler.shuffle, sampler.seed) == (1, 2, True, 3)
    xs = torch.cat([x for x, _ in mine]).flatten() / 2
    assert len(xs) == 20  # half the data, doubled by the user's collate_fn
    other = ddp.train_loader(loader, ddp.DistInfo(0, 2), seed=3, name="t")
    ys = torch.cat([x for x, _ in other]).flatten() / 2
    assert sorted(torch.cat([xs, ys]).tolist()) == list(range(40))

    evaluation = ddp.eval_loader(DataLoader(ds, batch_size=8), info)
    assert [int(i) for _, y in evaluation for i in y] == list(range(1, 40, 2))  # no padding


def test_sync_batchnorm_conversion_is_undone_with_the_trained_state():
    from jupyter_torchlab.train.fit import distributed as ddp

    model = tl.ResNet9()
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    weights = [bn.weight for bn in bns]
    undo = ddp.convert_sync_batchnorm(model)
    syncs = [m for m in model.modules() if isinstance(m, torch.nn.SyncBatchNorm)]
    assert len(syncs) == len(bns) > 0
    assert not any(type(m) is torch.nn.BatchNorm2d for m in model.modules())
    model.to(torch.float64)  # replaces every buffer tensor, as .to(device) does
    syncs[0].running_mean.add_(1.0)  # what training would update
    undo()
    assert [m for m in model.modules() if isinstance(m, torch.nn.SyncBatchNorm)] == []
    after = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert after == bns  # the very same layers are back
    assert all(bn.weight is w for bn, w in zip(after, weights, strict=True))
    assert bns[0].running_mean.dtype == torch.float64
    assert torch.equal(bns[0].running_mean, torch.ones_like(bns[0].running_mean))
    model.train()(torch.randn(2, 3, 32, 32, dtype=torch.float64))  # trains without a group


# ----------------------------------------------------------------------------------------------
# a one-process group in this process: the input checks that only apply when distributed


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def torchrun_env(monkeypatch):
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("LOCAL_RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "1")
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", str(_free_port()))
    yield
    if torch.distributed.is_initialized():  # fit keeps its group until the process exits
        torch.distributed.destroy_process_group()


class Stream(IterableDataset):
    def __iter__(self):
        for _ in range(8):
            yield torch.randn(3, 32, 32), torch.tensor(1)


def test_an_iterable_dataset_cannot_be_split_and_says_what_to_do(torchrun_env):
    with pytest.raises(ValueError, match="IterableDataset, which fit cannot split") as err:
        tl.fit(tl.TutorialNet(), DataLoader(Stream(), batch_size=4), epochs=1, distributed=True)
    assert "DistributedSampler" in str(err.value)


def test_a_custom_sampler_must_become_a_distributed_one(torchrun_env, standin):
    sampler = WeightedRandomSampler([1.0] * 1000, 64)
    loader = DataLoader(standin.train, batch_size=8, sampler=sampler)
    with pytest.raises(ValueError, match="draws from a WeightedRandomSampler"):
        tl.fit(tl.TutorialNet(), loader, epochs=1, distributed=True, progress=False)


def test_sync_batchnorm_on_the_cpu_is_refused_with_the_reason(torchrun_env, standin):
    with pytest.raises(ValueError, match="SyncBatchNorm does not run on cpu"):
        tl.fit(tl.ResNet9(), standin.train, epochs=1, distributed=True, sync_batchnorm=True)


def test_a_one_process_group_trains(torchrun_env, standin):
    from torch.utils.data import Subset

    history = tl.fit(
        tl.TutorialNet(),
        Subset(standin.train, range(64)),
        epochs=1,
        distributed=True,
        progress=False,
        batch_size=16,
    )
    assert history.status == "done"
    assert len(history) == 1


def test_distributed_true_outside_torchrun_explains(monkeypatch, standin):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(RuntimeError, match="torchrun --nproc_per_node=N"):
        tl.fit(tl.TutorialNet(), standin.train, epochs=1, distributed=True)
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(RuntimeError, match="MASTER_ADDR, MASTER_PORT is not"):
        tl.fit(tl.TutorialNet(), standin.train, epochs=1)
    # distributed=False trains this process alone whatever the environment says
    from torch.utils.data import Subset

    h = tl.fit(
        tl.TutorialNet(),
        Subset(standin.train, range(16)),
        epochs=1,
        distributed=False,
        progress=False,
    )
    assert h.status == "done"
