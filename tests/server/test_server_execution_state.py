"""Busy while a cell runs, whatever else the page asks the kernel: a real server and kernel.

The page's requests are sent over the kernel WebSocket as JupyterLab 4.4+ sends them: a
``create_subshell_request`` on the control channel when a widget renders, ``comm_info`` and
``kernel_info`` requests. Each makes the kernel publish a busy/idle pair of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from typing import Any

import pytest

from .conftest import INTERVAL, execute_request, kernel_entry, kernel_message

pytestmark = pytest.mark.slow

PAGE_REQUESTS = [
    ("create_subshell_request", {}, "control"),
    ("kernel_info_request", {}, "control"),
    ("comm_info_request", {}, "shell"),
    ("kernel_info_request", {}, "shell"),
]


@pytest.fixture
def open_notebook(jp_ws_fetch: Any, start_kernel: Any, wait_metrics: Any) -> Any:
    """Start a kernel, connect to it as a page does, and wait until it reads idle."""

    async def open_(path: str | None = None) -> tuple[str, Any]:
        kid = await start_kernel(path=path)
        ws = await jp_ws_fetch("api", "kernels", kid, "channels")
        await wait_metrics(lambda d: (k := kernel_entry(d, kid)) and k["execution_state"] == "idle")
        return kid, ws

    return open_


async def busy_line(jp_fetch: Any, kid: str) -> float | None:
    """Return torchlab_kernel_busy for the kernel on the server's Prometheus /metrics."""
    r = await jp_fetch("metrics")
    for line in r.body.decode().splitlines():
        if line.startswith("torchlab_kernel_busy{") and f'kernel_id="{kid}"' in line:
            return float(line.rsplit(" ", 1)[1])
    return None


async def test_a_cell_stays_busy_through_subshell_and_control_requests_then_goes_idle(
    jp_fetch: Any, open_notebook: Any, wait_metrics: Any, get_metrics: Any
) -> None:
    kid, ws = await open_notebook("train.ipynb")

    await ws.write_message(execute_request("import time; time.sleep(8)"))
    # busy read from the cell's own execute request: on ipykernel 6 (no iopub_welcome) our
    # subscription is first heard at this very status, which jupyter_server's stream may take
    # a callback earlier, so the first busy reading can still name the server as its source
    doc = await wait_metrics(
        lambda d: (
            (k := kernel_entry(d, kid))["execution_state"] == "busy"
            and k["state_source"] == "executions"
        )
    )
    busy_since = kernel_entry(doc, kid)["busy_since"]
    assert time.time() - busy_since < 4.0  # the cell's start, not a later moment
    for msg_type, content, channel in PAGE_REQUESTS:
        await ws.write_message(kernel_message(msg_type, content, channel))
    await asyncio.sleep(0.5)  # their busy/idle pairs have come and gone

    # every reader says busy, with the same start, for the rest of the cell (3 s, ending well
    # before the cell does however long the busy took to be seen)
    seen = 0
    deadline = time.monotonic() + min(3.0, busy_since + 7.0 - time.time())
    while time.monotonic() < deadline:
        doc = await get_metrics()
        entry = kernel_entry(doc, kid)
        assert entry["execution_state"] == "busy", "a page's request made a running cell idle"
        assert entry["busy_since"] == busy_since
        assert await busy_line(jp_fetch, kid) == 1.0
        seen += 1
        await asyncio.sleep(INTERVAL)
    assert seen >= 5
    model = json.loads((await jp_fetch("api", "kernels", kid)).body)
    # the server's own reading of the same moment, for the record: its last status wins
    print("jupyter_server's execution_state while the cell ran:", model["execution_state"])

    # idle within one sample interval (plus the queue gap) of the cell's end
    doc = await wait_metrics(lambda d: kernel_entry(d, kid)["execution_state"] == "idle")
    entry = kernel_entry(doc, kid)
    ended = entry["idle_since"]
    assert busy_since + 7.5 <= ended <= busy_since + 11
    assert doc["time"] - ended <= INTERVAL + 0.2 + 1.0  # + the loop's own latency
    assert entry["busy_since"] is None
    assert await busy_line(jp_fetch, kid) == 0.0
    ws.close()


