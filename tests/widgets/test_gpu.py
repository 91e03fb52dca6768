"""On a real NVIDIA GPU: fit shows peak memory; the monitor shows the GPU and our share."""

import re

import pytest
import torch

from .conftest import Kernel, comm_updates, displays

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.slow,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs an NVIDIA GPU"),
]


def test_fit_on_cuda_shows_device_and_peak_memory(kernel: Kernel):
    msgs = kernel.execute(
        "import torch\n"
        "from torch.utils.data import TensorDataset\n"
        "import jupyter_torchlab as tl\n"
        "_ds = TensorDataset(torch.randn(256, 3, 32, 32), torch.randint(0, 10, (256,)))\n"
        "hist = tl.fit(tl.TutorialNet(), _ds, epochs=1, batch_size=4, device='cuda')\n",
        timeout=300,
    )
    record = [m for m in displays(msgs) if m["msg_type"] == "update_display_data"][-1]
    html = record["content"]["data"]["text/html"]
    assert "device cuda" in html
    assert re.search(r"peak memory \d", html), html


def test_monitor_shows_each_gpu_and_this_kernels_share(kernel: Kernel):
    kernel.execute(
        "import torch\n_block = torch.empty(256 * 2**20, dtype=torch.uint8, device='cuda')\n"
        "import jupyter_torchlab as tl\ntl.monitor()"
    )
    msgs = kernel.execute("import time\ntime.sleep(2.5)")
    values = [s["value"] for s in comm_updates(msgs) if "torchlab-monitor" in s.get("value", "")]
    assert values
    assert "GPU 0" in values[-1]
    assert "this kernel" in values[-1]
    kernel.execute("from jupyter_torchlab.widgets import close_monitor\nclose_monitor()")


def test_tensor_postfix_never_syncs_the_gpu_between_refreshes():
    """CUDA's sync debug mode raises on any synchronising call: none may happen per step."""
    import io

    from jupyter_torchlab.tqdm import tqdm

    x = torch.randn(256, 256, device="cuda")
    # no refresh is due within the loop: every step is the per-step path
    bar = tqdm(total=2000, widget=False, file=io.StringIO(), mininterval=3600)
    torch.cuda.set_sync_debug_mode("error")
    try:
        for _ in range(2000):
            loss = (x @ x).mean()
            bar.set_postfix(loss=loss)  # stays a CUDA tensor
            bar.log(loss=loss)
            bar.update()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    bar.close()
    assert bar.status == "done"
    assert bar.postfix.startswith("loss=")  # converted once, at the final refresh


def test_a_data_starved_fit_on_cuda_is_called_input_bound(kernel: Kernel):
    msgs = kernel.execute(
        "import time, torch\n"
        "import jupyter_torchlab as tl\n"
        "class _Slow(torch.utils.data.Dataset):\n"
        "    def __len__(self):\n"
        "        return 128\n"
        "    def __getitem__(self, i):\n"
        "        time.sleep(0.02)\n"
        "        return torch.randn(3, 32, 32), i % 10\n"
        "hist = tl.fit(tl.TutorialNet(), _Slow(), epochs=1, batch_size=8, num_workers=0,\n"
        "              device='cuda')\n",
        timeout=300,
    )
    record = [m for m in displays(msgs) if m["msg_type"] == "update_display_data"][-1]
    html = record["content"]["data"]["text/html"]
    assert "Input-bound: the GPU waits for data" in html, html
    assert "pin_memory=True" in html


def test_a_real_cuda_oom_names_the_variable_and_free_memory_gives_it_back(kernel: Kernel):
    """On a GPU: a cell that cannot allocate is explained, and tl.free_memory() returns memory."""
    msgs = kernel.execute(
        "%load_ext jupyter_torchlab\nimport torch\nimport jupyter_torchlab as tl\n"
        "big = torch.empty(int(torch.cuda.mem_get_info()[1] * 0.6), dtype=torch.uint8, "
        "device='cuda')\n"
        "def step():\n"
        "    activations = torch.empty(int(torch.cuda.mem_get_info()[1] * 0.2), "
        "dtype=torch.uint8, device='cuda')\n"
        "    return torch.empty(torch.cuda.mem_get_info()[1], dtype=torch.uint8, device='cuda')\n"
        "step()\n",
        allow_error=True,
        timeout=120,
    )
    assert any(m["msg_type"] == "error" for m in msgs)
    (shown,) = [m for m in displays(msgs) if m["msg_type"] == "display_data"]
    text = shown["content"]["data"]["text/plain"]
    assert text.startswith("Out of memory on cuda:0")
    assert re.search(r"^  big \[\d+\]: \d", text, re.M), text  # the variable holding the most
    assert "Held only by the saved traceback" in text  # step()'s activations
    out = kernel.execute(
        "import torch\n_before = torch.cuda.mem_get_info()[0]\n_freed = tl.free_memory()\n"
        "print(_freed['cuda:0'] > 0, torch.cuda.mem_get_info()[0] > _before)\n"
    )
    printed = "".join(m["content"]["text"] for m in out if m["msg_type"] == "stream")
    assert printed.split() == ["True", "True"]
