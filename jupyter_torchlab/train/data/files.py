"""The CIFAR-10 folder on disk: file names, class names, checksums, and what is wrong with it.

Both the real data and the stand-in live in ``<root>/cifar-10-batches-py``; the real one is
recognised only by torchvision's own md5s, the stand-in only by the md5s in its marker file.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

__all__ = [
    "CIFAR10_CLASSES",
    "FOLDER",
    "MARKER",
    "META_FILE",
    "README",
    "TEST_FILE",
    "TRAIN_FILES",
    "DatasetError",
    "md5",
    "read_marker",
    "real_problems",
    "standin_problems",
]

FOLDER = "cifar-10-batches-py"
MARKER = "TORCHLAB_STANDIN.json"
README = "README_NOT_CIFAR10.txt"
TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_FILE = "test_batch"
META_FILE = "batches.meta"
CIFAR10_CLASSES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)


class DatasetError(RuntimeError):
    """The dataset folder is there but unusable; the message says what is wrong and what to do."""


def md5(path: Path) -> str:
    """Return the md5 hex digest of a file (the checksum torchvision and the marker use)."""
    h = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_marker(folder: Path) -> dict[str, Any]:
    """Return the stand-in's marker file, or raise DatasetError saying how to rebuild it."""
    try:
        marker = json.loads((folder / MARKER).read_text(encoding="utf-8"))
        if not isinstance(marker.get("md5"), dict):
            raise ValueError("no md5 table")
        return marker
    except (OSError, ValueError) as err:
        raise DatasetError(
            f"{folder / MARKER} is unreadable ({err}); delete the folder {folder} and run again "
            "to rebuild it."
        ) from err


def real_problems(folder: Path) -> list[str]:
    """Return what keeps ``folder`` from being the real CIFAR-10 (empty when it is)."""
    from torchvision.datasets import CIFAR10
    from torchvision.datasets.utils import check_integrity

    cls = CIFAR10
    problems = []
    for name, md5 in [*cls.train_list, *cls.test_list, [cls.meta["filename"], cls.meta["md5"]]]:
        path = folder / name
        if not path.exists():
            problems.append(f"{name} is missing")
        elif not check_integrity(str(path), md5):
            problems.append(f"{name} has the wrong checksum (truncated or modified)")
    return problems


def standin_problems(folder: Path, marker: dict[str, Any]) -> list[str]:
    """Return what keeps ``folder`` from being the stand-in its marker describes (empty: ok)."""
    problems = []
    for name in (*TRAIN_FILES, TEST_FILE, META_FILE):
        path = folder / name
        expected = marker["md5"].get(name)
        if not path.exists():
            problems.append(f"{name} is missing")
        elif expected is None or md5(path) != expected:
            problems.append(f"{name} does not match the checksum recorded in {MARKER}")
    return problems
