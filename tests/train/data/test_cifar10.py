from __future__ import annotations

import hashlib
import json
import pickle
import time

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader
from torchvision.datasets import CIFAR10

from jupyter_torchlab.train.data import (
    CIFAR10_CLASSES,
    DatasetError,
    InMemoryDataset,
    StandInCIFAR10,
    cifar10,
    write_standin,
)
from jupyter_torchlab.train.data.files import FOLDER, MARKER

SMALL = (100, 50)
UNREACHABLE = "http://127.0.0.1:9/cifar-10-python.tar.gz"  # discard port: refused at once


def _md5s(folder):
    return {p.name: hashlib.md5(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def test_standin_is_cifar10_on_disk_format(tmp_path):
    folder = write_standin(tmp_path, seed=3, size=SMALL)
    assert folder == tmp_path / FOLDER
    names = {p.name for p in folder.iterdir()}
    assert {f"data_batch_{i}" for i in range(1, 6)} | {"test_batch", "batches.meta"} <= names
    # the recipe from the CIFAR-10 web page: keys come back as bytes, like the original files
    with open(folder / "data_batch_1", "rb") as f:
        batch = pickle.load(f, encoding="bytes")
    assert batch[b"data"].dtype == np.uint8
    assert batch[b"data"].shape == (20, 3072)
    assert len(batch[b"labels"]) == 20
    assert all(0 <= v < 10 for v in batch[b"labels"])
    with open(folder / "batches.meta", "rb") as f:
        meta = pickle.load(f, encoding="bytes")
    assert [n.decode() for n in meta[b"label_names"]] == list(CIFAR10_CLASSES)
    with open(folder / "test_batch", "rb") as f:
        assert pickle.load(f, encoding="latin1")["data"].shape == (50, 3072)


def test_torchvision_reads_it_only_with_the_recorded_checksums(tmp_path):
    write_standin(tmp_path, seed=0, size=SMALL)
    # torchvision's own class with CIFAR-10's real md5s refuses it: it can't pass for CIFAR-10
    with pytest.raises(RuntimeError, match="not found or corrupted"):
        CIFAR10(str(tmp_path), train=True)
    train = StandInCIFAR10(tmp_path, train=True)
    test = StandInCIFAR10(tmp_path, train=False)
    assert isinstance(train, CIFAR10)
    assert len(train) == 100
    assert len(test) == 50
    assert train.classes == list(CIFAR10_CLASSES)
    assert "NOT CIFAR-10" in repr(train)
    marker = json.loads((tmp_path / FOLDER / MARKER).read_text())
    assert "NOT the CIFAR-10" in marker["what"]
    assert marker["md5"]["data_batch_1"] == train.train_list[0][1]


def test_deterministic_by_seed(tmp_path):
    a = _md5s(write_standin(tmp_path / "a", seed=1, size=SMALL))
    b = _md5s(write_standin(tmp_path / "b", seed=1, size=SMALL))
    c = _md5s(write_standin(tmp_path / "c", seed=2, size=SMALL))
    assert a == b
    assert a["data_batch_1"] != c["data_batch_1"]


def test_classes_are_balanced_and_distinct(tmp_path):
    ds = StandInCIFAR10(write_standin(tmp_path, seed=0, size=(1000, 10)).parent)
    counts = np.bincount(ds.targets, minlength=10)
    assert counts.min() >= 80
    # class means differ: there is signal to learn (not just noise)
    means = np.stack([ds.data[np.array(ds.targets) == k].mean(0) for k in range(10)])
    assert np.abs(means[0] - means[1]).mean() > 1.0


def test_cifar10_offline_falls_back_fast_and_says_so(tmp_path, capsys):
    t0 = time.monotonic()
    data = cifar10(tmp_path, url=UNREACHABLE, timeout=2, standin_size=SMALL)
    assert time.monotonic() - t0 < 20
    assert data.standin is True
    assert "NOT CIFAR-10" in repr(data)
    err = capsys.readouterr().err
    assert "these are NOT the CIFAR-10 images" in err
    assert "could not be loaded" in err
    assert (tmp_path / FOLDER / MARKER).exists()
    assert not (tmp_path / "cifar-10-python.tar.gz").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging left
    assert data.classes == CIFAR10_CLASSES
    x, y = data.train[0]
    assert x.shape == (3, 32, 32)
    assert x.dtype == torch.float32
    assert float(x.min()) >= -1.0
    assert float(x.max()) <= 1.0
    assert isinstance(y, int)


def test_existing_standin_is_reused_without_network(tmp_path, capsys, monkeypatch):
    cifar10(tmp_path, download=False, standin_size=SMALL)
    before = _md5s(tmp_path / FOLDER)

    def no_download(*args, **kwargs):
        raise AssertionError("must not try the network when a stand-in is there")

    monkeypatch.setattr("jupyter_torchlab.train.data.load._download", no_download)
    again = cifar10(tmp_path, standin_size=SMALL)
    assert again.standin
    assert _md5s(tmp_path / FOLDER) == before
    assert "NOT the CIFAR-10" in capsys.readouterr().err  # said again on every load
    # a different seed or size rebuilds it
    cifar10(tmp_path, seed=5, standin_size=SMALL)
    assert _md5s(tmp_path / FOLDER)["data_batch_1"] != before["data_batch_1"]


def test_root_from_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCHLAB_DATA", str(tmp_path / "envdata"))
    data = cifar10(download=False, standin_size=SMALL)
    assert data.root == tmp_path / "envdata"
    assert (tmp_path / "envdata" / FOLDER / MARKER).exists()


def test_partial_real_folder_is_an_error_that_says_what_to_do(tmp_path):
    folder = tmp_path / FOLDER
    folder.mkdir()
    (folder / "data_batch_1").write_bytes(b"not really")
    with pytest.raises(DatasetError) as info:
        cifar10(tmp_path, standin_size=SMALL)
    msg = str(info.value)
    assert "incomplete or corrupted" in msg
    assert "data_batch_2 is missing" in msg
    assert "data_batch_1 has the wrong checksum" in msg
    assert "Delete it" in msg
    assert "cifar-10-python.tar.gz" in msg


def test_damaged_standin_is_an_error(tmp_path):
    write_standin(tmp_path, size=SMALL)
    path = tmp_path / FOLDER / "test_batch"
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(DatasetError, match=r"stand-in dataset .* is damaged: test_batch does not"):
        cifar10(tmp_path, standin_size=SMALL)


def test_standin_false_refuses_the_standin(tmp_path):
    with pytest.raises(DatasetError, match="could not be downloaded"):
        cifar10(tmp_path, url=UNREACHABLE, timeout=2, standin=False)
    write_standin(tmp_path, size=SMALL)
    with pytest.raises(DatasetError, match="holds the synthetic stand-in"):
        cifar10(tmp_path, standin=False, standin_size=SMALL)


def test_sizes_in_memory_and_loaders(tmp_path):
    data = cifar10(tmp_path, download=False, standin_size=SMALL, train_size=30, test_size=10)
    assert len(data.train) == 30
    assert len(data.test) == 10
    assert isinstance(data.train, CIFAR10)  # still torchvision's class after slicing
    fast = cifar10(
        tmp_path,
        download=False,
        standin_size=SMALL,
        train_size=30,
        in_memory=True,
        loaders=True,
        batch_size=8,
    )
    assert isinstance(fast.train, InMemoryDataset)
    assert fast.train.classes == list(CIFAR10_CLASSES)
    for i in (0, 7, 29):  # same values as ToTensor + Normalize per image
        x_mem, y_mem = fast.train[i]
        x_ref, y_ref = data.train[i]
        torch.testing.assert_close(x_mem, x_ref, rtol=0, atol=1e-6)
        assert int(y_mem) == y_ref
    assert isinstance(fast.train_loader, DataLoader)
    x, y = next(iter(fast.train_loader))
    assert x.shape == (8, 3, 32, 32)
    assert y.dtype == torch.int64
    assert len(fast.test_loader.dataset) == 50
