"""The service's pure parts: pairing servers with routes, reasons, the page's order, the text."""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pytest
from prometheus_client import REGISTRY, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from tornado.httpclient import HTTPClientError

from jupyter_torchlab._format import format_span
from jupyter_torchlab.hub.collector import Round, ServerResult, explain_failure
from jupyter_torchlab.hub.config import ConfigError, is_local, parse
from jupyter_torchlab.hub.discovery import Target, join_targets
from jupyter_torchlab.hub.exposition import render
from jupyter_torchlab.hub.page import render_page
from jupyter_torchlab.hub.view import build_view

from .hubenv import free_port, http_get

DASHBOARD = Path(__file__).parents[2] / "docs" / "grafana" / "torchlab-hub.json"
ENV = {"JUPYTERHUB_API_URL": "http://127.0.0.1:8081/hub/api", "JUPYTERHUB_API_TOKEN": "t"}


def test_servers_are_paired_with_their_routes_and_say_why_not() -> None:
    users = [
        {"name": "alice", "servers": {"": {"ready": True, "url": "/user/alice/"},
                                      "gpu": {"ready": True, "url": "/user/alice/gpu/"}}},
        {"name": "bob", "servers": {"": {"ready": False, "url": "/user/bob/"}}},
        {"name": "carol", "servers": {"": {"ready": True, "url": "/user/carol/"}}},
    ]  # fmt: skip
    routes = {
        "/user/alice/": {"target": "http://10.0.0.5:8888",
                         "data": {"user": "alice", "server_name": ""}},
        "/user/alice/gpu/": {"target": "http://10.0.0.6:8888/",
                             "data": {"user": "alice", "server_name": "gpu"}},
        "/": {"target": "http://hub:8081", "data": {"hub": True}},
    }  # fmt: skip
    got = {(t.user, t.server): t for t in join_targets(users, routes)}
    assert got[("alice", "")].url == "http://10.0.0.5:8888/user/alice/"
    assert got[("alice", "gpu")].url == "http://10.0.0.6:8888/user/alice/gpu/"
    assert got[("bob", "")].url is None
    assert got[("bob", "")].reason == "starting (not ready yet)"
    assert got[("carol", "")].reason == "ready, but the proxy has no route to it yet"


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (HTTPClientError(599), "no answer from 10.0.0.5:8888 within 2 s"),
        (HTTPClientError(403), "grant the service's role custom:torchlab:read"),
        (HTTPClientError(404), "jupyter-torchlab is not installed or not enabled"),
        (ConnectionRefusedError(111, "refused"), "connection refused at 10.0.0.5:8888"),
    ],
)
def test_a_failed_read_says_why(error: BaseException, expected: str) -> None:
    assert expected in explain_failure(error, "http://10.0.0.5:8888/user/a/", 2.0)


def kernel(kid: str, state: str, gpu: int = 0, since: float = 0.0) -> dict:
    return {
        "id": kid, "name": "python3", "path": f"{kid}.ipynb", "execution_state": state,
        "busy_since": since if state == "busy" else None,
        "idle_since": since if state == "idle" else None, "cpu_percent": 1.0, "memory": 1e8,
        "gpu_memory": gpu, "gpu_devices": [0] if gpu else [], "holding_idle": None,
    }  # fmt: skip


def a_round() -> Round:
    gpu = {"index": 0, "name": "H100", "uuid": "GPU-1", "memory_used": 3e9, "memory_total": 8e10}
    doc_a = {
        "time": 100.0,
        "host": {},
        "gpus": [gpu],
        "kernels": [kernel("busy", "busy", 1e9, 40), kernel("holder", "idle", 2e9, 10)],
    }
    doc_b = {"time": 100.0, "host": {}, "gpus": [gpu], "kernels": [kernel("plain", "idle", 0, 90)]}
    return Round(100.0, 0.05, (
        ServerResult(Target("alice", "", "http://a/", True, None, None), doc_a, None, 0.01),
        ServerResult(Target("bob", "", "http://b/", True, None, None), doc_b, None, 0.01),
        ServerResult(Target("carol", "", "http://c/", True, None, None), None, "no answer", 2.0),
    ))  # fmt: skip


def test_the_page_lists_idle_gpu_holders_first_and_every_gpu_once() -> None:
    view = build_view(a_round())
    assert [k.kernel_id for k in view.kernels] == ["holder", "busy", "plain"]
    assert view.kernels[0].idle_gpu_holder
    assert view.kernels[0].state_seconds == 90
    assert [g.uuid for g in view.gpus] == ["GPU-1"]
    assert view.gpus[0].holders == ("alice/: busy.ipynb (busy)", "alice/: holder.ipynb (idle)")
    assert next((s.user, s.status, s.reason) for s in view.servers) == (
        "carol",
        "unreachable",
        "no answer",
    )


