"""Which display fit(progress=True) uses: a default set up on first use, overrides per context."""

from __future__ import annotations

import contextlib
import contextvars
import io
import threading

import pytest
import torch
from torch.utils.data import TensorDataset

import jupyter_torchlab as tl
from jupyter_torchlab.train import display
from jupyter_torchlab.train.callbacks import Callback
from jupyter_torchlab.train.text import TextProgress
from jupyter_torchlab.widgets.fit_display import notebook_display


class Tag(Callback):
    def __init__(self, name: str, seen: list[str]) -> None:
        self.name, self.seen = name, seen

    def on_fit_start(self, state):
        self.seen.append(self.name)


def _fit(**kw):
    g = torch.Generator().manual_seed(0)
    data = TensorDataset(torch.randn(8, 4, generator=g), torch.randint(0, 2, (8,), generator=g))
    return tl.fit(torch.nn.Linear(4, 2), data, epochs=1, batch_size=4, **kw)


def test_using_a_public_name_sets_the_notebook_display():
    tl.fit  # noqa: B018 - a public name: the kernel-side setup has run
    assert display.current_display() is notebook_display
    # outside a kernel the notebook display is the text one
    assert isinstance(display.current_display()(), TextProgress)


def test_nested_use_display_restores_the_outer_one():
    seen: list[str] = []
    with display.use_display(lambda: Tag("outer", seen)):
        _fit()
        with display.use_display(lambda: Tag("inner", seen)):
            _fit()
        _fit()
    assert seen == ["outer", "inner", "outer"]
    assert display.current_display() is notebook_display


def test_use_display_is_restored_when_the_block_raises():
    with pytest.raises(RuntimeError), display.use_display(lambda: Tag("x", [])):
        raise RuntimeError("boom")
    assert display.current_display() is notebook_display


def test_a_context_of_its_own_keeps_its_display():
    """An override in a copied context (a task, a thread's run) changes no one else's."""
    seen: list[str] = []

    def elsewhere():
        with display.use_display(lambda: Tag("elsewhere", seen)):
            _fit()

    contextvars.copy_context().run(elsewhere)
    assert display.current_display() is notebook_display
    thread = threading.Thread(target=lambda: seen.append(display.current_display().__name__))
    thread.start()
    thread.join()
    # the default is no context variable: a thread started with a fresh context sees it too
    assert seen == ["elsewhere", "notebook_display"]


def test_progress_takes_a_callback_a_factory_or_false():
    seen: list[str] = []
    _fit(progress=Tag("given", seen))
    _fit(progress=lambda: Tag("made", seen))
    with display.use_display(lambda: Tag("default", seen)):
        _fit(progress=False)
    assert seen == ["given", "made"]


def test_a_bad_progress_argument_says_what_to_pass():
    with pytest.raises(TypeError, match="progress must be True, False, a Callback"):
        _fit(progress="widget")
    with pytest.raises(TypeError, match=r"returned int, not a Callback"):
        _fit(progress=lambda: 3)


def test_text_display_writes_to_stdout(capsys):
    with display.use_display(lambda: TextProgress(io.StringIO())):
        _fit()
    with display.use_display(None):
        _fit()
    assert "epoch 1/1 done" in capsys.readouterr().out


def _run_worker(rank: int, conn) -> None:
    """In a forked child: tl.launch's worker body around a fit that asks for the default display."""
    import os
    import threading

    from jupyter_torchlab.train.parallel import launch

    os.environ["RANK"] = str(rank)

    class Channel:
        def send(self, event) -> None:
            conn.send(type(event).__name__)

    def train() -> None:
        conn.send(("shown", type(display.current_display()()).__name__))
        _fit(progress=True)

    try:
        result = launch._worker(train, (), {}, Channel(), 1, True, threading.Event(), os.getppid())
        conn.send(("result", result))
    finally:
        conn.send(("after", display.current_display() is notebook_display))
        conn.close()


@pytest.mark.parametrize(("rank", "shown"), [(0, "EventSender"), (1, "_NoProgress")])
def test_a_launched_worker_overrides_the_display_only_while_fn_runs(rank, shown):
    import multiprocessing

    ctx = multiprocessing.get_context("fork")
    ours, theirs = ctx.Pipe()
    child = ctx.Process(target=_run_worker, args=(rank, theirs))
    child.start()
    theirs.close()
    received = []
    with contextlib.suppress(EOFError):
        while True:
            received.append(ours.recv())
    child.join(60)
    assert child.exitcode == 0
    events = [m for m in received if isinstance(m, str)]
    assert ("shown", shown) in received  # fit(progress=True) inside fn uses the worker's display
    # rank 0 forwards fit's hooks to the notebook as typed events; other ranks show nothing
    if rank == 0:
        assert events[0] == "Hello"
        assert {"FitStart", "EpochEnd", "FitEnd"} <= set(events)
    else:
        assert events == ["Hello"]
    assert ("after", True) in received  # and the worker's own default is back afterwards
