"""Kernels that die, explained: the cause in words, on REST, the stream and Prometheus."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from jupyter_torchlab.metrics.oom import OomCounter, locate, parse_counts, read_count
from jupyter_torchlab.server.deaths import OOM_ADVICE, explain

from .conftest import INTERVAL, kernel_entry

GiB = 1 << 30
FIXTURES = Path(__file__).parents[1] / "metrics" / "fixtures"


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


# --- the cgroup counters ----------------------------------------------------------------------


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
    assert read_count(OomCounter(str(v2), 2)) == 3
    assert read_count(OomCounter(str(v1), 1)) == 2
    assert read_count(OomCounter(str(tmp_path / "gone"), 2)) is None  # reads never raise
    assert parse_counts("garbage\nkey notanumber\n") == {}


def test_a_process_s_counter_is_found_in_v1_and_v2_layouts(tmp_path):
    proc = tmp_path / "proc"
    (proc / "42").mkdir(parents=True)
    (proc / "42" / "cgroup").write_text("4:memory:/hub/alice\n0::/hub/alice\n")
    v1 = tmp_path / "v1"
    (v1 / "memory" / "hub" / "alice").mkdir(parents=True)
    (v1 / "memory" / "hub" / "alice" / "memory.oom_control").write_text("oom_kill 1\n")
    found = locate(42, root=v1, proc=proc)
    assert found == OomCounter(str(v1 / "memory/hub/alice/memory.oom_control"), 1)
    v2 = tmp_path / "v2"
    (v2 / "hub" / "alice").mkdir(parents=True)
    (v2 / "cgroup.controllers").write_text("memory\n")
    (v2 / "hub" / "alice" / "memory.events").write_text("oom_kill 0\n")
    (proc / "42" / "cgroup").write_text("0::/hub/alice\n")
    assert locate(42, root=v2, proc=proc) == OomCounter(str(v2 / "hub/alice/memory.events"), 2)
    # a namespaced view: the path does not exist under the mount, the mount is the cgroup
    (proc / "42" / "cgroup").write_text("0::/kubepods/pod1/abc\n")
    (v2 / "memory.events").write_text("oom_kill 0\n")
    assert locate(42, root=v2, proc=proc) == OomCounter(str(v2 / "memory.events"), 2)
    assert locate(43, root=v2, proc=proc) is None
    # cgroup v1 moves an exiting process to the root cgroup: that counter says so
    (proc / "42" / "cgroup").write_text("4:memory:/\n")
    (v1 / "memory" / "memory.oom_control").write_text("oom_kill 0\n")
    found = locate(42, root=v1, proc=proc)
    assert found == OomCounter(str(v1 / "memory/memory.oom_control"), 1, root=True)


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


def _own_memory_cgroup() -> Path | None:
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


@pytest.fixture
def limited_cgroup() -> Any:
    """A child memory cgroup limited to 256 MiB (root only; skipped where it cannot be made)."""
    if os.geteuid() != 0:
        pytest.skip("creating a memory cgroup needs root")
    parent = _own_memory_cgroup()
    if parent is None:
        pytest.skip("no memory cgroup controller here")
    child = parent / f"torchlab-oom-{uuid.uuid4().hex[:8]}"
    try:
        child.mkdir()
        limit = str(256 << 20)
        if (child / "memory.limit_in_bytes").exists():  # v1
            (child / "memory.limit_in_bytes").write_text(limit)
            if (child / "memory.memsw.limit_in_bytes").exists():
                (child / "memory.memsw.limit_in_bytes").write_text(limit)
        else:  # v2
            (child / "memory.max").write_text(limit)
            if (child / "memory.swap.max").exists():
                (child / "memory.swap.max").write_text("0")
    except OSError as e:
        if child.exists():
            child.rmdir()
        pytest.skip(f"cannot create a limited memory cgroup here ({e})")
    yield child
    for _ in range(50):  # the cgroup can be removed once its processes are gone
        try:
            child.rmdir()
            break
        except OSError:
            time.sleep(0.1)


@pytest.fixture
def oom_kernelspec(jp_kernel_dir: Path, limited_cgroup: Path) -> str:
    """A python3 kernel that moves itself into the limited cgroup before it starts."""
    name = "python3-limited"
    folder = jp_kernel_dir / name
    folder.mkdir(parents=True, exist_ok=True)
    procs = limited_cgroup / "cgroup.procs"
    shell = f'echo $$ > "{procs}" && exec "{sys.executable}" -m ipykernel_launcher -f "$0"'
    spec = {
        "argv": ["/bin/sh", "-c", shell, "{connection_file}"],
        "display_name": name,
        "language": "python",
    }
    (folder / "kernel.json").write_text(json.dumps(spec))
    return name


@pytest.mark.slow
async def test_a_kernel_over_its_cgroup_limit_is_reported_as_killed_by_the_oom_killer(
    jp_fetch: Any, jp_ws_fetch: Any, oom_kernelspec: str, wait_metrics: Any
) -> None:
    from .conftest import execute_request

    body = {"path": "big.ipynb", "name": "big.ipynb", "type": "notebook"}
    body["kernel"] = {"name": oom_kernelspec}  # type: ignore[assignment]
    r = await jp_fetch("api", "sessions", method="POST", body=json.dumps(body))
    kid = json.loads(r.body)["kernel"]["id"]
    ws = await jp_ws_fetch("api", "kernels", kid, "channels")
    await wait_metrics(lambda d: (k := kernel_entry(d, kid)) and k["pid"] and k["memory"], 60)
    # touch 1 GiB page by page: far past the 256 MiB limit
    ws.write_message(
        execute_request("x = bytearray(1 << 30)\nfor i in range(0, len(x), 4096): x[i] = 1")
    )
    doc = await wait_metrics(lambda d: any(e["kernel_id"] == kid for e in d["events"]), 90)
    (event,) = [e for e in doc["events"] if e["kernel_id"] == kid]
    assert event["cause"] == "oom_killer"
    assert event["reason"].startswith("killed by the out-of-memory killer")
    assert event["path"] == "big.ipynb"
    assert event["signal"] == 9
    assert "smaller batch size" in event["reason"]
    ws.close()
    await jp_fetch("api", "kernels", kid, method="DELETE")
    assert INTERVAL > 0


# --- the watch, with the cgroup and the process injected ----------------------------------------


class _Restarters:
    """A kernel manager's restart callbacks and one dead kernel's exit status."""

    def __init__(self, returncode: int | None) -> None:
        self.callbacks: dict[tuple[str, str], Any] = {}
        process = type("Process", (), {"poll": lambda _self: returncode})()
        provisioner = type("Provisioner", (), {"process": process})()
        self.kernel = type("Kernel", (), {"provisioner": provisioner})()

    def add_restart_callback(self, kid: str, callback: Any, event: str) -> None:
        self.callbacks[kid, event] = callback

    def remove_restart_callback(self, kid: str, callback: Any, event: str) -> None:
        self.callbacks.pop((kid, event), None)

    def get_kernel(self, kid: str) -> Any:
        return self.kernel


def _tree(pid: int, rss: int) -> Any:
    from jupyter_torchlab.metrics import ProcessTreeSnapshot

    return ProcessTreeSnapshot(pid, 0.0, rss, None, 1, 0, (pid,))


def test_a_kernel_moved_into_its_own_cgroup_late_is_still_explained(tmp_path, monkeypatch):
    from jupyter_torchlab.server import deaths
    from jupyter_torchlab.server.kernels import KernelInfo

    parent, own = tmp_path / "parent.events", tmp_path / "own.events"
    parent.write_text("oom_kill 7\n")
    own.write_text("oom_kill 0\n")
    where = {"counter": OomCounter(str(parent), 2)}
    monkeypatch.setattr(deaths, "locate", lambda pid: where["counter"])
    km = _Restarters(returncode=-9)
    watch = deaths.DeathWatch(km)
    info = KernelInfo("k1", "python3", "busy", None, None, 1, 4242, "big.ipynb", None)
    watch.sync(["k1"])
    # the launcher moves the kernel into its own cgroup a few ticks after it started
    for tick in range(5):
        if tick == 3:
            where["counter"] = OomCounter(str(own), 2)
        watch.observe({"k1": info}, {"k1": _tree(4242, (tick + 1) * GiB)}, 8 * GiB)
    # the OOM killer takes it; the last ticks read a process being torn down: cgroup v1 has
    # moved it to the root cgroup, then its cgroup can no longer be looked up at all
    own.write_text("oom_kill 1\n")
    top = tmp_path / "root.events"
    top.write_text("oom_kill 0\n")
    where["counter"] = OomCounter(str(top), 2, root=True)
    watch.observe({"k1": info}, {"k1": _tree(4242, 0)}, 8 * GiB)
    where["counter"] = None
    watch.observe({"k1": info}, {"k1": _tree(4242, 0)}, 8 * GiB)
    km.callbacks["k1", "restart"]()
    (event,) = watch.events()
    assert (event.cause, event.path, event.signal) == ("oom_killer", "big.ipynb", 9)
    assert (event.last_memory, event.peak_memory) == (5 * GiB, 5 * GiB)
    assert event.reason.startswith("killed by the out-of-memory killer at 5.0 GiB of its 8.0 GiB")
