"""tl.progress as a drop-in for tqdm: the same idioms, in a real kernel and as a plain script."""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
import textwrap

import pytest
import torch

import jupyter_torchlab as tl
from jupyter_torchlab.tqdm import tqdm, trange
from jupyter_torchlab.widgets import _notes

from .conftest import ROOT, Kernel, displays, kernel_env
from .test_progress import Clock, CountSyncs, Tty

CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")  # anything but \t and \n


def text(iterable=None, clock=None, **kw):
    out = kw.pop("file", io.StringIO())
    bar = tqdm(iterable, widget=False, file=out, timer=clock or Clock(), **kw)
    return bar, out


def last_line(out: io.StringIO) -> str:
    return out.getvalue().replace("\r", "\n").rstrip("\n").splitlines()[-1].strip()


# --- the API, in this process (text) -------------------------------------------------------


def test_the_import_swap_and_tl_progress_are_one_class():
    assert tl.progress is tqdm
    assert isinstance(trange(3, widget=False, file=io.StringIO()), tqdm)
    assert list(trange(2, 6, widget=False, file=io.StringIO())) == [2, 3, 4, 5]


def test_tqdms_positional_order_and_ours():
    quiet = {"widget": False, "file": io.StringIO()}
    bar = tqdm(range(5), "train", **quiet)  # tqdm(iterable, desc)
    assert (bar.desc, bar.total) == ("train", 5)
    bar = tqdm(range(5), None, 9, **quiet)  # tqdm(iterable, desc, total)
    assert bar.total == 9
    old = tl.progress(range(5), 7, "epochs", widget=False, file=io.StringIO())  # ours before
    assert (old.desc, old.total) == ("epochs", 7)


def test_disable_yields_the_items_with_no_counting_and_no_output():
    out = io.StringIO()
    bar = tqdm(range(1000), disable=True, file=out)
    assert type(iter(bar)) is type(iter(range(0)))  # the bare iterator: nothing per item
    assert sum(bar) == sum(range(1000))
    bar.update(5)
    bar.set_postfix(loss=torch.tensor(1.0))
    bar.set_description("x")
    bar.close()
    with tqdm(total=3, disable=True) as b:
        b.update()
    assert out.getvalue() == ""
    assert bar.n == 0


def test_initial_unit_scale_and_divisor():
    clock = Clock()
    bar, out = text(total=2_000_000, initial=500_000, unit_scale=True, clock=clock, unit="B")
    assert bar.n == 500_000
    clock.t += 1
    bar.update(1_000_000)
    bar.close()
    line = last_line(out)
    assert "1.50M/2.00M" in line
    assert "stopped" in line
    bar, out = text(total=4096, unit_scale=True, unit_divisor=1024, unit="B")
    bar.update(2048)
    bar.close()
    assert "2.00k/4.00k" in last_line(out)
    with pytest.raises(ValueError, match="unit_divisor must be a positive number"):
        tqdm(total=3, unit_divisor=0)


def test_postfix_from_the_constructor_dicts_kwargs_strings_and_tensors():
    bar, out = text(range(3), postfix={"lr": 0.1})
    bar.refresh()
    assert bar.postfix == "lr=0.1"
    bar.set_postfix({"loss": torch.tensor(0.25)}, acc=0.5, phase="warm")
    bar.refresh()
    assert bar.postfix == "loss=0.25, acc=0.5, phase=warm"
    bar.set_postfix([("epoch", 2)], loss=torch.tensor(0.5))  # (key, value) pairs, as tqdm takes
    bar.refresh()
    assert bar.postfix == "epoch=2, loss=0.5"
    bar.set_postfix_str("custom text")
    bar.refresh()
    assert bar.postfix == "custom text"
    list(bar)
    assert "custom text" in last_line(out)


