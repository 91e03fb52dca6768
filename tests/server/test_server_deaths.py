"""Kernels that die, explained: the cause in words, on REST, the stream and Prometheus."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from jupyter_torchlab._format import format_bytes, format_span
from jupyter_torchlab.metrics.memory_cgroup import (
    limit_is_own,
    locate_memory_cgroup,
    parse_counts,
    read_memory_limit,
)
from jupyter_torchlab.server.deaths import OOM_ADVICE, DeathWatch, explain
from jupyter_torchlab.server.kernels import KernelInfo
from tests.metrics.cgroup_files import POD_KERNEL, cgroup_line, pod, stat_line, write_files

from .conftest import execute_request, kernel_entry
from .limited_cgroup import limited_cgroup as limited
from .limited_cgroup import limited_kernelspec, limited_pod, oom_kills, open_notebook

MiB, GiB = 1 << 20, 1 << 30


# --- the explanation ---------------------------------------------------------------------------


def test_the_oom_killer_is_named_with_the_memory_against_the_limit():
    cause, reason, sig, status = explain(-9, True, int(23.8 * GiB), 24 * GiB)
    assert (cause, sig, status) == ("oom_killer", 9, None)
    assert reason == (
        f"killed by the out-of-memory killer at 24 GiB of its 24 GiB memory limit. {OOM_ADVICE}"
    )
    assert "smaller batch size" in reason


def test_sigkill_near_the_limit_is_most_likely_out_of_memory_even_without_the_counter():
    cause, reason, _, _ = explain(-9, False, int(7.5 * GiB), 8 * GiB)
    assert cause == "oom_killer"
    assert reason.startswith(
        "killed by signal 9 (SIGKILL) at 7.5 GiB of its 8.0 GiB memory limit: "
    )
    assert "most likely out of memory" in reason


@pytest.mark.parametrize(
    ("returncode", "cause"),
    [(-9, "oom_killer"), (None, "oom_killer"), (-11, "signal"), (1, "exit"), (0, "exit")],
)
def test_a_risen_oom_count_blames_the_oom_killer_only_for_a_sigkill(returncode, cause):
    # the count is the cgroup's: a DataLoader worker or another kernel killed there does not make
    # this kernel's segfault or exit an OOM kill (the OOM killer only sends SIGKILL)
    assert explain(returncode, True, 1 * GiB, 8 * GiB)[0] == cause


@pytest.mark.parametrize(
    ("returncode", "memory", "cause", "start"),
    [
        (-9, 1 * GiB, "signal", "killed by signal 9 (SIGKILL) at 1.0 GiB of its 8.0 GiB"),
        (-11, None, "signal", "killed by signal 11 (SIGSEGV)"),
        (1, 2 * GiB, "exit", "exited with status 1 at 2.0 GiB of its 8.0 GiB memory limit"),
        (None, None, "unknown", "died; its exit status is not known"),
    ],
)
def test_other_deaths_say_what_happened(returncode, memory, cause, start):
    got_cause, reason, _, _ = explain(returncode, False, memory, 8 * GiB)
    assert got_cause == cause
    assert reason.startswith(start)


# --- a real kernel, killed ----------------------------------------------------------------------


async def _prometheus(jp_fetch: Any) -> str:
    r = await jp_fetch("metrics")
    return r.body.decode()


def _deaths_counted(text: str) -> dict[str, float]:
    """Return torchlab_kernel_deaths_total by reason, from Prometheus' text format."""
    from prometheus_client.parser import text_string_to_metric_families

    for family in text_string_to_metric_families(text):
        if family.name == "torchlab_kernel_deaths":
            return {
                s.labels["reason"]: s.value for s in family.samples if s.name.endswith("_total")
            }
    return {}


