"""tl.monitor(): pure rendering from metrics snapshots, and the live widget in a real kernel."""

import os
import re
import time

import pytest

from jupyter_torchlab.metrics.gpu import GpuProcess, GpuSnapshot
from jupyter_torchlab.metrics.host import HostSnapshot
from jupyter_torchlab.metrics.process import ProcessTreeSnapshot
from jupyter_torchlab.metrics.sampler import Snapshot
from jupyter_torchlab.widgets.kernel_monitor import KernelActivity, render_monitor

from .conftest import Kernel, comm_updates, displays, kernel_threads_and_widgets, widget_ids

GiB = 1024**3


def snapshot(*, memory_limit=None, cpu_limit=None, gpus=(), gpu_reason=None):
    pid = os.getpid()
    host = HostSnapshot(
        cpu_percent=50.0,
        cpu_count=8,
        cpu_limit=cpu_limit,
        per_cpu=(50.0,) * 8,
        load_avg=(1.0, 1.0, 1.0),
        memory_total=64 * GiB,
        memory_used=3 * GiB,
        memory_available=61 * GiB,
        memory_limit=memory_limit,
        swap_total=0,
        swap_used=0,
    )
    tree = ProcessTreeSnapshot(
        pid=pid,
        cpu_percent=150.0,
        rss=2 * GiB,
        pss=GiB,
        num_threads=12,
        num_children=2,
        pids=(pid, pid + 1, pid + 2),
        gpu_memory=None,
    )
    return Snapshot(
        time=time.time(),
        host=host,
        gpus=tuple(gpus),
        gpu_reason=gpu_reason,
        trees={"kernel": tree},
        errors={},
    )


def gpu(index, used, procs):
    return GpuSnapshot(
        index=index,
        name="NVIDIA H100",
        uuid=f"GPU-{index}",
        utilization_gpu=87.0,
        utilization_memory=40.0,
        memory_used=used,
        memory_total=80 * GiB,
        temperature=60.0,
        power_watts=300.0,
        power_limit_watts=700.0,
        source="nvml",
        processes=tuple(procs),
    )


def test_render_shows_busy_cell_tree_and_container_limits():
    busy = KernelActivity(busy=True, since=time.time(), duration=75, cell="model.fit(x)")
    html, text = render_monitor(snapshot(memory_limit=4 * GiB, cpu_limit=2.0), busy)
    assert 'data-state="busy"' in html
    assert "busy for 1:15 on model.fit(x)" in text
    assert "150% of one core (75% of 2 CPUs), 2 child processes" in text
    assert "1.0 GiB of 4.0 GiB limit (25%)" in text  # PSS against the container limit
    assert "host CPU: 50% of 2 CPUs (container limit)" in text


def test_render_idle_and_per_gpu_share_of_this_kernel():
    pid = os.getpid()
    gpus = [
        gpu(0, 10 * GiB, [GpuProcess(pid + 1, 6 * GiB, "compute"), GpuProcess(1, GiB, "compute")]),
        gpu(1, 2 * GiB, [GpuProcess(1, 2 * GiB, "compute")]),
    ]
    idle = KernelActivity(busy=False, since=time.time() - 5, duration=5, cell=None)
    html, text = render_monitor(snapshot(gpus=gpus), idle)
    assert 'data-state="idle"' in html
    assert "idle since" in text
    assert "GPU 0: NVIDIA H100, 87% busy, 10 GiB of 80 GiB, this kernel 6.0 GiB" in text
    assert "GPU 1: NVIDIA H100, 87% busy, 2.0 GiB of 80 GiB\n" in text + "\n"


def test_render_without_gpu_says_why_and_escapes_cell_text():
    busy = KernelActivity(busy=True, since=time.time(), duration=1, cell="<script>x</script>")
    html, text = render_monitor(snapshot(gpu_reason="no NVIDIA driver"), busy)
    assert "GPU: none (no NVIDIA driver)" in text
    assert "<script>" not in html


def monitor_states(msgs: list[dict]) -> list[str]:
    return [
        m.group(1)
        for s in comm_updates(msgs)
        if (m := re.search(r'class="torchlab-monitor" data-state="(\w+)"', s.get("value", "")))
    ]