def test_tensor_postfixes_are_not_converted_per_step():
    clock = Clock()
    bar, _ = text(total=10_000, clock=clock, log_interval=1e9)
    losses = [torch.tensor(float(i)) for i in range(10_000)]
    with CountSyncs() as mode:
        for loss in losses[:5000]:
            bar.set_postfix(loss=loss)
            bar.update()
    assert mode.syncs == 0  # no refresh was due: nothing read back from the tensors
    with CountSyncs() as mode:
        for loss in losses[5000:]:
            clock.t += 1e-3
            bar.set_postfix(loss=loss)
            bar.update()
    refreshes = bar._throttle.refreshes
    assert 0 < refreshes <= 10 * 4 + 1
    assert mode.syncs <= refreshes  # at most one conversion per refresh
    bar.close()
    assert bar.postfix == "loss=9999"  # the last value, as tqdm shows it


def test_descriptions_reset_and_format_dict():
    clock = Clock()
    bar, out = text(total=10, desc="a", clock=clock, file=Tty())
    bar.set_description("epoch 1")
    bar.update(4)
    bar.refresh()
    assert last_line(out).startswith("epoch 1:  40% |")
    bar.set_description_str("[raw]")
    bar.refresh()
    assert last_line(out).startswith("[raw]  40% |")
    clock.t += 2
    bar.reset(total=20)
    assert (bar.n, bar.total) == (0, 20)
    bar.update(20)
    bar.close()
    assert "20/20" in last_line(out)
    fd = bar.format_dict
    assert {"n", "total", "elapsed", "rate", "unit", "unit_scale", "prefix", "postfix"} <= set(fd)
    assert (fd["n"], fd["total"], fd["prefix"]) == (20, 20, "[raw]")


def test_a_description_set_at_the_top_of_a_slow_loop_shows_for_that_step():
    clock = Clock()
    tty = Tty()
    bar = tqdm(range(3), widget=False, file=tty, timer=clock)
    during = []
    for epoch in bar:
        bar.set_description(f"epoch {epoch}")
        during.append(last_line(tty))  # what the screen shows while the step runs
        bar.set_description(f"epoch {epoch} (still)")  # a second one waits for the budget
        bar.set_postfix(loss=torch.tensor(1.0 / (epoch + 1)))
        clock.t += 60  # a minute a step
    assert [line.split("|")[0] for line in during] == [
        "epoch 0:   0% ",
        "epoch 1:  33% ",
        "epoch 2:  66% ",
    ]
    assert last_line(tty).startswith("epoch 2 (still): 100%")
    assert last_line(tty).endswith("loss=0.3333 done")


def test_truthiness_and_an_infinite_total_behave_as_in_tqdm():
    quiet = {"widget": False, "file": io.StringIO()}
    assert bool(tqdm((i for i in range(3)), **quiet))  # no len(): still true
    assert not tqdm(range(0), **quiet)
    assert tqdm(total=5, **quiet)
    with pytest.raises(TypeError, match="neither an iterable nor a total"):
        bool(tqdm(**quiet))
    bar = tqdm(range(3), total=float("inf"), **quiet)
    assert bar.total is None
    assert list(bar) == [0, 1, 2]
    assert list(bar.iterable) == [0, 1, 2]


def test_disable_none_turns_text_bars_off_where_there_is_no_terminal():
    log = io.StringIO()
    bar = tqdm(range(3), disable=None, widget=False, file=log)
    assert bar.disable
    assert list(bar) == [0, 1, 2]
    assert log.getvalue() == ""
    tty = Tty()
    bar = tqdm(range(3), disable=None, widget=False, file=tty)
    assert not bar.disable
    list(bar)
    assert "3/3" in tty.getvalue()


def test_tqdms_lock_helpers_let_its_thread_map_drive_our_bar():
    concurrent = pytest.importorskip("tqdm.contrib.concurrent")
    out = io.StringIO()
    squares = concurrent.thread_map(
        lambda x: x * x, range(20), tqdm_class=tqdm, max_workers=2, file=out, widget=False
    )
    assert squares == [x * x for x in range(20)]
    assert "20/20" in out.getvalue()


