"""The memory guard's two other measures, through a real server, real kernels and real cgroups.

``test_server_memory_guard.py`` covers a kernel alone in a memory-limited cgroup (its cgroup's
unreclaimable charge is compared with the cgroup's limit). Here the other two ways the guard
reads a kernel:

- no cgroup limit over the kernel: the host's physical memory is the limit;
- a limited cgroup shared with another process (a JupyterHub pod: other kernels, the server):
  the kernel's own process tree is compared with the cgroup's limit, so a neighbour's memory
  does not get the kernel interrupted.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from jupyter_torchlab._format import format_bytes
from jupyter_torchlab.metrics import locate_memory_cgroup, read_memory_limit
from jupyter_torchlab.widgets.memory_guard_note import PREFIX

from .conftest import INTERVAL, kernel_entry, server_config
from .limited_cgroup import limited_cgroup as limited
from .limited_cgroup import limited_kernelspec, oom_kills, open_notebook
from .test_server_memory_guard import guard_events, run_cell

pytestmark = pytest.mark.slow

MiB = 1 << 20

#: grows by 50 MiB chunks, resident, every 0.3 s, up to 1 GiB
GROW = (
    "import time\n"
    "held = []\n"
    "for i in range(20):\n"
    "    held.append(bytearray(b'x') * (50 << 20))\n"
    "    time.sleep(0.3)\n"
)


async def grow_until_guarded(jp_fetch: Any, ws: Any, kid: str) -> tuple[dict, dict]:
    """Set the kernel up, grow it until the guard interrupts; return the cell and the event."""
    setup = await run_cell(ws, "%load_ext jupyter_torchlab\nkeep = 'still here'")
    assert setup["error"] is None, setup
    grew = await run_cell(ws, GROW)
    assert grew["error"] == "KeyboardInterrupt", grew
    (event,) = await guard_events(jp_fetch, kid)
    return grew, event


def assert_told(event: dict, grew: dict, sentence: str) -> None:
    """The event gives the sentence as its reason, and the cell says it under its traceback."""
    assert event["reason"] == sentence
    assert PREFIX + sentence in grew["stderr"]


async def assert_variables_kept(ws: Any) -> None:
    """The interrupted kernel still holds what earlier cells made."""
    alive = await run_cell(ws, "print(keep, len(held))")
    assert alive["error"] is None, alive
    assert alive["stdout"].startswith("still here ")


# --- no cgroup limit: the host's memory -----------------------------------------------------------

#: the guard's threshold on the host: a share of the host's memory this many bytes large
HOST_THRESHOLD = 400 * MiB


def host_fraction() -> float:
    """The guard's setting that puts its threshold at HOST_THRESHOLD of this host's memory."""
    return HOST_THRESHOLD / psutil.virtual_memory().total


@pytest.fixture
def jp_server_config(request: Any) -> Any:
    if getattr(request, "param", None) == "host":
        cgroup = locate_memory_cgroup(os.getpid())
        if read_memory_limit(cgroup) is not None:
            pytest.skip("this machine puts the tests under a memory cgroup limit: no host case")
        guard = host_fraction()
    else:
        guard = SHARED_GUARD
    return server_config(sample_interval=INTERVAL, history_seconds=30.0, memory_guard=guard)


@pytest.mark.parametrize("jp_server_config", ["host"], indirect=True)
async def test_without_a_cgroup_limit_the_hosts_memory_is_the_limit(
    jp_fetch: Any, jp_ws_fetch: Any, wait_metrics: Any
) -> None:
    kid = await open_notebook(jp_fetch, "python3", "host.ipynb")
    ws = await jp_ws_fetch("api", "kernels", kid, "channels")
    try:
        doc = await wait_metrics(lambda d: (k := kernel_entry(d, kid)) and k["memory"], 60)
        pid = kernel_entry(doc, kid)["pid"]  # type: ignore[index]
        assert read_memory_limit(locate_memory_cgroup(pid)) is None  # no cgroup limit over it
        host = doc["host"]["memory_total"]
        grew, event = await grow_until_guarded(jp_fetch, ws, kid)
        # the limit is the host's physical memory, and the kernel's process tree is compared
        assert (event["memory_limit"], event["limit_source"], event["measure"]) == (
            host,
            "host",
            "tree",
        )
        assert event["pid"] == pid
        assert HOST_THRESHOLD <= event["memory"] < HOST_THRESHOLD + 400 * MiB
        sentence = (
            f"interrupted at {format_bytes(event['memory'])} of the host's {format_bytes(host)} "
            "to save this kernel; free memory, then continue"
        )
        assert_told(event, grew, sentence)
        await assert_variables_kept(ws)
    finally:
        ws.close()
        await jp_fetch("api", "kernels", kid, method="DELETE")


# --- a limited cgroup shared with another process: the kernel's process tree ---------------------

#: the shared cgroup's limit and the guard's share: the threshold is 300 MiB of the kernel's tree
SHARED_LIMIT = 600 * MiB
SHARED_GUARD = 0.5
CHUNK = 50 * MiB  # what GROW allocates at a time
#: what the neighbour holds in the same cgroup: with it counted (the cgroup's charge), the guard
#: would fire 150 MiB earlier, two or three chunks into GROW
NEIGHBOUR = 150 * MiB


@pytest.fixture
def shared_cgroup() -> Iterator[Path]:
    with limited(SHARED_LIMIT) as cgroup:
        yield cgroup


@pytest.fixture
def neighbour(shared_cgroup: Path) -> Iterator[int]:
    """Another process in the kernel's cgroup, charged there for what it holds."""
    code = (
        f"import sys, time\nheld = bytearray(b'x') * {NEIGHBOUR}\n"
        "print('ready', flush=True)\ntime.sleep(600)\n"
    )
    procs = shared_cgroup / "cgroup.procs"
    shell = f'echo $$ > "{procs}" && exec "{sys.executable}" -c "$0"'
    with subprocess.Popen(["/bin/sh", "-c", shell, code], stdout=subprocess.PIPE) as process:
        try:
            assert process.stdout is not None
            assert process.stdout.readline().strip() == b"ready"
            yield process.pid
        finally:
            process.kill()
            process.wait(10)


