"""Real-GPU checks, run on a machine with an NVIDIA GPU (skipped elsewhere)."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from jupyter_torchlab.train.fit.evaluate import evaluate
from jupyter_torchlab.train.fit.loop import fit
from jupyter_torchlab.train.fit.window import NonFiniteLossError
from jupyter_torchlab.train.models import ResNet9

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs an NVIDIA GPU"),
]


def _toy(n: int) -> TensorDataset:
    y = torch.arange(n) % 3
    return TensorDataset(torch.nn.functional.one_hot(y, 8).float() * 3 + torch.randn(n, 8), y)


def _syncs_during_fit(n: int) -> int:
    model = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 3))
    fit(model, _toy(32), epochs=1, batch_size=8, device="cuda", progress=False)  # warm-up
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            fit(
                model,
                _toy(n),
                epochs=1,
                batch_size=8,
                device="cuda",
                progress=False,
                check_every=16,
            )
        finally:
            torch.cuda.set_sync_debug_mode("default")
    return sum("synchroniz" in str(w.message) for w in caught)


def test_no_device_sync_per_batch():
    # CUDA's sync debug mode reports every synchronising call; their number must not grow with
    # the number of batches (a few at epoch start/end are expected: seen 2-3 on an H200)
    few, many = _syncs_during_fit(8 * 32), _syncs_during_fit(8 * 128)
    assert many <= few <= 4, (few, many)


def test_fit_on_cuda_with_amp_and_channels_last():
    torch.manual_seed(0)
    x = torch.randn(256, 3, 32, 32)
    y = torch.arange(256) % 10
    x[y == 3] += 1.0
    net = ResNet9(width=16)
    history = fit(
        net,
        TensorDataset(x, y),
        epochs=2,
        batch_size=64,
        device="cuda",
        amp="auto",
        channels_last=True,
        progress=False,
        optimizer=torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9),
    )
    assert history.status == "done"
    assert next(net.parameters()).device.type == "cuda"
    result = evaluate(net, TensorDataset(x, y))
    assert result.count == 256
    assert result.confusion.shape == (10, 10)


def test_nan_on_cuda_names_epoch_and_batch():
    calls = {"n": 0}
    ce = nn.CrossEntropyLoss()

    def loss_fn(out, y):
        calls["n"] += 1
        loss = ce(out, y)
        return loss * float("nan") if calls["n"] == 30 else loss

    with pytest.raises(NonFiniteLossError) as info:
        fit(
            nn.Linear(8, 3),
            _toy(80),
            epochs=3,
            batch_size=4,
            device="cuda",
            loss_fn=loss_fn,
            progress=False,
            check_every=8,
        )
    assert (info.value.epoch, info.value.batch) == (2, 10)


def test_fit_out_of_memory_suggests_a_batch_size_that_then_runs():
    """On a GPU: fit measures memory per sample, fails at a batch too large, and its hint fits."""
    from jupyter_torchlab.train.fit.out_of_memory import FitOutOfMemoryError

    torch.cuda.empty_cache()
    free, _total = torch.cuda.mem_get_info()
    batch = 1024
    # a hidden layer whose activations at batch 1024 need 1.5x the free memory; at 64, a tenth
    hidden = int(free * 1.5 / (batch * 4))
    model = nn.Sequential(nn.Linear(64, hidden), nn.ReLU(), nn.Linear(hidden, 10))
    data = TensorDataset(torch.randn(batch, 64), torch.randint(0, 10, (batch,)))
    fit(model, data, epochs=1, batch_size=64, device="cuda", progress=False)
    with pytest.raises(FitOutOfMemoryError) as info:
        fit(model, data, epochs=1, batch_size=batch, device="cuda", progress=False)
    suggested = info.value.batch_size
    assert suggested is not None
    assert 64 <= suggested < batch, suggested  # from the measurement at 64, below what failed
    history = fit(model, data, epochs=1, batch_size=suggested, device="cuda", progress=False)
    assert history.status == "done"
