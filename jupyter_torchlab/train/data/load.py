"""CIFAR-10 for the tutorial: the real data when here or downloadable, else a labelled stand-in.

The stand-in is written in CIFAR-10's own on-disk format (``cifar-10-batches-py/data_batch_1..5``,
``test_batch``, ``batches.meta``: pickled dicts with ``data`` (uint8, N x 3072, channel-major rows),
``labels`` and ``label_names``, keys stored as Python-2 strings exactly like the original files) and
is read back by torchvision's own :class:`~torchvision.datasets.CIFAR10` class.

Honesty about what is loaded:

* torchvision checks every file against the md5 of the real CIFAR-10. The stand-in cannot match
  those, so it is loaded through :class:`StandInCIFAR10`, a subclass that only swaps the expected
  checksums for the ones recorded in the marker file ``TORCHLAB_STANDIN.json`` when the stand-in was
  written. torchvision's integrity check still runs, so a damaged stand-in is caught too.
* The marker file (and ``README_NOT_CIFAR10.txt`` beside it) stays in the folder; real CIFAR-10 is
  only ever recognised by torchvision's real checksums, so the stand-in cannot pass for it later.
* Every load of the stand-in prints a notice to stderr and sets ``result.standin = True``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import sys
import tarfile
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, TensorDataset
from torchvision.datasets import CIFAR10

from .files import (
    FOLDER,
    MARKER,
    README,
    DatasetError,
    read_marker,
    real_problems,
    standin_problems,
)
from .standin import DEFAULT_STANDIN_SIZE, STANDIN_VERSION, StandInCIFAR10, write_standin

__all__ = ["CIFAR10Data", "InMemoryDataset", "cifar10"]

# the tutorial's transform: ToTensor() then Normalize((0.5,)*3, (0.5,)*3)
MEAN = (0.5, 0.5, 0.5)
STD = (0.5, 0.5, 0.5)


@contextlib.contextmanager
def _socket_timeout(seconds: float) -> Iterator[None]:
    # torchvision's urlopen has no timeout argument; the default socket timeout is what bounds it
    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(old)


def _download(root: Path, url: str, timeout: float) -> str | None:
    """Download and unpack the real CIFAR-10 into ``root``; return None, or why it failed."""
    from torchvision.datasets.utils import check_integrity, download_and_extract_archive

    cls = CIFAR10
    archive = root / cls.filename
    staging = Path(tempfile.mkdtemp(prefix=".cifar10-download.", dir=root))
    try:
        with _socket_timeout(timeout):
            download_and_extract_archive(
                url, str(root), extract_root=str(staging), filename=cls.filename, md5=cls.tgz_md5
            )
        extracted = staging / FOLDER
        problems = real_problems(extracted)
        if problems:
            return f"the archive did not contain CIFAR-10 ({'; '.join(problems)})"
        os.replace(extracted, root / FOLDER)
        return None
    except (OSError, RuntimeError, EOFError, tarfile.TarError, ValueError) as err:
        if archive.exists() and not check_integrity(str(archive), cls.tgz_md5):
            archive.unlink()  # a partial download would only be retried anyway
        return f"{type(err).__name__}: {err}"
    finally:
        shutil.rmtree(staging, ignore_errors=True)


_ANNOUNCED: set[str] = set()


def _notice(folder: Path, why: str | None) -> str:
    bar = "=" * 78
    lines = [
        bar,
        "NOTE: these are NOT the CIFAR-10 images.",
        f"jupyter-torchlab is using a synthetic stand-in in {folder}",
        "(same file format and class names; each class is a coloured pattern with noise).",
        "Accuracies measured on it say nothing about CIFAR-10.",
    ]
    if why:
        lines.append(f"The real dataset could not be loaded: {why}")
    lines += [
        "To use the real data: delete that folder and run again with network access,",
        "or put cifar-10-python.tar.gz (from https://www.cs.toronto.edu/~kriz/cifar.html)",
        f"into {folder.parent}.",
        bar,
    ]
    return "\n".join(lines)


class InMemoryDataset(TensorDataset):
    """Images already transformed into one float tensor: fast to batch, same values as on disk."""

    def __init__(
        self, images: torch.Tensor, targets: torch.Tensor, classes: Sequence[str], standin: bool
    ) -> None:
        super().__init__(images, targets)
        self.classes = list(classes)
        self.standin = standin

    @property
    def targets(self) -> torch.Tensor:
        """Return the labels (int64)."""
        return self.tensors[1]


def _to_memory(ds: Any, standin: bool) -> InMemoryDataset:
    # same arithmetic as ToTensor() + Normalize(MEAN, STD), once for the whole array
    x = torch.from_numpy(np.ascontiguousarray(ds.data)).permute(0, 3, 1, 2).float().div(255)
    x = x.sub_(torch.tensor(MEAN).view(1, 3, 1, 1)).div_(torch.tensor(STD).view(1, 3, 1, 1))
    y = torch.as_tensor(ds.targets, dtype=torch.int64)
    return InMemoryDataset(x.contiguous(), y, ds.classes, standin)


@dataclass
class CIFAR10Data:
    """What :func:`cifar10` returns: datasets, class names, loaders on request, and provenance."""

    train: Dataset[Any]
    test: Dataset[Any]
    classes: tuple[str, ...]
    standin: bool  # True: synthetic images in CIFAR-10's format, NOT CIFAR-10
    root: Path
    train_loader: DataLoader[Any] | None = None
    test_loader: DataLoader[Any] | None = None
    notice: str | None = field(default=None, repr=False)

    def __repr__(self) -> str:
        kind = "STAND-IN (synthetic, NOT CIFAR-10)" if self.standin else "CIFAR-10"
        return (
            f"CIFAR10Data({kind}: {len(self.train)} train / {len(self.test)} test images "  # type: ignore[arg-type]
            f"in {self.root / FOLDER}, classes={list(self.classes)})"
        )


def _resolve_root(root: str | os.PathLike[str] | None) -> Path:
    if root is None:
        root = os.environ.get("TORCHLAB_DATA") or "data"
    return Path(root).expanduser()


@contextlib.contextmanager
def _prepare_lock(root: Path) -> Iterator[None]:
    """Hold an exclusive lock on the ``root`` folder itself (no lock file is left behind)."""
    try:
        import fcntl
    except ImportError:  # Windows: no flock; concurrent first runs there are on the user
        yield
        return
    try:
        root.mkdir(parents=True, exist_ok=True)
        fd = os.open(root, os.O_RDONLY)
    except OSError:  # e.g. a read-only parent: nothing can be written there, so nothing races
        yield
        return
    try:
        with contextlib.suppress(OSError):  # a file system without locks: go on unlocked
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def cifar10(
    root: str | os.PathLike[str] | None = None,
    *,
    train_size: int | None = None,
    test_size: int | None = None,
    loaders: bool = False,
    batch_size: int = 4,
    num_workers: int = 0,
    seed: int = 0,
    download: bool = True,
    standin: bool | None = None,
    standin_size: tuple[int, int] = DEFAULT_STANDIN_SIZE,
    in_memory: bool = False,
    url: str | None = None,
    timeout: float = 10.0,
) -> CIFAR10Data:
    """Load CIFAR-10 with the tutorial's transforms, or an offline stand-in that says so.

    ``root`` defaults to ``$TORCHLAB_DATA`` or ``"data"``. In order: the real CIFAR-10 under root
    (checked by torchvision's md5s); a stand-in already written there; torchvision's download (when
    ``download``; each network wait is bounded by ``timeout`` seconds); else a new stand-in of
    ``standin_size`` (train, test) images drawn from ``seed``. ``standin=True`` skips the real data,
    ``standin=False`` raises instead of building one. ``train_size``/``test_size`` keep the first
    N images; ``in_memory=True`` applies the (deterministic) transform once up front and returns
    tensor datasets with identical values, which is much faster to batch on a CPU; ``loaders=True``
    adds ``train_loader`` (shuffled with ``seed``) and ``test_loader``.

    A folder that is neither intact CIFAR-10 nor an intact stand-in raises :class:`DatasetError`
    naming the bad files.
    """
    import torchvision.transforms as T

    root_path = _resolve_root(root)
    folder = root_path / FOLDER
    why: str | None = None
    is_standin: bool

    # one process prepares the folder while the others wait, then find it ready (torchrun
    # starts every rank on the same root at once)
    with _prepare_lock(root_path):
        if folder.is_dir() and (folder / MARKER).exists():
            marker = read_marker(folder)
            problems = standin_problems(folder, marker)
            if problems and not real_problems(folder):
                # real CIFAR-10 was unpacked over an old stand-in: the stale marker must go
                (folder / MARKER).unlink()
                (folder / README).unlink(missing_ok=True)
                is_standin = False
            elif problems:
                raise DatasetError(
                    f"the stand-in dataset in {folder} is damaged: {'; '.join(problems)}. "
                    f"Delete the folder (rm -r {folder}) and run again to rebuild it."
                )
            else:
                is_standin = True
                wanted = (seed, int(standin_size[0]), int(standin_size[1]))
                have = (marker.get("seed"), marker.get("train_size"), marker.get("test_size"))
                if standin is False:
                    raise DatasetError(
                        f"{folder} holds the synthetic stand-in, not CIFAR-10, and "
                        "standin=False was given. Delete the folder and run again online, or "
                        f"place cifar-10-python.tar.gz in {root_path}."
                    )
                if have != wanted or marker.get("version") != STANDIN_VERSION:
                    write_standin(root_path, seed=seed, size=standin_size)
        elif folder.exists():
            problems = real_problems(folder)
            if problems:
                raise DatasetError(
                    f"the CIFAR-10 folder {folder} is incomplete or corrupted: "
                    f"{'; '.join(problems)}. Delete it (rm -r {folder}) and run again to download "
                    "CIFAR-10 (or build the offline stand-in), or put the original files from "
                    "cifar-10-python.tar.gz there."
                )
            if standin:
                raise DatasetError(
                    f"{folder} holds the real CIFAR-10; use another root for the stand-in "
                    "(standin=True writes to the same folder name)."
                )
            is_standin = False
        else:
            is_standin = True
            if standin:
                why = "standin=True was given"
            elif download:
                root_path.mkdir(parents=True, exist_ok=True)
                why = _download(root_path, url or CIFAR10.url, timeout)
                is_standin = why is not None
            else:
                why = "download=False and no CIFAR-10 folder is there"
            if is_standin:
                if standin is False:
                    raise DatasetError(
                        f"CIFAR-10 is not in {folder} and could not be downloaded ({why}); "
                        f"put cifar-10-python.tar.gz in {root_path}, or allow the stand-in."
                    )
                write_standin(root_path, seed=seed, size=standin_size)

    transform = T.Compose([T.ToTensor(), T.Normalize(MEAN, STD)])
    cls = StandInCIFAR10 if is_standin else CIFAR10
    try:
        train = cls(str(root_path), train=True, transform=transform)
        test = cls(str(root_path), train=False, transform=transform)
    except RuntimeError as err:
        raise DatasetError(
            f"torchvision could not read {folder}: {err}. Delete the folder and run again."
        ) from err
    train.standin = test.standin = is_standin
    for ds, size in ((train, train_size), (test, test_size)):
        if size is not None:
            if size < 1:
                raise ValueError(f"train_size/test_size must be >= 1, got {size}")
            # slicing keeps torchvision's class (and its .classes), unlike a Subset
            ds.data = ds.data[:size]
            ds.targets = ds.targets[:size]

    notice = _notice(folder, why) if is_standin else None
    if notice:
        # the full notice once per folder and process; a one-line reminder after that, so a
        # notebook that loads the data twice does not bury its output in repeated banners
        key = str(folder.resolve())
        if key in _ANNOUNCED:
            print(f"(stand-in data from {folder}: NOT CIFAR-10)", file=sys.stderr, flush=True)
        else:
            _ANNOUNCED.add(key)
            print(notice, file=sys.stderr, flush=True)

    result = CIFAR10Data(
        train=_to_memory(train, is_standin) if in_memory else train,
        test=_to_memory(test, is_standin) if in_memory else test,
        classes=tuple(train.classes),
        standin=is_standin,
        root=root_path,
        notice=notice,
    )
    if loaders:
        gen = torch.Generator().manual_seed(seed)
        result.train_loader = DataLoader(
            result.train,
            batch_size=batch_size,
            shuffle=True,
            num_workers=num_workers,
            generator=gen,
        )
        result.test_loader = DataLoader(
            result.test, batch_size=batch_size, shuffle=False, num_workers=num_workers
        )
    return result