def test_unknown_keyword_is_a_type_error_naming_it():
    with pytest.raises(TypeError, match="colr"):
        tqdm(range(3), colr="red")
    # tqdm's cosmetic options are accepted (and ignored)
    bar, _ = text(range(3), ncols=80, ascii=True, dynamic_ncols=True, colour="green", smoothing=0)
    assert list(bar) == [0, 1, 2]


def test_bar_format_in_text_mode():
    clock = Clock()
    bar, out = text(
        range(10),
        desc="dl",
        clock=clock,
        bar_format="{desc}: {n_fmt}/{total_fmt} {bar:5} {percentage:3.0f}%",
    )
    for _ in bar:
        clock.t += 0.1
    assert last_line(out) == "dl: 10/10 ##### 100%"
    bar, out = text(range(4), clock=clock, bar_format="{l_bar}{bar}{r_bar}")
    list(bar)
    assert last_line(out).startswith("100%|####################| 4/4 [")


def test_mininterval_and_maxinterval_bound_the_refresh_budget():
    bar, _ = text(total=10, mininterval=2.0, maxinterval=3.0)
    assert (bar._throttle.min_interval, bar._throttle.max_interval) == (2.0, 3.0)
    clock = Clock()
    bar, _ = text(total=1_000_000, clock=clock, mininterval=1.0)
    for _ in range(1000):
        clock.t += 0.01
        bar.update()
    assert bar._throttle.refreshes <= 10 + 1  # 10 s at most once a second, not 4 times

    # a kernel budget of one refresh per 10 s: maxinterval=1 still refreshes every second
    from jupyter_torchlab.widgets import set_refresh_rate
    from jupyter_torchlab.widgets._budget import DEFAULT_RATE

    set_refresh_rate(0.1)
    try:
        slow, _ = text(total=1_000_000, clock=clock, maxinterval=1.0)
        plain, _ = text(total=1_000_000, clock=clock)
        for _ in range(1000):
            clock.t += 0.01
            slow.update()
            plain.update()
    finally:
        set_refresh_rate(DEFAULT_RATE)
    assert 9 <= slow._throttle.refreshes <= 11
    assert plain._throttle.refreshes <= 1


def test_clear_takes_the_bar_off_a_terminal_and_leave_none_keeps_only_the_outer_bar():
    tty = Tty()
    bar = tqdm(total=10, widget=False, file=tty, timer=Clock())
    bar.update(3)
    bar.refresh()
    drawn = tty.getvalue()
    bar.clear()
    wiped = tty.getvalue()[len(drawn) :]
    assert re.fullmatch(r"\r {40,}\r", wiped), repr(wiped)  # blanked over, cursor back home
    bar.close()
    tty = Tty()
    outer = tqdm(range(2), desc="outer", widget=False, file=tty, position=0, leave=None)
    for _ in outer:
        inner = tqdm(range(2), desc="inner", widget=False, file=tty, position=1, leave=None)
        list(inner)
    assert (outer.leave, inner.leave) == (True, False)
    final = tty.getvalue().replace("\x1b[2K", "").replace("\x1b[1A", "")
    assert "outer: 100%" in final.split("\r")[-1] or "outer: 100%" in final.splitlines()[-1]


def test_delay_shows_nothing_for_a_quick_loop_and_a_slow_one_after_the_delay():
    clock = Clock()
    bar, out = text(range(5), clock=clock, delay=2.0, file=Tty())
    list(bar)
    assert out.getvalue() == ""
    bar, out = text(range(50), clock=clock, delay=2.0, file=Tty())
    for _ in bar:
        clock.t += 0.1
    assert "50/50" in out.getvalue()


