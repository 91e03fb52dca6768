"""A real JupyterHub for the hub service's tests: proxy, users, our service, the idle culler.

Everything is the real thing: ``jupyterhub`` (pip) with configurable-http-proxy (npm), user
servers spawned by JupyterHub's SimpleLocalProcessSpawner (jupyterhub-singleuser with our server
extension, each user with a home of their own; all run as the test's own OS user, since the
spawner needs no system accounts), ``python -m jupyter_torchlab.hub`` as a managed service with
the role the README gives it, and jupyterhub-idle-culler as another. The hub config written here
runs the README's operator config block (``<!-- hub-config -->``) as it stands, between what a
test hub needs before it (ports, database, authenticator, spawner) and the test's overrides after
it (the service's port, token, token file and short intervals; bob's page role; the culler and
a driver token).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tornado.httpclient import HTTPClientError, HTTPRequest
from tornado.websocket import websocket_connect

VENV_BIN = Path(sys.executable).parent
README = Path(__file__).parents[2] / "README.md"
#: where scripts/install-and-test.sh installs configurable-http-proxy (npm --prefix)
CHP_LOCAL = Path(sys.prefix) / "hub-node" / "node_modules" / ".bin" / "configurable-http-proxy"
PASSWORD = "torchlab-test-password"
USERS = ("alice", "bob", "carol", "dora")
ADMIN = "ops"
WATCH_GROUP = "gpu-watch"  # the service's --admin-group; dora is in it


def find_chp() -> str | None:
    """Return the configurable-http-proxy to use: $TORCHLAB_CHP, PATH, or our npm prefix."""
    for candidate in (os.environ.get("TORCHLAB_CHP"), shutil.which("configurable-http-proxy")):
        if candidate:
            return candidate
    return str(CHP_LOCAL) if CHP_LOCAL.exists() else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Hub:
    """A running hub and the tokens the tests hold."""

    root: Path
    url: str  # the proxy's public URL, e.g. http://127.0.0.1:PORT/
    api: str  # the hub's API, straight (not through the proxy)
    service_token: str  # the torchlab service's hub token (its role's scopes)
    driver_token: str  # the test's own admin-ish service token
    metrics_token: str  # what Prometheus sends to the service
    process: subprocess.Popen[bytes]
    log: Path
    stopped_pids: list[int] = field(default_factory=list)

    # --- the hub's REST API ---------------------------------------------------------------------

    def call(self, method: str, path: str, body: Any = None, token: str | None = None) -> Any:
        """Call the hub API as the driver (or ``token``); return the JSON (None when empty)."""
        return http_json(method, f"{self.api}/{path.lstrip('/')}", token or self.driver_token, body)

    def user(self, name: str) -> dict[str, Any]:
        return self.call("GET", f"users/{name}")

    def start_server(self, name: str, timeout: float = 120) -> dict[str, Any]:
        """Start ``name``'s default server and wait until the hub says it is ready."""
        with contextlib.suppress(urllib.error.HTTPError):  # 400: already running
            self.call("POST", f"users/{name}/server")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            server = self.user(name)["servers"].get("")
            if server and server.get("ready"):
                return server
            time.sleep(0.5)
        raise AssertionError(f"{name}'s server did not become ready in {timeout} s\n{self.tail()}")

    def server_pid(self, name: str) -> int:
        return int(self.user(name)["servers"][""]["state"]["pid"])

    def user_token(self, name: str, scopes: list[str] | None = None) -> str:
        """Make an API token for ``name`` (all of their own scopes unless narrowed)."""
        body: dict[str, Any] = {"note": "torchlab test"}
        if scopes is not None:
            body["scopes"] = scopes
        return self.call("POST", f"users/{name}/tokens", body)["token"]

    # --- through the proxy, as a user or a client would -----------------------------------------

    def get(self, path: str, token: str | None, *, base: str | None = None) -> tuple[int, bytes]:
        """GET a URL under the proxy (or ``base``); return (status, body), errors included."""
        return http_get(f"{base or self.url}{path.lstrip('/')}", token)

    def start_kernel(self, name: str) -> str:
        path = f"user/{name}/api/kernels"
        return http_json("POST", f"{self.url}{path}", self.driver_token, {"name": "python3"})["id"]

    def run_cell(self, name: str, kernel_id: str, code: str) -> None:
        """Send ``code`` to a kernel (through the proxy, as a page does); wait until it runs."""
        _on_a_thread(_execute(self.url, name, kernel_id, self.driver_token, code))

    def ws_status(self, path: str, token: str, *, base: str | None = None) -> int:
        """Open a WebSocket under the proxy (or ``base``) with ``token``: 101 if it opened,
        else the HTTP status the handshake was refused with."""
        url = (base or self.url).replace("http", "ws", 1) + path.lstrip("/")
        return _on_a_thread(_ws_status(url, token))

    # --- the service ----------------------------------------------------------------------------

    @property
    def service_url(self) -> str:
        return f"{self.url}services/torchlab/"

    def view(self) -> dict[str, Any]:
        """The admin page's JSON, read as the hub admin (through hub OAuth's token path)."""
        admin_token = self.user_token(ADMIN)
        return http_json("GET", f"{self.service_url}api/view", admin_token)

    def wait_view(self, check: Any, timeout: float = 60, what: str = "") -> dict[str, Any]:
        """Poll the view until ``check(view)`` is true; fail with the last view."""
        deadline, view = time.monotonic() + timeout, None
        admin_token = self.user_token(ADMIN)
        while time.monotonic() < deadline:
            view = http_json("GET", f"{self.service_url}api/view", admin_token)
            if check(view):
                return view
            time.sleep(0.5)
        raise AssertionError(f"the service never showed {what}: {json.dumps(view)[:3000]}")

    def tail(self, n: int = 60) -> str:
        try:
            lines = self.log.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(lines[-n:])

    def stop(self) -> None:
        for pid in self.stopped_pids:  # a SIGSTOPped server would never see its SIGTERM
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)  # the hub stops its servers and services
            try:
                self.process.wait(timeout=40)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_hub(root: Path, *, culler_timeout: int, culler_every: int = 3) -> Hub:
    """Write the config, start the hub, wait for its API and for our service's first round."""
    chp = find_chp()
    if chp is None:
        raise AssertionError(
            "configurable-http-proxy not found: scripts/install-and-test.sh installs it with "
            f"`npm install --prefix {CHP_LOCAL.parents[2]} configurable-http-proxy` "
            "(or set TORCHLAB_CHP)"
        )
    root.mkdir(parents=True, exist_ok=True)
    ports = {k: free_port() for k in ("proxy", "hub", "proxy_api", "service")}
    tokens = {k: secrets.token_hex(32) for k in ("service", "driver", "metrics")}
    (root / "metrics_token").write_text(tokens["metrics"])
    config = root / "jupyterhub_config.py"
    config.write_text(
        PREAMBLE.format(
            root=str(root),
            python=sys.executable,
            singleuser=str(VENV_BIN / "jupyterhub-singleuser"),
            chp=chp,
            root_args=["--allow-root"] if os.geteuid() == 0 else [],
            users=set(USERS),
            admin=ADMIN,
            group=WATCH_GROUP,
            password=PASSWORD,
            culler_timeout=culler_timeout,
            culler_every=culler_every,
            **{f"{k}_port": v for k, v in ports.items()},
            **{f"{k}_token": v for k, v in tokens.items()},
        )
        + readme_hub_config()
        + OVERRIDES.format(
            root=str(root),
            python=sys.executable,
            service_port=ports["service"],
            service_token=tokens["service"],
            driver_token=tokens["driver"],
            culler_timeout=culler_timeout,
            culler_every=culler_every,
        )
    )
    log = root / "hub.log"
    env = {**os.environ, "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    env.pop("JUPYTERHUB_API_TOKEN", None)
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "jupyterhub", "-f", str(config)],
            cwd=root,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    hub = Hub(
        root=root,
        url=f"http://127.0.0.1:{ports['proxy']}/",
        api=f"http://127.0.0.1:{ports['hub']}/hub/api",
        service_token=tokens["service"],
        driver_token=tokens["driver"],
        metrics_token=tokens["metrics"],
        process=process,
        log=log,
    )
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"jupyterhub exited with {process.returncode}\n{hub.tail()}")
        status, _ = http_get(f"{hub.service_url}metrics", tokens["metrics"])
        if status == 200:
            return hub
        time.sleep(0.5)
    hub.stop()
    raise AssertionError(f"the hub or the torchlab service did not start in 90 s\n{hub.tail()}")


