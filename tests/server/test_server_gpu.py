"""On a machine with an NVIDIA GPU: GPUs and a kernel's GPU memory, over REST and Prometheus."""

from __future__ import annotations

from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from .conftest import execute_request, kernel_entry

GIB = 2**30
# 1 GiB of float32 on the first GPU
ALLOCATE = "import torch\nx = torch.ones(256 * 2**20, device='cuda')\ntorch.cuda.synchronize()"


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