async def test_queued_cells_are_one_busy_stretch_and_a_request_alone_never_makes_busy(
    open_notebook: Any, monitor: Any
) -> None:
    kid, ws = await open_notebook()

    # page requests on an idle kernel: never busy, idle_since unmoved
    before = monitor.registry.view()[kid]
    for msg_type, content, channel in PAGE_REQUESTS:
        await ws.write_message(kernel_message(msg_type, content, channel))
    for _ in range(20):
        info = monitor.registry.view()[kid]
        assert info.execution_state == "idle"
        assert info.idle_since == before.idle_since
        await asyncio.sleep(0.05)

    # Run All: three cells queued at once
    for _ in range(3):
        await ws.write_message(execute_request("import time; time.sleep(1)"))
    starts = set()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        info = monitor.registry.view()[kid]
        if info.execution_state == "idle" and starts:
            break
        if info.execution_state == "busy":
            starts.add(info.busy_since)
        await asyncio.sleep(0.01)  # faster than any gap between two queued cells
    assert len(starts) == 1, f"queued cells were seen as separate runs: {sorted(starts)}"
    assert info.idle_since - starts.pop() >= 2.9
    ws.close()


async def test_interrupt_ends_a_running_cell(
    jp_fetch: Any, open_notebook: Any, wait_metrics: Any
) -> None:
    kid, ws = await open_notebook()
    await ws.write_message(execute_request("import time; time.sleep(60)"))
    await ws.write_message(execute_request("import time; time.sleep(60)"))  # queued, aborted
    await wait_metrics(lambda d: kernel_entry(d, kid)["execution_state"] == "busy")
    sent = time.time()
    await jp_fetch("api", "kernels", kid, "interrupt", method="POST", body="")
    doc = await wait_metrics(lambda d: kernel_entry(d, kid)["execution_state"] == "idle")
    assert sent <= kernel_entry(doc, kid)["idle_since"] <= sent + 5
    ws.close()


async def test_a_restart_during_a_cell_ends_it(
    jp_fetch: Any, jp_ws_fetch: Any, open_notebook: Any, wait_metrics: Any, monitor: Any
) -> None:
    kid, ws = await open_notebook()
    await ws.write_message(execute_request("import time; time.sleep(60)"))
    doc = await wait_metrics(lambda d: kernel_entry(d, kid)["execution_state"] == "busy")
    old_pid = kernel_entry(doc, kid)["pid"]
    await jp_fetch("api", "kernels", kid, "restart", method="POST", body="")
    doc = await wait_metrics(
        lambda d: (
            (k := kernel_entry(d, kid))["pid"] not in (None, old_pid)
            and k["execution_state"] == "idle"
        )
    )
    assert kernel_entry(doc, kid)["busy_since"] is None
    # the page reconnects to the new process, as JupyterLab does after a restart, and the
    # kernel answers it
    ws.close()
    ws = await jp_ws_fetch("api", "kernels", kid, "channels")
    deadline = time.monotonic() + 30
    answered = False
    while not answered:
        assert time.monotonic() < deadline, "the restarted kernel never answered kernel_info"
        await ws.write_message(kernel_message("kernel_info_request", {}))
        with contextlib.suppress(asyncio.TimeoutError):
            while not answered:
                msg = json.loads(await asyncio.wait_for(ws.read_message(), 2))
                answered = msg.get("msg_type") == "kernel_info_reply"
    # our subscription to the new process hears it (as the page's own sockets, it may need a
    # request through the kernel before a fresh subscription is honoured: after a restart on
    # the same ports, ipykernel 7 has taken seconds to greet one, and jupyter_server's own
    # activity stream was as blind meanwhile)
    deadline = time.monotonic() + 30
    while monitor.registry.view()[kid].state_source != "executions":
        assert time.monotonic() < deadline, "our subscription never heard the restarted kernel"
        await ws.write_message(kernel_message("kernel_info_request", {}))
        await asyncio.sleep(0.5)
    # and the new process is watched: while the page sees the kernel run a cell, so do we
    request = execute_request("import time; time.sleep(10)")
    msg_id = json.loads(request)["header"]["msg_id"]
    await ws.write_message(request)
    deadline = time.monotonic() + 30
    while True:
        assert time.monotonic() < deadline, "the restarted kernel never ran the cell"
        msg = json.loads(await asyncio.wait_for(ws.read_message(), 30))
        if (
            msg.get("msg_type") == "status"
            and msg["parent_header"].get("msg_id") == msg_id
            and msg["content"]["execution_state"] == "busy"
        ):
            break
    # (our subscription is a socket of its own: give the loop a moment to deliver to it, as
    # to jupyter_server's own; on a loaded machine that has taken more than 0.3 s)
    seen = time.monotonic()
    while monitor.registry.view()[kid].execution_state != "busy":
        assert time.monotonic() - seen < 3, "the page saw the cell run; we still read idle"
        await asyncio.sleep(0.05)
    ws.close()


