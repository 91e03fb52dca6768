from __future__ import annotations

import logging
import os
import sys
from types import SimpleNamespace

import pytest

from jupyter_torchlab.metrics.gpu import GpuProcess, GpuSampler

from .fake_nvml import (
    NVML_ERROR_DRIVER_NOT_LOADED,
    NVML_ERROR_GPU_IS_LOST,
    NVML_ERROR_LIBRARY_NOT_FOUND,
    NVML_ERROR_NOT_SUPPORTED,
    FakeNvml,
    device,
    error,
    proc,
)

GiB = 1 << 30


def sampler(nvml, environ=None, **kwargs):
    return GpuSampler(nvml, environ={} if environ is None else environ, **kwargs)


def test_reads_every_field_of_every_device():
    me = os.getpid()
    nvml = FakeNvml([device(0, compute=[proc(me, 3 * GiB)]), device(1)])
    reading = sampler(nvml).sample()
    assert reading.reason is None
    assert reading.process_memory_known
    first, second = reading.gpus
    assert (first.index, first.name, first.source) == (0, "NVIDIA Fake 0", "nvml")
    assert first.uuid.startswith("GPU-00000000")
    assert (first.utilization_gpu, first.utilization_memory) == (50.0, 10.0)
    assert (first.memory_used, first.memory_total) == (GiB, 80 * GiB)
    assert first.temperature == 40.0
    assert first.power_watts == 150.0
    assert first.power_limit_watts == 700.0
    assert first.processes == (GpuProcess(me, 3 * GiB, "compute"),)
    assert second.index == 1
    assert second.processes == ()


def test_compute_and_graphics_processes_merge_per_pid():
    me, parent = os.getpid(), os.getppid()
    nvml = FakeNvml(
        [device(0, compute=[proc(me, GiB), proc(parent, None)], graphics=[proc(me, GiB)])]
    )
    (gpu,) = sampler(nvml).sample().gpus
    assert [p.pid for p in gpu.processes] == sorted([me, parent])
    by_pid = {p.pid: p for p in gpu.processes}
    assert by_pid[me] == GpuProcess(me, GiB, "compute+graphics")
    assert by_pid[parent] == GpuProcess(parent, None, "compute")


def test_not_supported_field_is_none_and_the_rest_is_read():
    unsupported = error(NVML_ERROR_NOT_SUPPORTED)
    nvml = FakeNvml([device(0, temperature=unsupported, power=unsupported, util=unsupported)])
    reading = sampler(nvml).sample()
    (gpu,) = reading.gpus
    assert (gpu.temperature, gpu.power_watts, gpu.utilization_gpu) == (None, None, None)
    assert gpu.name == "NVIDIA Fake 0"
    assert gpu.memory_used == GiB
    assert gpu.power_limit_watts == 700.0
    assert reading.reason is None


@pytest.mark.parametrize(
    ("code", "words"),
    [
        (NVML_ERROR_LIBRARY_NOT_FOUND, "--gpus all"),
        (NVML_ERROR_DRIVER_NOT_LOADED, "driver is not loaded"),
    ],
)
def test_init_failure_is_a_reason_retried_with_backoff(code, words, caplog):
    now = [0.0]
    nvml = FakeNvml([device(0)], init_error=error(code))
    gpu = sampler(nvml, clock=lambda: now[0], retry_after=10.0)
    with caplog.at_level(logging.INFO, logger="jupyter_torchlab.metrics"):
        for _ in range(5):
            reading = gpu.sample()
            assert reading.gpus == ()
            assert words in reading.reason
    assert nvml.init_calls == 1  # not once per tick
    assert len([r for r in caplog.records if words in r.getMessage()]) == 1  # one hint

    now[0] = 10.0
    gpu.sample()
    assert nvml.init_calls == 2
    now[0] = 25.0  # the delay doubled to 20 s
    gpu.sample()
    assert nvml.init_calls == 2
    nvml.init_error = None  # the driver came back
    now[0] = 30.0
    reading = gpu.sample()
    assert nvml.init_calls == 3
    assert reading.reason is None
    assert len(reading.gpus) == 1


def test_gpu_lost_mid_read_keeps_what_was_read_and_the_other_devices():
    lost = error(NVML_ERROR_GPU_IS_LOST)
    nvml = FakeNvml([device(0), device(1, memory=lost)])
    gpu = sampler(nvml)
    reading = gpu.sample()
    ok, partial = reading.gpus
    assert ok.memory_used == GiB
    assert ok.temperature == 40.0
    assert partial.name == "NVIDIA Fake 1"  # read before the device dropped
    assert partial.memory_used is None
    assert partial.temperature is None
    assert "GPU 1" in reading.reason
    assert "lost" in reading.reason
    assert not reading.process_memory_known

    nvml.devices[1]["memory"] = nvml.devices[0]["memory"]  # reset: the device answers again
    reading = gpu.sample()
    assert reading.reason is None
    assert reading.gpus[1].memory_used == GiB


