"""Write a file atomically: a reader sees the old file or the new one, never a torn one."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO

__all__ = ["atomic_write"]


def atomic_write(
    path: str | os.PathLike[str],
    write: Callable[[IO[bytes]], object],
    *,
    durable: bool = True,
) -> Path:
    """Write ``path`` through ``write(f)`` into a temporary file, then rename it over ``path``.

    The temporary file lives in the same folder (``.<name>.*.tmp``), is flushed and fsynced, and
    replaces ``path`` with ``os.replace`` (atomic on POSIX and Windows); the folder is fsynced
    where the OS allows. A crash mid-write can leave a temporary file behind, never a broken
    ``path``; an exception from ``write`` removes it and leaves ``path`` as it was.
    ``durable=False`` skips both fsyncs (still atomic for readers, not across a power cut): for
    a file rewritten several times a second that describes a live process.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            if durable:
                os.fsync(f.fileno())
        os.replace(tmp_name, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp_name)
        raise
    if not durable:
        return target
    with contextlib.suppress(OSError, AttributeError):
        dir_fd = os.open(target.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    return target