async def wait_heard(monitor: Any, kid: str, old_pid: int | None = None) -> Any:
    """Wait until our subscription hears the kernel's process (other than ``old_pid``)."""
    deadline = time.monotonic() + 30
    while True:
        info = monitor.registry.view().get(kid)
        if (
            info is not None
            and info.pid not in (None, old_pid)
            and info.state_source == "executions"
        ):
            return info
        assert time.monotonic() < deadline, "our subscription never heard the kernel"
        await asyncio.sleep(0.05)


async def we_read_idle(monitor: Any, kid: str, timeout: float = 10) -> Any:
    """Our view of the kernel comes to "idle": once heard (ipykernel 7 greets at once), it may
    still show jupyter_server's "starting" until the kernel_info of the client that started it
    (a page's, or the restart's own) has had its reply."""
    deadline = time.monotonic() + timeout
    while (info := monitor.registry.view()[kid]).execution_state != "idle":
        assert info.execution_state == "starting", info
        assert time.monotonic() < deadline, f"we read {info.execution_state!r}, not idle"
        await asyncio.sleep(0.05)
    assert info.state_source == "executions"
    return info


async def server_reads_idle(jp_fetch: Any, kid: str, timeout: float = 10) -> None:
    """jupyter_server's own execution_state comes to "idle" (its IOPub stream is its own)."""
    deadline, state = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        state = json.loads((await jp_fetch("api", "kernels", kid)).body)["execution_state"]
        if state == "idle":
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"jupyter_server reads the kernel {state!r}, not idle")


async def test_a_kernel_is_heard_before_its_first_cell_and_the_server_reads_it_idle(
    jp_fetch: Any, open_notebook: Any, monitor: Any
) -> None:
    # no request from the page after it connected: a kernel without iopub_welcome (ipykernel 6)
    # is asked for kernel_info by us, so a first cell and a first comm_info find us listening
    kid, ws = await open_notebook()
    await wait_heard(monitor, kid)
    await we_read_idle(monitor, kid)
    await server_reads_idle(jp_fetch, kid)  # the reply's busy/idle pair passes it too
    ws.close()


async def test_a_restarted_kernel_is_heard_with_no_request_from_a_page(
    jp_fetch: Any, open_notebook: Any, monitor: Any
) -> None:
    kid, ws = await open_notebook()
    ws.close()  # no page: nothing but our own requests reaches the new process
    old = await wait_heard(monitor, kid)
    await jp_fetch("api", "kernels", kid, "restart", method="POST", body="")
    await wait_heard(monitor, kid, old.pid)
    await we_read_idle(monitor, kid)
    await server_reads_idle(jp_fetch, kid)


async def test_nothing_is_sent_to_a_kernel_no_client_has_connected_to(
    jp_fetch: Any, start_kernel: Any, monitor: Any
) -> None:
    kid = await start_kernel()
    deadline = time.monotonic() + 30
    while (info := monitor.registry.view().get(kid)) is None or info.pid is None:
        assert time.monotonic() < deadline, "the kernel never reached the registry"
        await asyncio.sleep(0.05)
    await asyncio.sleep(4)  # past our first three kernel_info requests to an unheard kernel
    # jupyter_server ends "starting" at the first status of a request: none was sent
    model = json.loads((await jp_fetch("api", "kernels", kid)).body)
    assert model["execution_state"] == "starting"


async def test_twenty_notebooks_opened_in_a_row_all_get_their_kernel(
    jp_fetch: Any, monitor: Any, caplog: pytest.LogCaptureFixture
) -> None:
    # POST /api/sessions runs jupyter_server's kernel start, during which our registry hears
    # the start event and reads the kernel (last_activity is still unset then): nothing of
    # ours may turn that request into a 500
    ids = []
    for i in range(20):
        body = {"path": f"nb{i}.ipynb", "type": "notebook", "kernel": {"name": "python3"}}
        r = await jp_fetch("api", "sessions", method="POST", body=json.dumps(body))
        assert r.code == 201
        ids.append(json.loads(r.body)["kernel"]["id"])
    deadline = time.monotonic() + 30
    while set(ids) - set(monitor.registry.view()):
        assert time.monotonic() < deadline, "not every kernel reached the registry"
        await asyncio.sleep(INTERVAL)
    errors = [r.getMessage() for r in caplog.records if r.levelname in ("ERROR", "CRITICAL")]
    assert not [e for e in errors if "500" in e or "Traceback" in e or "Uncaught" in e], errors
    for kid in ids:
        await jp_fetch("api", "kernels", kid, method="DELETE")
