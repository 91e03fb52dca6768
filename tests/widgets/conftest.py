"""A real IPython kernel for widget tests, and helpers to read what it sends on iopub."""

from __future__ import annotations

import os
import queue
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from jupyter_client.manager import KernelManager

ROOT = Path(__file__).resolve().parents[2]


#: extra path put first on the kernel's sys.path, e.g. a ``pip install --target`` of ipykernel 6
#: to run these tests against ipykernel 6 while the venv has 7
EXTRA_PATH = "JUPYTER_TORCHLAB_TEST_KERNEL_PATH"


def kernel_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    first = [env.get(EXTRA_PATH, ""), str(ROOT), env.get("PYTHONPATH", "")]
    env["PYTHONPATH"] = os.pathsep.join(filter(None, first))
    env.pop("JUPYTER_TORCHLAB_PROGRESS", None)
    env.update(extra)
    return env


class Kernel:
    """A started kernel plus a client that records every iopub message of each execution."""

    def __init__(self, km: KernelManager):
        self.km = km
        self.kc = km.client()
        self.kc.start_channels()
        self.kc.wait_for_ready(timeout=60)

    def execute(self, code: str, timeout: float = 60, allow_error: bool = False) -> list[dict]:
        """Run ``code``; return its iopub messages up to the idle status."""
        msg_id = self.kc.execute(code)
        msgs = self.collect(msg_id, timeout)
        errors = [m for m in msgs if m["msg_type"] == "error"]
        if errors and not allow_error:
            raise AssertionError("\n".join(errors[0]["content"]["traceback"]))
        return msgs

    def collect(self, msg_id: str, timeout: float = 60) -> list[dict]:
        msgs: list[dict] = []
        deadline = time.monotonic() + timeout
        while True:
            try:
                msg = self.kc.get_iopub_msg(timeout=max(deadline - time.monotonic(), 0.01))
            except queue.Empty:
                raise AssertionError(f"no idle status within {timeout}s; got {msgs}") from None
            msgs.append(msg)
            if (
                msg["msg_type"] == "status"
                and msg["parent_header"].get("msg_id") == msg_id
                and msg["content"]["execution_state"] == "idle"
            ):
                return msgs

    def value(self, expr: str) -> Any:
        """Evaluate ``expr`` in the kernel and return its repr'd value via literal_eval."""
        import ast

        msgs = self.execute(f"print(repr({expr}))")
        out = "".join(m["content"]["text"] for m in msgs if m["msg_type"] == "stream")
        return ast.literal_eval(out.strip())

    def drain(self, seconds: float) -> list[dict]:
        """Return iopub messages that arrive within ``seconds`` (e.g. from threads)."""
        msgs: list[dict] = []
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            try:
                msgs.append(self.kc.get_iopub_msg(timeout=left))
            except queue.Empty:
                break
        return msgs


@pytest.fixture(scope="module")
def kernel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kernel]:
    """One kernel per test module (tests there check deltas, so they can share it)."""
    km = KernelManager(kernel_name="python3")
    cwd = tmp_path_factory.mktemp("kernel")
    km.start_kernel(cwd=str(cwd), env=kernel_env())
    k = Kernel(km)
    try:
        # the python3 spec may point at another interpreter; this venv's is what we test
        exe = k.value("__import__('sys').executable")
        assert Path(exe).resolve() == Path(sys.executable).resolve(), exe
        yield k
    finally:
        k.kc.stop_channels()
        km.shutdown_kernel(now=True)


def comm_updates(msgs: list[dict]) -> list[dict]:
    """Return the ``state`` dicts of comm_msg updates, in order."""
    return [
        m["content"]["data"]["state"]
        for m in msgs
        if m["msg_type"] == "comm_msg" and m["content"]["data"].get("method") == "update"
    ]


def displays(msgs: list[dict]) -> list[dict]:
    """Return display_data and update_display_data messages, in order."""
    return [m for m in msgs if m["msg_type"] in ("display_data", "update_display_data")]


def widget_ids(msgs: list[dict]) -> list[str]:
    """Return the model ids of widgets shown by display_data messages."""
    key = "application/vnd.jupyter.widget-view+json"
    return [
        m["content"]["data"][key]["model_id"] for m in displays(msgs) if key in m["content"]["data"]
    ]


# tqdm's monitor thread (one per bar class, started with its first bar, as with tqdm.auto) stays,
# asleep, for the kernel's life: it is tqdm's, and not counted as left behind
LEAK_CHECK = """
import threading as _th
from ipywidgets.widgets.widget import _instances as _wi
_ours = [t.name for t in _th.enumerate() if type(t).__name__ != "TMonitor"]
print(repr(sorted(_ours)) + "|" + repr(len(_wi)))
"""


def kernel_threads_and_widgets(k: Kernel) -> tuple[list[str], int]:
    msgs = k.execute(LEAK_CHECK)
    out = "".join(m["content"]["text"] for m in msgs if m["msg_type"] == "stream")
    threads, count = out.strip().split("|")
    import ast

    return ast.literal_eval(threads), int(count)