def test_write_prints_above_a_running_bar_on_a_terminal():
    clock = Clock()
    tty = Tty()
    bar = tqdm(total=10, widget=False, file=tty, timer=clock)
    bar.update(3)
    bar.refresh()
    tqdm.write("checkpoint saved", file=tty)
    bar.update(7)
    bar.close()
    screen = tty.getvalue()
    before, after = screen.split("checkpoint saved\n")
    assert before.endswith("\r")  # the live line was wiped first
    assert "3/10" in before
    assert "10/10" in after  # and drawn again below the message
    assert "\x1b" not in screen  # one bar: no escape sequences


def test_nested_bars_on_a_terminal_keep_a_line_each():
    tty = Tty()
    outer = tqdm(range(2), desc="epoch", widget=False, file=tty, position=0)
    for _ in outer:
        for _ in tqdm(range(3), desc="batch", widget=False, file=tty, position=1, leave=False):
            pass
    screen = tty.getvalue()
    assert "\x1b[1A" in screen  # two live lines: the cursor goes back up to redraw both
    final = screen.rsplit("\x1b[2K", 1)[-1]
    assert "epoch: 100%" in screen.splitlines()[-1] or "epoch: 100%" in final


class Cell:
    """A cell's output area: displays append at the bottom, an update replaces one in place."""

    def __init__(self) -> None:
        self.outputs: list[str] = []

    def show(self, text: str) -> Display:
        self.outputs.append(text)
        return Display(self, len(self.outputs) - 1)


class Display:
    def __init__(self, cell: Cell, index: int) -> None:
        self.cell, self.index = cell, index

    def update(self, data: dict, raw: bool = False) -> None:
        self.cell.outputs[self.index] = data["text/plain"]


class FakeBar:
    def __init__(self, cell: Cell, name: str) -> None:
        self.cell, self.name = cell, name
        self.handle = cell.show(name)
        _notes.add(self)

    def show_again(self) -> None:
        self.handle = self.cell.show(self.name)


@pytest.fixture
def cell():
    _notes.end_cell()
    yield Cell()
    _notes.end_cell()


def test_notebook_write_goes_above_the_running_bars_and_stays_one_output(cell):
    assert not _notes.write("no bar yet\n")  # printed as usual then
    outer, inner = FakeBar(cell, "outer"), FakeBar(cell, "inner")
    assert _notes.write("first\n")
    assert cell.outputs == ["first", "", "outer", "inner"]
    assert _notes.write("second\n")  # the same text output, updated in place
    _notes.remove(inner)
    FakeBar(cell, "next inner")
    _notes.write("third")
    assert cell.outputs == ["first\nsecond\nthird", "", "outer", "inner", "next inner"]
    _notes.remove(outer)  # the topmost bar finished: the next line starts a block above the rest
    _notes.write("fourth\n")
    assert cell.outputs[0] == "first\nsecond\nthird"
    assert cell.outputs[-2:] == ["fourth", "next inner"]
    _notes.end_cell()
    assert not _notes.write("next cell\n")


def test_notebook_write_starts_a_new_block_when_one_is_full(cell):
    FakeBar(cell, "bar")
    for i in range(_notes.MAX_LINES + 1):
        _notes.write(f"line {i}\n")
    assert cell.outputs[0].count("\n") == _notes.MAX_LINES - 1
    assert cell.outputs[1:] == [f"line {_notes.MAX_LINES}", "bar"]


# --- the same idioms in a real kernel (widgets) and a plain script (text) ----------------------

