"""The service's settings: what JupyterHub puts in its environment, plus our flags.

JupyterHub starts a managed service with ``JUPYTERHUB_API_URL``, ``JUPYTERHUB_API_TOKEN``,
``JUPYTERHUB_SERVICE_URL`` (where the hub and its proxy reach us: the port we listen on) and
``JUPYTERHUB_SERVICE_PREFIX``; the rest are ours, as flags or ``TORCHLAB_HUB_*`` variables (a flag
wins).

The address we listen on is ``--bind`` (``TORCHLAB_HUB_BIND``); by default the service URL's host
when it is an address of this machine (``127.0.0.1``, the pod's own IP), else every interface
(``0.0.0.0``): on Kubernetes the URL names the hub's Service (``http://hub:10101``), whose address
belongs to no interface of the hub pod, so listening there would fail.
"""

from __future__ import annotations

import argparse
import os
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

__all__ = ["ConfigError", "Settings", "is_local", "parse"]

#: the smallest token we accept for the metrics endpoint (characters)
MIN_TOKEN = 16


class ConfigError(ValueError):
    """A setting is missing or wrong; the message says which and what to do."""


@dataclass(frozen=True)
class Settings:
    """Everything the service reads at start."""

    api_url: str  # the hub's REST API, e.g. http://127.0.0.1:8081/hub/api
    api_token: str  # the service's own hub token (its role's scopes)
    prefix: str  # where the hub's proxy sends us, e.g. /services/torchlab/
    host: str  # the address we listen on (--bind, or derived from the service URL)
    port: int
    interval: float  # seconds between collection rounds
    timeout: float  # seconds one server may take to answer
    concurrency: int  # servers asked at once
    metrics_token: str | None  # the scraper's bearer token; None: the endpoint refuses
    admin_groups: frozenset[str]  # besides admins, members of these may see the page


def parse(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> Settings:
    """Read the flags and the environment; raise :class:`ConfigError` saying what is wrong."""
    env = os.environ if env is None else env
    p = argparse.ArgumentParser(
        prog="python -m jupyter_torchlab.hub",
        description="Hub-wide torchlab service: one Prometheus endpoint and an admin page for "
        "every user server. Run it as a JupyterHub service (see the README).",
    )
    p.add_argument("--interval", type=float, default=float(env.get("TORCHLAB_HUB_INTERVAL", 10)))
    p.add_argument("--timeout", type=float, default=float(env.get("TORCHLAB_HUB_TIMEOUT", 3)))
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument(
        "--metrics-token-file",
        default=env.get("TORCHLAB_HUB_METRICS_TOKEN_FILE"),
        help="file holding the bearer token Prometheus sends (or $TORCHLAB_HUB_METRICS_TOKEN)",
    )
    p.add_argument(
        "--admin-group",
        action="append",
        default=None,
        help="a hub group whose members may see the admin page besides admins (repeatable; "
        "or $TORCHLAB_HUB_ADMIN_GROUPS, comma-separated)",
    )
    p.add_argument(
        "--bind",
        default=env.get("TORCHLAB_HUB_BIND") or None,
        help="the address to listen on (or $TORCHLAB_HUB_BIND); default: the host of "
        "JUPYTERHUB_SERVICE_URL if it is an address of this machine, else 0.0.0.0",
    )
    args = p.parse_args(argv)

    missing = [k for k in ("JUPYTERHUB_API_URL", "JUPYTERHUB_API_TOKEN") if not env.get(k)]
    if missing:
        raise ConfigError(
            f"{' and '.join(missing)} not set: run this as a JupyterHub service "
            "(c.JupyterHub.services with a 'command'), which sets them"
        )
    if not 0.5 <= args.interval <= 3600:
        raise ConfigError(f"--interval must be between 0.5 and 3600 seconds, got {args.interval}")
    if not 0.1 <= args.timeout <= 60:
        raise ConfigError(f"--timeout must be between 0.1 and 60 seconds, got {args.timeout}")
    if not 1 <= args.concurrency <= 1024:
        raise ConfigError(f"--concurrency must be between 1 and 1024, got {args.concurrency}")

    url = urlparse(env.get("JUPYTERHUB_SERVICE_URL") or "http://127.0.0.1:10101")
    if args.bind is not None and not is_local(args.bind):
        raise ConfigError(
            f"--bind {args.bind} (or TORCHLAB_HUB_BIND) is not an address of this machine: "
            "give one of its own addresses, or 0.0.0.0 for every interface"
        )
    url_host = url.hostname or "127.0.0.1"
    groups = args.admin_group
    if groups is None:
        groups = [g for g in env.get("TORCHLAB_HUB_ADMIN_GROUPS", "").split(",")]
    return Settings(
        api_url=env["JUPYTERHUB_API_URL"].rstrip("/"),
        api_token=env["JUPYTERHUB_API_TOKEN"],
        prefix=_slashed(env.get("JUPYTERHUB_SERVICE_PREFIX", "/services/torchlab/")),
        host=args.bind or (url_host if is_local(url_host) else "0.0.0.0"),
        port=url.port or 10101,
        interval=args.interval,
        timeout=args.timeout,
        concurrency=args.concurrency,
        metrics_token=_metrics_token(args.metrics_token_file, env),
        admin_groups=frozenset(g.strip() for g in groups if g.strip()),
    )


def is_local(host: str) -> bool:
    """Whether this machine can listen on ``host`` (a name resolving to one of its addresses)."""
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        return False
    for family, kind, proto, _, address in infos:
        with socket.socket(family, kind, proto) as s:
            try:
                s.bind((address[0], 0))
            except OSError:
                continue
            return True
    return False


def _slashed(prefix: str) -> str:
    return "/" + prefix.strip("/") + "/" if prefix.strip("/") else "/"


def _metrics_token(path: str | None, env: Mapping[str, str]) -> str | None:
    if path:
        try:
            token = Path(path).read_text(encoding="utf-8").strip()
        except OSError as e:
            raise ConfigError(f"cannot read --metrics-token-file {path}: {e.strerror}") from None
    else:
        token = env.get("TORCHLAB_HUB_METRICS_TOKEN", "").strip()
    if not token:
        return None
    if len(token) < MIN_TOKEN:
        raise ConfigError(
            f"the metrics token is {len(token)} characters; use at least {MIN_TOKEN}, "
            "e.g. from `openssl rand -hex 32`"
        )
    return token
