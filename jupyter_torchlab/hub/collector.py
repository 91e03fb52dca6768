"""One collection round: every server's snapshot, asked of the server itself, all at once.

A round lists the servers (:mod:`.discovery`), then GETs ``torchlab/api/metrics`` from each one's
own address with the service's hub token, at most ``concurrency`` at a time, each bounded by
``timeout``. A server that cannot answer gets a reason a person can act on, and the rest of the
round goes on. The round is kept whole (one immutable :class:`Round`), so the page and the
Prometheus endpoint always show one consistent moment.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse

from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest

from .discovery import Target

__all__ = ["METRICS_PATH", "Collector", "Round", "ServerResult", "explain_failure"]

#: the route of the single-user server extension the service reads (relative to its base URL)
METRICS_PATH = "torchlab/api/metrics"


@dataclass(frozen=True)
class ServerResult:
    """What one server answered in a round."""

    target: Target
    document: dict[str, Any] | None  # the snapshot (server.document's shape), None: see reason
    reason: str | None
    seconds: float  # how long asking it took (0 when it was not asked)


@dataclass(frozen=True)
class Round:
    """Every server's result at one moment."""

    time: float  # unix time the round started
    seconds: float  # how long the whole round took
    results: tuple[ServerResult, ...] = ()
    error: str | None = None  # listing the servers failed (results are then the previous round's)
    number: int = 0


@dataclass
class Collector:
    """Collect rounds; keep the latest; tell listeners after each."""

    targets: Callable[[], Awaitable[list[Target]]]
    token: str
    timeout: float = 3.0
    concurrency: int = 32
    clock: Callable[[], float] = time.time
    client: AsyncHTTPClient = field(default_factory=AsyncHTTPClient)
    latest: Round | None = None
    listeners: list[Callable[[Round], None]] = field(default_factory=list)

    async def collect_once(self) -> Round:
        """Run one round and publish it."""
        started, t0 = self.clock(), time.perf_counter()
        number = 1 if self.latest is None else self.latest.number + 1
        try:
            targets = await self.targets()
        except Exception as e:  # noqa: BLE001 - shown on the page; the next round retries
            old = self.latest.results if self.latest else ()
            result = Round(started, time.perf_counter() - t0, old, f"{e}", number)
        else:
            gate = asyncio.Semaphore(self.concurrency)
            results = await asyncio.gather(*(self._ask(t, gate) for t in targets))
            result = Round(started, time.perf_counter() - t0, tuple(results), None, number)
        self.latest = result
        for listener in self.listeners:
            listener(result)
        return result

    async def run(self, interval: float) -> None:
        """Collect a round every ``interval`` s; a slow round delays the next, never overlaps."""
        while True:
            t0 = time.perf_counter()
            await self.collect_once()
            await asyncio.sleep(max(0.0, interval - (time.perf_counter() - t0)))

    async def _ask(self, target: Target, gate: asyncio.Semaphore) -> ServerResult:
        if target.url is None:
            return ServerResult(target, None, target.reason, 0.0)
        async with gate:
            t0 = time.perf_counter()
            doc, reason = await self._fetch(target.url)
            return ServerResult(target, doc, reason, time.perf_counter() - t0)

    async def _fetch(self, base_url: str) -> tuple[dict[str, Any] | None, str | None]:
        request = HTTPRequest(
            base_url.rstrip("/") + "/" + METRICS_PATH,
            headers={"Authorization": f"token {self.token}"},
            request_timeout=self.timeout,
            connect_timeout=self.timeout,
            follow_redirects=False,
        )
        try:
            response = await self.client.fetch(request)
        except Exception as e:  # noqa: BLE001 - every failure becomes a reason on the page
            return None, explain_failure(e, base_url, self.timeout)
        try:
            doc = json.loads(response.body)
        except ValueError:
            doc = None
        if not isinstance(doc, dict) or "kernels" not in doc:
            return None, f"answered {METRICS_PATH} with something that is not a torchlab snapshot"
        return doc, None


def explain_failure(error: BaseException, base_url: str, timeout: float) -> str:
    """Say why a server did not give its snapshot, and what would fix it."""
    where = urlparse(base_url).netloc or base_url
    if isinstance(error, HTTPClientError):
        code = error.code
        if code == 599:  # tornado's own code for a timeout or a dropped connection
            return f"no answer from {where} within {timeout:g} s (stopped, frozen or overloaded?)"
        if code in (401, 403):
            return (
                f"refused the service's token ({code}): grant the service's role "
                "custom:torchlab:read and install jupyter-torchlab (with this hub support) in "
                "the user's image"
            )
        if code == 404:
            return (
                f"no {METRICS_PATH} (404): jupyter-torchlab is not installed or not enabled in "
                "this user's server"
            )
        if code in (301, 302, 303, 307, 308):
            return f"redirected ({code}) instead of answering: the token was not accepted"
        body = _message(error)
        return f"answered {code}" + (f": {body}" if body else "")
    if isinstance(error, ConnectionRefusedError):
        return f"connection refused at {where}: nothing listens there (the server stopped?)"
    if isinstance(error, (TimeoutError, asyncio.TimeoutError)):
        return f"no answer from {where} within {timeout:g} s (stopped, frozen or overloaded?)"
    if isinstance(error, OSError):
        return f"cannot reach {where}: {error.strerror or error}"
    return f"cannot read its snapshot: {type(error).__name__}: {error}"


def _message(error: HTTPClientError) -> str:
    response = error.response
    if response is None or not response.body:
        return ""
    try:
        body = json.loads(response.body)
    except ValueError:
        return ""
    message = body.get("message") if isinstance(body, dict) else None
    return str(message)[:300] if message else ""