def test_device_that_cannot_be_opened_does_not_hide_the_others():
    nvml = FakeNvml([device(0, handle=error(NVML_ERROR_GPU_IS_LOST)), device(1)])
    reading = sampler(nvml).sample()
    assert [g.index for g in reading.gpus] == [1]
    assert "GPU 0" in reading.reason


def test_nvml_errors_after_init_never_raise():
    nvml = FakeNvml([device(0)])
    nvml.nvmlDeviceGetCount = lambda: (_ for _ in ()).throw(error(NVML_ERROR_DRIVER_NOT_LOADED))
    reading = sampler(nvml).sample()
    assert reading.gpus == ()
    assert "driver is not loaded" in reading.reason


@pytest.mark.parametrize(
    ("visible", "indices"),
    [
        ("1", [1]),
        ("2,0", [2, 0]),
        ("GPU-00000001", [1]),  # a unique UUID prefix, as CUDA accepts
        (f"GPU-{2:08d}-aaaa-bbbb-cccc-{2:012d}", [2]),
        ("0,7,1", [0]),  # CUDA stops at the first invalid entry
        ("GPU-0000", []),  # ambiguous prefix: invalid
    ],
)
def test_cuda_visible_devices(visible, indices):
    nvml = FakeNvml([device(0), device(1), device(2)])
    reading = sampler(nvml, {"CUDA_VISIBLE_DEVICES": visible}).sample()
    assert [g.index for g in reading.gpus] == indices


@pytest.mark.parametrize("visible", ["", "-1", "NoDevFiles"])
def test_cuda_visible_devices_hiding_everything(visible):
    reading = sampler(FakeNvml([device(0)]), {"CUDA_VISIBLE_DEVICES": visible}).sample()
    assert reading.gpus == ()
    assert "CUDA_VISIBLE_DEVICES" in reading.reason


def test_invalid_entry_is_explained():
    reading = sampler(FakeNvml([device(0)]), {"CUDA_VISIBLE_DEVICES": "0,5"}).sample()
    assert [g.index for g in reading.gpus] == [0]
    assert "'5'" in reading.reason


def test_mig_uuid_best_effort():
    nvml = FakeNvml([device(0), device(1)])
    mig = device(9, name="MIG 1g.10gb", uuid="MIG-1234", util=error(NVML_ERROR_NOT_SUPPORTED))
    nvml.mig["MIG-1234"] = (1, mig)
    reading = sampler(nvml, {"CUDA_VISIBLE_DEVICES": "MIG-1234"}).sample()
    (gpu,) = reading.gpus
    assert (gpu.index, gpu.name, gpu.utilization_gpu, gpu.memory_used) == (
        1,
        "MIG 1g.10gb",
        None,
        10 * GiB,
    )


def test_pids_from_another_pid_namespace_make_process_memory_unknown():
    foreign = [proc(4_000_000 + i, GiB) for i in range(2)]  # above Linux's pid_max: not ours
    reading = sampler(FakeNvml([device(0, compute=foreign)])).sample()
    assert not reading.process_memory_known
    assert "--pid=host" in reading.reason
    assert len(reading.gpus[0].processes) == 2


def test_process_lists_not_supported_make_process_memory_unknown():
    unsupported = error(NVML_ERROR_NOT_SUPPORTED)
    reading = sampler(FakeNvml([device(0, compute=unsupported, graphics=unsupported)])).sample()
    assert not reading.process_memory_known
    assert reading.gpus[0].memory_used == GiB


def test_close_shuts_nvml_down_once():
    nvml = FakeNvml([device(0)])
    gpu = sampler(nvml)
    gpu.sample()
    gpu.close()
    gpu.close()
    assert nvml.shutdown_calls == 1


def test_disabled():
    nvml = FakeNvml([device(0)])
    reading = sampler(nvml, enabled=False).sample()
    assert reading.gpus == ()
    assert nvml.init_calls == 0


def test_missing_nvidia_ml_py_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)  # makes `import pynvml` fail
    monkeypatch.delitem(sys.modules, "torch", raising=False)
    reading = GpuSampler().sample()
    assert reading.gpus == ()
    assert "pip install nvidia-ml-py" in reading.reason


def test_real_pynvml_never_raises():
    reading = GpuSampler().sample()
    assert reading.gpus or reading.reason


# -- torch fallback ------------------------------------------------------------------------------


