"""Real memory-limited cgroups for the OOM-killer and memory-guard tests (root, cgroup v1 or v2).

A test makes a child of the test process's own memory cgroup, limits it, and starts kernels in
it through a kernel spec whose argv first writes the shell's pid into the cgroup's
``cgroup.procs`` and then execs the kernel (so the kernel process is the cgroup's only member).
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


@contextlib.contextmanager
def limited_cgroup(limit: int) -> Iterator[Path]:
    """Yield a child memory cgroup limited to ``limit`` bytes, without swap; remove it after."""
    if os.geteuid() != 0:
        pytest.skip("creating a memory cgroup needs root")
    parent = own_memory_cgroup()
    if parent is None:
        pytest.skip("no memory cgroup controller here")
    child = parent / f"torchlab-oom-{uuid.uuid4().hex[:8]}"
    try:
        child.mkdir()
        if (child / "memory.limit_in_bytes").exists():  # v1
            (child / "memory.limit_in_bytes").write_text(str(limit))
            if (child / "memory.memsw.limit_in_bytes").exists():
                (child / "memory.memsw.limit_in_bytes").write_text(str(limit))
        else:  # v2
            (child / "memory.max").write_text(str(limit))
            if (child / "memory.swap.max").exists():
                (child / "memory.swap.max").write_text("0")
    except OSError as e:
        if child.exists():
            child.rmdir()
        pytest.skip(f"cannot create a limited memory cgroup here ({e})")
    try:
        yield child
    finally:
        for _ in range(50):  # the cgroup can be removed once its processes are gone
            try:
                child.rmdir()
                break
            except OSError:
                time.sleep(0.1)


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
