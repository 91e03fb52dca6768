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
import hashlib
import io
import json
import os
import pickle
import shutil
import socket
import sys
import tarfile
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, TensorDataset
from torchvision.datasets import CIFAR10

__all__ = [
    "CIFAR10_CLASSES",
    "CIFAR10Data",
    "DatasetError",
    "InMemoryDataset",
    "StandInCIFAR10",
    "cifar10",
    "write_standin",
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
DEFAULT_STANDIN_SIZE = (10_000, 2_000)  # images; a 2-core CPU trains an epoch of this in seconds
_STANDIN_VERSION = 2
# the tutorial's transform: ToTensor() then Normalize((0.5,)*3, (0.5,)*3)
MEAN = (0.5, 0.5, 0.5)
STD = (0.5, 0.5, 0.5)


class DatasetError(RuntimeError):
    """The dataset folder is there but unusable; the message says what is wrong and what to do."""


# ----------------------------------------------------------------------------------------------
# the stand-in: generation


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


def _md5(path: Path) -> str:
    h = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


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
            "version": _STANDIN_VERSION,
            "seed": seed,
            "train_size": n_train,
            "test_size": n_test,
            "md5": {p.name: _md5(p) for p in sorted(tmp.iterdir())},
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


# ----------------------------------------------------------------------------------------------
# loading


class StandInCIFAR10(CIFAR10):
    """torchvision's CIFAR10 reading the stand-in; only the expected md5s come from the marker."""

    standin = True

    def __init__(self, root: str | os.PathLike[str], train: bool = True, **kwargs: Any) -> None:
        md5 = _read_marker(Path(root) / FOLDER)["md5"]
        self.train_list = [[name, md5[name]] for name in TRAIN_FILES]
        self.test_list = [[TEST_FILE, md5[TEST_FILE]]]
        self.meta = {**CIFAR10.meta, "md5": md5[META_FILE]}
        super().__init__(root, train=train, download=False, **kwargs)

    def extra_repr(self) -> str:
        """Say in the dataset's repr that these are not CIFAR-10 images."""
        return super().extra_repr() + "\nSTAND-IN: synthetic images, NOT CIFAR-10"


def _read_marker(folder: Path) -> dict[str, Any]:
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


def _real_problems(folder: Path) -> list[str]:
    """Return what keeps ``folder`` from being the real CIFAR-10 (empty when it is)."""
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


def _standin_problems(folder: Path, marker: dict[str, Any]) -> list[str]:
    problems = []
    for name in (*TRAIN_FILES, TEST_FILE, META_FILE):
        path = folder / name
        expected = marker["md5"].get(name)
        if not path.exists():
            problems.append(f"{name} is missing")
        elif expected is None or _md5(path) != expected:
            problems.append(f"{name} does not match the checksum recorded in {MARKER}")
    return problems


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
        problems = _real_problems(extracted)
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
            marker = _read_marker(folder)
            problems = _standin_problems(folder, marker)
            if problems and not _real_problems(folder):
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
                if have != wanted or marker.get("version") != _STANDIN_VERSION:
                    write_standin(root_path, seed=seed, size=standin_size)
        elif folder.exists():
            problems = _real_problems(folder)
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
