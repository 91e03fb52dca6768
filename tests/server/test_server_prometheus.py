"""torchlab_* gauges on the server's own /metrics."""

from __future__ import annotations

from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from tornado.httpclient import HTTPClientError

from .conftest import kernel_entry


async def scrape(jp_fetch: Any) -> dict[str, Any]:
    r = await jp_fetch("metrics")
    return {f.name: f for f in text_string_to_metric_families(r.body.decode())}


@pytest.mark.slow
async def test_gauges_parse_and_carry_host_and_kernel_series(
    jp_fetch: Any, start_kernel: Any, wait_metrics: Any
) -> None:
    kid = await start_kernel()
    await wait_metrics(lambda d: (k := kernel_entry(d, kid)) and k["memory"] is not None)
    families = await scrape(jp_fetch)

    for name in (
        "torchlab_host_cpu_percent",
        "torchlab_host_memory_used_bytes",
        "torchlab_host_memory_total_bytes",
        "torchlab_kernels",
        "torchlab_kernel_busy",
        "torchlab_kernel_cpu_percent",
        "torchlab_kernel_memory_bytes",
        "torchlab_gpu_utilization_percent",
        "torchlab_gpu_memory_used_bytes",
    ):
        assert name in families, name
        assert families[name].type == "gauge"

    (kernels,) = families["torchlab_kernels"].samples
    assert kernels.value >= 1
    memory = {s.labels["kernel_id"]: s for s in families["torchlab_kernel_memory_bytes"].samples}
    assert memory[kid].labels["kernel_name"] == "python3"
    assert memory[kid].value > 10_000_000
    busy = {s.labels["kernel_id"]: s.value for s in families["torchlab_kernel_busy"].samples}
    assert busy[kid] in (0.0, 1.0)

    # a kernel that is gone loses its series
    await jp_fetch("api", "kernels", kid, method="DELETE")
    await wait_metrics(lambda d: kernel_entry(d, kid) is None)
    await wait_metrics(lambda d: True)  # one more sample so the exporter has seen the change
    families = await scrape(jp_fetch)
    ids = {s.labels["kernel_id"] for s in families["torchlab_kernel_memory_bytes"].samples}
    assert kid not in ids


async def test_metrics_endpoint_still_requires_a_token(jp_fetch: Any) -> None:
    with pytest.raises(HTTPClientError) as e:
        await jp_fetch("metrics", headers={"Authorization": ""})
    assert e.value.code in (401, 403)


def test_loading_the_exporter_twice_reuses_the_registered_gauges() -> None:
    from prometheus_client import REGISTRY

    from jupyter_torchlab.server.prometheus import PrometheusExporter

    first, second = PrometheusExporter(), PrometheusExporter()
    doc = {
        "time": 100.0,
        "host": {"cpu_percent": 12.5, "cpu_count": 4, "memory_used": 1, "memory_total": 8},
        "gpus": [{"index": 0, "name": "Fake", "uuid": "GPU-1", "utilization_gpu": 40}],
        "kernels": [
            {
                "id": "k1",
                "name": "python3",
                "execution_state": "busy",
                "busy_since": 90.0,
                "cpu_percent": 99.0,
                "memory": 5,
                "gpu_memory": None,
            },
        ],
    }
    second.update(doc)
    assert REGISTRY.get_sample_value("torchlab_host_cpu_percent") == 12.5
    labels = {"kernel_id": "k1", "kernel_name": "python3", "path": ""}
    assert REGISTRY.get_sample_value("torchlab_kernel_busy_seconds", labels) == 10.0
    assert REGISTRY.get_sample_value("torchlab_kernel_gpu_memory_bytes", labels) is None
    gpu = {"gpu": "0", "name": "Fake", "uuid": "GPU-1"}
    assert REGISTRY.get_sample_value("torchlab_gpu_utilization_percent", gpu) == 40

    second.update({**doc, "kernels": [], "gpus": []})
    assert REGISTRY.get_sample_value("torchlab_kernel_busy", labels) is None
    assert REGISTRY.get_sample_value("torchlab_gpu_utilization_percent", gpu) is None
    first.close()
    second.close()