def test_the_page_says_when_its_round_began_to_the_second_and_in_words() -> None:
    rnd = a_round()
    page = render_page(build_view(rnd), refresh=5, user="admin", now=rnd.time + 75)
    found = re.search(r'<time id="collected" datetime="([^"]+)">([^<]+)</time>', page)
    assert found, page
    assert datetime.fromisoformat(found.group(1)).timestamp() == pytest.approx(rnd.time)
    assert found.group(2) == f"{format_span(75)} ago"


def test_every_series_carries_user_and_server() -> None:
    text = render(a_round()).decode()
    series = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert series
    assert all('user="' in line and 'server="' in line for line in series)
    assert 'torchlab_hub_server_up{server="carol/",user="carol"} 0.0' in text
    assert (
        'torchlab_kernel_busy{kernel_id="busy",kernel_name="python3",path="busy.ipynb",'
        'server="alice/",user="alice"} 1.0' in text
    )
    assert "carol" not in "".join(s for s in series if s.startswith("torchlab_kernel"))


def parity_doc() -> dict:
    """A snapshot document with every field a series of the server's /metrics reads.

    Every label value says "parity", so this test reads back only its own series from the
    process-wide registry the server's exporter shares.
    """
    local = {**kernel("parity-local", "busy", 2e9, 40), "source": "process", "runs": [
        {"id": "r1", "state": "running", "desc": "train", "fraction": 0.25, "eta": 30.0,
         "rate": 12.5},
        {"id": "r2", "state": "running", "desc": "train", "fraction": None, "eta": None,
         "rate": 3.0},  # same desc: numbered "train #2", as the server numbers it
        {"id": "r0", "state": "done", "desc": "parity-old", "fraction": 1.0, "eta": 0.0,
         "rate": 9.0},
    ], "gpu_utilization": 55.0, "holding_idle": None, "usage_age": None}  # fmt: skip
    remote = {**kernel("parity-remote", "idle", 0, 90), "source": "kernel", "usage_age": 1.5,
              "holding_idle": {"seconds": 2000, "bytes": 4e9}, "runs": []}  # fmt: skip
    return {
        "time": 100.0,
        "host": {"cpu_percent": 12.0, "cpu_count": 8, "cpu_limit": 2.0, "memory_used": 3e9,
                 "memory_total": 1.6e10, "memory_limit": 8e9},
        "gpus": [{"index": 0, "name": "parity-H100", "uuid": "GPU-parity", "utilization_gpu": 70,
                  "memory_used": 3e9, "memory_total": 8e10, "temperature": 51,
                  "power_watts": 210.5}],
        "kernels": [local, remote],
        "counts": {"kernel_deaths": {"parity-signal": 2},
                   "kernel_idle_gpu_actions": {"parity-warned": 3},
                   "memory_guard_interrupts": {"parity-cgroup": 1}},
    }  # fmt: skip


def test_the_hub_endpoint_carries_every_series_of_a_server_s_metrics() -> None:
    """Every torchlab_* family and sample of a server's /metrics, with user and server added."""
    from jupyter_torchlab.server.prometheus import PrometheusExporter

    doc = parity_doc()
    exporter = PrometheusExporter()  # the server's own, into the registry its /metrics serves
    try:
        exporter.update(doc)
        count = {
            "kernel_deaths": exporter.count_death,
            "kernel_idle_gpu_actions": exporter.count_idle_action,
            "memory_guard_interrupts": exporter.count_guard_interrupt,
        }
        for kind, by_label in doc["counts"].items():
            for label, n in by_label.items():
                for _ in range(n):
                    count[kind](label)
        server_text = generate_latest(REGISTRY).decode()
    finally:
        exporter.close()
    server = {
        f.name: f for f in text_string_to_metric_families(server_text)
        # a counter's creation time (the text parser reads it as a family of its own) is not in
        # the document: the hub endpoint's counters have none
        if f.name.startswith("torchlab_") and not f.name.endswith("_created")
    }  # fmt: skip
    who = Target("alice", "gpu", "http://a/", True, None, None)
    hub_text = render(Round(100.0, 0.1, (ServerResult(who, doc, None, 0.01),))).decode()
    hub = {f.name: f for f in text_string_to_metric_families(hub_text)}

    assert len(server) >= 25  # the exporter's families were found (not an empty comparison)
    own = {"torchlab_hub_server_up", "torchlab_hub_server_collect_seconds"}
    assert set(hub) - set(server) == own
    extra = {"user": "alice", "server": "alice/gpu"}
    for name, family in server.items():
        assert name in hub, f"the hub endpoint lacks {name}"
        assert (hub[name].type, hub[name].documentation) == (family.type, family.documentation)
        got = {(s.name, tuple(sorted(s.labels.items()))): s.value for s in hub[name].samples}
        ours = [
            s for s in family.samples
            if not s.labels or any("parity" in v for v in s.labels.values())
        ]  # fmt: skip
        assert ours, f"the test document sets no sample of {name}"
        for sample in ours:
            key = (sample.name, tuple(sorted({**sample.labels, **extra}.items())))
            assert key in got, f"the hub endpoint lacks {key}"
            assert got[key] == sample.value or (math.isnan(got[key]) and math.isnan(sample.value))
    descs = {s.labels["desc"] for s in hub["torchlab_run_items_per_second"].samples}
    assert descs == {"train", "train #2"}  # only running runs, numbered as the server does


