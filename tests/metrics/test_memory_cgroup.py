from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from jupyter_torchlab.metrics.memory_cgroup import (
    MemoryCgroup,
    limit_is_own,
    locate_memory_cgroup,
    parse_counts,
    process_leaving,
    read_members,
    read_memory_limit,
    read_oom_kills,
    read_unreclaimable,
)

from .cgroup_files import POD_KERNEL, cgroup_line, pod, stat_line, write_files

FIXTURES = Path(__file__).parent / "fixtures"
MiB, GiB = 1 << 20, 1 << 30


def _proc(tmp_path: Path, pid: int, cgroup: str) -> Path:
    return write_files(tmp_path / "proc", {f"{pid}/cgroup": cgroup})


def test_memory_events_and_oom_control_are_parsed(tmp_path):
    # copies of a v2 container's memory.events and a v1 memory.oom_control after OOM kills
    v2 = FIXTURES / "v2_limited" / "memory.events"
    v1 = FIXTURES / "v1_limited" / "memory" / "memory.oom_control"
    assert parse_counts(v2.read_text()) == {
        "low": 0,
        "high": 0,
        "max": 1187,
        "oom": 4,
        "oom_kill": 3,
        "oom_group_kill": 0,
    }
    assert read_oom_kills(MemoryCgroup(str(v2), 2)) == 3
    assert read_oom_kills(MemoryCgroup(str(v1), 1)) == 2
    assert read_oom_kills(MemoryCgroup(str(tmp_path / "gone"), 2)) is None  # reads never raise
    assert read_oom_kills(None) is None
    assert parse_counts("garbage\nkey notanumber\n") == {}


def test_a_process_s_cgroup_is_found_in_v1_and_v2_layouts(tmp_path):
    proc = _proc(tmp_path, 42, "4:memory:/hub/alice\n0::/hub/alice\n")
    v1 = write_files(tmp_path / "v1", {"memory/hub/alice/memory.oom_control": "oom_kill 1\n"})
    found = locate_memory_cgroup(42, root=v1, proc=proc)
    assert found == MemoryCgroup(str(v1 / "memory/hub/alice/memory.oom_control"), 1)
    v2 = write_files(
        tmp_path / "v2", {"cgroup.controllers": "memory\n", "hub/alice/memory.events": "oom_kill 0"}
    )
    (proc / "42" / "cgroup").write_text("0::/hub/alice\n")
    assert locate_memory_cgroup(42, root=v2, proc=proc) == MemoryCgroup(
        str(v2 / "hub/alice/memory.events"), 2
    )
    # a namespaced view: the path does not exist under the mount, the mount is the cgroup
    (proc / "42" / "cgroup").write_text("0::/kubepods/pod1/abc\n")
    (v2 / "memory.events").write_text("oom_kill 0\n")
    assert locate_memory_cgroup(42, root=v2, proc=proc) == MemoryCgroup(
        str(v2 / "memory.events"), 2
    )
    assert locate_memory_cgroup(43, root=v2, proc=proc) is None
    # cgroup v1 moves an exiting process to the root cgroup: that cgroup says so
    (proc / "42" / "cgroup").write_text("4:memory:/\n")
    (v1 / "memory" / "memory.oom_control").write_text("oom_kill 0\n")
    found = locate_memory_cgroup(42, root=v1, proc=proc)
    assert found == MemoryCgroup(str(v1 / "memory/memory.oom_control"), 1, root=True)


@pytest.mark.parametrize("version", [1, 2])
@pytest.mark.parametrize(
    ("pod_limit", "own_limit", "applies"),
    [
        (None, 512 * MiB, 512 * MiB),  # the kernel's own cgroup
        (3 * GiB, None, 3 * GiB),  # the pod's, an ancestor with a limit
        (3 * GiB, 8 * GiB, 3 * GiB),  # the tighter one is what the kernel can use
        (None, None, None),
    ],
    ids=["own", "ancestor", "tightest", "unlimited"],
)
def test_the_limit_that_applies_is_the_own_cgroup_s_or_an_ancestor_s(
    tmp_path, version, pod_limit, own_limit, applies
):
    root = pod(tmp_path / "cgroup", version, pod_limit, own_limit)
    proc = _proc(tmp_path, 42, cgroup_line(version, POD_KERNEL))
    cgroup = locate_memory_cgroup(42, root=root, proc=proc)
    assert cgroup is not None
    assert cgroup.version == version
    assert Path(cgroup.oom_file).parent.as_posix().endswith(POD_KERNEL)
    assert read_memory_limit(cgroup) == applies


def test_a_v2_cgroup_without_the_memory_controller_is_charged_to_its_parent(tmp_path):
    root = pod(tmp_path / "cgroup", 2, 3 * GiB, None)
    # a child made by a launcher that did not enable memory in its parent's subtree_control
    (root / "kubepods/pod1/kernel/k1").mkdir()
    cgroup = locate_memory_cgroup(42, root=root, proc=_proc(tmp_path, 42, f"0::{POD_KERNEL}/k1\n"))
    assert cgroup is not None
    assert cgroup.oom_file == str(root / "kubepods/pod1/kernel/memory.events")
    assert read_memory_limit(cgroup) == 3 * GiB