IDIOMS = {
    "nested": (
        "for e in trange(2, desc='epoch'):\n"
        "    for b in tqdm(range(50), desc='batch', leave=False):\n"
        "        pass\n"
        "print(json.dumps({'ok': e == 1 and b == 49}))\n"
    ),
    "disable": (
        "total = sum(tqdm(range(1000), disable=True))\nprint(json.dumps({'ok': total == 499500}))\n"
    ),
    "set_postfix": (
        "import torch\n"
        "bar = tqdm(range(20), desc='post')\n"
        "for i in bar:\n"
        "    bar.set_postfix({'loss': torch.tensor(0.5)}, acc=0.9)\n"
        "print(json.dumps({'ok': bar.postfix == 'loss=0.5, acc=0.9'}))\n"
    ),
    "write": (
        "for i in tqdm(range(3), desc='w'):\n"
        "    tqdm.write(f'message {i}')\n"
        "print(json.dumps({'ok': True}))\n"
    ),
    "reset_initial_unit_scale": (
        "bar = tqdm(total=10_000, initial=5_000, unit_scale=True, desc='scaled')\n"
        "bar.update(5_000)\n"
        "bar.reset(total=20_000)\n"
        "bar.update(20_000)\n"
        "bar.close()\n"
        "print(json.dumps({'ok': (bar.n, bar.total) == (20_000, 20_000)}))\n"
    ),
    "generator": (
        "def gen():\n"
        "    yield from range(7)\n"
        "n = sum(1 for _ in tqdm(gen(), desc='gen'))\n"
        "print(json.dumps({'ok': n == 7}))\n"
    ),
    "context_manager": (
        "with tqdm(total=3, desc='ctx') as bar:\n"
        "    for _ in range(3):\n"
        "        bar.update()\n"
        "print(json.dumps({'ok': bar.n == 3 and bar.status == 'done'}))\n"
    ),
}
HEADER = "import json\nfrom jupyter_torchlab.tqdm import tqdm, trange\n"
# what each idiom leaves in the cell's output (text/plain of the records, or the script's stderr)
EXPECTED = {
    "nested": ["epoch: 100% |####################| 2/2"],
    "disable": [],
    "set_postfix": ["post: 100%", "loss=0.5, acc=0.9"],
    "write": ["message 0", "message 2", "w: 100%"],
    "reset_initial_unit_scale": ["scaled: 100%", "20.0k/20.0k"],
    "generator": ["gen: 7it"],
    "context_manager": ["ctx: 100% |####################| 3/3"],
}


def cell_outputs(msgs: list[dict]) -> list[str]:
    """Return the text of each output the cell ends with, laid out as a frontend does."""
    outputs: list[dict] = []
    for m in msgs:
        kind, content = m["msg_type"], m["content"]
        if kind == "stream":
            if outputs and outputs[-1].get("stream") == content["name"]:
                outputs[-1]["text"] += content["text"]  # consecutive stream text is one output
            else:
                outputs.append({"stream": content["name"], "text": content["text"]})
        elif kind == "display_data":  # appended at the bottom
            shown = {"id": content.get("transient", {}).get("display_id")}
            outputs.append({**shown, "text": content["data"].get("text/plain", "")})
        elif kind == "update_display_data":  # replaces that display where it is
            for out in outputs:
                if out.get("id") == content["transient"]["display_id"]:
                    out["text"] = content["data"].get("text/plain", "")
    return [out["text"] for out in outputs if out["text"]]


# (the text output tqdm.write fills, the bar record that must come after it) in a kernel
ABOVE = {"write": ("message 0\nmessage 1\nmessage 2", "w: 100%")}


def _outputs_text(msgs: list[dict]) -> str:
    parts = []
    for m in msgs:
        if m["msg_type"] == "stream":
            parts.append(m["content"]["text"])
        elif m["msg_type"] in ("display_data", "update_display_data"):
            parts.append(m["content"]["data"].get("text/plain", ""))
    return "\n".join(parts)