@pytest.mark.slow
async def test_a_killed_kernel_is_explained_on_rest_the_stream_and_prometheus(
    jp_fetch: Any, jp_ws_fetch: Any, jp_serverapp: Any, start_kernel: Any, wait_metrics: Any
) -> None:
    kid = await start_kernel(path="work/killed.ipynb")
    ws = await jp_ws_fetch("api", "kernels", kid, "channels")
    doc = await wait_metrics(lambda d: (k := kernel_entry(d, kid)) and k["pid"] and k["memory"])
    pid = kernel_entry(doc, kid)["pid"]  # type: ignore[index]
    stream = await jp_ws_fetch("torchlab", "api", "stream")
    counted = _deaths_counted(await _prometheus(jp_fetch))
    # each kernel's pid and notebook beside the connection files, for kernels' OOM reports
    kernels_file = Path(jp_serverapp.runtime_dir) / "torchlab-kernels.json"
    assert json.loads(kernels_file.read_text())[str(pid)] == {
        "id": kid,
        "name": "python3",
        "path": "work/killed.ipynb",
    }
    before = time.time()
    os.kill(pid, signal.SIGKILL)

    doc = await wait_metrics(lambda d: any(e["kernel_id"] == kid for e in d["events"]), 60)
    (event,) = [e for e in doc["events"] if e["kernel_id"] == kid]
    assert event["path"] == "work/killed.ipynb"
    assert event["pid"] == pid
    assert event["signal"] == 9
    assert event["cause"] in ("signal", "oom_killer")
    assert event["reason"].startswith("killed by signal 9 (SIGKILL) at ")
    assert event["last_memory"] > 0
    assert event["peak_memory"] >= event["last_memory"]
    assert event["time"] >= before
    assert event["restarting"] is True  # jupyter_server starts a new kernel in its place

    # written down beside the connection files, for the restarted kernel's monitor
    record = json.loads((Path(jp_serverapp.runtime_dir) / "torchlab-deaths.json").read_text())
    assert [e["id"] for e in record if e["kernel_id"] == kid] == [event["id"]]
    r = await jp_fetch("torchlab", "api", "events")
    kept = json.loads(r.body)["events"]
    assert [e["id"] for e in kept if e["kernel_id"] == kid] == [event["id"]]
    r = await jp_fetch("torchlab", "api", "events", params={"since": str(event["time"])})
    assert json.loads(r.body)["events"] == []

    deadline = time.monotonic() + 30
    streamed = None
    while streamed is None and time.monotonic() < deadline:
        message = json.loads(await asyncio.wait_for(stream.read_message(), 10))
        streamed = next((e for e in message.get("events", []) if e["id"] == event["id"]), None)
    assert streamed == event

    after = _deaths_counted(await _prometheus(jp_fetch))
    assert after.get(event["cause"], 0) == counted.get(event["cause"], 0) + 1
    # the document counts it too, for this server alone (the hub service serves these totals)
    doc = await wait_metrics(lambda d: d["counts"]["kernel_deaths"], 10)
    assert doc["counts"]["kernel_deaths"] == {event["cause"]: 1}
    # the new kernel is watched as well
    doc = await wait_metrics(lambda d: (k := kernel_entry(d, kid)) and k["pid"] not in (None, pid))
    stream.close()
    ws.close()


async def test_events_since_must_be_a_time(jp_fetch: Any) -> None:
    from tornado.httpclient import HTTPClientError

    with pytest.raises(HTTPClientError) as e:
        await jp_fetch("torchlab", "api", "events", params={"since": "yesterday"})
    assert e.value.code == 400
    assert "since must be a unix time in seconds" in json.loads(e.value.response.body)["message"]


# --- the OOM killer itself, in a cgroup with a small memory limit --------------------------------

#: the limited cgroup's limit: small enough to reach quickly, large enough to hold two kernels
LIMIT = 512 * MiB
#: a cell that grows 8 MiB every 50 ms until the OOM killer takes it: paced like a growing training
#: run rather than one huge allocation, so the ticks see the kernel close to its limit
GROW = (
    "import time\nheld = []\nwhile True:\n    held.append(b'x' * (8 << 20))\n    time.sleep(0.05)\n"
)


@pytest.fixture
def limited_cgroup() -> Any:
    """A child memory cgroup limited to LIMIT (root only; skipped where it cannot be made)."""
    with limited(LIMIT) as cgroup:
        yield cgroup


@pytest.fixture
def oom_kernelspec(jp_kernel_dir: Path, limited_cgroup: Path) -> str:
    """A python3 kernel that moves itself into the limited cgroup before it starts."""
    return limited_kernelspec(jp_kernel_dir, limited_cgroup)


