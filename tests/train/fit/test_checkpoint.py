from __future__ import annotations

import signal
import subprocess
import sys
import textwrap

import pytest
import torch
from torch import nn
from torch.utils.data import Subset

from jupyter_torchlab.train.fit.checkpoint import load_checkpoint, save_checkpoint
from jupyter_torchlab.train.fit.loop import fit
from jupyter_torchlab.train.history import History
from jupyter_torchlab.train.models import TutorialNet


def test_roundtrip_model_optimizer_history(tmp_path):
    torch.manual_seed(0)
    model = nn.Linear(4, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.randn(3, 4)).sum().backward()
    opt.step()
    history = History([{"epoch": 1, "train_loss": 0.5}])
    path = save_checkpoint(
        tmp_path / "sub" / "ck.pt", model, opt, epoch=3, history=history, extra={"note": "hi"}
    )
    assert path.is_file()
    assert [p.name for p in path.parent.iterdir()] == ["ck.pt"]  # no temp file left

    other = nn.Linear(4, 2)
    other_opt = torch.optim.SGD(other.parameters(), lr=0.1, momentum=0.9)
    ck = load_checkpoint(path, other, other_opt)
    assert ck.epoch == 3
    assert ck.history.epochs == history.epochs
    assert ck.extra == {"note": "hi"}
    for a, b in zip(model.parameters(), other.parameters(), strict=True):
        assert torch.equal(a, b)
    buf = other_opt.state_dict()["state"][0]["momentum_buffer"]
    assert torch.equal(buf, opt.state_dict()["state"][0]["momentum_buffer"])


def test_load_errors_are_clear(tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint at"):
        load_checkpoint(tmp_path / "missing.pt", nn.Linear(2, 2))
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"\x80\x02garbage")
    with pytest.raises(ValueError, match="not a readable checkpoint"):
        load_checkpoint(bad, nn.Linear(2, 2))
    good = save_checkpoint(tmp_path / "good.pt", nn.Linear(2, 2), epoch=1)
    with pytest.raises(RuntimeError, match="does not fit this model"):
        load_checkpoint(good, nn.Linear(3, 2))


WRITER = textwrap.dedent(
    """
    import os, sys, time, torch
    from torch import nn
    from jupyter_torchlab.train.fit.checkpoint import save_checkpoint
    if sys.argv[2] == "pause":
        # hold every save between writing the temp file and renaming it: the kill lands there
        real_fsync = os.fsync
        def slow_fsync(fd):
            print("writing", flush=True)
            time.sleep(60)
            real_fsync(fd)
        os.fsync = slow_fsync
    model = nn.Linear(1500, 1500)  # ~9 MB: each save takes a while
    path = sys.argv[1]
    i = 1
    while True:
        with torch.no_grad():
            model.weight.fill_(i)
            model.bias.fill_(i)
        save_checkpoint(path, model, epoch=i)
        print(i, flush=True)
        i += 1
    """
)


@pytest.mark.slow
@pytest.mark.parametrize("saves_before_kill", [1, 3])
def test_sigkill_while_saving_never_leaves_a_torn_file(tmp_path, saves_before_kill):
    target = tmp_path / "ck.pt"
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(target), "run"],
        stdout=subprocess.PIPE,
        text=True,
        cwd=str(tmp_path),
        env={**__import__("os").environ, "PYTHONPATH": str(_repo_root())},
    )
    try:
        assert proc.stdout is not None
        for _ in range(saves_before_kill):
            assert proc.stdout.readline().strip()  # a save finished; the next one is under way
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        proc.stdout.close()
    # whatever the moment of death: the target is a complete checkpoint, weights match its epoch
    model = nn.Linear(1500, 1500)
    ck = load_checkpoint(target, model)
    assert ck.epoch >= saves_before_kill
    assert torch.all(model.weight == ck.epoch)
    assert torch.all(model.bias == ck.epoch)


@pytest.mark.slow
def test_sigkill_between_write_and_rename_keeps_the_old_file(tmp_path):
    target = tmp_path / "ck.pt"
    save_checkpoint(target, nn.Linear(1500, 1500), epoch=0)  # an earlier good checkpoint
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(target), "pause"],
        stdout=subprocess.PIPE,
        text=True,
        cwd=str(tmp_path),
        env={**__import__("os").environ, "PYTHONPATH": str(_repo_root())},
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "writing"  # temp file written, not yet renamed
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        proc.stdout.close()
    leftovers = list(tmp_path.glob(".ck.pt.*.tmp"))
    assert len(leftovers) == 1  # the new data never reached the target name
    ck = load_checkpoint(target, nn.Linear(1500, 1500))
    assert ck.epoch == 0


def _repo_root():
    from pathlib import Path

    return Path(__file__).resolve().parents[3]


@pytest.mark.slow
def test_two_epochs_equal_one_plus_resume(standin, tmp_path):
    data = Subset(standin.train, range(256))

    def run(**kwargs):
        torch.manual_seed(1)
        net = TutorialNet()
        history = fit(net, data, batch_size=16, progress=False, **kwargs)
        return net, history

    straight, h_straight = run(epochs=2, seed=7)
    ck = tmp_path / "ck.pt"
    _, h_first = run(epochs=1, seed=7, checkpoint=ck)
    assert load_checkpoint(ck, TutorialNet()).epoch == 1
    resumed, h_resumed = run(epochs=2, resume_from=ck)  # fresh weights, overwritten by the load
    assert len(h_resumed) == 2
    assert h_resumed[0] == h_first[0]  # history restored
    assert h_resumed[1]["train_loss"] == pytest.approx(h_straight[1]["train_loss"], rel=1e-5)
    for a, b in zip(straight.parameters(), resumed.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)

    # nothing left to do: returns the restored history without training
    done = fit(TutorialNet(), data, epochs=1, resume_from=ck, progress=False)
    assert len(done) == 1
    assert done.status == "done"


def test_checkpoint_every_epoch(tmp_path, standin):
    ck = tmp_path / "ck.pt"
    fit(
        TutorialNet(),
        Subset(standin.train, range(32)),
        epochs=2,
        batch_size=16,
        checkpoint=ck,
        progress=False,
    )
    loaded = load_checkpoint(ck, TutorialNet())
    assert loaded.epoch == 2
    assert [e["epoch"] for e in loaded.history.epochs] == [1, 2]
