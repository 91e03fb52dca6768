"""The low-utilisation stretch that both the server and the kernel monitor call "the GPU waits"."""

from __future__ import annotations

import pytest

from jupyter_torchlab.metrics.starvation import STARVED_AFTER, GpuStarvation

GIB = 2**30


def feed(s: GpuStarvation, key: str, readings: list[tuple[float, float | None]], **kw):
    out = None
    for now, util in readings:
        out = s.observe(
            key, busy=kw.get("busy", True), gpu_memory=kw.get("mem", GIB), utilization=util, now=now
        )
    return out


def test_a_busy_holder_under_the_threshold_waits_only_after_the_stretch_lasts():
    s = GpuStarvation()
    assert feed(s, "k", [(0.0, 2.0), (STARVED_AFTER - 1, 4.0)]) is None
    starved = feed(s, "k", [(STARVED_AFTER, 6.0)])
    assert starved is not None
    assert starved.seconds == pytest.approx(STARVED_AFTER)
    assert starved.utilization == pytest.approx(4.0)  # the mean over the stretch


@pytest.mark.parametrize(
    ("kw", "reading"),
    [
        ({"busy": False}, 1.0),  # idle: nothing is waiting
        ({"mem": 0}, 1.0),  # holds no GPU memory: not a GPU job
        ({"mem": None}, 1.0),
        ({}, 50.0),  # the GPU works
        ({}, None),  # not measured: never claimed
    ],
)
def test_a_reading_that_is_not_low_and_busy_ends_the_stretch(kw, reading):
    s = GpuStarvation()
    feed(s, "k", [(0.0, 1.0), (20.0, 1.0)])
    assert feed(s, "k", [(25.0, reading)], **kw) is None
    # the stretch starts again: 30 s more before it counts
    assert feed(s, "k", [(40.0, 1.0), (69.0, 1.0)]) is None
    assert feed(s, "k", [(70.0, 1.0)]) is not None


def test_keys_are_independent_and_forget_drops_the_gone():
    s = GpuStarvation(below=10.0, after=5.0)
    feed(s, "a", [(0.0, 1.0)])
    feed(s, "b", [(0.0, 1.0)])
    s.forget({"a"})
    assert feed(s, "a", [(5.0, 1.0)]) is not None
    assert feed(s, "b", [(5.0, 1.0)]) is None  # b's stretch began anew at 5 s
