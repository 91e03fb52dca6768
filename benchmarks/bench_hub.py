"""The hub service against 50 stand-in user servers that answer with a real snapshot.

A real ``jupyter server`` with our extension and 4 kernels gives one real snapshot (its
``torchlab/api/metrics`` bytes). A child process then serves those bytes from 50 stand-in
servers (50 ports, each under ``/user/uN/``, checking the token as a server would), and stands in
for the hub's API on one more port: ``GET users?state=active`` (the 50 users' models with their
servers) and ``GET proxy`` (the routing table, each route's target a stand-in's own address), in
JupyterHub 5's paginated shape, built per request. This process runs the service's own discovery,
collector and metrics route (``jupyter_torchlab.hub``: the same ``discover``, ``Collector``,
``Service`` and ``MetricsHandler`` as ``serve``) on a thread, and reports:

- a collection round (the two hub API reads, then all 50 servers concurrently): wall time and
  CPU (``thread_time`` of the service's loop thread), median and p95 over the rounds, and the
  discovery's share; the baseline, in the same run, is the same discovery and 50 fetches one
  after another with the same client. A real hub answers its API from its database, slower than
  this stand-in: the discovery time here is the service's side of it (two requests, the JSON,
  pairing servers with routes) plus a fast hub's;
- a scrape of the hub-wide ``metrics`` (from this process's main thread, over HTTP): median, p95;
- the service's memory (RSS of this process: the harness is small) before and after.

Targets (issue 19): a round under 1 s, a scrape under 50 ms.

    python benchmarks/bench_hub.py [--servers 50] [--rounds 20] [--scrapes 200] [--strict]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tornado import web
from tornado.httpclient import AsyncHTTPClient

from jupyter_torchlab.hub.app import MetricsHandler, Service
from jupyter_torchlab.hub.collector import Collector
from jupyter_torchlab.hub.config import Settings
from jupyter_torchlab.hub.discovery import Target, discover

STANDIN = r"""
import json, sys, time
from tornado import web, ioloop
body, token = open(sys.argv[1], "rb").read(), sys.argv[2]
hub_port, ports = int(sys.argv[3]), [int(p) for p in sys.argv[4:]]
started = time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime())

def authorized(handler):
    if handler.request.headers.get("Authorization") != "token " + token:
        raise web.HTTPError(403)

class Metrics(web.RequestHandler):
    def get(self, user):
        authorized(self)
        self.set_header("Content-Type", "application/json")
        self.finish(body)

def page(handler, items, total):
    # JupyterHub 5's paginated shape (Accept: application/jupyterhub-pagination+json), one page
    offset = int(handler.get_argument("offset", "0"))
    handler.set_header("Content-Type", "application/json")
    handler.finish(json.dumps({"items": items, "_pagination": {
        "offset": offset, "limit": 200, "total": total, "next": None}}))

def server_model(i):
    return {"name": "", "full_name": f"u{i}/", "last_activity": started, "started": started,
            "pending": None, "ready": True, "stopped": False, "url": f"/user/u{i}/",
            "user_options": {}, "progress_url": f"/hub/api/users/u{i}/server/progress",
            "full_url": None, "full_progress_url": None, "state": {"pid": 1000 + i}}

class Users(web.RequestHandler):
    # GET users?state=active: every user's model with its servers, built per request as a hub does
    def get(self):
        authorized(self)
        assert self.get_argument("state") == "active"
        users = [{"kind": "user", "name": f"u{i}", "admin": False, "roles": ["user"],
                  "groups": [], "server": f"/user/u{i}/", "pending": None, "created": started,
                  "last_activity": started, "servers": {"": server_model(i)}}
                 for i in range(len(ports))]
        page(self, users, len(users))

class Proxy(web.RequestHandler):
    # GET proxy: the routing table, each user route's target the stand-in server's own address
    def get(self):
        authorized(self)
        routes = {"/": {"routespec": "/", "target": f"http://127.0.0.1:{hub_port}",
                        "data": {"hub": True}}}
        for i, port in enumerate(ports):
            routes[f"/user/u{i}/"] = {
                "routespec": f"/user/u{i}/", "target": f"http://127.0.0.1:{port}",
                "data": {"user": f"u{i}", "server_name": "", "last_activity": started}}
        page(self, routes, len(routes))

web.Application([(r"/hub/api/users", Users), (r"/hub/api/proxy", Proxy)]).listen(
    hub_port, "127.0.0.1")
for port in ports:
    web.Application([(r"/user/(u\d+)/torchlab/api/metrics", Metrics)]).listen(port, "127.0.0.1")