@pytest.mark.slow
async def test_a_kernel_over_its_cgroup_limit_is_reported_as_killed_by_the_oom_killer(
    jp_fetch: Any, jp_ws_fetch: Any, oom_kernelspec: str, wait_metrics: Any
) -> None:
    kid = await open_notebook(jp_fetch, oom_kernelspec, "big.ipynb")
    ws = await jp_ws_fetch("api", "kernels", kid, "channels")
    await wait_metrics(lambda d: (k := kernel_entry(d, kid)) and k["pid"] and k["memory"], 60)
    # touch 1 GiB page by page: far past the limit
    ws.write_message(
        execute_request("x = bytearray(1 << 30)\nfor i in range(0, len(x), 4096): x[i] = 1")
    )
    doc = await wait_metrics(lambda d: any(e["kernel_id"] == kid for e in d["events"]), 90)
    (event,) = [e for e in doc["events"] if e["kernel_id"] == kid]
    assert event["cause"] == "oom_killer"
    assert event["reason"].startswith("killed by the out-of-memory killer")
    assert event["path"] == "big.ipynb"
    assert event["signal"] == 9
    assert event["memory_limit"] == LIMIT  # the kernel's cgroup's, not the server's (none)
    assert "smaller batch size" in event["reason"]
    ws.close()
    await jp_fetch("api", "kernels", kid, method="DELETE")


@pytest.mark.slow
async def test_two_kernels_in_one_limited_cgroup_each_die_of_their_own_cause(
    jp_fetch: Any,
    jp_ws_fetch: Any,
    oom_kernelspec: str,
    limited_cgroup: Path,
    wait_metrics: Any,
) -> None:
    # a user server in a pod: two kernels share one limited cgroup (the server is not in it). One
    # grows until the OOM killer takes it; the other is SIGKILLed by hand 3 s later
    grow = await open_notebook(jp_fetch, oom_kernelspec, "grow.ipynb")
    small = await open_notebook(jp_fetch, oom_kernelspec, "small.ipynb")
    ws = None
    try:
        both = (grow, small)
        doc = await wait_metrics(
            lambda d: all((k := kernel_entry(d, kid)) and k["pid"] and k["memory"] for kid in both),
            60,
        )
        small_pid = kernel_entry(doc, small)["pid"]  # type: ignore[index]
        kills = oom_kills(limited_cgroup)
        ws = await jp_ws_fetch("api", "kernels", grow, "channels")
        ws.write_message(execute_request(GROW))
        deadline = time.monotonic() + 60
        while oom_kills(limited_cgroup) == kills:
            assert time.monotonic() < deadline, "the OOM killer did not strike within 60 s"
            await asyncio.sleep(0.05)
        await asyncio.sleep(3)
        os.kill(small_pid, signal.SIGKILL)
        doc = await wait_metrics(lambda d: {e["kernel_id"] for e in d["events"]} >= set(both), 60)
    finally:
        if ws is not None:
            ws.close()
        for kid in (grow, small):
            with contextlib.suppress(Exception):
                await jp_fetch("api", "kernels", kid, method="DELETE")
    events = {e["kernel_id"]: e for e in doc["events"]}
    oom, killed = events[grow], events[small]
    assert (oom["cause"], oom["signal"], oom["memory_limit"]) == ("oom_killer", 9, LIMIT)
    # the growing kernel died in the middle of its cell, and says so
    assert oom["busy_for"] is not None
    assert 0 < oom["busy_for"] < 60
    assert oom["reason"] == (
        f"killed by the out-of-memory killer at {format_bytes(oom['last_memory'])} "
        f"of its {format_bytes(LIMIT)} memory limit while a cell ran "
        f"(for {format_span(oom['busy_for'])}). {OOM_ADVICE}"
    )
    # the reading from before the kill, near the limit, not one taken as the kernel was torn down
    assert oom["last_memory"] >= 0.6 * LIMIT
    assert (killed["cause"], killed["signal"], killed["memory_limit"]) == ("signal", 9, LIMIT)
    assert killed["busy_for"] is None  # it was idle
    assert killed["reason"] == (
        f"killed by signal 9 (SIGKILL) at {format_bytes(killed['last_memory'])} "
        f"of its {format_bytes(LIMIT)} memory limit"
    )


