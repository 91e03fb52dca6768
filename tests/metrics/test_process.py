from __future__ import annotations

import os
import time

import psutil
import pytest

from jupyter_torchlab.metrics.process import ProcessTreeSampler


def tree_cpu_seconds(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        t = psutil.Process(pid).cpu_times()
        total += t.user + t.system + t.children_user + t.children_system
    return total


def wait_for_cpu(pids: list[int], seconds: float, timeout: float = 20.0) -> None:
    """Wait until the processes used ``seconds`` of CPU (on a busy machine this takes longer)."""
    start = tree_cpu_seconds(pids)
    deadline = time.monotonic() + timeout
    while tree_cpu_seconds(pids) - start < seconds:
        assert time.monotonic() < deadline, "the CPU burner got no CPU time"
        time.sleep(0.05)


def test_cpu_burner_shows_in_its_parents_tree_from_the_second_sample(make_tree):
    tree = make_tree("sleep", "burn")
    burner = tree.pids("burn")
    now = [0.0]
    sampler = ProcessTreeSampler(clock=lambda: now[0])
    family = [tree.pid, *burner]

    # independent readings of the tree's CPU time bracket each sample, so the check holds
    # however the OS schedules this test on a crowded machine
    before_first = tree_cpu_seconds(family)
    now[0] = time.monotonic()
    first = sampler.sample(tree.pid)
    after_first = tree_cpu_seconds(family)
    assert first is not None
    assert first.cpu_percent == 0.0  # nothing to compare with yet: never a sleep
    clock_start = now[0]
    wait_for_cpu(burner, 0.6)
    before_second = tree_cpu_seconds(family)
    now[0] = time.monotonic()
    second = sampler.sample(tree.pid)
    after_second = tree_cpu_seconds(family)
    elapsed = now[0] - clock_start

    assert second is not None
    assert set(second.pids) == {tree.pid, *burner}
    # our figure is the tree's real CPU time over the interval (2 clock ticks of rounding)...
    used = second.cpu_percent / 100 * elapsed
    assert before_second - after_first - 0.02 <= used <= after_second - before_first + 0.02
    # ...and clearly busy: > 50% whenever the OS gave the burner more than half a core (it gets a
    # whole one on an idle machine), never mistaken for idle (< 10%) on a crowded one
    assert second.cpu_percent > 20
    at_least = 100 * (before_second - after_first) / elapsed
    assert second.cpu_percent > 50 or at_least < 55


def test_idle_tree_reads_near_zero(make_tree):
    tree = make_tree("sleep", "sleep")
    sampler = ProcessTreeSampler()
    sampler.sample(tree.pid)
    time.sleep(0.5)
    snap = sampler.sample(tree.pid)
    assert snap is not None
    assert snap.cpu_percent < 10
    assert snap.num_children == 1


def test_grandchildren_are_counted_and_memory_is_summed(make_tree):
    tree = make_tree("sleep", "sleep/sleep", "sleep")
    snap = ProcessTreeSampler().sample(tree.pid)
    assert snap is not None
    assert set(snap.pids) == set(tree.roles)
    assert snap.pids[0] == tree.pid
    assert snap.num_children == 3
    assert snap.num_threads >= 4
    rss = sum(psutil.Process(pid).memory_info().rss for pid in tree.roles)
    assert snap.rss == pytest.approx(rss, rel=0.2)
    if not os.path.exists("/proc/self/smaps_rollup"):  # not Linux >= 4.14 (or gVisor)
        assert snap.pss is None
        assert snap.memory == snap.rss
        return
    # PSS splits the interpreter's shared pages among the processes: less than the sum of RSS
    assert snap.pss is not None
    assert 0 < snap.pss < snap.rss
    assert snap.memory == snap.pss
    assert snap.reason is None


def test_child_that_exits_between_samples_is_dropped(make_tree):
    tree = make_tree("sleep", "sleep", "sleep")
    sampler = ProcessTreeSampler()
    first = sampler.sample(tree.pid)
    assert first is not None
    assert len(first.pids) == 3
    gone, kept = tree.pids("sleep")
    psutil.Process(gone).kill()
    # the parent never reaps it: it stays a zombie, which is not a live member of the tree
    deadline = time.monotonic() + 5
    while psutil.Process(gone).status() != psutil.STATUS_ZOMBIE:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    second = sampler.sample(tree.pid)
    assert second is not None
    assert second.pids == (tree.pid, kept)
    assert second.num_children == 1


def test_process_that_vanishes_mid_sample_is_skipped(make_tree, monkeypatch):
    tree = make_tree("sleep", "sleep")
    sampler = ProcessTreeSampler()
    child = tree.pids("sleep")[0]
    # a pid listed as a child but gone by the time it is read (the race every tick can hit)
    vanished = max(psutil.pids()) + 100_000
    listed = sampler._descendants
    monkeypatch.setattr(
        sampler, "_descendants", lambda root, t, full: [*listed(root, t, full), vanished]
    )
    snap = sampler.sample(tree.pid)
    assert snap is not None
    assert snap.pids == (tree.pid, child)


def test_root_gone_returns_none_and_forget_drops_state(make_tree):
    tree = make_tree("sleep")
    sampler = ProcessTreeSampler()
    assert sampler.sample(tree.pid) is not None
    tree.kill()
    assert sampler.sample(tree.pid) is None
    assert tree.pid not in sampler._trees
    sampler.forget(tree.pid)  # forgetting an unknown tree is fine


def test_reused_root_pid_starts_a_fresh_tree(make_tree, monkeypatch):
    tree = make_tree("burn")
    now = [0.0]
    sampler = ProcessTreeSampler(clock=lambda: now[0])
    sampler.sample(tree.pid)
    wait_for_cpu([tree.pid], 0.2)
    now[0] = 1.0
    busy = sampler.sample(tree.pid)
    assert busy is not None
    assert busy.cpu_percent > 0

    # same pid, different create time: another process. Its counters must not be diffed
    # against the old one's, so it reads as a first sample
    real_read = sampler._read

    def reused(pid):
        member = real_read(pid)
        return member if member is None else type(member)(**{**vars(member), "start": -1.0})

    monkeypatch.setattr(sampler, "_read", reused)
    now[0] = 2.0
    fresh = sampler.sample(tree.pid)
    assert fresh is not None
    assert fresh.cpu_percent == 0.0


def test_own_process_and_injected_clock():
    now = [100.0]
    sampler = ProcessTreeSampler(clock=lambda: now[0])
    first = sampler.sample(os.getpid())
    assert first is not None
    assert os.getpid() == first.pids[0]
    end = time.process_time() + 0.2
    while time.process_time() < end:
        pass
    now[0] = 100.5  # the clock says half a second passed; we burned >= 0.2 s of CPU
    second = sampler.sample(os.getpid())
    assert second is not None
    assert second.cpu_percent >= 35


def test_sample_many_forgets_trees_no_longer_wanted(make_tree):
    a, b = make_tree("sleep"), make_tree("sleep")
    sampler = ProcessTreeSampler()
    result = sampler.sample_many([a.pid, b.pid])
    assert set(result) == {a.pid, b.pid}
    sampler.sample_many([a.pid])
    assert set(sampler._trees) == {a.pid}


def test_portable_psutil_path_gives_the_same_tree(make_tree):
    """The path used where /proc has no children files (macOS, old kernels, gVisor)."""
    tree = make_tree("sleep", "sleep/sleep", "burn")
    now = [0.0]
    portable = ProcessTreeSampler(clock=lambda: now[0])
    portable._linux = portable._rollup = False
    first = portable.sample(tree.pid)
    assert first is not None
    assert set(first.pids) == set(tree.roles)
    assert first.pss is None
    assert first.memory == first.rss > 0
    wait_for_cpu(tree.pids("burn"), 0.2)
    now[0] = 1.0
    second = portable.sample(tree.pid)
    assert second is not None
    assert second.cpu_percent > 0
    assert second.num_threads >= 4
    result = portable.sample_many([tree.pid])
    assert result[tree.pid] is not None


@pytest.mark.parametrize("portable", [False, True], ids=["proc", "psutil"])
def test_a_stopped_root_is_reported_and_clears_when_it_continues(make_tree, portable):
    import os
    import signal

    from jupyter_torchlab.metrics.process import STOPPED

    tree = make_tree("sleep")
    sampler = ProcessTreeSampler()
    if portable:
        sampler._linux = sampler._rollup = False
    assert sampler.sample(tree.pid).stopped is False
    os.kill(tree.pid, signal.SIGSTOP)
    try:
        deadline = time.monotonic() + 10
        while not (snap := sampler.sample(tree.pid)).stopped:
            assert time.monotonic() < deadline, "the stop never showed"
            time.sleep(0.02)
        assert snap.reason == f"{STOPPED} (kill -CONT {tree.pid} resumes it)"
        assert snap.reason.startswith("process stopped (SIGSTOP?)")
        assert snap.pids[0] == tree.pid  # still measured: memory and children are real
        assert snap.rss > 0
    finally:
        os.kill(tree.pid, signal.SIGCONT)
    deadline = time.monotonic() + 10
    while (snap := sampler.sample(tree.pid)).stopped:
        assert time.monotonic() < deadline, "the continue never showed"
        time.sleep(0.02)
    assert snap.reason is None or not snap.reason.startswith("process stopped")


def test_read_rss_sums_the_resident_sets_of_live_processes():
    from jupyter_torchlab.metrics.process import read_rss

    with open("/proc/self/status") as f:
        vm_rss = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS:"))
    own = read_rss([os.getpid()])
    assert own is not None
    assert abs(own - vm_rss) < 8 << 20
    assert read_rss([os.getpid(), 2**22 + 1]) == read_rss([os.getpid()])  # a gone pid adds 0
    assert read_rss([2**22 + 1]) is None