print("ready", flush=True)
ioloop.IOLoop.current().start()
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def get(url: str, token: str, timeout: float = 30) -> bytes:
    request = urllib.request.Request(url, headers={"Authorization": f"token {token}"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return response.read()


def real_snapshot(kernels: int) -> bytes:
    """Start a real jupyter server with our extension and ``kernels`` kernels; return a snapshot."""
    token, port = secrets.token_hex(16), free_port()
    root = tempfile.mkdtemp(prefix="bench-hub-")
    server = subprocess.Popen(
        [sys.executable, "-m", "jupyter_server", f"--port={port}", "--no-browser",
         f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
         "--TorchlabExtension.sample_interval=0.5",
         *(["--allow-root"] if os.geteuid() == 0 else [])],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}/"
    try:
        for _ in range(120):
            try:
                get(base + "api/status", token)
                break
            except OSError:
                time.sleep(0.5)
        for _ in range(kernels):
            request = urllib.request.Request(
                base + "api/kernels", data=b"{}", method="POST",
                headers={"Authorization": f"token {token}"},
            )  # fmt: skip
            urllib.request.urlopen(request, timeout=60).read()
        for _ in range(120):
            body = get(base + "torchlab/api/metrics", token)
            doc = json.loads(body)
            if len(doc["kernels"]) == kernels and all(k["pid"] for k in doc["kernels"]):
                return body
            time.sleep(0.5)
        raise SystemExit("the real server never reported its kernels")
    finally:
        server.terminate()
        server.wait(timeout=30)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--servers", type=int, default=50)
    p.add_argument("--rounds", type=int, default=20)
    p.add_argument("--scrapes", type=int, default=200)
    p.add_argument("--kernels", type=int, default=4)
    p.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    args = p.parse_args()

    snapshot = real_snapshot(args.kernels)
    token = secrets.token_hex(16)
    ports = [free_port() for _ in range(args.servers)]
    hub_port = free_port()
    with tempfile.NamedTemporaryFile(delete=False) as f:
        f.write(snapshot)
    standins = subprocess.Popen(
        [sys.executable, "-c", STANDIN, f.name, token, str(hub_port), *map(str, ports)],
        stdout=subprocess.PIPE,
    )
    assert standins.stdout is not None
    assert standins.stdout.readline().strip() == b"ready"
    expected = {f"u{i}": f"http://127.0.0.1:{port}/user/u{i}/" for i, port in enumerate(ports)}
    proc = psutil.Process()
    rss_before = proc.memory_info().rss

    settings = Settings(
        api_url=f"http://127.0.0.1:{hub_port}/hub/api", api_token=token,
        prefix="/services/torchlab/", host="127.0.0.1", port=free_port(),
        interval=3600, timeout=5, concurrency=32,
        metrics_token=secrets.token_hex(16), admin_groups=frozenset(),
    )  # fmt: skip
    loop = asyncio.new_event_loop()
    results: dict[str, list[float]] = {"round": [], "cpu": [], "sequential": [], "discovery": []}

    async def targets() -> list[Target]:
        # as serve() does: the hub's API, every round
        t0 = time.perf_counter()
        found = await discover(
            AsyncHTTPClient(), settings.api_url, settings.api_token, settings.timeout
        )
        results["discovery"].append(time.perf_counter() - t0)
        return found

    async def setup() -> Collector:
        AsyncHTTPClient.configure(None, max_clients=max(10, settings.concurrency))
        collector = Collector(targets, token, settings.timeout, settings.concurrency)
        service = Service(settings, collector)
        app = web.Application([(settings.prefix + "metrics", MetricsHandler, {"service": service})])
        app.listen(settings.port, settings.host)
        return collector

    async def measure(collector: Collector) -> None:
        warm = await collector.collect_once()  # warm: connections, imports
        found = {r.target.user: r.target.url for r in warm.results}
        assert found == expected, "discovery did not find the stand-in servers at their addresses"
        results["discovery"].clear()
        for _ in range(args.rounds):
            cpu0 = time.thread_time()
            rnd = await collector.collect_once()
            results["cpu"].append(time.thread_time() - cpu0)
            results["round"].append(rnd.seconds)
            assert all(r.document for r in rnd.results), [r.reason for r in rnd.results][:3]
            # baseline: the same discovery, then the same fetches one after another
            t0 = time.perf_counter()
            for t in await targets():
                await collector._fetch(t.url or "")
            results["discovery"].pop()  # only the rounds' discoveries are reported
            results["sequential"].append(time.perf_counter() - t0)

    collector = loop.run_until_complete(setup())
    loop.run_until_complete(measure(collector))
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{settings.port}{settings.prefix}metrics"
    size = len(get(url, settings.metrics_token or ""))
    scrapes = []
    for _ in range(args.scrapes):
        t0 = time.perf_counter()
        get(url, settings.metrics_token or "")
        scrapes.append(time.perf_counter() - t0)
    rss_after = proc.memory_info().rss
    loop.call_soon_threadsafe(loop.stop)
    standins.terminate()
    os.unlink(f.name)

    med_round, p95_round = statistics.median(results["round"]), pct(results["round"], 0.95)
    med_seq = statistics.median(results["sequential"])
    med_scrape, p95_scrape = statistics.median(scrapes), pct(scrapes, 0.95)
    print(f"snapshot: {len(snapshot)} bytes from a real server with {args.kernels} kernels")
    print(f"{args.servers} stand-in servers, {args.rounds} rounds, {args.scrapes} scrapes")
    print(
        f"round: median {med_round * 1000:.1f} ms, p95 {p95_round * 1000:.1f} ms; "
        f"CPU median {statistics.median(results['cpu']) * 1000:.1f} ms per round "
        f"(target < 1000 ms)"
    )
    print(
        f"of which discovery (GET users?state=active and GET proxy from the stand-in hub API, "
        f"{args.servers} users): median {statistics.median(results['discovery']) * 1000:.1f} ms, "
        f"p95 {pct(results['discovery'], 0.95) * 1000:.1f} ms"
    )
    print(
        f"baseline, the same discovery and {args.servers} fetches one after another: median "
        f"{med_seq * 1000:.1f} ms; concurrent/sequential = {med_round / med_seq:.2f}"
    )
    print(
        f"scrape of the hub-wide metrics ({size} bytes): median {med_scrape * 1000:.2f} ms, "
        f"p95 {p95_scrape * 1000:.2f} ms (target < 50 ms)"
    )
    print(
        f"memory: RSS {rss_before / 2**20:.1f} MiB before the service, "
        f"{rss_after / 2**20:.1f} MiB after {args.rounds + 1} rounds and the scrapes"
    )
    if args.strict and (p95_round >= 1.0 or p95_scrape >= 0.05):
        sys.exit(1)


if __name__ == "__main__":
    main()
