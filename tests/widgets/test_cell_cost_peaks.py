"""A cell's GPU peak survives tl.fit's per-epoch reset of torch's allocator peak.

Without a GPU: torch.cuda's peak counters are replaced by a small allocator model (what
``max_memory_allocated`` and ``reset_peak_memory_stats`` do: the peak since the last reset, a
reset starting it at what is allocated now), and the real ``train.device.reset_peak_memory`` (what
fit calls at each epoch) and the real cell hooks run against it. The same on a real GPU, with a
real fit, is in ``test_cell_cost_gpu.py``.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import pytest
import torch

from jupyter_torchlab import _gpu_peaks
from jupyter_torchlab._runtime_files import read_cell_gpu
from jupyter_torchlab.train import device as devices
from jupyter_torchlab.widgets import _cell_cost

MiB = 2**20


class Allocator:
    """torch's peak counters of two CUDA devices, as the caching allocator keeps them."""

    def __init__(self) -> None:
        self.allocated = [0, 0]
        self.peak = [0, 0]

    def use(self, device: int, nbytes: int) -> None:
        self.allocated[device] += nbytes
        self.peak[device] = max(self.peak[device], self.allocated[device])

    def is_initialized(self) -> bool:
        return True

    def device_count(self) -> int:
        return 2

    def current_device(self) -> int:
        return 0

    def max_memory_allocated(self, device: Any) -> int:
        return self.peak[int(device)]

    def reset_peak_memory_stats(self, device: Any) -> None:
        self.peak[int(device)] = self.allocated[int(device)]


@pytest.fixture
def cell(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> Any:
    """Run cells through the real hooks against the model; return each cell's devices."""
    alloc = Allocator()
    for name in ("max_memory_allocated", "reset_peak_memory_stats", "current_device"):
        monkeypatch.setattr(torch.cuda, name, getattr(alloc, name))
    monkeypatch.setattr(_cell_cost, "_cuda", lambda: alloc)
    monkeypatch.setattr(_cell_cost, "_records", deque(maxlen=10))
    monkeypatch.setattr(_cell_cost, "_path", str(tmp_path / "cells.json"))
    monkeypatch.setattr(_cell_cost, "_failed", False)
    monkeypatch.setattr(_gpu_peaks, "_carried", {})
    count = iter(range(1000))

    def run(body: Any) -> dict[str, int]:
        msg_id = f"cell-{next(count)}"
        monkeypatch.setattr(_cell_cost, "_parent_msg_id", lambda: msg_id)
        _cell_cost._pre_run_cell()
        body(alloc)
        _cell_cost._post_run_cell()
        return read_cell_gpu(str(tmp_path / "cells.json"))[msg_id]

    return run


def test_a_fit_cell_keeps_its_first_epochs_peak(cell: Any) -> None:
    def fit_like(alloc: Allocator) -> None:
        # three epochs as fit runs them: reset, then the epoch's work; the first one peaks
        for epoch, work in enumerate((500 * MiB, 100 * MiB, 50 * MiB)):
            # fit's device may carry no index ("cuda": the current device)
            devices.reset_peak_memory(torch.device("cuda", 0) if epoch else torch.device("cuda"))
            alloc.use(0, work)
            alloc.use(0, -work)
        alloc.use(1, 30 * MiB)

    def keep(alloc: Allocator) -> None:
        alloc.use(0, 64 * MiB)

    assert cell(keep) == {"0": 64 * MiB}
    # what stays allocated plus the first epoch's work, not the last epoch's 64 + 50 MiB
    assert cell(fit_like) == {"0": 564 * MiB, "1": 30 * MiB}


def test_the_next_cell_counts_from_its_own_start(cell: Any) -> None:
    def fit_like(alloc: Allocator) -> None:
        devices.reset_peak_memory(torch.device("cuda", 0))
        alloc.use(0, 500 * MiB)
        alloc.use(0, -500 * MiB)
        devices.reset_peak_memory(torch.device("cuda", 0))
        alloc.use(0, 10 * MiB)

    assert cell(fit_like) == {"0": 500 * MiB}
    # the carried 500 MiB belonged to the cell before: this one held 10 MiB, then 20
    assert cell(lambda alloc: alloc.use(0, 10 * MiB)) == {"0": 20 * MiB}


def test_a_reset_off_cuda_carries_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_gpu_peaks, "_carried", {})
    devices.reset_peak_memory(torch.device("cpu"))
    assert _gpu_peaks._carried == {}