def test_a_limit_that_is_changed_is_read_anew(tmp_path):
    root = pod(tmp_path / "cgroup", 1, None, 512 * MiB)
    cgroup = locate_memory_cgroup(
        42, root=root, proc=_proc(tmp_path, 42, cgroup_line(1, POD_KERNEL))
    )
    (root / "memory/kubepods/pod1/kernel/memory.limit_in_bytes").write_text(str(GiB))
    assert read_memory_limit(cgroup) == GiB
    assert read_memory_limit(None) is None


@pytest.mark.parametrize(
    ("stat", "gone"),
    [
        (stat_line(7, "S"), False),
        (stat_line(7, "R"), False),
        (stat_line(7, "D"), False),  # in reclaim, say: it still runs
        (stat_line(7, "Z"), True),
        (stat_line(7, "R", flags=0x400104), True),  # PF_EXITING: do_exit has begun
        (stat_line(7, "D", pending=1 << 8), True),  # SIGKILL sent, not yet acted on
        (stat_line(7, "S", pending=1 << 1), False),  # SIGINT pending: an interrupt, not a kill
        ("", True),  # the process was reaped
    ],
)
def test_a_process_on_its_way_out_is_told_from_one_that_runs(tmp_path, stat, gone):
    proc = write_files(
        tmp_path / "proc", {"7/stat": stat} if stat else {"self/stat": stat_line(1, "S")}
    )
    assert process_leaving(7, proc) is gone


def test_without_proc_nothing_is_known_to_be_leaving(tmp_path):
    assert process_leaving(7, tmp_path / "no-proc") is False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_real_processes_running_and_killed():
    assert process_leaving(os.getpid()) is False
    child = subprocess.Popen(["sleep", "60"])
    try:
        assert process_leaving(child.pid) is False
        os.kill(child.pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while not process_leaving(child.pid) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert process_leaving(child.pid)  # a zombie until reaped
    finally:
        child.kill()
        child.wait()
    assert process_leaving(child.pid)  # reaped: gone


# --- what the memory guard reads --------------------------------------------------------------


@pytest.mark.parametrize("version", [1, 2])
def test_the_unreclaimable_charge_leaves_out_the_file_cache(tmp_path, version):
    root = pod(tmp_path / "cgroup", version, 8 * GiB, 3 * GiB)
    folder = root / ("memory" if version == 1 else "") / POD_KERNEL.lstrip("/")
    # 2.5 GiB charged, of which 1 GiB is a dataset's file cache (half of it read twice: active)
    usage, prefix = ("memory.usage_in_bytes", "total_") if version == 1 else ("memory.current", "")
    stat = (
        f"{prefix}anon {int(1.4 * GiB)}\n{prefix}active_file {512 * MiB}\n"
        f"{prefix}inactive_file {512 * MiB}\n{prefix}shmem {40 * MiB}\n"
    )
    if version == 1:  # v1 also lists the cgroup's own (non-hierarchical) keys: not these
        stat = f"active_file {GiB}\ninactive_file {GiB}\n" + stat
    write_files(
        folder, {usage: f"{int(2.5 * GiB)}\n", "memory.stat": stat, "cgroup.procs": "42\n43\n"}
    )
    cgroup = locate_memory_cgroup(
        42, root=root, proc=_proc(tmp_path, 42, cgroup_line(version, POD_KERNEL))
    )
    assert read_unreclaimable(cgroup) == int(2.5 * GiB) - GiB
    assert read_members(cgroup) == {42, 43}
    assert limit_is_own(cgroup)  # 3 GiB on the kernel's cgroup, 8 GiB on the pod


@pytest.mark.parametrize("version", [1, 2])
def test_a_limit_set_on_an_ancestor_is_not_the_cgroup_s_own(tmp_path, version):
    root = pod(tmp_path / "cgroup", version, 3 * GiB, None)
    cgroup = locate_memory_cgroup(
        42, root=root, proc=_proc(tmp_path, 42, cgroup_line(version, POD_KERNEL))
    )
    assert read_memory_limit(cgroup) == 3 * GiB
    assert not limit_is_own(cgroup)
    # a looser limit of its own: the pod's tighter one applies, and is not its own
    root = pod(tmp_path / "cgroup2", version, 3 * GiB, 4 * GiB)
    cgroup = locate_memory_cgroup(
        42, root=root, proc=_proc(tmp_path, 42, cgroup_line(version, POD_KERNEL))
    )
    assert not limit_is_own(cgroup)


def test_unreadable_charge_and_members_are_unknown(tmp_path):
    assert read_unreclaimable(None) is None
    assert read_members(None) is None
    assert not limit_is_own(None)
    root = pod(tmp_path / "cgroup", 2, None, GiB)  # no memory.current, no cgroup.procs
    cgroup = locate_memory_cgroup(
        42, root=root, proc=_proc(tmp_path, 42, cgroup_line(2, POD_KERNEL))
    )
    assert read_unreclaimable(cgroup) is None
    assert read_members(cgroup) is None
