"""tl.progress as a drop-in for tqdm: the same idioms, in a real kernel and as a plain script."""

from __future__ import annotations

import ast
import inspect
import io
import json
import re
import subprocess
import sys
import textwrap
from typing import Any

import pytest
import torch
from tqdm.asyncio import tqdm_asyncio
from tqdm.std import TqdmKeyError
from tqdm.std import tqdm as std_tqdm

import jupyter_torchlab as tl
from jupyter_torchlab.tqdm import tqdm, trange
from jupyter_torchlab.widgets import _notes

from .conftest import ROOT, Kernel, displays, kernel_env
from .test_progress import Clock, Tty


def text(iterable=None, clock=None, **kw):
    out = kw.pop("file", io.StringIO())
    bar = tqdm(iterable, widget=False, file=out, timer=clock or Clock(), **kw)
    return bar, out


def last_line(out: Any) -> str:
    return out.getvalue().replace("\r", "\n").rstrip("\n").splitlines()[-1].strip()


# --- the API, in this process (text) -------------------------------------------------------


def test_the_import_swap_and_tl_progress_are_one_class_built_on_tqdms():
    assert tl.progress is tqdm
    assert issubclass(tqdm, tqdm_asyncio)  # tqdm.auto's class outside a notebook
    assert issubclass(tqdm, std_tqdm)
    assert isinstance(trange(3, widget=False, file=io.StringIO()), tqdm)
    assert list(trange(2, 6, widget=False, file=io.StringIO())) == [2, 3, 4, 5]
    # tqdm's helpers come with it
    assert tqdm.format_interval(6160) == "1:42:40"
    assert tqdm.format_sizeof(2048, divisor=1024) == "2.00k"


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
    bar.log(loss=torch.tensor(1.0))
    bar.set_description("x")
    bar.close()
    with tqdm(total=3, disable=True) as b:
        b.update()
    assert out.getvalue() == ""
    assert bar.n == 0


def test_postfix_from_the_constructor_dicts_kwargs_strings_and_tensors():
    bar, out = text(range(3), postfix={"lr": 0.1})
    assert bar.postfix == "lr=0.1"
    bar.set_postfix({"loss": torch.tensor(0.25)}, acc=0.5, phase="warm")
    assert bar.postfix == "loss=0.25, acc=0.5, phase=warm"
    bar.set_postfix([("epoch", 2)], loss=torch.tensor(0.5))  # (key, value) pairs, as tqdm takes
    assert bar.postfix == "epoch=2, loss=0.5"
    bar.set_postfix_str("custom text")
    assert bar.postfix == "custom text"
    list(bar)
    assert "custom text" in last_line(out)
    # what tqdm shows for the same values, read from the tensors only here
    plain, _ = text(range(3))
    std_tqdm.set_postfix(plain, {"loss": 0.25}, acc=0.5, phase="warm")
    assert plain.postfix == "loss=0.25, acc=0.5, phase=warm"


def test_a_subclass_that_adds_bar_format_fields_through_format_dict_is_honoured():
    class WithEpoch(tqdm):
        @property
        def format_dict(self):
            return {**super().format_dict, "epoch": 7}

    bar = WithEpoch(range(2), widget=False, file=Tty(), bar_format="epoch {epoch}: {n_fmt}")
    list(bar)
    assert last_line(bar.fp) == "epoch 7: 2"


def test_truthiness_and_an_infinite_total_behave_as_in_tqdm():
    quiet = {"widget": False, "file": io.StringIO()}
    assert bool(tqdm((i for i in range(3)), **quiet))  # no len(): still true
    assert not tqdm(range(0), **quiet)
    assert tqdm(total=5, **quiet)
    with pytest.raises(TypeError, match="bool"):
        bool(tqdm(**quiet))
    bar = tqdm(range(3), total=float("inf"), **quiet)
    assert bar.total is None
    assert list(bar) == [0, 1, 2]
    assert 2 in tqdm(range(3), **quiet)  # the iterable's own __contains__, as tqdm
    if hasattr(std_tqdm, "__reversed__"):  # tqdm >= 4.63
        # reversed() as tqdm's own (which, in 4.70, still walks the iterable forward)
        assert sorted(reversed(tqdm(range(3), **quiet))) == [0, 1, 2]


def test_a_loader_is_iterated_once_per_loop_and_async_for_still_works():
    """tqdm.asyncio's class calls iter() when built: a DataLoader would start its workers twice."""
    import asyncio

    class Loader:
        iterators = 0

        def __len__(self):
            return 3

        def __iter__(self):
            Loader.iterators += 1
            return iter([1, 2, 3])

    bar, _ = text(Loader())
    assert (Loader.iterators, bar.total) == (0, 3)
    assert list(bar) == [1, 2, 3]
    assert Loader.iterators == 1

    async def consume():
        return [x async for x in tqdm(Loader(), widget=False, file=io.StringIO())]

    assert asyncio.run(consume()) == [1, 2, 3]
    assert Loader.iterators == 2


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


