"""The files the server writes for its kernels: what one side writes, the other reads."""

from __future__ import annotations

from jupyter_torchlab._runtime_files import (
    DEATHS_FILE,
    DEATHS_KEPT,
    KERNELS_FILE,
    read_deaths,
    read_kernels,
    write_deaths,
    write_kernels,
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