@pytest.mark.slow
async def test_a_kernel_under_a_limited_parent_cgroup_is_told_the_parent_s_limit(
    jp_fetch: Any, jp_ws_fetch: Any, jp_kernel_dir: Path, wait_metrics: Any
) -> None:
    # a Kubernetes pod's shape: the limit is on the pod's cgroup, the kernel runs in a child
    # cgroup without a limit of its own. The limit that applies, and that the OOM killer acts
    # on, is the pod's
    with limited_pod(LIMIT) as (pod, kernels):
        spec = limited_kernelspec(jp_kernel_dir, kernels, "python3-in-pod")
        kid = await open_notebook(jp_fetch, spec, "pod.ipynb")
        ws = None
        try:
            doc = await wait_metrics(
                lambda d: (k := kernel_entry(d, kid)) and k["pid"] and k["memory"], 60
            )
            pid = kernel_entry(doc, kid)["pid"]  # type: ignore[index]
            assert str(pid) in (kernels / "cgroup.procs").read_text().split()
            assert (pod / "cgroup.procs").read_text().split() == []
            # the live kernel's reading: its own cgroup (no limit there), the pod's limit
            cgroup = locate_memory_cgroup(pid)
            assert cgroup is not None
            assert Path(cgroup.oom_file).parent == kernels
            assert read_memory_limit(cgroup) == LIMIT
            assert not limit_is_own(cgroup)
            kills = oom_kills(kernels)
            ws = await jp_ws_fetch("api", "kernels", kid, "channels")
            ws.write_message(execute_request(GROW))
            doc = await wait_metrics(lambda d: any(e["kernel_id"] == kid for e in d["events"]), 60)
            assert oom_kills(kernels) > kills  # the OOM killer did strike, counted in the child
        finally:
            if ws is not None:
                ws.close()
            with contextlib.suppress(Exception):
                await jp_fetch("api", "kernels", kid, method="DELETE")
    (event,) = [e for e in doc["events"] if e["kernel_id"] == kid]
    assert (event["cause"], event["signal"], event["path"]) == ("oom_killer", 9, "pod.ipynb")
    assert event["memory_limit"] == LIMIT  # the pod's, though the kernel's cgroup has none
    assert event["busy_for"] is not None
    assert event["reason"] == (
        f"killed by the out-of-memory killer at {format_bytes(event['last_memory'])} "
        f"of its {format_bytes(LIMIT)} memory limit while a cell ran "
        f"(for {format_span(event['busy_for'])}). {OOM_ADVICE}"
    )
    assert "of its 512 MiB memory limit" in event["reason"]
    assert event["last_memory"] >= 0.6 * LIMIT  # read before the kill, near the pod's limit


# --- the watch, on a /proc and a cgroup tree on disk ----------------------------------------------


class _Restarters:
    """A kernel manager's restart callbacks, and each dead kernel's exit status."""

    def __init__(self) -> None:
        self.callbacks: dict[tuple[str, str], Any] = {}
        self.returncodes: dict[str, int | None] = {}

    def add_restart_callback(self, kid: str, callback: Any, event: str) -> None:
        self.callbacks[kid, event] = callback

    def remove_restart_callback(self, kid: str, callback: Any, event: str) -> None:
        self.callbacks.pop((kid, event), None)

    def get_kernel(self, kid: str) -> Any:
        process = type("Process", (), {"poll": lambda _self: self.returncodes.get(kid)})()
        provisioner = type("Provisioner", (), {"process": process})()
        return type("Kernel", (), {"provisioner": provisioner})()

    def died(self, kid: str, returncode: int) -> None:
        """The restarter notices the dead process (and would start a new one)."""
        self.returncodes[kid] = returncode
        self.callbacks[kid, "restart"]()


