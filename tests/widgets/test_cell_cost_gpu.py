"""On a real NVIDIA GPU: a cell's GPU peak is torch's allocator peak, reset as the cell starts.

A fit inside the cell resets it per epoch; the cell's peak is still the whole cell's. The hooks
read the allocator's counters only: no device sync.
"""

import pytest
import torch

from .conftest import Kernel

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.slow,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs an NVIDIA GPU"),
]

MiB = 2**20
READ = (
    "__import__('jupyter_torchlab._runtime_files', fromlist=['_']).read_cell_gpu("
    "__import__('jupyter_torchlab._runtime_files', fromlist=['_']).kernel_cells_file())"
)


def msg_id(msgs: list[dict]) -> str:
    return msgs[-1]["parent_header"]["msg_id"]


def test_each_cells_gpu_peak_resets_between_cells(kernel: Kernel):
    kernel.execute("%load_ext jupyter_torchlab")
    kernel.execute(
        "import torch\n_keep = torch.empty(64 * 2**20, dtype=torch.uint8, device='cuda')"
    )
    big = kernel.execute("_t = torch.empty(512 * 2**20, dtype=torch.uint8, device='cuda')\ndel _t")
    small = kernel.execute("_s = torch.empty(16 * 2**20, dtype=torch.uint8, device='cuda')\ndel _s")
    table = kernel.value(READ)
    big_peak, small_peak = table[msg_id(big)]["0"], table[msg_id(small)]["0"]
    # what the cell held at most: what was kept plus its own tensor, and nothing of the cell before
    assert 576 * MiB <= big_peak < 600 * MiB, big_peak
    assert 80 * MiB <= small_peak < 100 * MiB, small_peak
    # a cell that does not touch CUDA still has its own (reset) peak: what stays allocated
    idle = kernel.execute("x = 1")
    assert 64 * MiB <= kernel.value(READ)[msg_id(idle)]["0"] < 70 * MiB


FIT = """
import torch, jupyter_torchlab as tl
from torch import nn
from torch.utils.data import TensorDataset

class FirstEpochPeaks(tl.Callback):
    # fit resets the allocator peak at each epoch's start, then calls this: the first epoch
    # holds 512 MiB more for a moment, the later ones only the small model's steps
    def on_epoch_start(self, state):
        if state.epoch == 0:
            t = torch.empty(512 * 2**20, dtype=torch.uint8, device='cuda')
            del t

y = torch.arange(64) % 3
data = TensorDataset(torch.randn(64, 8), y)
model = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 3))
history = tl.fit(model, data, epochs=3, batch_size=8, device='cuda', progress=False,
                 callbacks=[FirstEpochPeaks()])
"""


def test_a_multi_epoch_fit_cell_keeps_the_whole_cells_gpu_peak(kernel: Kernel):
    kernel.execute("%load_ext jupyter_torchlab")
    kernel.execute("import torch\n_warm = torch.zeros(1, device='cuda')")
    fitted = kernel.execute(FIT)
    epochs = kernel.value("[e['peak_memory'] for e in history.epochs]")
    cell_peak = kernel.value(READ)[msg_id(fitted)]["0"]
    # fit reset the peak at each epoch; the cell's peak is still the whole cell's
    assert epochs[0] >= 512 * MiB > epochs[-1], epochs
    assert cell_peak >= epochs[0], (cell_peak, epochs)
    # and the next cell counts from its own start again
    after = kernel.execute("x = 1")
    assert kernel.value(READ)[msg_id(after)]["0"] < 512 * MiB


def test_the_per_cell_hooks_do_not_sync_the_device(kernel: Kernel):
    kernel.execute("%load_ext jupyter_torchlab")
    kernel.execute("import torch\n_keep = torch.ones(2**20, device='cuda')")
    kernel.execute("torch.cuda.set_sync_debug_mode('error')")
    try:
        # the mode is on: a synchronising call in a cell fails
        synced = kernel.execute("_keep.sum().item()", allow_error=True)
        assert any(m["msg_type"] == "error" for m in synced)
        cells = [
            kernel.execute(code)  # raises on an error message (a hook that synced)
            for code in ("_a = _keep * 2", "_b = torch.empty(2**24, device='cuda')", "x = 1")
        ]
        streams = [m for msgs in cells for m in msgs if m["msg_type"] == "stream"]
        texts = "".join(m["content"]["text"] for m in streams)
        assert "Error in callback" not in texts, texts
    finally:
        kernel.execute("torch.cuda.set_sync_debug_mode('default')")
    table = kernel.value(READ)
    assert all(msg_id(msgs) in table for msgs in cells)
