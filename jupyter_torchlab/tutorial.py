"""Where the bundled tutorial notebook lives, and copying it without overwriting anything.

Nothing here imports torch or Jupyter: the server's ``POST torchlab/api/tutorial`` handler and
``jupyter torchlab tutorial`` both call :func:`copy_tutorial`.
"""

from __future__ import annotations

import errno
import os
import re
from collections.abc import Collection
from pathlib import Path

__all__ = ["TUTORIAL_NAME", "copy_tutorial", "fresh_name", "tutorial_path"]

TUTORIAL_NAME = "first_pytorch_classifier.ipynb"

_PACKAGE_DIR = Path(__file__).resolve().parent
# A wheel carries the notebook inside the package; a source checkout keeps it in the repo root.
_CANDIDATES = (
    _PACKAGE_DIR / "notebooks" / TUTORIAL_NAME,
    _PACKAGE_DIR.parent / "notebooks" / TUTORIAL_NAME,
)

# "name-3.ipynb" -> ("name", 3): a name that already carries a counter continues from it
_COUNTED = re.compile(r"^(?P<base>.*)-(?P<n>[0-9]+)$")
_MAX_TRIES = 10_000


def tutorial_path() -> Path:
    """Return the path of the bundled ``first_pytorch_classifier.ipynb``."""
    for candidate in _CANDIDATES:
        if candidate.is_file():
            return candidate
    tried = ", ".join(str(c) for c in _CANDIDATES)
    raise FileNotFoundError(
        f"the bundled tutorial notebook is missing (looked in {tried}); "
        "reinstall the package: pip install --force-reinstall jupyter-torchlab"
    )


def fresh_name(existing: Collection[str], name: str = TUTORIAL_NAME) -> str:
    """Return ``name`` if it is not in ``existing``, else the first free ``stem-N.suffix``."""
    if name not in existing:
        return name
    stem, dot, suffix = name.rpartition(".")
    if not dot or not stem:  # no suffix ("Makefile") or a dotfile (".env")
        stem, suffix = name, ""
    else:
        suffix = "." + suffix
    counted = _COUNTED.match(stem)
    base, n = (counted["base"], int(counted["n"])) if counted else (stem, 0)
    while True:
        n += 1
        candidate = f"{base}-{n}{suffix}"
        if candidate not in existing:
            return candidate


def copy_tutorial(dir: str | os.PathLike[str] = ".") -> Path:
    """Copy the bundled tutorial into ``dir`` under a fresh name and return the new file's path.

    Never overwrites: the file is created with ``O_EXCL``, so a name taken between listing the
    directory and creating the file (another copy running at the same time) moves on to the next.
    """
    target = Path(dir)
    if not target.exists():
        raise FileNotFoundError(
            f"cannot copy the tutorial into {str(target)!r}: no such directory; "
            "create it first or pick an existing one"
        )
    if not target.is_dir():
        raise NotADirectoryError(
            f"cannot copy the tutorial into {str(target)!r}: it is a file, not a directory; "
            "pass the directory that should hold the notebook"
        )
    content = tutorial_path().read_bytes()
    existing = set(os.listdir(target))
    for _ in range(_MAX_TRIES):
        name = fresh_name(existing, TUTORIAL_NAME)
        path = target / name
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            existing.add(name)
            continue
        except PermissionError as e:
            raise PermissionError(
                f"cannot write into {str(target)!r}: permission denied; "
                "pick a directory you can write to, e.g. your home directory"
            ) from e
        except OSError as e:
            if e.errno == errno.EROFS:
                raise PermissionError(
                    f"cannot write into {str(target)!r}: it is on a read-only file system; "
                    "pick a directory you can write to, e.g. your home directory"
                ) from e
            raise
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(content)
        except BaseException:
            # a half-written notebook would not open; remove it (we created it, so it is ours)
            path.unlink(missing_ok=True)
            raise
        return path
    raise FileExistsError(
        f"could not find a free name for the tutorial in {str(target)!r} after {_MAX_TRIES} tries"
    )