@pytest.mark.slow
def test_monitor_in_a_kernel_busy_idle_same_widget_and_clean_close(kernel: Kernel):
    threads_before, widgets_before = kernel_threads_and_widgets(kernel)
    first = kernel.execute("import jupyter_torchlab as tl\ntl.monitor()")
    again = kernel.execute("tl.monitor()")
    assert widget_ids(first)
    assert widget_ids(first) == widget_ids(again)  # one monitor per kernel, shown again
    threads, _ = kernel_threads_and_widgets(kernel)
    assert threads.count("torchlab-monitor") == 1

    # record which thread writes the widget's value: it must only ever be the monitor's own
    kernel.execute(
        "import threading\nfrom jupyter_torchlab.widgets import kernel_monitor as _m\n"
        "_writers = set()\n"
        "_m._current._html.observe("
        "lambda ch: _writers.add(threading.current_thread().name), 'value')"
    )
    during = kernel.execute("import time\ntime.sleep(3)")
    states = monitor_states(during)
    # updates keep coming while the cell runs (about one a second), and they say busy
    assert states.count("busy") >= 2, states
    assert any("on import time" in s.get("value", "") for s in comm_updates(during))
    after = monitor_states(kernel.drain(2.5))
    assert after
    assert after[-1] == "idle"
    assert kernel.value("sorted(_writers)") == ["torchlab-monitor"]

    closing = kernel.execute("from jupyter_torchlab.widgets import close_monitor\nclose_monitor()")
    records = [m for m in displays(closing) if m["msg_type"] == "update_display_data"]
    assert len(records) == 2  # both places it was shown keep a static record
    assert "monitor stopped at" in records[0]["content"]["data"]["text/plain"]
    assert 'class="torchlab-monitor"' in records[0]["content"]["data"]["text/html"]
    threads_after, widgets_after = kernel_threads_and_widgets(kernel)
    assert "torchlab-monitor" not in threads_after
    assert threads_after == threads_before
    assert widgets_after == widgets_before
    assert not monitor_states(kernel.drain(1.5))  # nothing is sent after close


@pytest.mark.slow
def test_kernel_with_a_running_monitor_shuts_down_by_itself(tmp_path):
    from jupyter_client.manager import KernelManager

    from .conftest import kernel_env

    km = KernelManager(kernel_name="python3")
    km.start_kernel(cwd=str(tmp_path), env=kernel_env())
    k = Kernel(km)
    try:
        k.execute("import jupyter_torchlab as tl\ntl.monitor()")
        proc = km.provisioner.process
    finally:
        k.kc.stop_channels()
        km.request_shutdown()
        km.finish_shutdown(waittime=30)
        km.cleanup_resources()
    # exit status 0: it exited on its own (a hung monitor thread would have got it killed)
    assert proc.poll() == 0


class FlakySampler:
    """A Sampler whose second tick fails: the monitor must log it once and carry on."""

    def __init__(self) -> None:
        self.ticks = 0
        self.stopped = False

    def sample_once(self, targets):
        assert targets == {"kernel": os.getpid()}  # the monitor watches its own process
        self.ticks += 1
        if self.ticks == 2:
            raise OSError("proc vanished")
        return snapshot()

    def close(self) -> None:
        self.stopped = True


def test_monitor_thread_survives_a_failing_tick_and_stops_on_close(caplog):
    import threading

    from jupyter_torchlab.widgets.kernel_monitor import KernelMonitor

    sampler = FlakySampler()
    mon = KernelMonitor(sampler=sampler, interval=0.01)
    mon.start()
    deadline = time.monotonic() + 30
    while sampler.ticks < 5:
        assert time.monotonic() < deadline, "the monitor stopped ticking"
        time.sleep(0.01)
    assert isinstance(mon.error, OSError)
    assert 'data-state="idle"' in mon._html.value  # not in a kernel: no running cell
    assert caplog.text.count("proc vanished") == 1
    mon.close()
    assert not mon.thread.is_alive()
    assert sampler.stopped
    assert mon._html.comm is None
    assert "torchlab-monitor" not in [t.name for t in threading.enumerate()]


@pytest.mark.parametrize(
    ("limit", "level", "words"),
    [
        (16 * GiB, "ok", None),
        (int(1.2 * GiB), "warn", "close to the limit"),
        (int(1.02 * GiB), "danger", "at the limit: the next step may fail"),
    ],
)
def test_memory_close_to_the_limit_turns_amber_then_red(limit, level, words):
    idle = KernelActivity(busy=False, since=time.time(), duration=1, cell=None)
    html, text = render_monitor(snapshot(memory_limit=limit), idle)
    assert f'data-pressure="{level}"' in html
    line = next(line for line in text.splitlines() if "kernel memory" in line)
    if words is None:
        assert "limit (" in line
        assert "close" not in line
    else:
        assert line.endswith(words)
        assert ("#d98a1c" if level == "warn" else "#c9302c") in html


