"""Out-of-memory errors explained: the report's logic on the CPU build, with a real OOM error."""

from __future__ import annotations

import gc
import io
import os
import weakref

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

import jupyter_torchlab as tl
from jupyter_torchlab.train.fit.out_of_memory import FitOutOfMemoryError
from jupyter_torchlab.train.oom import (
    FitMemory,
    build_report,
    is_out_of_memory,
    memory,
    requested_bytes,
)
from jupyter_torchlab.train.text import TextProgress

MiB, GiB = 1 << 20, 1 << 30
CPU = torch.device("cpu")
MESSAGE = (
    "CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of 8.00 GiB of "
    "which 1.10 GiB is free."
)


@pytest.fixture(autouse=True)
def no_fit_memory(monkeypatch):
    monkeypatch.setattr(memory, "_last_fit", {})


def test_out_of_memory_errors_are_recognised_and_the_request_read():
    assert is_out_of_memory(torch.OutOfMemoryError(MESSAGE))
    assert is_out_of_memory(RuntimeError("MPS backend out of memory (MPS allocated: 8.00 GB)"))
    assert not is_out_of_memory(ValueError("out of range"))
    assert requested_bytes(MESSAGE) == 2 * GiB
    assert requested_bytes("Tried to allocate 20.00 MiB") == 20 * MiB
    assert requested_bytes("Tried to allocate 512 bytes") == 512
    assert requested_bytes("no size here") is None


def _stats(device):
    return {"allocated": 6 * GiB, "reserved": 7 * GiB, "total": 8 * GiB, "free": GiB}


def _report(namespace=None, *, processes=(), live=(), **kw):
    """The report of a CUDA OOM on the CPU build, with these GPU processes and live tensors."""
    return build_report(
        torch.OutOfMemoryError(MESSAGE),
        namespace or {},
        device=CPU,
        stats=_stats,
        processes=lambda d: list(processes),
        live=lambda d: list(live),
        **kw,
    )


def _failing_step():
    activations = torch.zeros(4 * MiB)  # noqa: F841 - 16 MiB, held only by this frame once raised
    raise torch.OutOfMemoryError(MESSAGE)


def test_the_report_names_what_holds_the_memory():
    model = nn.Linear(256, 256)
    opt = torch.optim.Adam(model.parameters())
    model(torch.randn(8, 256)).sum().backward()
    opt.step()
    big = torch.zeros(8 * MiB)  # 32 MiB
    batch = [torch.zeros(MiB), torch.zeros(10)]
    view = big[:10]  # a view of the same storage: not counted twice
    try:
        _failing_step()
    except torch.OutOfMemoryError as e:
        error, tb = e, e.__traceback__
    held_by_tb = tb.tb_next.tb_frame.f_locals["activations"]
    namespace = {"model": model, "opt": opt, "big": big, "batch": batch, "view": view, "_x": big}
    live = [big, view, batch[0], batch[1], held_by_tb, *model.parameters()]
    report = build_report(
        error,
        namespace,
        device=CPU,
        traceback=tb,
        stats=_stats,
        processes=lambda d: [(1234, 3 * GiB), (os.getpid(), GiB)],
        live=lambda d: live,
    )
    assert report.requested == 2 * GiB
    assert (report.allocated, report.reserved, report.total, report.free) == (
        6 * GiB,
        7 * GiB,
        8 * GiB,
        GiB,
    )
    held = {(h.name, h.kind): h.bytes for h in report.models}
    weights = (256 * 256 + 256) * 4
    assert held[("model", "parameters")] == weights
    assert held[("model", "gradients")] == weights
    assert held[("opt", "optimizer state")] >= 2 * weights  # exp_avg and exp_avg_sq
    names = [h.name for h in report.tensors]
    assert names[:3] == ["big", "(held by the saved traceback)", "batch[0]"]
    assert report.tensors[0].bytes == 32 * MiB
    assert report.tensors[0].shape == (8 * MiB,)
    assert "model.weight" in names
    assert report.traceback_bytes == 16 * MiB
    assert report.processes == [(1234, 3 * GiB, False), (os.getpid(), GiB, True)]
    text = report.text()
    assert text.startswith("Out of memory on cpu: CUDA out of memory. Tried to allocate 2.00 GiB")
    assert (
        "asked for 2.0 GiB, allocated 6.0 GiB, reserved 7.0 GiB, free 1.0 GiB, total 8.0 GiB"
        in text
    )
    assert "  big [8388608]: 32 MiB" in text
    assert "Held only by the saved traceback: 16 MiB" in text
    assert "pid 1234 (another process): 3.0 GiB" in text
    assert any("tl.free_memory()" in s for s in report.suggestions)
    assert any("amp=True" in s for s in report.suggestions)
    assert any("pid 1234 (3.0 GiB)" in s for s in report.suggestions)