class _Machine:
    """A /proc and a cgroup hierarchy on disk, which the watch reads as it would the real ones."""

    def __init__(self, tmp_path: Path, version: int = 2) -> None:
        self.version = version
        self.proc = write_files(tmp_path / "proc", {"1/stat": stat_line(1, "S")})
        self.cgroup = tmp_path / "cgroup"

    def run(self, pid: int, cgroup: str, state: str = "S", **stat: int) -> None:
        """Put process ``pid`` in ``cgroup``, in that state."""
        write_files(
            self.proc,
            {f"{pid}/cgroup": cgroup_line(self.version, cgroup), f"{pid}/stat": ""},
        )
        self.state(pid, state, **stat)

    def state(self, pid: int, state: str, **stat: int) -> None:
        (self.proc / str(pid) / "stat").write_text(stat_line(pid, state, **stat))

    def oom_kill(self, pid: int, cgroup: str) -> None:
        """What the OOM killer does: count the kill in the cgroup, then send SIGKILL."""
        folder = self.cgroup / ("memory" if self.version == 1 else "") / cgroup.lstrip("/")
        name = "memory.oom_control" if self.version == 1 else "memory.events"
        count = parse_counts((folder / name).read_text())["oom_kill"]
        (folder / name).write_text(f"oom_kill {count + 1}\n")
        self.state(pid, "R", pending=1 << (signal.SIGKILL - 1))

    def watch(self, km: _Restarters) -> DeathWatch:
        return DeathWatch(km, cgroup_root=str(self.cgroup), proc=str(self.proc))


def _kernel(kid: str, pid: int, path: str) -> KernelInfo:
    return KernelInfo(
        id=kid,
        name="python3",
        execution_state="busy",
        last_activity=None,
        busy_since=None,
        connections=1,
        pid=pid,
        path=path,
        reason=None,
    )


def _tree(pid: int, rss: int) -> Any:
    from jupyter_torchlab.metrics import ProcessTreeSnapshot

    return ProcessTreeSnapshot(pid, 0.0, rss, None, 1, 0, (pid,))


