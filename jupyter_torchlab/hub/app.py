"""The web service: the hub-wide Prometheus endpoint and the admin page, under the service prefix.

Routes (the hub's proxy sends ``/services/<name>/`` here):

- ``GET metrics``: Prometheus text for every server (:mod:`.exposition`). Only for the bearer
  token set with ``--metrics-token-file`` or ``$TORCHLAB_HUB_METRICS_TOKEN``: it is not a hub
  token, it opens nothing else, and hub tokens (a user's, an admin's) get 401 here.
- ``GET`` (the page) and ``GET api/view`` (its JSON): through hub OAuth, for hub admins and
  members of ``--admin-group``; anyone else who signs in gets 403.

jupyterhub is imported when the app is made (:func:`make_app`), not when this module is.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hmac
import json
import logging
import os
import sys
from collections.abc import Sequence
from typing import Any

from tornado import web

from ._jupyterhub import MissingJupyterHub, services_auth
from .collector import Collector, Round
from .config import ConfigError, Settings, parse

__all__ = ["Service", "main", "make_app"]

log = logging.getLogger("jupyter_torchlab.hub")


class Service:
    """The collector and what each round becomes: the page's view and the Prometheus bytes."""

    def __init__(self, settings: Settings, collector: Collector) -> None:
        from .exposition import render

        self.settings = settings
        self.collector = collector
        self._render = render
        self.metrics = render(None)
        self._last_error: str | None = None
        collector.listeners.append(self._on_round)

    def _on_round(self, rnd: Round) -> None:
        self.metrics = self._render(rnd)
        if rnd.error != self._last_error:
            if rnd.error:
                log.warning("torchlab hub: cannot list the servers: %s", rnd.error)
            else:
                log.info("torchlab hub: listing the servers works again")
            self._last_error = rnd.error

    def allowed(self, user: dict[str, Any]) -> bool:
        """Whether a signed-in hub user may see the admin page."""
        groups = set(user.get("groups") or ())
        return bool(user.get("admin")) or bool(groups & self.settings.admin_groups)


class _Handler(web.RequestHandler):
    def initialize(self, service: Service) -> None:
        self.service = service

    def set_default_headers(self) -> None:
        self.set_header("Cache-Control", "no-store")

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None))[1]
        message = getattr(exc, "log_message", None) or self._reason
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"status": status_code, "message": message}))


class MetricsHandler(_Handler):
    """``GET metrics``: the latest round as Prometheus text, for the metrics token only."""

    def get(self) -> None:
        expected = self.service.settings.metrics_token
        if expected is None:
            raise web.HTTPError(
                503,
                "no metrics token is configured: set TORCHLAB_HUB_METRICS_TOKEN or "
                "--metrics-token-file for the service, and give Prometheus the same token",
            )
        kind, _, token = self.request.headers.get("Authorization", "").partition(" ")
        if kind.lower() not in ("bearer", "token") or not hmac.compare_digest(
            token.strip().encode(), expected.encode()
        ):
            self.set_header("WWW-Authenticate", 'Bearer realm="torchlab"')
            raise web.HTTPError(401, "send the metrics token: Authorization: Bearer <token>")
        from .exposition import CONTENT_TYPE

        self.set_header("Content-Type", CONTENT_TYPE)
        self.finish(self.service.metrics)


class _AdminHandler(_Handler):
    """Pages for admins; the hub OAuth mixin (HubOAuthenticated) comes first in the subclass."""

    def _admin(self) -> dict[str, Any]:
        user: dict[str, Any] = self.current_user
        if not self.service.allowed(user):
            groups = sorted(self.service.settings.admin_groups)
            who = "hub admins" + (f" and members of {', '.join(groups)}" if groups else "")
            raise web.HTTPError(403, f"this page is for {who}; {user.get('name')} is neither")
        return user

    def _view(self) -> Any:
        from .view import build_view

        return build_view(self.service.collector.latest)


class AdminPageHandler(_AdminHandler):
    """``GET``: every user's servers, kernels and GPUs."""

    @web.authenticated
    def get(self) -> None:
        from .page import render_page

        user = self._admin()
        self.set_header("Content-Type", "text/html; charset=utf-8")
        page = render_page(self._view(), refresh=self.service.settings.interval, user=user["name"])
        self.finish(page)


class ViewHandler(_AdminHandler):
    """``GET api/view``: what the page shows, as JSON."""

    @web.authenticated
    def get(self) -> None:
        self._admin()
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(dataclasses.asdict(self._view())))


def make_app(service: Service) -> web.Application:
    """Return the tornado app: the routes above under the service prefix."""
    auth = services_auth()
    prefix = service.settings.prefix
    oauth = auth.HubOAuthenticated
    kwargs = {"service": service}
    return web.Application(
        [
            (prefix, type("AdminPage", (oauth, AdminPageHandler), {}), kwargs),
            (prefix + "api/view", type("View", (oauth, ViewHandler), {}), kwargs),
            (prefix + "metrics", MetricsHandler, kwargs),
            (prefix + "oauth_callback", auth.HubOAuthCallbackHandler),
        ],
        cookie_secret=os.urandom(32),
        hub_auth=auth.HubOAuth(api_url=service.settings.api_url, cache_max_age=60),
    )


async def serve(settings: Settings) -> None:
    """Collect every interval and serve until cancelled."""
    from tornado.httpclient import AsyncHTTPClient

    from .discovery import discover

    AsyncHTTPClient.configure(None, max_clients=max(10, settings.concurrency))
    client = AsyncHTTPClient()

    async def targets() -> Any:
        return await discover(client, settings.api_url, settings.api_token, settings.timeout)

    collector = Collector(targets, settings.api_token, settings.timeout, settings.concurrency)
    service = Service(settings, collector)
    app = make_app(service)
    app.listen(settings.port, settings.host)
    log.info(
        "torchlab hub service on http://%s:%d%s: collecting every %g s; metrics %s",
        settings.host,
        settings.port,
        settings.prefix,
        settings.interval,
        "need the metrics token" if settings.metrics_token else "off (no token configured)",
    )
    await collector.run(settings.interval)


def main(argv: Sequence[str] | None = None) -> None:
    """Run the service (``python -m jupyter_torchlab.hub``)."""
    logging.basicConfig(
        level=logging.INFO, format="[%(levelname)s %(asctime)s %(name)s] %(message)s"
    )
    try:
        services_auth()
        settings = parse(argv)
    except (MissingJupyterHub, ConfigError) as e:
        print(f"jupyter_torchlab.hub: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(settings))