@pytest.mark.slow
@pytest.mark.parametrize("name", list(IDIOMS))
def test_idiom_in_a_kernel_draws_widgets_and_leaves_records(kernel: Kernel, name: str):
    msgs = kernel.execute(HEADER + IDIOMS[name])
    streams = "".join(m["content"]["text"] for m in msgs if m["msg_type"] == "stream")
    result = json.loads(streams.strip().splitlines()[-1])
    assert result == {"ok": True}
    shown = _outputs_text(msgs)
    for words in EXPECTED[name]:
        assert words in shown, (name, shown)
    widgets = [m for m in displays(msgs) if m["msg_type"] == "display_data"]
    if name == "disable":
        assert widgets == []
    else:
        key = "application/vnd.jupyter.widget-view+json"
        assert widgets
        assert all(key in m["content"]["data"] for m in widgets)
    if name in ABOVE:  # what tqdm.write printed sits above the bar it was printed under
        notes, record = ABOVE[name]
        outputs = cell_outputs(msgs)
        assert notes in outputs, outputs
        records = [i for i, out in enumerate(outputs) if record in out]
        assert records, outputs
        assert records[0] > outputs.index(notes)
    opened = {m["content"]["comm_id"] for m in msgs if m["msg_type"] == "comm_open"}
    closed = {m["content"]["comm_id"] for m in msgs if m["msg_type"] == "comm_close"}
    assert opened == closed  # every bar's widget was closed again


@pytest.mark.slow
def test_idioms_as_a_plain_script_print_tqdm_style_lines_without_control_characters(tmp_path):
    names = list(IDIOMS)
    script = HEADER + "import sys\n"
    for name in names:
        script += f"print('=== {name}', file=sys.stderr, flush=True)\n" + IDIOMS[name]
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env=kernel_env(PYTHONPATH=str(ROOT)),
    )
    assert done.returncode == 0, done.stderr
    results = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert results == [{"ok": True}] * len(names)
    assert "message 1\n" in done.stdout  # tqdm.write prints to stdout, as tqdm's does
    assert not CONTROL.search(done.stderr), repr(done.stderr[:500])  # a pipe: whole lines only
    sections = dict(part.split("\n", 1) for part in done.stderr.split("=== ")[1:] if "\n" in part)
    for name in names:
        for words in EXPECTED[name]:
            shown = sections.get(name, "") + done.stdout
            assert words in shown, (name, sections.get(name))


TRAINING_CELL = textwrap.dedent(
    """
    import torch
    {import_line}

    model = torch.nn.Linear(4, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = torch.randn(64, 4), torch.randint(0, 2, (64,))
    for epoch in trange(3, desc="epochs"):
        bar = tqdm(range(0, 64, 8), desc=f"epoch {{epoch}}", leave=False, unit="batch")
        for i in bar:
            loss = torch.nn.functional.cross_entropy(model(x[i:i + 8]), y[i:i + 8])
            opt.zero_grad()
            loss.backward()
            opt.step()
            bar.set_postfix(loss=loss.item(), lr=opt.param_groups[0]["lr"])
        bar.set_description(f"epoch {{epoch}} done")
        tqdm.write(f"epoch {{epoch}}: last loss {{loss.item():.3f}}")
    print("trained")
    """
)


@pytest.mark.slow
@pytest.mark.parametrize(
    "import_line",
    ["from tqdm.auto import tqdm, trange", "from jupyter_torchlab.tqdm import tqdm, trange"],
    ids=["tqdm", "ours"],
)
def test_a_cell_written_for_tqdm_runs_with_only_the_import_changed(kernel: Kernel, import_line):
    pytest.importorskip("tqdm")
    msgs = kernel.execute(TRAINING_CELL.format(import_line=import_line), timeout=120)
    outputs = cell_outputs(msgs)
    assert outputs[-1].endswith("trained\n")
    written = [i for i, out in enumerate(outputs) if "epoch 2: last loss" in out]
    assert written, outputs
    if "jupyter_torchlab" in import_line:
        # ours: the epochs' lines in one text output above the epoch bar's record
        assert re.fullmatch(r"(epoch \d: last loss \d\.\d{3}\n?){3}", outputs[written[0]])
        records = [i for i, out in enumerate(outputs) if "epochs: 100% |###" in out]
        assert records, outputs
        assert records[0] > written[0]
        assert "epochs: 100% |####################| 3/3" in outputs[records[0]]
