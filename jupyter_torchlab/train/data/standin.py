"""The offline stand-in: synthetic images written in CIFAR-10's own on-disk format.

The files are pickled dicts exactly like the originals (``data`` uint8 N x 3072 channel-major
rows, ``labels``, ``label_names``; keys stored as Python-2 strings), and they are read back by
torchvision's own :class:`~torchvision.datasets.CIFAR10` through :class:`StandInCIFAR10`, whose
only change is to expect the md5s recorded in the marker file when the stand-in was written.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import shutil
import tempfile
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from torchvision.datasets import CIFAR10

from .files import (
    CIFAR10_CLASSES,
    FOLDER,
    MARKER,
    META_FILE,
    README,
    TEST_FILE,
    TRAIN_FILES,
    md5,
    read_marker,
)

__all__ = ["DEFAULT_STANDIN_SIZE", "STANDIN_VERSION", "StandInCIFAR10", "write_standin"]

DEFAULT_STANDIN_SIZE = (10_000, 2_000)  # images; a 2-core CPU trains an epoch of this in seconds
STANDIN_VERSION = 2


class _Py2Str(bytes):
    """Bytes pickled as a Python-2 ``str``, as in the original CIFAR-10 files."""


# the pure-Python pickler: its dispatch table can take a custom writer per type
_PurePickler: Any = getattr(pickle, "_Pickler")  # noqa: B009


class _CifarPickler(_PurePickler):
    """Protocol-2 pickler that writes :class:`_Py2Str` with the Python-2 string opcode.

    Loading then behaves like the real files: ``encoding="latin1"`` (torchvision) gives ``str``
    keys, ``encoding="bytes"`` (the CIFAR web page's recipe) gives ``b"data"``-style keys.
    """

    dispatch: ClassVar[dict[type, Any]] = dict(_PurePickler.dispatch)

    def _save_py2str(self, obj: bytes) -> None:
        raw = bytes(obj)
        if len(raw) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(raw)]) + raw)
        else:
            self.write(pickle.BINSTRING + len(raw).to_bytes(4, "little") + raw)
        self.memoize(obj)

    dispatch[_Py2Str] = _save_py2str
    # numpy's pickled pixel buffer too: ~1 byte per pixel on disk, as in the original files
    dispatch[bytes] = _save_py2str


def _dump(obj: Any, path: Path) -> None:
    buf = io.BytesIO()
    _CifarPickler(buf, protocol=2).dump(obj)
    path.write_bytes(buf.getvalue())


def _shape_masks(label: int, dx: np.ndarray, dy: np.ndarray, r: np.ndarray) -> np.ndarray:
    """Return the boolean masks (n x 32 x 32) of one class's shape, centred at (dx, dy) = 0."""
    ax, ay = np.abs(dx), np.abs(dy)
    dist = np.sqrt(dx * dx + dy * dy)
    box = np.maximum(ax, ay) < r * 0.8
    period = np.maximum(r / 2.5, 1.5)
    if label == 0:  # disk
        return dist < r
    if label == 1:  # filled square
        return box
    if label == 2:  # triangle pointing up
        h = r * 0.9
        return (dy > -h) & (dy < h) & (ax < (dy + h) * 0.55)
    if label == 3:  # ring
        return (dist < r) & (dist > r * 0.55)
    if label == 4:  # plus sign
        return ((ax < r / 3) & (ay < r)) | ((ay < r / 3) & (ax < r))
    if label == 5:  # horizontal stripes
        return box & (np.floor(dy / period) % 2 == 0)
    if label == 6:  # vertical stripes
        return box & (np.floor(dx / period) % 2 == 0)
    if label == 7:  # X cross
        return (np.minimum(np.abs(dx - dy), np.abs(dx + dy)) < r / 3.5) & (np.maximum(ax, ay) < r)
    if label == 8:  # checkerboard
        return box & ((np.floor(dx / period) + np.floor(dy / period)) % 2 == 0)
    # 9: two dots side by side
    d = r * 0.5
    return ((dx - d) ** 2 + dy**2 < (r * 0.4) ** 2) | ((dx + d) ** 2 + dy**2 < (r * 0.4) ** 2)


def _hue_rgb(h: np.ndarray) -> np.ndarray:
    """Map hues in [0, 1) to saturated RGB colours (n x 3)."""
    k = (h[:, None] * 6 + np.array([5.0, 3.0, 1.0])) % 6
    return 1 - np.clip(np.minimum(k, 4 - k), 0, 1)


def _standin_images(n: int, rng: np.random.Generator) -> tuple[np.ndarray, list[int]]:
    """Draw n labelled 32x32 images: a class-specific shape over a noisy random background.

    Classes share hues pairwise and the shapes vary in size, place and contrast, with noise on
    top, so colour alone is not enough and low-contrast images stay ambiguous: a small CNN learns
    much of it quickly but not all of it.
    """
    labels = rng.permutation(np.arange(n) % 10)
    yy, xx = np.mgrid[0:32, 0:32].astype(np.float32)
    # background: a linear blend of two random colours in a random direction
    c1 = rng.uniform(0, 1, (n, 3)).astype(np.float32)
    c2 = rng.uniform(0, 1, (n, 3)).astype(np.float32)
    theta = rng.uniform(0, 2 * np.pi, n).astype(np.float32)
    g = np.cos(theta)[:, None, None] * (xx - 15.5) + np.sin(theta)[:, None, None] * (yy - 15.5)
    g = np.clip(g / 32 + 0.5, 0, 1)[:, None]
    img = c1[:, :, None, None] * (1 - g) + c2[:, :, None, None] * g
    # foreground: shape by class, hue shared by two classes
    cx = rng.uniform(9, 23, n).astype(np.float32)[:, None, None]
    cy = rng.uniform(9, 23, n).astype(np.float32)[:, None, None]
    r = rng.uniform(5, 10, n).astype(np.float32)[:, None, None]
    mask = np.zeros((n, 32, 32), dtype=bool)
    for label in range(10):
        idx = labels == label
        mask[idx] = _shape_masks(label, xx - cx[idx], yy - cy[idx], r[idx])
    hue = (labels % 5) / 5 + rng.normal(0, 0.06, n)
    fg = _hue_rgb(hue % 1.0).astype(np.float32) * rng.uniform(0.5, 1.0, (n, 1)).astype(np.float32)
    alpha = rng.uniform(0.3, 1.0, n).astype(np.float32)[:, None, None, None]
    m = mask[:, None].astype(np.float32) * alpha
    img = img * (1 - m) + fg[:, :, None, None] * m
    img += (
        rng.normal(0, 1, img.shape).astype(np.float32)
        * rng.uniform(0.03, 0.15, n).astype(np.float32)[:, None, None, None]
    )
    data = (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8).reshape(n, 3072)
    return data, [int(v) for v in labels]


def _batch_dict(data: np.ndarray, labels: list[int], name: str) -> dict[Any, Any]:
    return {
        _Py2Str(b"batch_label"): _Py2Str(name.encode()),
        _Py2Str(b"labels"): labels,
        _Py2Str(b"data"): data,
        _Py2Str(b"filenames"): [_Py2Str(f"standin_{i:06d}.png".encode()) for i in range(len(data))],
    }


def write_standin(
    root: str | os.PathLike[str], *, seed: int = 0, size: tuple[int, int] = DEFAULT_STANDIN_SIZE
) -> Path:
    """Write a synthetic stand-in in CIFAR-10's on-disk format under ``root``; return its folder.

    The folder is built beside the target and renamed into place, so an interrupted run never
    leaves a half-written stand-in. Deterministic for a given seed and size.
    """
    n_train, n_test = (int(v) for v in size)
    if n_train < 5 or n_test < 1:
        raise ValueError(f"standin_size needs at least 5 train and 1 test image, got {size}")
    root_path = Path(root)
    root_path.mkdir(parents=True, exist_ok=True)
    target = root_path / FOLDER
    train_seq, test_seq = np.random.SeedSequence(seed).spawn(2)
    tmp = Path(tempfile.mkdtemp(prefix=f".{FOLDER}.", dir=root_path))
    try:
        rng = np.random.default_rng(train_seq)
        bounds = np.linspace(0, n_train, 6).astype(int)
        for i, name in enumerate(TRAIN_FILES):
            data, labels = _standin_images(int(bounds[i + 1] - bounds[i]), rng)
            _dump(_batch_dict(data, labels, f"training batch {i + 1} of 5"), tmp / name)
        data, labels = _standin_images(n_test, np.random.default_rng(test_seq))
        _dump(_batch_dict(data, labels, "testing batch 1 of 1"), tmp / TEST_FILE)
        meta = {
            _Py2Str(b"num_cases_per_batch"): int(bounds[1] - bounds[0]),
            _Py2Str(b"label_names"): [_Py2Str(c.encode()) for c in CIFAR10_CLASSES],
            _Py2Str(b"num_vis"): 3072,
        }
        _dump(meta, tmp / META_FILE)
        marker = {
            "what": "jupyter-torchlab synthetic stand-in: NOT the CIFAR-10 images",
            "version": STANDIN_VERSION,
            "seed": seed,
            "train_size": n_train,
            "test_size": n_test,
            "md5": {p.name: md5(p) for p in sorted(tmp.iterdir())},
        }
        (tmp / README).write_text(
            "These files are NOT CIFAR-10. jupyter-torchlab generated them because the real\n"
            "dataset could not be loaded. Each class is a synthetic coloured pattern; the\n"
            "class names are CIFAR-10's so tutorial code runs unchanged. To use the real\n"
            "CIFAR-10, delete this folder and run again with network access, or put\n"
            "cifar-10-python.tar.gz in the folder above.\n",
            encoding="utf-8",
        )
        (tmp / MARKER).write_text(json.dumps(marker, indent=2) + "\n", encoding="utf-8")
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


class StandInCIFAR10(CIFAR10):
    """torchvision's CIFAR10 reading the stand-in; only the expected md5s come from the marker."""

    standin = True

    def __init__(self, root: str | os.PathLike[str], train: bool = True, **kwargs: Any) -> None:
        md5 = read_marker(Path(root) / FOLDER)["md5"]
        self.train_list = [[name, md5[name]] for name in TRAIN_FILES]
        self.test_list = [[TEST_FILE, md5[TEST_FILE]]]
        self.meta = {**CIFAR10.meta, "md5": md5[META_FILE]}
        super().__init__(root, train=train, download=False, **kwargs)

    def extra_repr(self) -> str:
        """Say in the dataset's repr that these are not CIFAR-10 images."""
        return super().extra_repr() + "\nSTAND-IN: synthetic images, NOT CIFAR-10"
