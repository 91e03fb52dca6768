"""The files the server writes for its kernels: what one side writes, the other reads."""

from __future__ import annotations

from jupyter_torchlab._runtime_files import (
    DEATHS_FILE,
    DEATHS_KEPT,
    KERNELS_FILE,
    kernel_runs_file,
    read_deaths,
    read_kernels,
    read_runs,
    runs_file_name,
    write_deaths,
    write_kernels,
    write_runs,
)


def test_what_the_server_writes_a_kernel_reads_back(tmp_path):
    connection = str(tmp_path / "kernel-k1.json")
    write_kernels(tmp_path, {4242: {"id": "k1", "name": "python3", "path": "a/train.ipynb"}})
    assert read_kernels(connection) == {
        4242: {"id": "k1", "name": "python3", "path": "a/train.ipynb"}
    }
    deaths = [{"kernel_id": f"k{i}", "time": float(i), "reason": "exited"} for i in range(30)]
    write_deaths(tmp_path, deaths)
    kernel_id, read = read_deaths(connection)  # type: ignore[misc]
    assert kernel_id == "k1"  # from the connection file's name
    assert read == deaths[-DEATHS_KEPT:]  # the newest, oldest first


def test_missing_torn_or_foreign_files_read_as_nothing(tmp_path):
    connection = str(tmp_path / "kernel-k1.json")
    assert read_kernels(connection) == {}
    assert read_deaths(connection) is None
    (tmp_path / KERNELS_FILE).write_text('{"12": {"id": "k1"')  # torn
    (tmp_path / DEATHS_FILE).write_text('{"not": "a list"}')
    assert read_kernels(connection) == {}
    assert read_deaths(connection) is None
    (tmp_path / KERNELS_FILE).write_text('{"x": {}, "7": "no", "8": {"name": "ir"}}')
    (tmp_path / DEATHS_FILE).write_text('[1, {"kernel_id": "k1"}]')
    assert read_kernels(connection) == {8: {"id": "", "name": "ir", "path": None}}
    assert read_deaths(connection) == ("k1", [{"kernel_id": "k1"}])
    # not a kernel's connection file: no kernel id to read them for
    assert read_kernels(str(tmp_path / "notes.json")) == {}


def test_what_a_kernel_writes_the_server_reads_back(tmp_path):
    path = kernel_runs_file(str(tmp_path / "kernel-k1.json"))
    assert path == str(tmp_path / runs_file_name("k1"))
    runs = [{"id": "7-1", "state": "running", "n": 3, "metrics": {"loss": float("nan")}}]
    write_runs(path, 7, runs)  # type: ignore[list-item]
    found = read_runs(path)
    assert found == {"version": 1, "pid": 7, "runs": [{**runs[0], "metrics": {"loss": None}}]}
    # torn, foreign, or runs of no known state: nothing, or left out
    for text in ('{"version": 1, "pid": 7, "ru', '{"version": 2, "pid": 7, "runs": []}', "[]"):
        (tmp_path / "x.json").write_text(text)
        assert read_runs(str(tmp_path / "x.json")) is None
    (tmp_path / "x.json").write_text(
        '{"version": 1, "pid": 7, "runs": [{"id": "a", "state": "paused"}, 3, {"id": "b", '
        '"state": "failed"}]}'
    )
    assert read_runs(str(tmp_path / "x.json")) == {
        "version": 1,
        "pid": 7,
        "runs": [{"id": "b", "state": "failed"}],
    }
    assert read_runs(str(tmp_path / "missing.json")) is None
    assert kernel_runs_file(str(tmp_path / "notes.json")) is None
