"""On a real NVIDIA GPU: a cell's GPU peak is torch's allocator peak, reset as the cell starts."""

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
