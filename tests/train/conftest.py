from __future__ import annotations

import pytest

from jupyter_torchlab.train.data import CIFAR10Data, cifar10


@pytest.fixture(scope="session")
def standin_root(tmp_path_factory: pytest.TempPathFactory):
    """A small stand-in written once per test session (no network)."""
    root = tmp_path_factory.mktemp("cifar")
    cifar10(root, standin=True, standin_size=(1000, 300))
    return root


@pytest.fixture(scope="session")
def standin(standin_root) -> CIFAR10Data:
    return cifar10(standin_root, standin=True, standin_size=(1000, 300), in_memory=True)


@pytest.fixture(autouse=True, scope="session")
def _one_thread():
    """Train on one thread: the suite shares two cores, and spinning OpenMP threads crawl then."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
