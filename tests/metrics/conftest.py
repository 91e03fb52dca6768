from __future__ import annotations

import contextlib
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest

FIXTURES = Path(__file__).parent / "fixtures"
PROCTREE = Path(__file__).parent / "_proctree.py"


@pytest.fixture(autouse=True)
def no_leaked_threads() -> Iterator[None]:
    """Fail a test that leaves a thread running after it ends."""
    before = set(threading.enumerate())
    yield
    deadline = time.monotonic() + 2.0
    while True:
        extra = [t for t in threading.enumerate() if t not in before and t.is_alive()]
        if not extra or time.monotonic() > deadline:
            break
        time.sleep(0.01)
    assert not extra, f"threads left running: {extra}"


class Tree:
    """A real process tree started from _proctree.py, killed as a whole at the end of the test."""

    def __init__(self, *specs: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(PROCTREE), *specs], stdout=subprocess.PIPE, text=True
        )
        self.pid = self.proc.pid
        try:
            self._wait_ready(specs)
        except BaseException:
            self.kill()
            raise

    def _wait_ready(self, specs: tuple[str, ...]) -> None:
        expected = 1 + sum(len(s.split("/")) for s in specs[1:])
        self.roles: dict[int, str] = {}
        assert self.proc.stdout is not None
        for _ in range(expected):
            pid, role = self.proc.stdout.readline().split()
            self.roles[int(pid)] = role

    def pids(self, role: str) -> list[int]:
        return [pid for pid, r in self.roles.items() if r == role and pid != self.pid]

    def kill(self) -> None:
        """Kill the root and every descendant, and wait for them."""
        try:
            root = psutil.Process(self.pid)
            family = [root, *root.children(recursive=True)]
        except psutil.Error:
            family = []
        for proc in family:
            with contextlib.suppress(psutil.Error):
                proc.kill()
        psutil.wait_procs(family, timeout=5)
        self.proc.kill()  # in case listing the family failed
        self.proc.wait(5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


@pytest.fixture
def make_tree() -> Iterator[Callable[..., Tree]]:
    trees: list[Tree] = []

    def make(*specs: str) -> Tree:
        tree = Tree(*specs)
        trees.append(tree)
        return tree

    try:
        yield make
    finally:
        for tree in trees:
            tree.kill()