def test_tensors_and_models_held_in_objects_and_containers_are_named_by_their_path():
    class Trainer:
        def __init__(self):
            self.cache = torch.zeros(2 * MiB)  # 8 MiB on a plain object's attribute
            self.last = torch.zeros(MiB)  # also bound to a variable of its own
            self.state = {"ema": nn.Linear(64, 64)}  # a model inside a dict inside an object

    trainer = Trainer()
    models = {"enc": nn.Linear(128, 128)}
    report = _report(
        {"trainer": trainer, "models": models, "last": trainer.last},
        live=[trainer.cache, trainer.last, models["enc"].weight],
    )
    names = {h.name for h in report.tensors}
    assert "trainer.cache" in names
    assert "last" in names  # the shortest path: the variable, not "trainer.last"
    assert "models['enc'].weight" in names
    held = {(h.name, h.kind) for h in report.models}
    assert ("models['enc']", "parameters") in held
    assert ("trainer.state['ema']", "parameters") in held


def test_other_kernels_on_the_gpu_are_named_by_their_notebooks():
    report = _report(
        processes=[(1234, 3 * GiB), (77, GiB), (os.getpid(), GiB)],
        notebooks={1234: "train.ipynb", os.getpid(): "this.ipynb"},
    )
    text = report.text()
    assert "pid 1234 (the kernel of train.ipynb): 3.0 GiB" in text
    assert "pid 77 (another process): 1.0 GiB" in text
    assert f"pid {os.getpid()} (this kernel): 1.0 GiB" in text
    (tip,) = [s for s in report.suggestions if s.startswith("Other processes")]
    assert tip == (
        "Other processes hold GPU memory: train.ipynb's kernel (pid 1234, 3.0 GiB), "
        "pid 77 (1.0 GiB). Shut down the kernels you do not need (the PyTorch monitor panel "
        "lists them)."
    )


def test_the_batch_size_that_fits_is_computed_from_what_fit_measured():
    memory.record_fit_memory(FitMemory("cpu", 64, baseline=500 * MiB, peak=2548 * MiB))
    report = _report(processes=[(1234, 3 * GiB)])
    # 32 MiB per sample; budget 0.9 x 8 GiB - 3 GiB of others - 500 MiB: 124 samples -> 64
    assert report.batch_size == 64
    assert report.suggestions[0].startswith(
        "Use batch_size=64: fit measured about 32 MiB per sample"
    )


def test_a_batch_size_that_failed_outright_is_at_least_halved():
    # only the failed batch size is known: the step needed at least allocated + requested
    memory.record_fit_memory(FitMemory("cpu", 256, baseline=GiB, peak=None))
    report = _report()
    assert report.batch_size is not None
    assert report.batch_size <= 128


def test_a_batch_size_that_trained_for_an_epoch_then_failed_is_never_suggested_again():
    # epoch 1 at batch 64 measured a peak that "fits" 124 samples; epoch 2 ran out all the same
    # (fragmentation, longer inputs): the suggestion must be smaller than 64
    memory.record_fit_memory(
        FitMemory("cpu", 64, baseline=500 * MiB, peak=2548 * MiB, failed_at=64)
    )
    report = _report(processes=[(1234, 3 * GiB)])
    assert report.batch_size == 32
    # a batch of one that failed leaves no smaller batch size to suggest
    memory.record_fit_memory(FitMemory("cpu", 1, baseline=GiB, peak=None))
    report = _report()
    assert report.batch_size is None
    assert not any(s.startswith("Use batch_size=") for s in report.suggestions)


