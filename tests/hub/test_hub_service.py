"""The hub service in a real JupyterHub: what it may read, Prometheus, and culling left intact.

One hub for the module, tests in order: alice's kernel runs a cell the whole time, bob's kernel
is idle, dora's server is polled through the proxy (as the old README told Prometheus to do).
The culler's timeout is 45 s; the last test waits for it: bob is culled, and alice is not
although no request has gone through the proxy to her for longer than the timeout, because her
busy kernel keeps her server's last_activity moving.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import threading
import time
import urllib.error
import urllib.parse
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from .hubenv import ADMIN, Hub, free_port, http_get, http_json

pytestmark = pytest.mark.slow

README = Path(__file__).parents[2] / "README.md"
DASHBOARD = Path(__file__).parents[2] / "docs" / "grafana" / "torchlab-hub.json"
CULL_AFTER = 45
CULL_EVERY = 3


@pytest.fixture(scope="module")
def hub(make_hub: Any) -> Hub:
    hub = make_hub(culler_timeout=CULL_AFTER, culler_every=CULL_EVERY)
    for name in ("alice", "dora", "bob"):
        hub.start_server(name)
    alice = hub.start_kernel("alice")
    hub.run_cell("alice", alice, "import time; time.sleep(600)")
    bob = hub.start_kernel("bob")
    hub.run_cell("bob", bob, "x = 1")  # bob's last activity: now
    hub.wait_view(
        lambda v: (
            {(k["user"], k["state"]) for k in v["kernels"]} >= {("alice", "busy"), ("bob", "idle")}
        ),
        what="alice's kernel busy and bob's idle",
    )
    return hub


def _direct(hub: Hub, user: str) -> str:
    """The user's server's own address (from the proxy's table), as the service sees it."""
    routes = http_json("GET", f"{hub.api}/proxy", hub.service_token)
    target = next(r["target"] for r in routes.values() if r.get("data", {}).get("user") == user)
    return f"{target}/user/{user}/"


# --- Prometheus, with the README's scrape config --------------------------------------------------


def readme_scrape_config() -> str:
    text = README.read_text()
    match = re.search(r"<!-- hub-prometheus-config -->\s*```yaml\n(.*?)```", text, re.S)
    assert match, "README.md lost its hub Prometheus config block (<!-- hub-prometheus-config -->)"
    return match.group(1)


@pytest.fixture(scope="module")
def prometheus(hub: Hub, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    binary = shutil.which("prometheus") or "/usr/bin/prometheus"
    if not Path(binary).exists():
        pytest.fail("prometheus not found: scripts/install-and-test.sh installs Debian's package")
    root = tmp_path_factory.mktemp("prometheus")
    (root / "token").write_text(hub.metrics_token)
    proxy = urllib.parse.urlparse(hub.url).netloc
    config = readme_scrape_config()
    config = config.replace("hub.example.org:8000", proxy)
    config = config.replace("/etc/prometheus/torchlab_hub_token", str(root / "token"))
    config = config.replace("scrape_interval: 15s", "scrape_interval: 1s")
    (root / "prometheus.yml").write_text(config)
    port = free_port()
    log = (root / "prometheus.log").open("wb")
    process = subprocess.Popen(
        [
            binary,
            f"--config.file={root / 'prometheus.yml'}",
            f"--storage.tsdb.path={root / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()


def query(prom: str, expr: str) -> list[dict[str, Any]]:
    url = f"{prom}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    status, body = http_get(url, None)
    assert status == 200, body[:500]
    return json.loads(body)["data"]["result"]


def wait_query(prom: str, expr: str, users: set[str], timeout: float = 60) -> list[dict[str, Any]]:
    deadline, result = time.monotonic() + timeout, []
    while time.monotonic() < deadline:
        try:
            result = query(prom, expr)
        except (AssertionError, ValueError):
            result = []
        if {r["metric"].get("user") for r in result} >= users:
            return result
        time.sleep(0.5)
    raise AssertionError(f"{expr} never had series for {users}: {result}")


def wait_up(prometheus: str, timeout: float = 15) -> None:
    """Prometheus's last scrape of the service succeeded (a single slow one may not have)."""
    deadline, up = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        up = query(prometheus, 'up{job="torchlab-hub"}')
        if [r["value"][1] for r in up] == ["1"]:
            return
        time.sleep(0.5)
    raise AssertionError(f"Prometheus's scrapes of the service failed: {up}")


def test_prometheus_scrapes_the_service_with_user_and_server_labels(
    hub: Hub, prometheus: str
) -> None:
    busy = wait_query(prometheus, "torchlab_kernel_busy", {"alice", "bob"})
    by_user = {r["metric"]["user"]: r for r in busy}
    assert by_user["alice"]["value"][1] == "1"
    assert by_user["bob"]["value"][1] == "0"
    # the server label is JupyterHub's full name of the server: "alice/" for a default server
    assert {r["metric"]["server"] for r in busy} == {"alice/", "bob/"}
    wait_up(prometheus)
    # every series the service exports carries both labels
    names = query(prometheus, '{__name__=~"torchlab_.*", job="torchlab-hub"}')
    assert names
    assert all({"user", "server"} <= r["metric"].keys() for r in names)


def test_every_dashboard_panel_has_series_for_both_users(hub: Hub, prometheus: str) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    assert len(exprs) >= 6
    # per-GPU panels (torchlab_gpu_*) chart each GPU by uuid, not by user; on a machine without
    # a GPU they are allowed to be empty, but must still be queries Prometheus accepts
    per_gpu = [e for e in exprs if "torchlab_gpu_" in e]
    assert per_gpu, "the dashboard has no per-GPU panel"
    gpus = hub.view()["gpus"]
    for expr in exprs:
        expr = expr.replace("$__rate_interval", "1m").replace("$__range", "5m")
        if expr in per_gpu:
            result = query(prometheus, expr)  # asserts HTTP 200: a valid query
            if gpus:
                assert {r["metric"].get("uuid") for r in result} >= {g["uuid"] for g in gpus}
            continue
        wait_query(prometheus, expr, {"alice", "bob"}, timeout=20)


# --- who can read what ----------------------------------------------------------------------------


def _status(method: str, url: str, token: str) -> int:
    try:
        http_json(method, url, token, {})
    except urllib.error.HTTPError as e:
        return e.code
    return 200


def _alice_kernel(hub: Hub) -> str:
    return next(k["kernel_id"] for k in hub.view()["kernels"] if k["user"] == "alice")


def test_the_service_token_reads_metrics_and_nothing_else_of_a_user_server(hub: Hub) -> None:
    direct = _direct(hub, "alice")
    status, body = http_get(direct + "torchlab/api/metrics", hub.service_token)
    assert status == 200
    assert b'"kernels"' in body
    channels = f"api/kernels/{_alice_kernel(hub)}/channels"
    # what an access token opens here (so a 403 below is the token's answer, not a missing route)
    assert hub.get("user/alice/api/terminals", hub.driver_token)[0] == 200
    assert hub.ws_status(f"user/alice/{channels}", hub.driver_token) == 101
    for base in (direct, f"{hub.url}user/alice/"):
        for path in (
            "api/contents",
            "api/kernels",
            "api/sessions",
            "api/terminals",
            "torchlab/api/metrics/history",
        ):
            status, body = http_get(base + path, hub.service_token)
            assert status == 403, (base + path, status, body[:300])
        # nor can it start a terminal or a kernel, or open a kernel's WebSocket
        assert _status("POST", base + "api/terminals", hub.service_token) == 403
        assert _status("POST", base + "api/kernels", hub.service_token) == 403
        assert hub.ws_status(channels, hub.service_token, base=base) == 403


def test_the_metrics_token_opens_nothing_but_the_metrics(hub: Hub) -> None:
    status, body = hub.get("services/torchlab/metrics", hub.metrics_token)
    assert status == 200
    assert b"torchlab_kernel_busy{" in body
    paths = ("user/alice/api/contents", "user/alice/api/kernels", "user/alice/api/terminals")
    for path in (*paths, "hub/api/users"):
        status, body = hub.get(path, hub.metrics_token)
        assert status == 403, (path, status, body[:300])
    status, _ = http_get(_direct(hub, "alice") + "api/contents", hub.metrics_token)
    assert status == 403
    channels = f"user/alice/api/kernels/{_alice_kernel(hub)}/channels"
    assert hub.ws_status(channels, hub.metrics_token) == 403
    # the admin page's JSON: not a hub token, so hub OAuth sends it to sign in
    status, body = hub.get("services/torchlab/api/view", hub.metrics_token)
    assert status == 302, body[:300]
    assert b"kernels" not in body


def test_a_users_token_gets_nothing_from_the_service(hub: Hub) -> None:
    alice = hub.user_token("alice")
    status, body = hub.get("services/torchlab/metrics", alice)
    assert status == 401, body[:300]
    assert b"torchlab_kernel" not in body
    status, body = hub.get("services/torchlab/api/view", alice)
    assert status == 403, body[:300]
    # bob may reach the service (a role grants him access:services) but is not an admin
    status, body = hub.get("services/torchlab/api/view", hub.user_token("bob"))
    assert status == 403
    assert b"hub admins and members of gpu-watch" in body
    # the hub-wide metrics take the metrics token only: an admin's hub token gets 401 as well
    status, body = hub.get("services/torchlab/metrics", hub.user_token(ADMIN))
    assert status == 401, body[:300]
    assert b"torchlab_kernel" not in body
    # dora is in the configured group, ops is an admin
    for name in ("dora", ADMIN):
        status, body = hub.get("services/torchlab/api/view", hub.user_token(name))
        assert status == 200, (name, body[:300])


# --- culling -------------------------------------------------------------------------------------


def _server_activity(hub: Hub, name: str, token: str) -> datetime | None:
    """The hub's last_activity of ``name``'s default server (None once it is gone)."""
    server = hub.call("GET", f"users/{name}", token=token)["servers"].get("")
    if not server or not server.get("ready"):
        return None
    return datetime.fromisoformat(server["last_activity"])


def test_the_culler_still_culls_an_idle_server_but_not_a_busy_one(
    hub: Hub, prometheus: str
) -> None:
    # Nothing in this test goes through the proxy to alice: the fixture's cell and the tests
    # before this one did (and the proxy counts each such request as activity, answered or
    # refused). From here on only her busy kernel can move her server's last_activity.
    last_proxied_to_alice = datetime.now(timezone.utc)
    started = time.monotonic()
    # bob's idle time starts here, with his own request through the proxy, however long the
    # tests before this one took: the service must read his server many times before the cull
    status, _ = hub.get("user/bob/api/status", hub.user_token("bob"))
    assert status == 200
    # dora's server is read through the proxy with her own token every 2 s, as Prometheus did
    stop = threading.Event()
    dora = hub.user_token("dora")

    def through_the_proxy() -> None:
        while not stop.wait(2):
            hub.get("user/dora/torchlab/api/metrics", dora)

    poller = threading.Thread(target=through_the_proxy, daemon=True)
    poller.start()
    rounds_with_bob = set()
    admin = hub.user_token(ADMIN)
    seen: list[datetime] = []  # the hub's last_activity of alice's server, as it went

    def alice_activity() -> datetime:
        activity = _server_activity(hub, "alice", admin)
        assert activity is not None, f"alice's busy server was culled\n{hub.tail()}"
        seen.append(activity)
        return activity

    try:
        deadline = time.monotonic() + CULL_AFTER + 60
        while time.monotonic() < deadline:
            alice_activity()
            if "" not in hub.user("bob")["servers"]:
                break
            view = http_json("GET", f"{hub.service_url}api/view", admin)
            if any(s["user"] == "bob" and s["status"] == "ok" for s in view["servers"]):
                rounds_with_bob.add(view["time"])
            time.sleep(1)
        else:
            raise AssertionError(f"bob's idle server was never culled\n{hub.tail()}")
        # what the issue saw: requests through the proxy are activity, and keep a server alive
        assert hub.user("dora")["servers"][""]["ready"]
    finally:
        stop.set()
        poller.join()
    # the service read bob's server about once a second all along, and that did not keep it
    assert len(rounds_with_bob) >= 10, rounds_with_bob
    wait_up(prometheus)

    # alice's kernel runs a cell: wait out the culler's timeout (and one more of its rounds)
    # counted from the last request that went through the proxy to her server
    while time.monotonic() - started < CULL_AFTER + CULL_EVERY + 3:
        alice_activity()
        time.sleep(1)
    activity = alice_activity()
    assert [k["state"] for k in hub.view()["kernels"] if k["user"] == "alice"] == ["busy"]
    # and the hub's last_activity of her server kept moving after that last proxied request
    # (about every 5 s): the busy kernel's activity (server/hub_activity.py), which
    # jupyterhub-singleuser reports to the hub
    after = sorted({t for t in seen if t > last_proxied_to_alice})
    assert len(after) >= 5, (last_proxied_to_alice, sorted(set(seen)))
    # up to now (the kernel's activity is recorded every 5 s and reported to the hub every 2 s),
    # which is more than the timeout after the last proxied request
    now = datetime.now(timezone.utc)
    assert (now - last_proxied_to_alice).total_seconds() > CULL_AFTER + CULL_EVERY
    deadline = time.monotonic() + 10  # the next report, where a loaded machine delayed this one
    while (datetime.now(timezone.utc) - activity).total_seconds() >= 12:
        assert time.monotonic() < deadline, (last_proxied_to_alice, activity, seen[-5:])
        time.sleep(1)
        activity = alice_activity()
