"""Names and helpers every ``jupyter torchlab`` command shares."""

from __future__ import annotations

import sys

__all__ = ["LAB_EXTENSION", "PROG", "SERVER_EXTENSION", "error"]

PROG = "jupyter torchlab"
SERVER_EXTENSION = "jupyter_torchlab"
LAB_EXTENSION = "jupyter-torchlab"


def error(message: str) -> None:
    """Print ``message`` as the command's error, on stderr."""
    print(f"{PROG}: error: {message}", file=sys.stderr)
