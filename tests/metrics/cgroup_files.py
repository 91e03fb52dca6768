"""Cgroup trees and /proc files on disk, shaped like the kernel's, for the OOM and death tests."""

from __future__ import annotations

from pathlib import Path

V1_UNLIMITED = "9223372036854771712\n"  # what cgroup v1 writes for "no limit"
#: the cgroup path of a kernel in a user's pod: root > kubepods > pod1 (the pod) > kernel
POD_KERNEL = "/kubepods/pod1/kernel"


def write_files(root: Path, files: dict[str, str]) -> Path:
    """Write ``{relative path: text}`` under ``root``; return ``root``."""
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def pod(root: Path, version: int, pod_limit: int | None, own_limit: int | None) -> Path:
    """A memory hierarchy with a pod and a kernel cgroup in it, each limited or not."""
    levels = [("kubepods", None), ("kubepods/pod1", pod_limit), (POD_KERNEL[1:], own_limit)]
    if version == 1:
        files = {"memory/memory.limit_in_bytes": V1_UNLIMITED}
        for folder, limit in levels:
            files[f"memory/{folder}/memory.limit_in_bytes"] = (
                f"{limit}\n" if limit else V1_UNLIMITED
            )
            files[f"memory/{folder}/memory.oom_control"] = "oom_kill_disable 0\noom_kill 0\n"
    else:  # the v2 root cgroup has no memory.max
        files = {"cgroup.controllers": "cpu memory\n"}
        for folder, limit in levels:
            files[f"{folder}/memory.max"] = f"{limit}\n" if limit else "max\n"
            files[f"{folder}/memory.events"] = "oom 0\noom_kill 0\n"
    return write_files(root, files)


def cgroup_line(version: int, path: str) -> str:
    """A /proc/<pid>/cgroup line that puts a process's memory in ``path``."""
    return f"4:memory:{path}\n" if version == 1 else f"0::{path}\n"


def stat_line(pid: int, state: str, flags: int = 0x400100, pending: int = 0) -> str:
    """A /proc/<pid>/stat line (52 fields; 3 is the state, 9 the flags, 31 pending signals)."""
    rest = ["0"] * 49  # fields 4 to 52
    rest[9 - 4], rest[31 - 4] = str(flags), str(pending)
    return f"{pid} (ipykernel) (x)) {state} {' '.join(rest)}\n"
