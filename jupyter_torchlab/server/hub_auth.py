"""Under JupyterHub: let a token with ``custom:torchlab:read`` read ``torchlab/api/metrics``, only.

jupyterhub-singleuser lets in nothing but tokens with ``access:servers`` for this server, and that
scope opens everything (files, kernels, terminals). The hub-wide service
(``python -m jupyter_torchlab.hub``) needs one thing from each server: the latest snapshot. So the
metrics route, and no other route, also accepts a hub token whose scopes include
:data:`READ_SCOPE` for this server (``custom:torchlab:read``, ``...!user=NAME`` or
``...!server=NAME/SERVER``), checked with the hub exactly as jupyterhub-singleuser checks its own
access scopes (``HubAuth.user_for_token``, cached by it for a few minutes). Every other route keeps
jupyterhub-singleuser's rules, so the same token gets 403 from ``api/contents`` and ``api/kernels``.

Nothing here imports jupyterhub: outside JupyterHub (no ``hub_auth`` on the identity provider) the
mixin changes nothing.
"""

from __future__ import annotations

from typing import Any

from jupyter_server.auth import User
from tornado import web

__all__ = ["READ_SCOPE", "HubReadable", "read_scopes"]

#: the custom scope the hub config defines and grants to the hub service's role
READ_SCOPE = "custom:torchlab:read"

_ACCESS = "access:servers"


def read_scopes(access_scopes: set[str]) -> set[str]:
    """Map this server's access scopes (``access:servers!user=NAME``...) to the read scope's."""
    return {READ_SCOPE + s[len(_ACCESS) :] for s in access_scopes if s.startswith(_ACCESS)}


class _ReaderAuthorizer:
    """Allow a metrics reader one thing: ``read`` on the ``torchlab`` resource."""

    def __init__(self, resource: str) -> None:
        self.resource = resource

    def is_authorized(self, handler: Any, user: Any, action: str, resource: str) -> bool:
        return action == "read" and resource == self.resource


class HubReadable:
    """Mixin for the one route a hub token with :data:`READ_SCOPE` may read (put it first)."""

    _torchlab_reader: User | None = None
    auth_resource: str

    async def prepare(self, *args: Any, **kwargs: Any) -> Any:
        """Admit a hub metrics reader; anyone else goes through the server's own checks."""
        handler: Any = self
        reader = await _hub_reader(handler)
        if reader is None:
            return await super().prepare(*args, **kwargs)  # type: ignore[misc]
        if not handler.check_host():
            raise web.HTTPError(403)
        self._torchlab_reader = reader
        handler.current_user = handler._jupyter_current_user = reader
        return None

    @property
    def authorizer(self) -> Any:
        """Our one-permission authorizer for a metrics reader, else the server's own."""
        if self._torchlab_reader is not None:
            return _ReaderAuthorizer(self.auth_resource)
        return super().authorizer  # type: ignore[misc]


async def _hub_reader(handler: Any) -> User | None:
    """Return a User for a hub token that may read metrics here but has no access scope."""
    hub_auth = getattr(handler.identity_provider, "hub_auth", None)
    if hub_auth is None or handler.request.method != "GET":
        return None
    kind, _, token = handler.request.headers.get("Authorization", "").partition(" ")
    token = token.strip()
    if kind.lower() not in ("token", "bearer") or not token:
        return None
    try:
        model = await hub_auth.user_for_token(token, sync=False)
    except Exception as e:  # noqa: BLE001 - the server's own path then answers (and logs)
        handler.log.warning("torchlab: could not check a token with the hub: %s", e)
        return None
    if not model:
        return None
    if hub_auth.check_scopes(hub_auth.access_scopes, model):
        return None  # a user (or admin) of this server: the server's own rules apply
    if not hub_auth.check_scopes(read_scopes(set(hub_auth.access_scopes)), model):
        return None
    kind = model.get("kind", "user")
    name = str(model.get("name", ""))
    handler.log.debug("torchlab: metrics read by %s %s through %s", kind, name, READ_SCOPE)
    return User(username=f"{kind}:{name}", name=name, display_name=f"{name} ({READ_SCOPE})")
