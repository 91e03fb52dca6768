"""The sentence under a cell the server's memory guard interrupted (read from the runtime file)."""

from __future__ import annotations

from pathlib import Path

from jupyter_torchlab._runtime_files import GuardRecord, read_guard, write_guard
from jupyter_torchlab.widgets.memory_guard_note import PREFIX, note_for

SENTENCE = (
    "interrupted at 2.8 GiB of a 3.0 GiB limit to save this kernel; free memory, then continue"
)


def _record(kernel_id: str, time: float) -> GuardRecord:
    return GuardRecord(
        id="e1",
        kernel_id=kernel_id,
        name="python3",
        path="train.ipynb",
        time=time,
        pid=4242,
        memory=3006477107,
        memory_limit=3 << 30,
        limit_source="cgroup",
        measure="cgroup",
        fraction=0.95,
        reason=SENTENCE,
    )


def test_a_cell_interrupted_by_the_guard_says_why(tmp_path: Path) -> None:
    connection = str(tmp_path / "kernel-abc.json")
    write_guard(tmp_path, {"abc": _record("abc", 1000.0), "other": _record("other", 1000.0)})
    assert read_guard(connection) == _record("abc", 1000.0)
    assert note_for(KeyboardInterrupt(), 990.0, connection) == PREFIX + SENTENCE


def test_other_interrupts_and_errors_say_nothing(tmp_path: Path) -> None:
    connection = str(tmp_path / "kernel-abc.json")
    assert note_for(KeyboardInterrupt(), 990.0, connection) is None  # no file: the toolbar's
    write_guard(tmp_path, {"abc": _record("abc", 1000.0)})
    # an interrupt from the toolbar in a later cell: the record is an earlier cell's
    assert note_for(KeyboardInterrupt(), 1001.0, connection) is None
    assert note_for(ValueError("x"), 990.0, connection) is None
    assert note_for(None, 990.0, connection) is None
    # another kernel's record, or a torn file, is not this kernel's
    assert note_for(KeyboardInterrupt(), 990.0, str(tmp_path / "kernel-xyz.json")) is None
    (tmp_path / "torchlab-memory-guard.json").write_text('{"abc": {"time": 1')
    assert note_for(KeyboardInterrupt(), 990.0, connection) is None
