"""Real memory-limited cgroups for the OOM-killer and memory-guard tests (root, cgroup v1 or v2).

A test makes a child of the test process's own memory cgroup, limits it, and starts kernels in
it (or, :func:`limited_pod`, in an unlimited child of it, as in a Kubernetes pod) through a
kernel spec whose argv first writes the shell's pid into the cgroup's ``cgroup.procs`` and then
execs the kernel (so the kernel process is the cgroup's only member).
Where no memory cgroup can be made (not root, no controller, read-only), the test is skipped
with the reason.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from jupyter_torchlab.metrics.memory_cgroup import parse_counts


def own_memory_cgroup() -> Path | None:
    """Return this process's memory cgroup folder (None: no memory controller)."""
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if "memory" in controllers.split(","):
            base = Path("/sys/fs/cgroup/memory")
            rel = Path(path.lstrip("/"))
            while rel.parts and not (base / rel).is_dir():
                rel = rel.parent
            return base / rel
        if controllers == "" and Path("/sys/fs/cgroup/cgroup.controllers").is_file():
            return Path("/sys/fs/cgroup") / path.lstrip("/")
    return None


def _memory_parent() -> Path:
    """Return the folder new memory cgroups go under (skip where none can be made)."""
    if os.geteuid() != 0:
        pytest.skip("creating a memory cgroup needs root")
    parent = own_memory_cgroup()
    if parent is None:
        pytest.skip("no memory cgroup controller here")
    return parent


def _limit(cgroup: Path, limit: int) -> None:
    """Limit ``cgroup`` to ``limit`` bytes, without swap (v1 or v2)."""
    if (cgroup / "memory.limit_in_bytes").exists():  # v1
        (cgroup / "memory.limit_in_bytes").write_text(str(limit))
        if (cgroup / "memory.memsw.limit_in_bytes").exists():
            (cgroup / "memory.memsw.limit_in_bytes").write_text(str(limit))
    else:  # v2
        (cgroup / "memory.max").write_text(str(limit))
        if (cgroup / "memory.swap.max").exists():
            (cgroup / "memory.swap.max").write_text("0")


def _remove(*cgroups: Path) -> None:
    """Remove the cgroups, innermost first, once their processes are gone."""
    for cgroup in cgroups:
        for _ in range(50):
            try:
                cgroup.rmdir()
                break
            except FileNotFoundError:
                break
            except OSError:
                time.sleep(0.1)


@contextlib.contextmanager
def limited_cgroup(limit: int) -> Iterator[Path]:
    """Yield a child memory cgroup limited to ``limit`` bytes, without swap; remove it after."""
    child = _memory_parent() / f"torchlab-oom-{uuid.uuid4().hex[:8]}"
    try:
        child.mkdir()
        _limit(child, limit)
    except OSError as e:
        _remove(child)
        pytest.skip(f"cannot create a limited memory cgroup here ({e})")
    try:
        yield child
    finally:
        _remove(child)


@contextlib.contextmanager
def limited_pod(limit: int) -> Iterator[tuple[Path, Path]]:
    """Yield ``(pod, kernels)``: a cgroup limited to ``limit`` bytes and an unlimited child of it.

    A Kubernetes pod's shape: the limit on the pod's cgroup, the processes in a cgroup below it
    that has no limit of its own. Both are removed after.
    """
    pod = _memory_parent() / f"torchlab-pod-{uuid.uuid4().hex[:8]}"
    kernels = pod / "kernels"
    try:
        pod.mkdir()
        _limit(pod, limit)
        if (pod / "cgroup.subtree_control").exists():  # v2: give the child the controller
            (pod / "cgroup.subtree_control").write_text("+memory")
        kernels.mkdir()
    except OSError as e:
        _remove(kernels, pod)
        pytest.skip(f"cannot create a limited memory cgroup with a child here ({e})")
    try:
        yield pod, kernels
    finally:
        _remove(kernels, pod)


def oom_kills(cgroup: Path) -> int:
    """The cgroup's OOM-kill count, read the way a person would: cat the file."""
    name = "memory.oom_control" if (cgroup / "memory.oom_control").exists() else "memory.events"
    return parse_counts((cgroup / name).read_text()).get("oom_kill", 0)


def limited_kernelspec(kernel_dir: Path, cgroup: Path, name: str = "python3-limited") -> str:
    """Write a python3 kernel spec that moves the kernel into ``cgroup`` before it starts."""
    folder = kernel_dir / name
    folder.mkdir(parents=True, exist_ok=True)
    procs = cgroup / "cgroup.procs"
    shell = f'echo $$ > "{procs}" && exec "{sys.executable}" -m ipykernel_launcher -f "$0"'
    spec = {
        "argv": ["/bin/sh", "-c", shell, "{connection_file}"],
        "display_name": name,
        "language": "python",
    }
    (folder / "kernel.json").write_text(json.dumps(spec))
    return name


async def open_notebook(jp_fetch: Any, kernelspec: str, path: str) -> str:
    """Start a session with a kernel of ``kernelspec`` for the notebook ``path``; return its id."""
    body = {"path": path, "name": path, "type": "notebook", "kernel": {"name": kernelspec}}
    r = await jp_fetch("api", "sessions", method="POST", body=json.dumps(body))
    return json.loads(r.body)["kernel"]["id"]
