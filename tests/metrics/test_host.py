from __future__ import annotations

import shutil
from pathlib import Path

import psutil
import pytest

from jupyter_torchlab.metrics.host import HostSampler, read_cgroup_limits

FIXTURES = Path(__file__).parent / "fixtures"

GiB = 1 << 30


def test_cgroup_v2_limits():
    limits = read_cgroup_limits(FIXTURES / "v2_limited", self_cgroup=None)
    assert limits.version == 2
    assert limits.cpu_limit == 1.5
    assert limits.memory_limit == 2 * GiB
    # working set: memory.current minus the inactive file cache the kernel can drop
    assert limits.memory_used == GiB - 128 * (1 << 20)
    assert limits.cpu_usage == 5.0


def test_cgroup_v2_unlimited():
    limits = read_cgroup_limits(FIXTURES / "v2_unlimited", self_cgroup=None)
    assert (limits.version, limits.cpu_limit, limits.memory_limit) == (2, None, None)
    assert limits.memory_used == 50 * (1 << 20)


def test_cgroup_v2_nested_takes_the_tightest_limit_on_the_path():
    root = FIXTURES / "v2_nested"
    limits = read_cgroup_limits(root, self_cgroup=root / "proc_self_cgroup")
    assert limits.cpu_limit == 4.0  # from the parent slice; the scope itself is "max"
    assert limits.memory_limit == 4 * GiB  # the parent's 4 GiB beats the scope's 8 GiB
    assert limits.memory_used == 1 << 20  # usage is the process' own cgroup


def test_cgroup_v1_limits():
    limits = read_cgroup_limits(FIXTURES / "v1_limited", self_cgroup=None)
    assert limits.version == 1
    assert limits.cpu_limit == 2.0
    assert limits.memory_limit == 512 * (1 << 20)
    assert limits.memory_used == 256 * (1 << 20) - 64 * (1 << 20)
    assert limits.cpu_usage == 3.0


def test_cgroup_v1_unlimited_sentinel_and_negative_quota():
    limits = read_cgroup_limits(FIXTURES / "v1_unlimited", self_cgroup=None)
    assert (limits.version, limits.cpu_limit, limits.memory_limit) == (1, None, None)


def test_cgroup_path_missing_under_root_falls_back_to_root(tmp_path):
    # docker without a cgroup namespace: /proc/self/cgroup names /docker/<id>, but the container's
    # own cgroup is mounted at the root
    own = tmp_path / "cgroup"
    own.write_text("4:memory:/docker/abc\n3:cpu,cpuacct:/docker/abc\n")
    limits = read_cgroup_limits(FIXTURES / "v1_limited", self_cgroup=own)
    assert (limits.cpu_limit, limits.memory_limit) == (2.0, 512 * (1 << 20))


def test_no_cgroup_filesystem(tmp_path):
    limits = read_cgroup_limits(tmp_path / "missing", self_cgroup=None)
    assert limits == type(limits)(None, None, None, None, None)


def test_real_host_sample_is_sane():
    sampler = HostSampler()
    for _ in range(2):
        snap = sampler.sample()
    assert snap.cpu_count == psutil.cpu_count()
    assert len(snap.per_cpu) == snap.cpu_count
    assert all(0 <= p <= 100 for p in snap.per_cpu)
    assert 0 <= snap.cpu_percent <= 100
    assert 0 < snap.memory_used < snap.memory_total
    assert 0 < snap.memory_available <= snap.memory_total
    assert len(snap.load_avg) == 3
    assert 0 <= snap.memory_percent <= 100


@pytest.fixture
def cgroup_v2(tmp_path: Path) -> Path:
    root = tmp_path / "cg"
    shutil.copytree(FIXTURES / "v2_limited", root)
    return root


def test_limited_cpu_is_the_cgroups_usage_over_its_quota(cgroup_v2, monkeypatch):
    monkeypatch.setattr(psutil, "cpu_count", lambda logical=True: 8)
    now = [10.0]
    sampler = HostSampler(cgroup_v2, self_cgroup=None, clock=lambda: now[0])
    # 0.75 CPU-seconds used in one second of a 1.5-CPU quota: half of what the pod may use
    (cgroup_v2 / "cpu.stat").write_text("usage_usec 5750000\n")
    now[0] = 11.0
    snap = sampler.sample()
    assert snap.cpu_limit == 1.5
    assert snap.cpu_percent == pytest.approx(50.0)
    assert snap.memory_limit == 2 * GiB
    assert snap.memory_used == GiB - 128 * (1 << 20)
    assert snap.memory_available == 2 * GiB - snap.memory_used
    assert snap.memory_percent == pytest.approx(100 * snap.memory_used / (2 * GiB))
    # the quota is the 100% mark: using more than it (burst accounting) still reads 100
    (cgroup_v2 / "cpu.stat").write_text("usage_usec 9750000\n")
    now[0] = 12.0
    assert sampler.sample().cpu_percent == 100.0


def test_limits_at_or_above_the_host_are_no_limits(tmp_path, monkeypatch):
    root = tmp_path / "cg"
    shutil.copytree(FIXTURES / "v2_limited", root)
    (root / "cpu.max").write_text(f"{(psutil.cpu_count() + 1) * 100000} 100000\n")
    (root / "memory.max").write_text(f"{psutil.virtual_memory().total * 2}\n")
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: set(range(psutil.cpu_count())))
    snap = HostSampler(root, self_cgroup=None).sample()
    assert snap.cpu_limit is None
    assert snap.memory_limit is None


def test_affinity_mask_limits_cpus(monkeypatch):
    monkeypatch.setattr(psutil, "cpu_count", lambda logical=True: 8)
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: {0, 1})
    snap = HostSampler(FIXTURES / "v2_unlimited", self_cgroup=None).sample()
    assert snap.cpu_limit == 2.0


def test_memory_figures_agree_with_psutil():
    from jupyter_torchlab.metrics.host import _memory

    total, available, swap_total, swap_used = _memory()
    vm, swap = psutil.virtual_memory(), psutil.swap_memory()
    assert total == vm.total
    assert available == pytest.approx(vm.available, rel=0.05)
    assert swap_total == swap.total
    assert swap_used == pytest.approx(swap.used, rel=0.05, abs=64 << 20)
