"""``jupyter torchlab run``: its pure parts, then real kernels."""

import io
import signal
import subprocess

import nbformat
import pytest

from jupyter_torchlab.cli.run import (
    TerminalReporter,
    _write_notebook,
    inject_parameters,
    parse_param,
)

from ._helpers import JUPYTER, SCRIPT, cli, make_notebook
from ._helpers import user_env as _env


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("EPOCHS=1", ("EPOCHS", 1)),
        ("LR=0.5", ("LR", 0.5)),
        ("FLAG=True", ("FLAG", True)),
        ("NAME='x y'", ("NAME", "x y")),
        ("DATA_ROOT=/tmp/data", ("DATA_ROOT", "/tmp/data")),
        ("EMPTY=", ("EMPTY", "")),
        ("SIZES=[1, 2]", ("SIZES", [1, 2])),
    ],
)
def test_parse_param(text, expected):
    assert parse_param(text) == expected


@pytest.mark.parametrize("text", ["EPOCHS", "1X=2", "=3"])
def test_parse_param_rejects_bad_input(text):
    with pytest.raises(ValueError, match="NAME=VALUE"):
        parse_param(text)


def test_inject_parameters_after_the_tagged_cell(tmp_path):
    nb = nbformat.read(
        make_notebook(tmp_path / "p.ipynb", "print(A)", params="A = 1\nB = 'x'"), as_version=4
    )
    warnings = inject_parameters(nb, {"A": 2, "TYPO": 3})
    assert nb.cells[1].source == "A = 1\nB = 'x'"  # the defaults stay visible
    injected = nb.cells[2]
    assert injected.metadata.tags == ["injected-parameters"]
    assert "A = 2\nTYPO = 3" in injected.source
    assert len(warnings) == 1
    assert "TYPO is not set in the notebook's parameters cell" in warnings[0]


def test_inject_parameters_without_a_tagged_cell_goes_first(tmp_path):
    nb = nbformat.read(make_notebook(tmp_path / "p.ipynb", "print(A)"), as_version=4)
    warnings = inject_parameters(nb, {"A": 2})
    assert nb.cells[0].source.endswith("A = 2")
    assert "no cell tagged 'parameters'" in warnings[0]


def test_reporter_numbers_code_cells_and_shows_elapsed(tmp_path):
    nb = nbformat.read(make_notebook(tmp_path / "r.ipynb", "x = 1", "", "y = 2"), as_version=4)
    now = [100.0]
    out, err = io.StringIO(), io.StringIO()
    reporter = TerminalReporter(nb, out=out, err=err, clock=lambda: now[0])
    now[0] = 165.0
    reporter.on_cell_execute(cell=nb.cells[3], cell_index=3)
    reporter.on_message({"msg_type": "stream", "content": {"name": "stderr", "text": "warn\n"}})
    # a progress bar redrawn with "\r" leaves the cursor mid-line: the next header starts afresh
    reporter.on_message({"msg_type": "stream", "content": {"name": "stdout", "text": "50%\r"}})
    now[0] = 170.0
    reporter.on_cell_execute(cell=nb.cells[1], cell_index=1)
    # the empty cell does not count: 2 code cells
    assert out.getvalue() == (
        "[2/2] cell 4 (1:05 elapsed)  y = 2\n50%\r\n[1/2] cell 2 (1:10 elapsed)  x = 1\n"
    )
    assert err.getvalue() == "warn\n"
    assert reporter.summary() == "Ran 2 code cells in 1:10."


def test_reporter_skips_widget_reprs(tmp_path):
    nb = nbformat.read(make_notebook(tmp_path / "w.ipynb", "x"), as_version=4)
    out = io.StringIO()
    reporter = TerminalReporter(nb, out=out, err=io.StringIO())
    widget = {"application/vnd.jupyter.widget-view+json": {}, "text/plain": "HBox(...)"}
    reporter.on_message({"msg_type": "display_data", "content": {"data": widget}})
    reporter.on_message({"msg_type": "execute_result", "content": {"data": {"text/plain": "42"}}})
    assert out.getvalue() == "42\n"


def test_the_executed_copy_is_saved_as_nbformat_saves_a_notebook(tmp_path):
    source = make_notebook(tmp_path / "src.ipynb", "print('héllo')")
    nb = nbformat.read(source, as_version=4)
    _write_notebook(nb, tmp_path / "out.ipynb")
    written = (tmp_path / "out.ipynb").read_bytes()
    assert written == source.read_bytes()  # utf-8 JSON with the final newline
    assert "héllo".encode() in written
    assert {p.name for p in tmp_path.iterdir()} == {"src.ipynb", "out.ipynb"}  # no temporary file


def test_the_executed_copy_is_not_written_into_a_missing_folder(tmp_path):
    nb = nbformat.read(make_notebook(tmp_path / "src.ipynb", "1"), as_version=4)
    with pytest.raises(FileNotFoundError, match="missing"):
        _write_notebook(nb, tmp_path / "missing" / "out.ipynb")
    assert not (tmp_path / "missing").exists()


