"""The memory guard: a kernel near its memory limit is interrupted, not killed, and says why.

The real tests run kernels in a real memory-limited cgroup (:mod:`.limited_cgroup`; root only,
skipped with the reason elsewhere): with the guard, a cell that keeps appending 100 MiB chunks is
interrupted and the kernel lives on with its variables; without it, the OOM killer takes the
kernel. The decision itself (once per approach) is a pure function, tested with plain asserts.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest
from traitlets import TraitError

from jupyter_torchlab._format import format_bytes
from jupyter_torchlab.server.app import TorchlabExtension
from jupyter_torchlab.server.memory_guard import HYSTERESIS, check_fraction, decide, reason
from jupyter_torchlab.widgets.memory_guard_note import PREFIX

from .conftest import INTERVAL, execute_request, kernel_entry, server_config
from .limited_cgroup import limited_cgroup as limited
from .limited_cgroup import limited_kernelspec, oom_kills, open_notebook

MiB, GiB = 1 << 20, 1 << 30

# --- the decision ---------------------------------------------------------------------------------


def test_the_guard_fires_once_per_approach_and_re_arms_below_the_margin() -> None:
    limit, fraction = 1000, 0.8
    armed = True
    seen = []
    # a busy kernel grows past 800, is interrupted, stays high, dips to 770 (not enough), rises
    # again, then frees down to 700 (below 800 - 5%) and grows once more
    for used in (500, 790, 810, 900, 950, 770, 860, 700, 820):
        fire, armed = decide(armed, used, limit, fraction, busy=True)
        seen.append((used, fire))
    assert [used for used, fire in seen if fire] == [810, 820]
    assert HYSTERESIS == 0.05


def test_an_idle_kernel_over_the_threshold_is_left_alone_until_a_cell_runs() -> None:
    fire, armed = decide(True, 900, 1000, 0.8, busy=False)
    assert (fire, armed) == (False, True)
    assert decide(armed, 900, 1000, 0.8, busy=True) == (True, False)


def test_a_small_fraction_still_re_arms() -> None:
    # the margin never reaches below zero: a guard at 0.04 re-arms below 0.02 of the limit
    assert decide(False, 30, 1000, 0.04, busy=True) == (False, False)
    assert decide(False, 10, 1000, 0.04, busy=True) == (False, True)


def test_the_sentence_names_the_memory_and_the_limit() -> None:
    assert reason(int(2.8 * GiB), 3 * GiB, "cgroup") == (
        "interrupted at 2.8 GiB of a 3.0 GiB limit to save this kernel; free memory, then continue"
    )
    assert reason(15 * GiB, 16 * GiB, "host") == (
        "interrupted at 15 GiB of the host's 16 GiB to save this kernel; free memory, then continue"
    )


@pytest.mark.parametrize("value", [1.0, 1.5, -0.2, 95.0])
def test_a_guard_outside_0_and_1_says_what_to_set(value: float) -> None:
    with pytest.raises(ValueError, match=r"set a fraction between 0 and 1, e\.g\. 0\.95"):
        check_fraction(value)
    app = TorchlabExtension()
    with pytest.raises(TraitError, match=r"TorchlabExtension\.memory_guard .* got "):
        app.memory_guard = value
    assert app.memory_guard == 0.0  # off by default, and a bad value does not stick
    app.memory_guard = 0.95
    assert app.memory_guard == 0.95


# --- a real kernel in a real memory-limited cgroup ------------------------------------------------

#: the cgroup's limit, and the guard's share of it: the threshold is 480 MiB, the headroom 120 MiB
LIMIT = 600 * MiB
GUARD = 0.8
#: a growing training run: a 100 MiB chunk, written so it is resident, every 0.3 s (the pace leaves
#: the guard time to act between two allocations; one allocation larger than the headroom it
#: cannot catch). Without the guard the OOM killer takes the kernel at the 5th or 6th chunk.
GROW = (
    "import time\n"
    "held = []\n"
    "for i in range(20):\n"
    "    held.append(bytearray(b'x') * (100 << 20))\n"
    "    time.sleep(0.3)\n"
)


@pytest.fixture
def jp_server_config(request: Any) -> Any:
    guard = getattr(request, "param", GUARD)
    return server_config(sample_interval=INTERVAL, history_seconds=30.0, memory_guard=guard)


@pytest.fixture
def limited_cgroup() -> Any:
    with limited(LIMIT) as cgroup:
        yield cgroup


@pytest.fixture
def kernelspec(jp_kernel_dir: Path, limited_cgroup: Path) -> str:
    return limited_kernelspec(jp_kernel_dir, limited_cgroup)


async def run_cell(ws: Any, code: str, timeout: float = 60.0) -> dict[str, Any]:
    """Run one cell over the kernel WebSocket; return its stdout, stderr and error name."""
    request = execute_request(code)
    msg_id = json.loads(request)["header"]["msg_id"]
    await ws.write_message(request)
    out: dict[str, Any] = {"stdout": "", "stderr": "", "error": None}
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        assert left > 0, f"no end of {code!r} within {timeout} s: {out}"
        raw = await asyncio.wait_for(ws.read_message(), left)
        assert raw is not None, "the kernel WebSocket closed"
        msg = json.loads(raw)
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        kind, content = msg["msg_type"], msg["content"]
        if kind == "stream":
            out[content["name"]] += content["text"]
        elif kind == "error":
            out["error"] = content["ename"]
        elif kind == "status" and content["execution_state"] == "idle":
            return out


async def guard_events(jp_fetch: Any, kid: str) -> list[dict[str, Any]]:
    r = await jp_fetch("torchlab", "api", "events")
    return [e for e in json.loads(r.body)["memory_guard"] if e["kernel_id"] == kid]


async def guard_counted(jp_fetch: Any) -> float:
    """Return torchlab_memory_guard_interrupts_total{measure="cgroup"} from /metrics."""
    from prometheus_client.parser import text_string_to_metric_families

    r = await jp_fetch("metrics")
    for family in text_string_to_metric_families(r.body.decode()):
        if family.name == "torchlab_memory_guard_interrupts":
            return sum(
                s.value
                for s in family.samples
                if s.name.endswith("_total") and s.labels["measure"] == "cgroup"
            )
    return 0.0


@pytest.mark.slow
async def test_a_growing_cell_is_interrupted_and_the_kernel_keeps_its_variables(
    jp_fetch: Any, jp_ws_fetch: Any, kernelspec: str, limited_cgroup: Path, wait_metrics: Any
) -> None:
    kid = await open_notebook(jp_fetch, kernelspec, "grow.ipynb")
    ws = await jp_ws_fetch("api", "kernels", kid, "channels")
    try:
        doc = await wait_metrics(lambda d: (k := kernel_entry(d, kid)) and k["memory"], 60)
        pid = kernel_entry(doc, kid)["pid"]  # type: ignore[index]
        counted = await guard_counted(jp_fetch)
        kills = oom_kills(limited_cgroup)
        setup = await run_cell(ws, "%load_ext jupyter_torchlab\nkeep = list(range(1000))")
        assert setup["error"] is None, setup

        grew = await run_cell(ws, GROW)
        assert grew["error"] == "KeyboardInterrupt", grew
        (event,) = await guard_events(jp_fetch, kid)
        assert (event["pid"], event["path"], event["fraction"]) == (pid, "grow.ipynb", GUARD)
        # the kernel had its cgroup to itself: compared is that cgroup's unreclaimable charge
        assert (event["memory_limit"], event["limit_source"], event["measure"]) == (
            LIMIT,
            "cgroup",
            "cgroup",
        )
        assert GUARD * LIMIT <= event["memory"] < LIMIT
        sentence = (
            f"interrupted at {format_bytes(event['memory'])} of a {format_bytes(LIMIT)} limit "
            "to save this kernel; free memory, then continue"
        )
        assert event["reason"] == sentence
        # the notebook says why, under the traceback
        assert PREFIX + sentence in grew["stderr"]
        assert await guard_counted(jp_fetch) == counted + 1

        # the kernel lives: same process, no OOM kill, the earlier cell's variable intact
        alive = await run_cell(ws, "print(len(keep), len(held))")
        assert alive["error"] is None, alive
        keep, held = map(int, alive["stdout"].split())
        assert keep == 1000
        assert 4 <= held <= 6
        assert oom_kills(limited_cgroup) == kills
        # the snapshot (stream and REST) carries the event too, for the lab's notification
        doc = await wait_metrics(lambda d: any(e["id"] == event["id"] for e in d["memory_guard"]))
        assert kernel_entry(doc, kid)["pid"] == pid  # type: ignore[index]
        assert not [e for e in doc["events"] if e["kernel_id"] == kid]  # no death

        # once per approach: still over the threshold, a busy cell is not interrupted again
        busy = await run_cell(ws, f"import time\ntime.sleep({10 * INTERVAL})")
        assert busy["error"] is None, busy
        assert len(await guard_events(jp_fetch, kid)) == 1
        # freed, it re-arms: the next approach is interrupted again
        freed = await run_cell(ws, "del held")
        assert freed["error"] is None, freed
        await wait_metrics(
            lambda d: (k := kernel_entry(d, kid)) and k["memory"] < (GUARD - 0.1) * LIMIT
        )
        again = await run_cell(ws, GROW)
        assert again["error"] == "KeyboardInterrupt", again
        assert len(await guard_events(jp_fetch, kid)) == 2
        assert oom_kills(limited_cgroup) == kills
    finally:
        ws.close()
        await jp_fetch("api", "kernels", kid, method="DELETE")


@pytest.mark.slow
@pytest.mark.parametrize("jp_server_config", [0.0], indirect=True)
async def test_without_the_guard_the_oom_killer_takes_the_kernel(
    jp_fetch: Any, jp_ws_fetch: Any, kernelspec: str, wait_metrics: Any
) -> None:
    kid = await open_notebook(jp_fetch, kernelspec, "grow.ipynb")
    ws = await jp_ws_fetch("api", "kernels", kid, "channels")
    try:
        await wait_metrics(lambda d: (k := kernel_entry(d, kid)) and k["memory"], 60)
        await ws.write_message(execute_request("%load_ext jupyter_torchlab\n" + GROW))
        doc = await wait_metrics(lambda d: any(e["kernel_id"] == kid for e in d["events"]), 90)
    finally:
        ws.close()
    (death,) = [e for e in doc["events"] if e["kernel_id"] == kid]
    assert (death["cause"], death["signal"], death["memory_limit"]) == ("oom_killer", 9, LIMIT)
    assert death["reason"].startswith("killed by the out-of-memory killer")
    assert doc["memory_guard"] == []
    assert await guard_events(jp_fetch, kid) == []
    await jp_fetch("api", "kernels", kid, method="DELETE")
