"""In a real kernel: an out-of-memory error is explained under its traceback, and freed."""

from __future__ import annotations

import pytest

from .conftest import Kernel, displays

pytestmark = pytest.mark.slow

CELL = """
%load_ext jupyter_torchlab
import torch
import jupyter_torchlab as tl
model = torch.nn.Linear(512, 512)
def training_step():
    activations = torch.zeros(25_000_000, dtype=torch.uint8)  # held only by this frame
    raise torch.OutOfMemoryError(
        "CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of 8.00 GiB"
    )
training_step()
"""


def test_the_report_follows_the_traceback_and_free_memory_releases_what_it_held(kernel: Kernel):
    msgs = kernel.execute(CELL, allow_error=True)
    kinds = [m["msg_type"] for m in msgs]
    assert "error" in kinds
    shown = [m for m in displays(msgs) if m["msg_type"] == "display_data"]
    assert len(shown) == 1
    assert kinds.index("error") < msgs.index(shown[0])  # below IPython's own traceback
    data = shown[0]["content"]["data"]
    assert "application/vnd.jupyter.widget-view+json" in data  # with the Free memory button
    text = data["text/plain"]
    assert text.startswith(
        "Out of memory on cuda:0: CUDA out of memory. Tried to allocate 2.00 GiB"
    )
    assert "What to try:" in text
    assert "tl.free_memory()" in text
    # a notebook saved without widget state, or exported, still shows the report
    html = data["text/html"]
    assert "Out of memory on cuda:0" in html
    assert "What to try" in html

    # the failed step's tensor is alive only through the saved traceback; free_memory lets it go
    out = kernel.execute(
        "import gc, sys, weakref\n"
        "_tb = sys.last_traceback\n"
        "while _tb.tb_next is not None:\n"
        "    _tb = _tb.tb_next\n"
        "_ref = weakref.ref(_tb.tb_frame.f_locals['activations'])\n"
        "del _tb\n"
        "gc.collect()\n"
        "_before = _ref() is not None\n"
        "tl.free_memory()\n"
        "print(repr((_before, _ref() is None)))\n"
    )
    printed = "".join(m["content"]["text"] for m in out if m["msg_type"] == "stream")
    assert printed.strip() == "(True, True)"


def test_other_errors_get_no_report(kernel: Kernel):
    msgs = kernel.execute(
        "import jupyter_torchlab\nraise ValueError('not memory')", allow_error=True
    )
    assert [m for m in displays(msgs) if m["msg_type"] == "display_data"] == []