def test_a_nearly_full_gpu_says_so():
    full = [gpu(0, int(79 * GiB), [])]
    idle = KernelActivity(busy=False, since=time.time(), duration=1, cell=None)
    _html, text = render_monitor(snapshot(gpus=full), idle)
    assert "GPU 0: NVIDIA H100, 87% busy, 79 GiB of 80 GiB, at the limit" in text


def test_a_restarted_kernel_says_how_the_previous_one_died(tmp_path):
    from jupyter_torchlab._runtime_files import write_deaths, write_kernels
    from jupyter_torchlab.widgets.kernel_monitor import previous_death

    connection = tmp_path / "kernel-abc123.json"
    connection.write_text("{}")
    assert previous_death(str(connection)) is None  # no record yet
    events = [
        {"kernel_id": "abc123", "time": 100.0, "cause": "signal", "reason": "killed by signal 15"},
        {"kernel_id": "other", "time": 150.0, "cause": "exit", "reason": "exited with status 1"},
        {
            "kernel_id": "abc123",
            "time": 200.0,
            "cause": "oom_killer",
            "reason": "killed by the out-of-memory killer at 3.9 GiB of its 4.0 GiB memory limit",
        },
    ]
    write_deaths(tmp_path, events)  # as the server writes it
    death = previous_death(str(connection), started=230.0)  # restarted 30 s after it died
    assert death == events[-1]
    # a kernel restarted by hand an hour later was not restarted because of that death
    assert previous_death(str(connection), started=200.0 + 3600) is None
    assert previous_death(str(tmp_path / "kernel-unknown.json"), started=230.0) is None
    assert previous_death(str(tmp_path / "not-a-kernel.json"), started=230.0) is None
    # the server's table of kernels names the notebooks of other processes on a GPU
    from jupyter_torchlab.widgets.oom_display import kernel_notebooks

    assert kernel_notebooks(str(connection)) == {}  # not written yet
    write_kernels(
        tmp_path,
        {
            1234: {"id": "abc123", "name": "python3", "path": "work/train.ipynb"},
            99: {"id": "x", "name": "ir", "path": None},
        },
    )
    assert kernel_notebooks(str(connection)) == {1234: "train.ipynb", 99: "kernel ir"}
    idle = KernelActivity(busy=False, since=time.time(), duration=1, cell=None)
    html, text = render_monitor(snapshot(), idle, last_death=death)
    line = next(line for line in text.splitlines() if "last restart" in line)
    assert "the kernel was killed by the out-of-memory killer at 3.9 GiB" in line
    assert 'data-pressure="danger"' in html
    # an exit reads as one, not "the kernel was exited"
    _, text = render_monitor(snapshot(), idle, last_death=events[1])
    line = next(line for line in text.splitlines() if "last restart" in line)
    assert line.endswith("the kernel exited with status 1")


def test_a_busy_kernel_whose_gpu_mostly_waits_says_so():
    """The real sampler over the fake NVML: this process holds GPU memory, keeps it ~idle."""
    from jupyter_torchlab.metrics import GpuSampler, HostSampler, Sampler
    from jupyter_torchlab.metrics.starvation import STARVED_AFTER
    from jupyter_torchlab.widgets.kernel_monitor import KernelMonitor
    from tests.metrics.fake_nvml import FakeNvml, device, proc, sample

    me = os.getpid()
    clock = [1000.0]
    nvml = FakeNvml([device(0, compute=[proc(me, 2 * GiB)], samples=[sample(me, 10, 3)])])
    sampler = Sampler(host=HostSampler(), gpu=GpuSampler(nvml, environ={}), wall=lambda: clock[0])
    mon = KernelMonitor(sampler=sampler, wall=lambda: clock[0])
    busy = KernelActivity(busy=True, since=clock[0], duration=0, cell="fit(model, loader)")
    mon.activity = lambda: busy  # type: ignore[method-assign]
    try:
        mon._sample()
        assert mon._gpu_waiting is None  # not for long enough yet
        clock[0] += STARVED_AFTER
        mon._sample()  # no new sample since the last reading: the GPU ran nothing of ours
        assert mon._gpu_waiting is not None
        assert mon._gpu_waiting.utilization == pytest.approx(1.5)
        _html, text = render_monitor(mon._snapshot, busy, gpu_waiting=mon._gpu_waiting)
        assert "GPU waits: busy, but this kernel kept its GPU only 2% busy for 30 s" in text
        assert "probably waiting for data" in text
        # idle: no claim about waiting
        idle = KernelActivity(busy=False, since=clock[0], duration=0, cell=None)
        mon.activity = lambda: idle  # type: ignore[method-assign]
        mon._sample()
        assert mon._gpu_waiting is None
    finally:
        mon.close()