def test_every_series_a_dashboard_panel_queries_is_on_the_hub_endpoint() -> None:
    """The GPU panels included, which the real-hub test can only run empty on a machine without."""
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    who = Target("alice", "", "http://a/", True, None, None)
    text = render(Round(100.0, 0.1, (ServerResult(who, parity_doc(), None, 0.01),))).decode()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    for expr in exprs:
        for name in re.findall(r"torchlab_[a-z_]+", expr):
            assert name in families, (expr, name)
            assert families[name].samples, (expr, name)
            for label in re.findall(r"by \(([^)]*)\)", expr):
                wanted = {x.strip() for x in label.split(",")}
                assert wanted <= families[name].samples[0].labels.keys(), (expr, wanted)


def test_settings_say_what_is_missing() -> None:
    with pytest.raises(ConfigError, match="JUPYTERHUB_API_TOKEN not set: run this as a JupyterHub"):
        parse([], {"JUPYTERHUB_API_URL": "x"})
    with pytest.raises(ConfigError, match=r"use at least 16, e\.g\. from `openssl rand -hex 32`"):
        parse([], {**ENV, "TORCHLAB_HUB_METRICS_TOKEN": "short"})
    settings = parse(
        ["--admin-group", "ops"], {**ENV, "JUPYTERHUB_SERVICE_URL": "http://0.0.0.0:9"}
    )
    assert (settings.host, settings.port, settings.admin_groups) == ("0.0.0.0", 9, {"ops"})
    assert settings.metrics_token is None


#: TEST-NET-1 (RFC 5737): documentation-only, an address of no machine, as a Kubernetes Service's
#: cluster IP is of no interface in the hub pod
ELSEWHERE = "192.0.2.10"


def test_the_service_listens_where_the_service_url_points_only_if_that_is_here() -> None:
    for here in ("127.0.0.1", "localhost", "0.0.0.0"):
        assert is_local(here), here
    assert not is_local(ELSEWHERE)

    def host(argv: list[str], **env: str) -> str:
        return parse(argv, {**ENV, **env}).host

    assert host([], JUPYTERHUB_SERVICE_URL="http://127.0.0.1:10101") == "127.0.0.1"
    assert host([], JUPYTERHUB_SERVICE_URL="http://localhost:10101") == "localhost"
    # the hub's Service address on Kubernetes (http://hub:10101): not ours, so every interface
    assert host([], JUPYTERHUB_SERVICE_URL=f"http://{ELSEWHERE}:10101") == "0.0.0.0"
    url = f"http://{ELSEWHERE}:10101"
    assert host([], JUPYTERHUB_SERVICE_URL=url, TORCHLAB_HUB_BIND="127.0.0.1") == "127.0.0.1"
    assert host(["--bind", "0.0.0.0"], TORCHLAB_HUB_BIND="127.0.0.1") == "0.0.0.0"  # flag wins
    assert parse([], {**ENV, "JUPYTERHUB_SERVICE_URL": url}).port == 10101
    with pytest.raises(ConfigError, match=f"--bind {ELSEWHERE} .* is not an address of this"):
        parse(["--bind", ELSEWHERE], ENV)


def test_a_service_url_naming_another_address_still_serves_on_its_port() -> None:
    """The service as a hub would start it with ``url: http://hub:10101`` in a hub pod."""
    port = free_port()
    env = {
        **os.environ,
        **ENV,
        "JUPYTERHUB_API_URL": f"http://127.0.0.1:{free_port()}/hub/api",  # no hub: rounds fail
        "JUPYTERHUB_SERVICE_URL": f"http://{ELSEWHERE}:{port}",
        "JUPYTERHUB_SERVICE_PREFIX": "/services/torchlab/",
        "TORCHLAB_HUB_METRICS_TOKEN": "m" * 32,
    }
    env.pop("TORCHLAB_HUB_BIND", None)
    service = subprocess.Popen(
        [sys.executable, "-m", "jupyter_torchlab.hub", "--interval", "1"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline, status, body = time.monotonic() + 30, 0, b""
        while time.monotonic() < deadline and service.poll() is None:
            url = f"http://127.0.0.1:{port}/services/torchlab/metrics"
            status, body = http_get(url, "m" * 32)
            if status == 200:
                break
            time.sleep(0.3)
        assert status == 200, (status, body[:300])
        assert b"torchlab_hub_" in body
    finally:
        service.terminate()
        out, _ = service.communicate(timeout=30)
    assert f"on http://0.0.0.0:{port}/services/torchlab/".encode() in out, out[-2000:]


def test_without_jupyterhub_the_service_says_what_to_install() -> None:
    code = "import sys; sys.modules['jupyterhub'] = None; import runpy; " \
        "runpy.run_module('jupyter_torchlab.hub', run_name='__main__')"  # fmt: skip
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "needs jupyterhub in its environment" in done.stderr
    assert "pip install jupyterhub" in done.stderr