async def test_in_a_shared_cgroup_the_kernels_process_tree_is_measured(
    jp_fetch: Any,
    jp_ws_fetch: Any,
    jp_kernel_dir: Path,
    shared_cgroup: Path,
    neighbour: int,
    wait_metrics: Any,
) -> None:
    kernelspec = limited_kernelspec(jp_kernel_dir, shared_cgroup)
    kid = await open_notebook(jp_fetch, kernelspec, "shared.ipynb")
    ws = await jp_ws_fetch("api", "kernels", kid, "channels")
    try:
        doc = await wait_metrics(lambda d: (k := kernel_entry(d, kid)) and k["memory"], 60)
        pid = kernel_entry(doc, kid)["pid"]  # type: ignore[index]
        members = {int(p) for p in (shared_cgroup / "cgroup.procs").read_text().split()}
        assert {pid, neighbour} <= members  # the cgroup is not the kernel's alone
        kills = oom_kills(shared_cgroup)
        grew, event = await grow_until_guarded(jp_fetch, ws, kid)
        # the cgroup's limit, compared with the kernel's process tree, not the cgroup's charge
        assert (event["memory_limit"], event["limit_source"], event["measure"]) == (
            SHARED_LIMIT,
            "cgroup",
            "tree",
        )
        assert event["pid"] == pid
        assert SHARED_GUARD * SHARED_LIMIT <= event["memory"] < SHARED_LIMIT - NEIGHBOUR
        sentence = (
            f"interrupted at {format_bytes(event['memory'])} of a {format_bytes(SHARED_LIMIT)} "
            "limit to save this kernel; free memory, then continue"
        )
        assert_told(event, grew, sentence)
        # the neighbour's memory did not count: the kernel alone holds the threshold (counted
        # with the neighbour's, it would have been stopped about 150 MiB earlier), less at most
        # the chunk the interrupt cut short (allocated and counted, then freed as the
        # KeyboardInterrupt unwound: the CI once read the threshold less 2 MiB); no OOM kill
        await assert_variables_kept(ws)
        doc = await wait_metrics(lambda d: kernel_entry(d, kid)["pid"] == pid)
        held = kernel_entry(doc, kid)["memory"]  # type: ignore[index]
        assert held >= SHARED_GUARD * SHARED_LIMIT - CHUNK, held
        assert oom_kills(shared_cgroup) == kills
    finally:
        ws.close()
        await jp_fetch("api", "kernels", kid, method="DELETE")