@pytest.mark.parametrize("version", [1, 2])
def test_two_kernels_in_a_limited_pod_are_each_told_their_own_death(tmp_path, version):
    # the case: a user server's pod limited to 3 GiB; two kernels in it, in a cgroup of
    # their own without a limit. One grows until the OOM killer takes it; the other is SIGKILLed
    # by hand 3 s later. The server's own limit plays no part: theirs is the pod's
    machine = _Machine(tmp_path, version)
    pod(machine.cgroup, version, pod_limit=3 * GiB, own_limit=None)
    machine.run(100, POD_KERNEL)
    machine.run(200, POD_KERNEL)
    kernels = {
        "grow": _kernel("grow", 100, "grow.ipynb"),
        "small": _kernel("small", 200, "s.ipynb"),
    }
    km = _Restarters()
    watch = machine.watch(km)
    watch.sync(kernels)

    def tick(grow_memory: int) -> None:
        trees = {"grow": _tree(100, grow_memory), "small": _tree(200, 38 * MiB)}
        watch.observe(kernels, trees)

    for step in range(1, 11):
        tick(step * 297 * GiB // 1000)  # to 2.97 GiB
    machine.oom_kill(100, POD_KERNEL)
    tick(12 * MiB)  # what the OOM reaper has left of it, while it exits
    machine.state(100, "Z")
    for _ in range(14):  # the restarter looks every 3 s; the sampler ticks every 0.2 s
        tick(0)
    km.died("grow", -9)
    for _ in range(15):  # 3 s later, by hand
        tick(0)
    machine.state(200, "Z")
    tick(0)
    km.died("small", -9)

    oom, killed = watch.events()
    assert (oom.kernel_id, oom.cause, oom.memory_limit) == ("grow", "oom_killer", 3 * GiB)
    assert oom.reason == (
        f"killed by the out-of-memory killer at 3.0 GiB of its 3.0 GiB memory limit. {OOM_ADVICE}"
    )
    assert (killed.kernel_id, killed.cause, killed.memory_limit) == ("small", "signal", 3 * GiB)
    assert killed.reason == "killed by signal 9 (SIGKILL) at 38 MiB of its 3.0 GiB memory limit"


def test_a_kill_between_a_kernel_s_last_reading_and_its_death_is_still_its_own(tmp_path):
    # two kernels in one cgroup die together: each reading predates both kills, so both were
    # killed by the OOM killer as far as the count can tell (it counted two)
    machine = _Machine(tmp_path)
    pod(machine.cgroup, 2, pod_limit=None, own_limit=GiB)
    for pid in (100, 200):
        machine.run(pid, POD_KERNEL)
    kernels = {"a": _kernel("a", 100, "a.ipynb"), "b": _kernel("b", 200, "b.ipynb")}
    km = _Restarters()
    watch = machine.watch(km)
    watch.sync(kernels)
    trees = {"a": _tree(100, 600 * MiB), "b": _tree(200, 300 * MiB)}
    watch.observe(kernels, trees)
    machine.oom_kill(100, POD_KERNEL)
    machine.oom_kill(200, POD_KERNEL)
    watch.observe(kernels, trees)  # both on their way out: nothing of this reading is kept
    km.died("a", -9)
    km.died("b", -9)
    assert [(e.kernel_id, e.cause) for e in watch.events()] == [
        ("a", "oom_killer"),
        ("b", "oom_killer"),
    ]
    assert [e.reason.split(". ")[0] for e in watch.events()] == [
        "killed by the out-of-memory killer at 600 MiB of its 1.0 GiB memory limit",
        "killed by the out-of-memory killer at 300 MiB of its 1.0 GiB memory limit",
    ]


def test_a_kernel_moved_into_its_own_cgroup_late_is_still_explained(tmp_path):
    machine = _Machine(tmp_path)
    pod(machine.cgroup, 2, pod_limit=8 * GiB, own_limit=None)
    write_files(machine.cgroup / "kubepods/pod1", {"memory.events": "oom 9\noom_kill 7\n"})
    machine.run(4242, "/kubepods/pod1")
    km = _Restarters()
    watch = machine.watch(km)
    info = {"k1": _kernel("k1", 4242, "big.ipynb")}
    watch.sync(info)
    # the launcher moves the kernel into its own cgroup a few ticks after it started
    for tick in range(5):
        if tick == 3:
            machine.run(4242, POD_KERNEL)
        watch.observe(info, {"k1": _tree(4242, (tick + 1) * GiB)})
    # the OOM killer takes it; the last ticks read a process being torn down: cgroup v1 has
    # moved it to the root cgroup, then its cgroup can no longer be looked up at all
    machine.oom_kill(4242, POD_KERNEL)
    machine.run(4242, "/", "R", flags=0x400104)
    watch.observe(info, {"k1": _tree(4242, 0)})
    (machine.proc / "4242" / "cgroup").unlink()
    machine.state(4242, "Z")
    watch.observe(info, {"k1": _tree(4242, 0)})
    km.died("k1", -9)
    (event,) = watch.events()
    assert (event.cause, event.path, event.signal) == ("oom_killer", "big.ipynb", 9)
    assert (event.last_memory, event.peak_memory) == (5 * GiB, 5 * GiB)
    assert event.reason.startswith("killed by the out-of-memory killer at 5.0 GiB of its 8.0 GiB")


def test_a_kernel_that_dies_while_running_a_cell_says_for_how_long(tmp_path):
    import dataclasses

    machine = _Machine(tmp_path)
    pod(machine.cgroup, 2, pod_limit=3 * GiB, own_limit=None)
    machine.run(100, POD_KERNEL)
    machine.run(200, POD_KERNEL)
    # the registry's reading: "train" has been executing cells since 1000.0, "notes" is idle
    kernels = {
        "train": dataclasses.replace(_kernel("train", 100, "train.ipynb"), busy_since=1000.0),
        "notes": dataclasses.replace(_kernel("notes", 200, "n.ipynb"), execution_state="idle"),
    }
    km = _Restarters()
    watch = DeathWatch(
        km, cgroup_root=str(machine.cgroup), proc=str(machine.proc), wall=lambda: 1125.0
    )
    watch.sync(kernels)
    watch.observe(kernels, {"train": _tree(100, GiB), "notes": _tree(200, 40 * MiB)})
    km.died("train", -9)
    km.died("notes", -9)

    train, notes = watch.events()
    assert train.busy_for == 125.0
    assert train.reason == (
        "killed by signal 9 (SIGKILL) at 1.0 GiB of its 3.0 GiB memory limit "
        "while a cell ran (for 2 min 05 s)"
    )
    assert notes.busy_for is None
    assert notes.reason == "killed by signal 9 (SIGKILL) at 40 MiB of its 3.0 GiB memory limit"