def test_unknown_keyword_is_tqdms_error_naming_it():
    with pytest.raises(TqdmKeyError, match="colr"):
        tqdm(range(3), colr="red", widget=False)


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
    "nested": ["epoch: 100%|", "| 2/2 ["],
    "disable": [],
    "set_postfix": ["post: 100%|", "loss=0.5, acc=0.9]"],
    "write": ["message 0", "message 2", "w: 100%|"],
    "reset_initial_unit_scale": ["scaled: 100%|", "20.0k/20.0k"],
    "generator": ["gen: 7it ["],
    "context_manager": ["ctx: 100%|", "| 3/3 ["],
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
ABOVE = {"write": ("message 0\nmessage 1\nmessage 2", "w: 100%|")}


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
def test_idioms_as_a_plain_script_print_tqdms_own_lines(tmp_path):
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
    # a pipe gets tqdm's own text, never a notebook record's status words
    assert " done" not in done.stderr
    assert "[00:00<?, ?it/s]" in done.stderr
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
        records = [i for i, out in enumerate(outputs) if "epochs: 100%|" in out]
        assert records, outputs
        assert records[0] > written[0]
        assert "| 3/3 [" in outputs[records[0]]


# --- libraries that take a tqdm class drive ours ---------------------------------------------


def test_tqdm_contrib_concurrent_drives_our_bar():
    from tqdm.contrib.concurrent import process_map, thread_map

    built = []

    class Recording(tqdm):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            built.append(self)

    out = io.StringIO()
    squares = thread_map(
        lambda x: x * x, range(20), tqdm_class=Recording, max_workers=2, file=out, widget=False
    )
    assert squares == [x * x for x in range(20)]
    (bar,) = built
    assert (bar.n, bar.status) == (20, "done")
    assert "20/20 [" in out.getvalue()
    # process_map hands tqdm's lock (ours is tqdm's) to the worker processes
    cubes = process_map(pow, range(6), [3] * 6, tqdm_class=Recording, max_workers=2, file=out)
    assert cubes == [x**3 for x in range(6)]
    assert built[-1].n == 6


def test_tqdm_contrib_logging_writes_log_records_through_our_bar():
    import logging

    from tqdm.contrib.logging import logging_redirect_tqdm, tqdm_logging_redirect

    written = []

    class Recording(tqdm):
        @classmethod
        def write(cls, s, file=None, end="\n", nolock=False):
            written.append(s)
            super().write(s, file=file, end=end, nolock=nolock)

    logger = logging.getLogger("torchlab-test")
    logger.setLevel(logging.INFO)
    handler = logging.StreamHandler(sys.stderr)  # a console handler: the one tqdm redirects
    logger.addHandler(handler)
    try:
        with logging_redirect_tqdm(loggers=[logger], tqdm_class=Recording):
            for i in Recording(range(3), file=Tty(), widget=False, desc="log"):
                logger.info("step %d", i)
        with tqdm_logging_redirect(
            range(2), loggers=[logger], tqdm_class=Recording, file=Tty(), widget=False
        ) as bar:
            logger.info("inside")
    finally:
        logger.removeHandler(handler)
    assert isinstance(bar, Recording)
    assert written == ["step 0", "step 1", "step 2", "inside"]


def test_tqdm_contrib_logging_lines_go_above_the_bar_on_a_shared_terminal(monkeypatch):
    import logging

    if not hasattr(std_tqdm, "__reversed__"):
        pytest.skip("before tqdm 4.63 its logging handler wrote to stdout, not to its stream")

    from tqdm.contrib.logging import logging_redirect_tqdm

    tty = Tty()
    monkeypatch.setattr(sys, "stderr", tty)
    logger = logging.getLogger("torchlab-test-tty")
    logger.setLevel(logging.INFO)
    logger.addHandler(logging.StreamHandler(tty))
    try:
        with logging_redirect_tqdm(loggers=[logger], tqdm_class=tqdm):
            bar = tqdm(total=2, file=tty, widget=False, desc="log", mininterval=0)
            bar.update()
            logger.info("halfway")
            bar.update()
            bar.close()
    finally:
        logger.handlers.clear()
    screen = tty.getvalue()
    before, after = screen.split("halfway\n")
    assert before.endswith("\r")  # the bar was cleared first (tqdm's external_write_mode)
    assert "log:  50%|" in after  # and redrawn below the record
    assert "log: 100%|" in after