# -- run: real kernels -------------------------------------------------------------------------


@pytest.mark.slow
def test_run_executes_and_writes_the_executed_copy(tmp_path):
    nb_path = make_notebook(
        tmp_path / "ok.ipynb",
        "import os\nprint('cwd', os.getcwd())\nprint('hello', NAME * N)",
        "N * 21",
        params="N = 1\nNAME = 'a'",
    )
    source_bytes = nb_path.read_bytes()
    result = subprocess.run(
        [str(JUPYTER), "torchlab", "run", str(nb_path), "-p", "N=2", "--param", "NAME=b"],
        cwd="/",
        env=_env(),
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "[1/4] cell 2" in out
    assert "hello bb" in out  # the kernel's output, streamed; parameters were applied
    assert f"cwd {tmp_path}" in out  # the kernel runs beside the notebook
    assert "42" in out
    assert "Ran 4 code cells in" in out
    assert nb_path.read_bytes() == source_bytes  # the source is never touched
    executed = nbformat.read(tmp_path / "ok.executed.ipynb", as_version=4)
    texts = [o.get("text", "") for c in executed.cells if c.cell_type == "code" for o in c.outputs]
    assert any("hello bb" in t for t in texts)
    assert executed.cells[2].metadata.tags == ["injected-parameters"]


@pytest.mark.slow
def test_run_failure_exits_nonzero_with_the_cell_and_error(tmp_path):
    nb_path = make_notebook(
        tmp_path / "bad.ipynb",
        "print('before')",
        "def load():\n    raise ValueError('no data here')\nload()",
        "print('never')",
    )
    result = cli("run", str(nb_path), timeout=180)
    assert result.returncode == 1
    err = result.stderr
    assert "FAILED in cell 3 (code cell 2/3)" in err
    assert "    def load():" in err  # the head of the failing cell's source
    assert "ValueError: no data here" in err
    assert "\x1b[" not in err  # no colour codes when not on a terminal
    assert "never" not in result.stdout
    executed = nbformat.read(tmp_path / "bad.executed.ipynb", as_version=4)
    assert executed.cells[2].outputs[-1]["ename"] == "ValueError"


@pytest.mark.slow
def test_run_timeout_fails_the_cell(tmp_path):
    nb_path = make_notebook(tmp_path / "slow.ipynb", "import time\ntime.sleep(60)")
    result = cli("run", str(nb_path), "--timeout", "1", timeout=180)
    assert result.returncode == 1
    assert "TIMED OUT in cell 2" in result.stderr


@pytest.mark.slow
def test_ctrl_c_interrupts_the_running_cell(tmp_path):
    nb_path = make_notebook(
        tmp_path / "long.ipynb",
        "import time\nprint('started', flush=True)\nwhile True:\n    time.sleep(0.05)",
    )
    proc = subprocess.Popen(
        [str(SCRIPT), "run", str(nb_path)],
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        for line in proc.stdout:  # wait for the cell to be really running
            if line.startswith("started"):
                break
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130
    assert "INTERRUPTED in cell 2" in err
    assert "KeyboardInterrupt" in err
    assert (tmp_path / "long.executed.ipynb").exists()


@pytest.mark.slow
def test_run_into_a_missing_output_folder_fails_with_advice(tmp_path):
    nb_path = make_notebook(tmp_path / "x.ipynb", "1")
    result = cli("run", str(nb_path), "--output", str(tmp_path / "missing" / "x.ipynb"))
    assert result.returncode == 1
    assert "cannot write the executed notebook to" in result.stderr
    assert "choose another --output" in result.stderr
    assert not (tmp_path / "missing").exists()


def test_run_missing_notebook_and_bad_param(tmp_path):
    missing = cli("run", str(tmp_path / "nope.ipynb"))
    assert missing.returncode == 2
    assert "no such file; pass the path of an .ipynb file" in missing.stderr
    nb_path = make_notebook(tmp_path / "x.ipynb", "1")
    bad = cli("run", str(nb_path), "-p", "EPOCHS")
    assert bad.returncode == 2
    assert "--param expects NAME=VALUE" in bad.stderr


def test_run_refuses_to_overwrite_its_source(tmp_path):
    nb_path = make_notebook(tmp_path / "x.ipynb", "1")
    before = nb_path.read_bytes()
    result = cli("run", str(nb_path), "--output", str(nb_path))
    assert result.returncode == 2
    assert "refusing to write the executed notebook over its source" in result.stderr
    assert nb_path.read_bytes() == before


def test_run_with_an_unknown_kernel_says_what_to_do(tmp_path):
    nb_path = make_notebook(tmp_path / "k.ipynb", "1")
    result = cli("run", str(nb_path), "--kernel", "no-such-kernel")
    assert result.returncode == 2
    assert "no kernel named 'no-such-kernel'; see `jupyter kernelspec list`" in result.stderr
