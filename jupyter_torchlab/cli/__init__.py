"""``jupyter torchlab``: copy the tutorial, check the installation, run a notebook headless.

This module holds the parser and the dispatch; :mod:`.doctor` and :mod:`.run` are the two larger
commands. Importing it is cheap: torch, nbclient and Jupyter's config machinery are imported
inside the subcommand that needs them, so ``jupyter torchlab tutorial`` answers at once.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from ._common import PROG, error
from .doctor import cmd_doctor
from .run import cmd_run

__all__ = ["build_parser", "main"]


def cmd_tutorial(args: argparse.Namespace) -> int:
    from ..tutorial import copy_tutorial

    try:
        path = copy_tutorial(args.dir)
    except OSError as e:
        error(str(e))
        return 1
    print(path)
    return 0


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser for ``jupyter torchlab``."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="PyTorch in Jupyter: the classifier tutorial, an installation check, "
        "and headless notebook runs.",
        epilog="Also available as `jupyter-torchlab` and `python -m jupyter_torchlab`.",
    )
    from .. import __version__

    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser(
        "tutorial",
        help="copy the CIFAR-10 classifier tutorial notebook into DIR and print its path",
        description="Copy the bundled first_pytorch_classifier.ipynb into DIR. An existing file "
        "is never overwritten: a taken name becomes first_pytorch_classifier-1.ipynb, -2, ...",
    )
    p.add_argument(
        "dir", nargs="?", default=".", metavar="DIR", help="target directory (default: .)"
    )
    p.set_defaults(func=cmd_tutorial)

    p = sub.add_parser(
        "doctor",
        help="report torch, accelerators, NVML and whether the Jupyter extensions are enabled "
        "and load",
        description="Check what jupyter-torchlab needs: torch and torchvision, the accelerators "
        "torch sees, NVML for GPU monitoring, the server extension (loaded for real, with your "
        "Jupyter configuration, in a server that does not listen) and the JupyterLab extension. "
        "Exits 1 when the server extension is enabled but does not load.",
    )
    p.add_argument(
        "--strict",
        action="store_true",
        help="exit with status 1 when any problem is found, not only a server extension that "
        "does not load",
    )
    p.set_defaults(func=cmd_doctor)

    p = sub.add_parser(
        "run",
        help="execute a notebook headless in a real kernel (the tutorial by default)",
        description="Execute NOTEBOOK top to bottom in a kernel, printing each cell and its text "
        "output as it runs, and write the executed copy beside it as NAME.executed.ipynb (the "
        "source is never changed). Without NOTEBOOK the bundled tutorial runs in the current "
        "directory. Exits 1 when a cell fails, after printing that cell and its error.",
    )
    p.add_argument("notebook", nargs="?", metavar="NOTEBOOK", help="the .ipynb to run")
    p.add_argument(
        "-p",
        "--param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="override a value of the cell tagged 'parameters' (repeatable); VALUE is read as a "
        "Python literal (1, 0.5, True, 'x'), anything else as a string. Example: -p EPOCHS=1",
    )
    p.add_argument(
        "--timeout",
        type=int,
        default=None,
        metavar="SECONDS",
        help="fail a cell that runs longer than this (default: no limit)",
    )
    p.add_argument("-o", "--output", metavar="PATH", help="where to write the executed notebook")
    p.add_argument("--kernel", metavar="NAME", help="kernel to use (default: the notebook's)")
    p.set_defaults(func=cmd_run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``jupyter torchlab`` with ``argv`` (default: the process arguments)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    result: int = args.func(args)
    return result