class LightningStyleBar(tqdm):
    """What Lightning's TQDMProgressBar does with tqdm.auto's class: subclass it, format numbers
    its own way, and drive it by setting n, reset(total) and set_postfix of the metrics."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)

    @staticmethod
    def format_num(n):
        should_be_int = isinstance(n, float) and n.is_integer()
        return str(int(n)) if should_be_int else f"{n:.3g}"


LIGHTNING_LOOP = (
    "import sys, torch\n"
    "bar = LightningStyleBar(desc='Training', position=0, disable=False, leave=True,\n"
    "                        dynamic_ncols=True, file=sys.stdout, smoothing=0,\n"
    "                        bar_format='{l_bar}{bar}| {n_fmt}/{total_fmt} {postfix}')\n"
    "for epoch in range(2):\n"
    "    bar.reset(total=50)\n"
    "    bar.initial = 0\n"
    "    bar.set_description(f'Epoch {epoch}')\n"
    "    for step in range(50):\n"
    "        loss = torch.tensor(1.0 / (step + 1))\n"
    "        bar.n = step + 1\n"
    "        bar.refresh()\n"
    "        bar.set_postfix({'loss': loss, 'v_num': 3.0})\n"
    "bar.close()\n"
    "print(repr((bar.n, bar.status, bar.postfix)))\n"
)


def test_a_lightning_style_subclass_drives_our_bar_in_text():
    namespace = {"LightningStyleBar": LightningStyleBar}
    out = io.StringIO()
    import contextlib

    with contextlib.redirect_stdout(out):
        exec(LIGHTNING_LOOP.replace("file=sys.stdout", "file=sys.stdout, widget=False"), namespace)
    n, status, postfix = ast.literal_eval(out.getvalue().splitlines()[-1])
    assert (n, status) == (50, "done")
    assert postfix == "loss=0.02, v_num=3"  # the tensor read once, formatted by the subclass
    assert "Epoch 1: 100%|" in out.getvalue()


@pytest.mark.slow
def test_a_lightning_style_subclass_drives_our_widget_in_a_kernel(kernel: Kernel):
    source = textwrap.dedent(inspect.getsource(LightningStyleBar))
    msgs = kernel.execute(
        "from jupyter_torchlab.tqdm import tqdm\n" + source + "\n" + LIGHTNING_LOOP
    )
    out = "".join(m["content"]["text"] for m in msgs if m["msg_type"] == "stream")
    n, status, postfix = ast.literal_eval(out.strip().splitlines()[-1])
    assert (n, status, postfix) == (50, "done", "loss=0.02, v_num=3")
    updates = [m for m in displays(msgs) if m["msg_type"] == "update_display_data"]
    record = updates[-1]["content"]["data"]
    assert 'data-status="done"' in record["text/html"]
    assert record["text/plain"].startswith("Epoch 1: 100%|")
    # 100 refresh() calls, 100 postfixes: the widget still redraws within the kernel's budget
    from .conftest import comm_updates

    assert len(comm_updates(msgs)) <= 10


@pytest.mark.slow
def test_async_for_gather_and_as_completed_in_a_kernel(kernel: Kernel):
    msgs = kernel.execute(
        "import asyncio\n"
        "from jupyter_torchlab.tqdm import tqdm\n"
        "async def ticks(n):\n"
        "    for i in range(n):\n"
        "        await asyncio.sleep(0)\n"
        "        yield i\n"
        "async def square(x):\n"
        "    await asyncio.sleep(0.001 * x)\n"
        "    return x * x\n"
        "seen = [i async for i in tqdm(ticks(5), total=5, desc='async')]\n"
        "gathered = await tqdm.gather(*[square(x) for x in range(6)], desc='gather')\n"
        "done = sorted([await f for f in tqdm.as_completed([square(x) for x in range(4)])])\n"
        "print(repr((seen, gathered, done)))\n"
    )
    out = "".join(m["content"]["text"] for m in msgs if m["msg_type"] == "stream")
    assert ast.literal_eval(out.strip()) == (
        [0, 1, 2, 3, 4],
        [0, 1, 4, 9, 16, 25],
        [0, 1, 4, 9],
    )
    texts = [m["content"]["data"].get("text/plain", "") for m in displays(msgs)]
    assert any(t.startswith("async: 100%|") for t in texts), texts
    assert any(t.startswith("gather: 100%|") for t in texts), texts


def test_tqdm_write_while_fits_display_is_live(monkeypatch, capsys):
    """fit's display counts with a tqdm bar of its own: tqdm.write must step around it."""
    from jupyter_torchlab.train.callbacks import FitState
    from jupyter_torchlab.train.history import History
    from jupyter_torchlab.widgets import fit_display

    monkeypatch.setattr(fit_display, "show", lambda widget, text: object())
    monkeypatch.setattr(fit_display, "replace", lambda handle, html, text: None)
    display = fit_display.FitProgress()
    state = FitState(
        model=None, optimizer=None, device=torch.device("cpu"), epochs=1, history=History()
    )
    state.batches = 3
    display.on_fit_start(state)
    display.on_epoch_start(state)
    display.on_batch_end(state)
    std_tqdm.write("from tqdm")
    tqdm.write("from ours")
    state.status = "done"
    display.on_fit_end(state)
    assert capsys.readouterr().out == "from tqdm\nfrom ours\n"
