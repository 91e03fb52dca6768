"""RunsWatch's memory of ended runs, on real runs files as a kernel writes them.

A kernel's own file keeps ended runs ten minutes; the server keeps them while the kernel lives,
for a day at most, the latest ENDED_KEPT a kernel and OLD_KEPT of those older than ten minutes,
so memory and each document stay bounded.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from jupyter_torchlab._runtime_files import RunRecord, runs_file_name, write_runs
from jupyter_torchlab.server.kernels import KernelInfo
from jupyter_torchlab.server.runs import (
    ENDED_KEPT,
    ENDED_SECONDS,
    OLD_KEPT,
    RECENT_SECONDS,
    RunsWatch,
)


def kernel(kid: str = "k1", pid: int = 4242) -> KernelInfo:
    return KernelInfo(
        id=kid,
        name="python3",
        execution_state="idle",
        last_activity=None,
        busy_since=None,
        connections=0,
        pid=pid,
        path="train.ipynb",
        reason=None,
    )


def record(rid: str, state: str = "finished", ended: float | None = 1000.0) -> RunRecord:
    fields: dict[str, Any] = dict(
        id=rid,
        kind="progress",
        desc=rid,
        n=10,
        total=10,
        unit="it",
        fraction=1.0,
        rate=None,
        eta=None,
        elapsed=1.0,
        started=(ended or 1000.0) - 1,
        updated=ended or 1000.0,
        ended=ended if state != "running" else None,
        state=state,
        error=None,
        metrics={},
        epoch=None,
        epochs=None,
        line="",
        cell_id=None,
        msg_id=None,
    )
    return RunRecord(**fields)  # type: ignore[typeddict-item]


def descs(runs: list[dict[str, Any]]) -> list[str]:
    return [r["desc"] for r in runs]


def test_ended_runs_outlive_the_kernels_file_for_a_day_at_most(tmp_path: Path) -> None:
    now = [1000.0]
    watch = RunsWatch(str(tmp_path), wall=lambda: now[0])
    path = str(tmp_path / runs_file_name("k1"))
    write_runs(path, 4242, [record("done", ended=1000.0)])
    assert descs(watch.observe({"k1": kernel()})["k1"]) == ["done"]
    # an hour on, the kernel's file dropped it (its ten minutes) while a new bar runs
    now[0] += 3600
    write_runs(path, 4242, [record("next", "running")])
    runs = watch.observe({"k1": kernel()})["k1"]
    assert [(r["desc"], r["state"]) for r in runs] == [("next", "running"), ("done", "finished")]
    assert (runs[1]["kernel_id"], runs[1]["path"]) == ("k1", "train.ipynb")
    # a day after it ended it goes
    now[0] = 1000.0 + ENDED_SECONDS + 1
    assert descs(watch.observe({"k1": kernel()})["k1"]) == ["next"]


def test_a_kernel_keeps_its_latest_ended_runs_only_and_takes_them_when_it_goes(
    tmp_path: Path,
) -> None:
    now = [1100.0]
    watch = RunsWatch(str(tmp_path), wall=lambda: now[0])
    path = str(tmp_path / runs_file_name("k1"))
    # files of 5 ended runs each, one after another: the server has seen 30 ended runs
    for batch in range(6):
        runs = [record(f"r{batch * 5 + i}", ended=1000.0 + batch * 5 + i) for i in range(5)]
        write_runs(path, 4242, runs)
        served = watch.observe({"k1": kernel()})["k1"]
    assert descs(served) == [f"r{i}" for i in range(29, 29 - ENDED_KEPT, -1)]
    # ten minutes on, the last few to end stay (the outer bar of a loop ends last)
    now[0] = 1029.0 + RECENT_SECONDS + 1
    served = watch.observe({"k1": kernel()})["k1"]
    assert descs(served) == [f"r{i}" for i in range(29, 29 - OLD_KEPT, -1)]
    # the kernel shut down: its runs go with it
    assert watch.observe({}) == {}
    assert watch.every() == []
