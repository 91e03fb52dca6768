"""tl.progress and fit's display in a real kernel, judged by the iopub messages they send."""

import time

import pytest

from .conftest import Kernel, comm_updates, displays, kernel_threads_and_widgets, widget_ids

pytestmark = pytest.mark.slow

RECORD = "text/html"


def final_record(msgs: list[dict]) -> dict:
    updates = [m for m in displays(msgs) if m["msg_type"] == "update_display_data"]
    assert updates, "the widget was not replaced by a static record"
    return updates[-1]["content"]["data"]


def test_tight_loop_sends_a_bounded_number_of_messages(kernel: Kernel):
    threads_before, widgets_before = kernel_threads_and_widgets(kernel)
    msgs = kernel.execute(
        "import time, torch\n"
        "import jupyter_torchlab as tl\n"
        "from jupyter_torchlab.widgets._budget import get_budget\n"
        "_t0 = time.monotonic()\n"
        "bar = tl.progress(range(100_000), desc='tight')\n"
        "for i in bar:\n"
        "    bar.log(loss=torch.tensor(float(i)))\n"
        "_elapsed = time.monotonic() - _t0\n"
        "print(repr((bar.status, bar.n, _elapsed, get_budget().rate)))\n"
    )
    out = "".join(m["content"]["text"] for m in msgs if m["msg_type"] == "stream")
    status, n, elapsed, rate = eval(out)
    assert (status, n) == ("done", 100_000)
    updates = comm_updates(msgs)
    # one trait message per refresh, whatever the iteration rate, plus a constant
    assert len(updates) <= rate * elapsed + 3, (len(updates), elapsed)
    shown = [m for m in displays(msgs) if m["msg_type"] == "display_data"]
    assert len(shown) == 1
    assert "tight:" in shown[0]["content"]["data"]["text/plain"]
    record = final_record(msgs)
    assert 'data-status="done"' in record[RECORD]
    assert "100000/100000" in record[RECORD]
    assert record["text/plain"].startswith("tight: 100%|")  # tqdm's own line
    assert "| 100000/100000 [" in record["text/plain"]
    assert "loss=" in record["text/plain"]
    # every comm opened was closed, and nothing stayed behind in the kernel
    opened = {m["content"]["comm_id"] for m in msgs if m["msg_type"] == "comm_open"}
    closed = {m["content"]["comm_id"] for m in msgs if m["msg_type"] == "comm_close"}
    assert opened
    assert opened == closed
    threads_after, widgets_after = kernel_threads_and_widgets(kernel)
    assert threads_after == threads_before  # (tqdm's monitor thread aside, see conftest)
    assert widgets_after == widgets_before


def test_break_is_recorded_as_stopped(kernel: Kernel):
    msgs = kernel.execute(
        "import jupyter_torchlab as tl\n"
        "for i in tl.progress(range(1000), desc='early'):\n"
        "    if i == 250:\n"
        "        break\n"
    )
    record = final_record(msgs)
    assert 'data-status="stopped"' in record[RECORD]
    assert "250/1000" in record[RECORD]
    assert "#c9302c" not in record[RECORD]  # the failure colour is not used for a break
    assert record["text/plain"].endswith("stopped")


@pytest.mark.parametrize(
    "body",
    [
        "pass",  # the interrupt lands in the loop machinery or the body, whichever is running
        "time.sleep(0.05)",  # the interrupt lands in the body: the bar sees a GeneratorExit
    ],
)
def test_interrupt_marks_the_bar_and_leaves_the_kernel_usable(kernel: Kernel, body: str):
    msg_id = kernel.kc.execute(
        "import time\nimport jupyter_torchlab as tl\n"
        f"for i in tl.progress(range(10**9), desc='long'):\n    {body}\n"
    )
    seen: list[dict] = []
    deadline = time.monotonic() + 30
    while not any(m["msg_type"] == "display_data" for m in seen):
        assert time.monotonic() < deadline, seen
        seen.append(kernel.kc.get_iopub_msg(timeout=30))
    time.sleep(0.5)
    kernel.km.interrupt_kernel()
    seen += kernel.collect(msg_id, timeout=30)
    errors = [m for m in seen if m["msg_type"] == "error"]
    # a normal, formatted KeyboardInterrupt (not IPython's "Unexpected exception formatting")
    streams = "".join(m["content"].get("text", "") for m in seen if m["msg_type"] == "stream")
    assert errors, streams
    assert errors[0]["content"]["ename"] == "KeyboardInterrupt"
    record = final_record(seen)
    assert 'data-status="interrupted"' in record[RECORD]
    assert "interrupted at " in record["text/plain"]
    assert kernel.value("1 + 1") == 2


def test_rerunning_a_cell_starts_a_fresh_bar(kernel: Kernel):
    code = "import jupyter_torchlab as tl\nfor i in tl.progress(range(10), desc='again'): pass\n"
    first = kernel.execute(code)
    second = kernel.execute(code)
    assert widget_ids(first) != widget_ids(second)
    assert "10/10" in final_record(second)[RECORD]


def test_fit_display_shows_bars_table_and_leaves_a_record(kernel: Kernel):
    threads_before, widgets_before = kernel_threads_and_widgets(kernel)
    msgs = kernel.execute(
        "import torch\n"
        "from torch.utils.data import TensorDataset\n"
        "import jupyter_torchlab as tl\n"
        "torch.manual_seed(0)\n"
        "_ds = TensorDataset(torch.randn(64, 3, 32, 32), torch.randint(0, 10, (64,)))\n"
        "hist = tl.fit(tl.TutorialNet(), _ds, val_data=_ds, epochs=2, batch_size=8)\n"
        "print(len(hist))\n",
        timeout=120,
    )
    out = "".join(m["content"]["text"] for m in msgs if m["msg_type"] == "stream")
    assert out.strip().endswith("2")
    assert len(widget_ids(msgs)) == 1  # the notebook display, not the text one
    record = final_record(msgs)
    html = record[RECORD]
    assert 'class="torchlab-fit" data-status="done"' in html
    for header in ("train loss", "val loss", "val acc", "images/s"):
        assert header in html
    assert html.count("<tr>") == 3  # header + one row per epoch
    assert "device cpu" in html
    assert "<svg" in html  # the loss curve
    assert "waiting for data" in html
    assert record["text/plain"].startswith("done: 2 epochs on cpu")
    threads_after, widgets_after = kernel_threads_and_widgets(kernel)
    assert widgets_after == widgets_before
    assert threads_after == threads_before