def readme_hub_config() -> str:
    """The README's operator config block (``<!-- hub-config -->``), as written there."""
    text = README.read_text(encoding="utf-8")
    match = re.search(r"<!-- hub-config -->\s*```python\n(.*?)```", text, re.S)
    assert match, "README.md lost its hub config block (<!-- hub-config --> before ```python)"
    return "\n# --- README.md's hub config block, as it stands ---\n" + match.group(1)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # a redirect (to a login page) is the answer: report it, do not follow


_OPENER = urllib.request.build_opener(_NoRedirect)


def http_get(url: str, token: str | None) -> tuple[int, bytes]:
    """GET ``url`` with ``token`` as a bearer; (status, body), redirects not followed."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    request = urllib.request.Request(url, headers=headers)
    try:
        with _OPENER.open(request, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as e:
        with e:
            return e.code, e.read()
    except (ConnectionError, urllib.error.URLError) as e:
        return 0, str(e).encode()


def http_json(method: str, url: str, token: str, body: Any = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        url,
        data=data,
        method=method,
        headers={"Authorization": f"token {token}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            raw = response.read()
    except urllib.error.HTTPError as e:
        e.close()  # the caller sees the error; its socket must not outlive it
        raise
    return json.loads(raw) if raw else None


def _on_a_thread(coro: Any) -> Any:
    """Run ``coro`` to its end on a thread of its own (Playwright's sync API keeps a loop running
    in the test's thread); return its result or raise its error."""
    results: list[Any] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            results.append(asyncio.run(coro))
        except BaseException as e:  # noqa: BLE001 - re-raised below, in the test's thread
            errors.append(e)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    if errors:
        raise errors[0]
    return results[0]


async def _ws_status(url: str, token: str) -> int:
    request = HTTPRequest(url, headers={"Authorization": f"token {token}"}, connect_timeout=30)
    try:
        ws = await websocket_connect(request)
    except HTTPClientError as e:
        return e.code
    await _close(ws)
    return 101


async def _close(ws: Any) -> None:
    """Close a WebSocket and wait for the close handshake, after which tornado closes the socket."""
    ws.close()
    with contextlib.suppress(Exception):
        while await asyncio.wait_for(ws.read_message(), 5) is not None:
            pass


async def _execute(base: str, user: str, kernel_id: str, token: str, code: str) -> None:
    url = base.replace("http", "ws", 1) + f"user/{user}/api/kernels/{kernel_id}/channels"
    ws = await websocket_connect(HTTPRequest(url, headers={"Authorization": f"token {token}"}))
    msg_id, session = uuid.uuid4().hex, uuid.uuid4().hex
    header = {"msg_id": msg_id, "session": session, "username": "test", "version": "5.3"}
    await ws.write_message(
        json.dumps(
            {
                "header": {**header, "msg_type": "execute_request"},
                "parent_header": {},
                "metadata": {},
                "content": {"code": code, "silent": False, "store_history": True},
                "channel": "shell",
                "buffers": [],
            }
        )
    )
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            raw = await asyncio.wait_for(ws.read_message(), timeout=60)
            if raw is None:
                raise AssertionError("the kernel's WebSocket closed before the cell started")
            msg = json.loads(raw)
            if (
                msg.get("msg_type") == "status"
                and msg.get("parent_header", {}).get("msg_id") == msg_id
                and msg["content"].get("execution_state") == "busy"
            ):
                return
        raise AssertionError("the cell did not start within 60 s")
    finally:
        await _close(ws)


PREAMBLE = """
# written by tests/hub/hubenv.py: a test hub, the README's operator config, the test's overrides
import sys
c = get_config()  # noqa: F821
c.JupyterHub.ip = "127.0.0.1"
c.JupyterHub.port = {proxy_port}
c.JupyterHub.hub_ip = "127.0.0.1"
c.JupyterHub.hub_port = {hub_port}
c.JupyterHub.db_url = "sqlite:///{root}/hub.sqlite"
c.JupyterHub.cookie_secret_file = "{root}/cookie_secret"
c.ConfigurableHTTPProxy.command = ["{chp}"]
c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{proxy_api_port}"
c.ConfigurableHTTPProxy.pid_file = "{root}/proxy.pid"
# the hub reads the proxy's per-route activity every 2 s (default 300): were our collection
# going through the proxy, the culler would see it at once
c.JupyterHub.last_activity_interval = 2

c.JupyterHub.authenticator_class = "dummy"
c.DummyAuthenticator.password = "{password}"
c.Authenticator.allowed_users = {users!r}
c.Authenticator.admin_users = {{"{admin}"}}
c.JupyterHub.load_groups = {{"{group}": {{"users": ["dora"]}}}}

c.JupyterHub.spawner_class = "simple"
c.SimpleLocalProcessSpawner.home_dir_template = "{root}/home/{{username}}"
c.Spawner.cmd = ["{singleuser}"]
c.Spawner.args = {root_args!r} + ["--TorchlabExtension.sample_interval=0.5"]
c.Spawner.environment = {{"JUPYTERHUB_ACTIVITY_INTERVAL": "2"}}
c.Spawner.start_timeout = 120
c.Spawner.http_timeout = 120
"""

OVERRIDES = """
# --- the test's overrides: ports, tokens, paths, short intervals; then the culler and a driver ---
_torchlab = next(s for s in c.JupyterHub.services if s["name"] == "torchlab")
assert _torchlab["command"][0] == sys.executable == "{python}"
_torchlab["url"] = "http://127.0.0.1:{service_port}"
_torchlab["command"] = [*_torchlab["command"], "--interval", "1", "--timeout", "2"]
_torchlab["environment"]["TORCHLAB_HUB_METRICS_TOKEN_FILE"] = "{root}/metrics_token"
_torchlab["api_token"] = "{service_token}"  # the tests hold the service's token
_page = next(r for r in c.JupyterHub.load_roles if r["name"] == "torchlab-page")
_page["users"] = ["bob"]  # bob may reach the service, but is neither admin nor in the group

c.JupyterHub.services += [
    {{
        "name": "idle-culler",
        "command": ["{python}", "-m", "jupyterhub_idle_culler",
                    "--timeout={culler_timeout}", "--cull-every={culler_every}"],
    }},
    {{"name": "driver", "api_token": "{driver_token}"}},
]
c.JupyterHub.load_roles += [
    {{
        "name": "idle-culler",
        "scopes": ["list:users", "read:users:activity", "read:servers", "delete:servers"],
        "services": ["idle-culler"],
    }},
    {{
        "name": "test-driver",
        "scopes": ["admin:users", "admin:servers", "tokens", "access:servers"],
        "services": ["driver"],
    }},
]
"""
