"""On a machine with an NVIDIA GPU: GPUs, a kernel's GPU memory and share, an idle holder."""

from __future__ import annotations

from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from traitlets.config import Config

from .conftest import INTERVAL, execute_request, kernel_entry, server_config

GIB = 2**30
# 1 GiB of float32 on the first GPU
ALLOCATE = "import torch\nx = torch.ones(256 * 2**20, device='cuda')\ntorch.cuda.synchronize()"
# 20 s of matmuls, then the kernel goes idle still holding `a`
MATMULS = (
    "import time, torch\n"
    "a = torch.randn(4096, 4096, device='cuda')\n"
    "end = time.monotonic() + 20\n"
    "while time.monotonic() < end:\n"
    "    b = a @ a\n"
    "    torch.cuda.synchronize()\n"
)


@pytest.fixture
def jp_server_config() -> Config:
    # an idle holder is flagged after 1 s here (the default is 30 min)
    return server_config(sample_interval=INTERVAL, history_seconds=30.0, gpu_idle_warn=1.0)


@pytest.mark.gpu
@pytest.mark.slow
async def test_a_kernel_using_the_gpu_is_charged_its_gpu_memory(
    jp_fetch: Any, jp_ws_fetch: Any, start_kernel: Any, wait_metrics: Any, get_metrics: Any
) -> None:
    doc = await get_metrics()
    if not doc["gpus"]:
        pytest.skip(f"no GPU here: {doc['gpu_reason']}")
    for gpu in doc["gpus"]:
        assert gpu["name"]
        assert gpu["uuid"]
        assert gpu["memory_total"] > 0
        assert gpu["source"] in ("nvml", "torch")

    kid = await start_kernel()
    ws = await jp_ws_fetch("api", "kernels", kid, "channels")
    await ws.write_message(execute_request(ALLOCATE))
    doc = await wait_metrics(
        lambda d: (k := kernel_entry(d, kid)) is not None and (k["gpu_memory"] or 0) >= GIB,
        timeout=120,
    )
    assert doc["errors"] == {}

    r = await jp_fetch("metrics")
    families = {f.name: f for f in text_string_to_metric_families(r.body.decode())}
    charged = {
        s.labels["kernel_id"]: s.value for s in families["torchlab_kernel_gpu_memory_bytes"].samples
    }
    assert charged[kid] >= GIB
    totals = families["torchlab_gpu_memory_total_bytes"].samples
    assert {s.labels["uuid"] for s in totals} == {g["uuid"] for g in doc["gpus"]}
    ws.close()


@pytest.mark.gpu
@pytest.mark.slow
async def test_a_kernel_running_matmuls_has_a_gpu_share_and_idle_it_is_flagged_as_holder(
    jp_fetch: Any, jp_ws_fetch: Any, start_kernel: Any, wait_metrics: Any, get_metrics: Any
) -> None:
    doc = await get_metrics()
    if not doc["gpus"]:
        pytest.skip(f"no GPU here: {doc['gpu_reason']}")
    kid = await start_kernel()
    ws = await jp_ws_fetch("api", "kernels", kid, "channels")
    await ws.write_message(execute_request(MATMULS))

    def busy_share(d: dict[str, Any]) -> bool:
        k = kernel_entry(d, kid)
        return (
            k is not None
            and k["execution_state"] == "busy"
            and (k["gpu_memory"] or 0) > 0
            and ((k["gpu_utilization"] or 0) > 20 or k["gpu_utilization_reason"] is not None)
        )

    doc = await wait_metrics(busy_share, timeout=120)
    k = kernel_entry(doc, kid)
    assert k is not None
    if k["gpu_utilization"] is None:
        pytest.skip(f"this GPU reports no per-process utilisation: {k['gpu_utilization_reason']}")
    assert k["gpu_devices"], k
    assert k["gpu_waiting"] is None  # the GPU works
    r = await jp_fetch("metrics")
    families = {f.name: f for f in text_string_to_metric_families(r.body.decode())}
    shares = {
        s.labels["kernel_id"]: s.value
        for s in families["torchlab_kernel_gpu_utilization_percent"].samples
    }
    assert shares[kid] > 0

    # the loop ends; idle, it still holds `a`: flagged after gpu_idle_warn
    doc = await wait_metrics(
        lambda d: (k := kernel_entry(d, kid)) is not None and k["holding_idle"] is not None,
        timeout=60,
    )
    k = kernel_entry(doc, kid)
    assert k is not None
    assert k["execution_state"] == "idle"
    assert k["holding_idle"]["bytes"] >= 64 * 2**20
    assert k["holding_idle"]["seconds"] >= 1.0
    ws.close()
