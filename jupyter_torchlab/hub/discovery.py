"""Which user servers run, and each one's own address, from the hub's REST API.

Two reads per round, both with the service's token: ``GET users?state=active`` (scopes
``list:users`` + ``read:servers``: names, server models, the hub's ``last_activity``) and
``GET proxy`` (scope ``proxy``: the routing table, whose ``target`` is the server's own address,
the one the proxy forwards to). The service then asks that address directly: a request that
bypasses the proxy is not counted by it, so collecting never moves a server's
``last_activity`` and the idle culler keeps working.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest

__all__ = ["HubAPIError", "Target", "discover", "join_targets"]

_PAGED = "application/jupyterhub-pagination+json"


class HubAPIError(RuntimeError):
    """The hub's API refused or failed; the message says which call and what to grant."""


@dataclass(frozen=True)
class Target:
    """One user server the hub knows of, and where to ask it directly."""

    user: str
    server: str  # "" for the user's default server
    url: str | None  # the server's own base URL (address + base path); None: see reason
    ready: bool
    reason: str | None  # why there is no url (starting, stopping, no route)
    last_activity: str | None  # the hub's, ISO 8601


async def discover(
    client: AsyncHTTPClient, api_url: str, token: str, timeout: float
) -> list[Target]:
    """Return every active server of every user, with its direct address where it has one."""
    users = await _paged(
        client, api_url, "users?state=active", token, timeout, "list:users, read:servers"
    )
    routes = await _paged(client, api_url, "proxy?", token, timeout, "proxy")
    return join_targets(list(users), dict(routes))


def join_targets(users: list[dict[str, Any]], routes: Mapping[str, Any]) -> list[Target]:
    """Pair the hub's active servers with the proxy's routes (pure: the tests feed it)."""
    by_server: dict[tuple[str, str], str] = {}
    for route in routes.values():
        data = route.get("data") or {}
        if "user" in data and route.get("target"):
            by_server[(data["user"], data.get("server_name", ""))] = route["target"]
    targets = []
    for user in users:
        for name, model in sorted((user.get("servers") or {}).items()):
            target = by_server.get((user["name"], name))
            url = reason = None
            if not model.get("ready"):
                reason = "stopping" if model.get("stopped") else "starting (not ready yet)"
            elif target is None:
                reason = "ready, but the proxy has no route to it yet"
            else:
                url = target.rstrip("/") + urlparse(model.get("url") or "/").path
            targets.append(
                Target(
                    user=user["name"],
                    server=name,
                    url=url,
                    ready=bool(model.get("ready")),
                    reason=reason,
                    last_activity=model.get("last_activity"),
                )
            )
    return targets


async def _paged(
    client: AsyncHTTPClient, api_url: str, path: str, token: str, timeout: float, scope: str
) -> Any:
    """GET every page of a paginated list (users) or mapping (proxy routes)."""
    items: Any = None
    offset = 0
    while True:
        url = f"{api_url}/{path}&offset={offset}".replace("?&", "?")
        page = await _get(client, url, token, timeout, scope=scope)
        if not isinstance(page, dict) or "_pagination" not in page:
            raise HubAPIError(
                f"GET {path.rstrip('?')} is not paginated: is the hub JupyterHub 5 or later?"
            )
        part = page.get("items") or ([] if path.startswith("users") else {})
        if items is None:
            items = part
        elif isinstance(items, list):
            items.extend(part)
        else:
            items.update(part)
        nxt = (page.get("_pagination") or {}).get("next")
        if not nxt:
            return items
        offset = int(nxt["offset"])


async def _get(client: AsyncHTTPClient, url: str, token: str, timeout: float, *, scope: str) -> Any:
    request = HTTPRequest(
        url,
        headers={"Authorization": f"token {token}", "Accept": _PAGED},
        request_timeout=timeout,
    )
    call = url.split("/hub/api/", 1)[-1].split("?", 1)[0]
    try:
        response = await client.fetch(request)
    except HTTPClientError as e:
        if e.code == 403:
            raise HubAPIError(
                f"the hub refused GET {call} (403): give the service's role the scope {scope}"
            ) from None
        raise HubAPIError(f"GET {call} from the hub failed: {e}") from None
    except OSError as e:
        raise HubAPIError(f"cannot reach the hub's API at {url}: {e}") from None
    try:
        return json.loads(response.body)
    except ValueError:
        raise HubAPIError(f"GET {call} answered with something that is not JSON") from None