def test_fit_keeps_its_models_measurement_and_forgets_another_models():
    from types import SimpleNamespace

    from jupyter_torchlab.train.callbacks import FitState
    from jupyter_torchlab.train.fit.out_of_memory import out_of_memory_error

    model = nn.Linear(2, 2)
    step = SimpleNamespace(
        model=model, optimizer=torch.optim.SGD(model.parameters()), device=CPU, amp_dtype=None
    )
    state = FitState(model, step.optimizer, CPU, 3, tl.History())
    oom = torch.OutOfMemoryError(MESSAGE)
    # another model's measurement is not this one's
    other = nn.Linear(2, 2)
    memory.record_fit_memory(FitMemory("cpu", 4, 10 * GiB, 12 * GiB, model=id(other)))
    out_of_memory_error(oom, state, step, 4, baseline=GiB)
    assert memory.last_fit_memory("cpu") == FitMemory("cpu", 4, GiB, None, model=id(model))
    assert memory.last_fit_memory("cpu").too_big == 4
    # this model measured at batch 64 (an earlier fit, or epoch 1 of this one): the measurement
    # stays, and the batch size that failed caps what is suggested
    memory.record_fit_memory(FitMemory("cpu", 64, GiB, 3 * GiB, model=id(model)))
    out_of_memory_error(oom, state, step, 1024, baseline=GiB)
    assert memory.last_fit_memory("cpu") == FitMemory(
        "cpu", 64, GiB, 3 * GiB, failed_at=1024, model=id(model)
    )
    out_of_memory_error(oom, state, step, 512, baseline=GiB)
    assert memory.last_fit_memory("cpu").too_big == 512
    # a measurement in another precision says little about this one
    step.amp_dtype = torch.bfloat16
    out_of_memory_error(oom, state, step, 256, baseline=GiB)
    assert memory.last_fit_memory("cpu").peak is None


def test_an_xpu_error_is_read_as_xpu_and_mixed_precision_already_on_is_not_suggested():
    xpu = torch.OutOfMemoryError(
        "XPU out of memory. Tried to allocate 2.00 GiB. GPU 1 has a total capacity of 16 GiB"
    )
    report = build_report(xpu, {}, stats=lambda d: {}, processes=lambda d: [], live=lambda d: [])
    assert report.device == "xpu:1"
    assert report.requested == 2 * GiB

    def tips(namespace):
        report = _report(namespace)
        return " ".join(report.suggestions)

    assert "amp=True" in tips({"model": nn.Linear(2, 2)})
    assert "amp=True" not in tips({"model": nn.Linear(2, 2).to(torch.bfloat16)})
    assert "amp=True" not in tips({"scaler": torch.amp.GradScaler("cpu")})
    memory.record_fit_memory(FitMemory("cpu", 64, baseline=GiB, peak=2 * GiB, amp=True))
    assert "amp=True" not in tips({"model": nn.Linear(2, 2)})


class OomAt(nn.Module):
    """A model whose forward runs out of memory at one call, as a GPU would."""

    def __init__(self, at: int):
        super().__init__()
        self.layer = nn.Linear(8, 3)
        self.calls = 0
        self.at = at
        self.inputs: list[weakref.ref] = []

    def forward(self, x):
        self.calls += 1
        self.inputs.append(weakref.ref(x))
        if self.calls == self.at:
            raise torch.OutOfMemoryError(MESSAGE)
        return self.layer(x)


def _data(n=64):
    g = torch.Generator().manual_seed(0)
    return TensorDataset(torch.randn(n, 8, generator=g), torch.randint(0, 3, (n,), generator=g))


def test_fit_out_of_memory_keeps_the_history_drops_the_step_and_can_train_again():
    model = OomAt(at=16 + 3)  # the third batch of the second epoch
    out = io.StringIO()
    with pytest.raises(FitOutOfMemoryError) as info:
        tl.fit(model, _data(), epochs=3, batch_size=4, device="cpu", progress=TextProgress(out))
    err = info.value
    assert isinstance(err, torch.OutOfMemoryError)  # code catching torch's error still does
    assert len(err.history) == 1
    assert err.history.status == "out of memory"
    assert err.history.stopped_at == (2, 2)
    assert str(err).startswith("out of memory at epoch 2, batch 3 with batch_size=4 on cpu:")
    assert "err.report says what held the memory" in str(err)
    assert err.report.message.startswith("CUDA out of memory. Tried to allocate 2.00 GiB")
    assert (err.epoch, err.batch) == (2, 3)
    assert "training out of memory at epoch 2, batch 3" in out.getvalue()
    gc.collect()
    # the failed step's batch is not kept alive by the error fit raised
    assert model.inputs[-1]() is None
    assert all(p.grad is None for p in model.parameters())
    model.at = -1
    history = tl.fit(model, _data(), epochs=1, batch_size=4, device="cpu", progress=False)
    assert history.status == "done"


def test_free_memory_clears_the_saved_exception():
    try:
        _failing_step()
    except torch.OutOfMemoryError as e:
        import sys

        sys.last_type, sys.last_value, sys.last_traceback = type(e), e, e.__traceback__
        ref = weakref.ref(e.__traceback__.tb_next.tb_frame.f_locals["activations"])
        del e
    assert ref() is not None
    freed = tl.free_memory()
    assert ref() is None
    assert isinstance(freed, dict)