class FakeCuda:
    def __init__(self, initialised: bool):
        self.initialised = initialised

    def is_initialized(self) -> bool:
        return self.initialised

    def is_available(self) -> bool:
        raise AssertionError("is_available() may initialise CUDA: must not be called")

    def device_count(self) -> int:
        return 1

    def get_device_properties(self, i: int):
        return SimpleNamespace(name="Fake CUDA", total_memory=16 * GiB, uuid="abcd")

    def memory_reserved(self, i: int) -> int:
        return 2 * GiB

    def memory_allocated(self, i: int) -> int:
        return GiB


def fake_torch(initialised: bool, mps: bool = False):
    return SimpleNamespace(
        cuda=FakeCuda(initialised),
        backends=SimpleNamespace(mps=SimpleNamespace(is_available=lambda: mps)),
        mps=SimpleNamespace(
            driver_allocated_memory=lambda: 3 * GiB,
            current_allocated_memory=lambda: GiB,
            recommended_max_memory=lambda: 12 * GiB,
        ),
    )


def no_nvml():
    return FakeNvml([], init_error=error(NVML_ERROR_LIBRARY_NOT_FOUND))


def test_torch_fallback_reports_this_process_allocator(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", fake_torch(initialised=True))
    reading = sampler(no_nvml()).sample()
    (gpu,) = reading.gpus
    assert gpu.source == "torch"
    assert (gpu.name, gpu.memory_used, gpu.memory_allocated, gpu.memory_total) == (
        "Fake CUDA",
        2 * GiB,
        GiB,
        16 * GiB,
    )
    assert gpu.utilization_gpu is None
    assert gpu.processes == (GpuProcess(os.getpid(), 2 * GiB, "torch"),)
    assert "PyTorch allocator" in reading.reason


def test_torch_fallback_never_initialises_cuda(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", fake_torch(initialised=False))
    reading = sampler(no_nvml()).sample()
    assert reading.gpus == ()
    assert "--gpus all" in reading.reason


def test_torch_fallback_mps(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", fake_torch(initialised=False, mps=True))
    (gpu,) = sampler(no_nvml()).sample().gpus
    assert (gpu.name, gpu.source, gpu.memory_used, gpu.memory_allocated) == (
        "Apple MPS",
        "torch",
        3 * GiB,
        GiB,
    )


def test_torch_fallback_off_or_torch_not_imported(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", fake_torch(initialised=True))
    assert sampler(no_nvml(), torch_fallback=False).sample().gpus == ()
    monkeypatch.delitem(sys.modules, "torch")
    assert sampler(no_nvml()).sample().gpus == ()
    assert "torch" not in sys.modules  # and it was not imported by us


def test_real_torch_cuda_is_not_initialised_by_sampling():
    torch = pytest.importorskip("torch")
    was = torch.cuda.is_initialized()
    GpuSampler().sample()
    assert torch.cuda.is_initialized() == was


@pytest.mark.gpu
def test_real_nvidia_gpu_is_read():
    pynvml = pytest.importorskip("pynvml")
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        pytest.skip("no NVIDIA driver / GPU here")
    pynvml.nvmlShutdown()
    gpu = GpuSampler()
    reading = gpu.sample()
    gpu.close()
    assert reading.gpus, reading.reason
    first = reading.gpus[0]
    assert first.source == "nvml"
    assert first.name
    assert first.memory_total
    assert first.memory_total > 0


def test_per_process_utilisation_is_the_mean_of_new_samples_and_zero_without_any():
    from .fake_nvml import sample

    me, parent = os.getpid(), os.getppid()  # real pids: not another PID namespace
    dev = device(0, compute=[proc(me, GiB), proc(parent, GiB)])
    dev["samples"] = [sample(me, 10, 80), sample(me, 20, 60), sample(parent, 20, 5)]
    sampler = GpuSampler(FakeNvml([dev]), environ={})
    first = sampler.sample()
    by_pid = {p.pid: p.utilization for p in first.gpus[0].processes}
    assert by_pid == {me: 70.0, parent: 5.0}
    assert first.utilization_reason is None
    # nothing new since the last reading: the driver says "not found", i.e. idle
    again = sampler.sample()
    assert {p.pid: p.utilization for p in again.gpus[0].processes} == {me: 0.0, parent: 0.0}
    dev["samples"].append(sample(me, 30, 90))
    assert {p.pid: p.utilization for p in sampler.sample().gpus[0].processes}[me] == 90.0


def test_per_process_utilisation_not_supported_says_so():
    dev = device(0, compute=[proc(os.getpid(), GiB)], samples=error(NVML_ERROR_NOT_SUPPORTED))
    reading = GpuSampler(FakeNvml([dev]), environ={}).sample()
    assert reading.gpus[0].processes[0].utilization is None
    assert reading.gpus[0].processes[0].memory_used == GiB  # the rest is still read
    assert "per-process GPU utilisation is not reported" in (reading.utilization_reason or "")
    assert reading.reason is None  # not a problem with the GPU itself
