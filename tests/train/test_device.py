from __future__ import annotations

import pytest
import torch

from jupyter_torchlab.train import device as dmod
from jupyter_torchlab.train.device import available_devices, describe_device, pick_device


@pytest.fixture
def no_accelerators(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    monkeypatch.setattr(dmod, "_count", lambda kind: 0)
    if hasattr(torch, "accelerator"):
        monkeypatch.setattr(torch.accelerator, "is_available", lambda: False)


@pytest.fixture
def two_cuda(monkeypatch):
    """Pretend torch sees two CUDA devices (this machine has none)."""
    monkeypatch.setattr(dmod, "_count", lambda kind: 2 if kind == "cuda" else 0)
    if hasattr(torch, "accelerator"):
        monkeypatch.setattr(torch.accelerator, "is_available", lambda: True)
        monkeypatch.setattr(
            torch.accelerator, "current_accelerator", lambda *a: torch.device("cuda")
        )
        monkeypatch.setattr(torch.accelerator, "current_device_index", lambda: 0)


def test_auto_is_cpu_without_accelerators(no_accelerators):
    assert pick_device() == torch.device("cpu")
    assert pick_device("auto") == torch.device("cpu")
    assert pick_device(None) == torch.device("cpu")
    assert available_devices() == ["cpu"]


def test_explicit_cpu_and_device_objects():
    assert pick_device("cpu") == torch.device("cpu")
    assert pick_device(torch.device("cpu")) == torch.device("cpu")
    assert pick_device(" CPU ") == torch.device("cpu")


def test_absent_cuda_names_what_is_available(no_accelerators):
    with pytest.raises(ValueError, match=r"CUDA was asked for but is not.*available: cpu"):
        pick_device("cuda")
    with pytest.raises(ValueError, match=r"MPS .*available: cpu"):
        pick_device("mps")


def test_unknown_name_is_a_value_error():
    with pytest.raises(ValueError, match="'gpu' is not a device name"):
        pick_device("gpu")
    with pytest.raises(ValueError, match="not supported for training"):
        pick_device("meta")


def test_auto_prefers_the_accelerator(two_cuda):
    assert pick_device() == torch.device("cuda", 0)
    assert pick_device("cuda") == torch.device("cuda", 0)
    assert pick_device("cuda:1") == torch.device("cuda", 1)
    assert available_devices() == ["cuda:0", "cuda:1", "cpu"]


def test_out_of_range_index(two_cuda):
    with pytest.raises(ValueError, match=r"cuda:2 is out of range.*2 CUDA devices.*cuda:1, cpu"):
        pick_device("cuda:2")


def test_auto_without_torch_accelerator_falls_back_to_backends(monkeypatch):
    monkeypatch.delattr(torch, "accelerator", raising=False)
    monkeypatch.setattr(dmod, "_count", lambda kind: 1 if kind == "mps" else 0)
    assert pick_device() == torch.device("mps")
    monkeypatch.setattr(dmod, "_count", lambda kind: 0)
    assert pick_device() == torch.device("cpu")


def test_describe_cpu():
    info = describe_device("cpu")
    assert info.device == "cpu"
    assert info.name
    assert info.count == torch.get_num_threads()
    assert info.memory_total is None or info.memory_total > 2**20
    text = str(info)
    assert text.startswith("cpu: ")
    assert "threads" in text
    assert info.as_dict()["device"] == "cpu"


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs an NVIDIA GPU")
def test_describe_real_cuda():
    info = describe_device("cuda")
    assert info.device == "cuda:0"
    assert info.memory_total
    assert info.memory_total > 2**30
    assert info.capability
    assert "." in info.capability
    assert pick_device() == torch.device("cuda", torch.cuda.current_device())
