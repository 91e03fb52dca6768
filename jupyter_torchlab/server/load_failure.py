"""When the extension cannot load: why, what to do, and routes that say so.

jupyter_server logs a failed extension as a WARNING and then serves without its routes, so the
lab extension only sees 404s. Instead :class:`~.app.TorchlabExtension` catches what stops it,
logs it at ERROR with :func:`explain`'s cause and fix, puts the same sentence into the page
config (``torchlabLoadError``) and answers every ``torchlab/api/*`` request with a 503 that
carries it. This module uses only what jupyter_server has had since 2.0 (``APIHandler`` and
tornado's ``web.authenticated``), because the failure it reports may be a jupyter_server too old
for the rest of the package.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Any

from jupyter_server.base.handlers import APIHandler
from tornado import web
from traitlets import TraitError

__all__ = [
    "JUPYTER_SERVER_FLOOR",
    "PAGE_CONFIG_KEY",
    "ExtensionNotLoaded",
    "LoadFailure",
    "UnavailableHandler",
    "explain",
    "unavailable_handlers",
]

#: the oldest jupyter_server the package declares (pyproject's dependency; a test holds them
#: equal): ``ws_authenticated`` (2.13) for the stream, ``untracked_message_types`` (2.15), the
#: websocket nudge that waits for the kernel's first status (2.18; pyproject says why)
JUPYTER_SERVER_FLOOR = "2.18"

#: the page config key that tells the lab extension, at page load, why there is no data
PAGE_CONFIG_KEY = "torchlabLoadError"

_RESTART = "then restart the Jupyter server"


@dataclass(frozen=True)
class LoadFailure:
    """Why the extension did not load (``cause``) and what the user can do (``fix``)."""

    cause: str
    fix: str
    #: a traceback helps: the cause is not one a user makes (a bug, a broken install)
    unexpected: bool = False

    @property
    def message(self) -> str:
        """The one sentence every place shows: the log, the 503 body, the lab, the doctor."""
        return f"jupyter_torchlab did not load: {self.cause}. {self.fix}."


class ExtensionNotLoaded(RuntimeError):
    """Raised from the load hook, so jupyter_server records the extension as not loaded."""


def explain(error: BaseException) -> LoadFailure:
    """Return the cause and the fix of an exception that stopped the extension loading."""
    if isinstance(error, TraitError):
        text = str(error).rstrip(".")
        named = re.search(r"TorchlabExtension\.(\w+)", text) or re.search(
            r"'(\w+)' trait of a TorchlabExtension", text
        )
        setting = f"c.TorchlabExtension.{named.group(1)}" if named else "that TorchlabExtension"
        return LoadFailure(
            cause=text,
            fix=f"Correct {setting} where it is set (a jupyter_server_config or "
            f"jupyter_torchlab_config file, or the command line), {_RESTART}",
        )
    if isinstance(error, ImportError) and _from_jupyter_server(error):
        import jupyter_server

        version = getattr(jupyter_server, "__version__", "?")
        if _older(version, JUPYTER_SERVER_FLOOR):
            return LoadFailure(
                cause=f"jupyter_server {version} is older than jupyter-torchlab needs ({error})",
                fix=f"Upgrade jupyter_server to {JUPYTER_SERVER_FLOOR} or later "
                f"(pip install --upgrade 'jupyter_server>={JUPYTER_SERVER_FLOOR}'), {_RESTART}",
            )
        return LoadFailure(
            cause=f"this jupyter-torchlab does not work with jupyter_server {version} ({error})",
            fix="Upgrade jupyter-torchlab (pip install --upgrade jupyter-torchlab) or install "
            f"a jupyter_server it supports (pip install 'jupyter_server>={JUPYTER_SERVER_FLOOR},"
            f"<3'), {_RESTART}",
        )
    if isinstance(error, ImportError):
        return LoadFailure(
            cause=f"a module it needs cannot be imported ({error})",
            fix=f"Reinstall it (pip install --force-reinstall jupyter-torchlab), {_RESTART}",
        )
    return LoadFailure(
        cause=f"{type(error).__name__}: {error}",
        fix="The server log has the traceback; `jupyter torchlab doctor` checks the "
        "installation. Please report it if it persists",
        unexpected=True,
    )


def _from_jupyter_server(error: ImportError) -> bool:
    return (error.name or "").split(".")[0] == "jupyter_server"


def _older(version: str, floor: str) -> bool:
    """Compare release numbers (``2.12.0rc1`` < ``2.13``); an unreadable version is not older."""
    found = re.match(r"(\d+)\.(\d+)", version)
    if found is None:
        return False
    return (int(found[1]), int(found[2])) < tuple(int(part) for part in floor.split("."))


class UnavailableHandler(APIHandler):
    """Every ``torchlab/api/*`` route of an extension that did not load: 503 with the reason."""

    # the lab polls these; answering must not count as user activity (idle culling)
    _track_activity = False

    def initialize(self, failure: LoadFailure) -> None:
        """Take the failure to report."""
        self.failure = failure

    @property
    def log(self) -> Any:  # a LoggerAdapter, used as the Logger it wraps
        """The server's logger, at DEBUG: jupyter_server logs each 5xx at ERROR with headers.

        The reason was logged once, at ERROR, when loading; a lab that asks again every few
        seconds must not bury it.
        """
        return _AtDebug(super().log, {})

    def _unavailable(self) -> None:
        self.set_status(503)
        self.set_header("Cache-Control", "no-store")
        self.finish({"message": self.failure.message, "reason": "jupyter_torchlab did not load"})

    @web.authenticated
    def get(self, *args: Any) -> None:
        """Answer 503 with the reason."""
        self._unavailable()

    @web.authenticated
    def post(self, *args: Any) -> None:
        """Answer 503 with the reason."""
        self._unavailable()

    @web.authenticated
    def put(self, *args: Any) -> None:
        """Answer 503 with the reason."""
        self._unavailable()

    @web.authenticated
    def patch(self, *args: Any) -> None:
        """Answer 503 with the reason."""
        self._unavailable()

    @web.authenticated
    def delete(self, *args: Any) -> None:
        """Answer 503 with the reason."""
        self._unavailable()


class _AtDebug(logging.LoggerAdapter[logging.Logger]):
    def log(self, level: int, msg: object, *args: Any, **kwargs: Any) -> None:
        super().log(logging.DEBUG, msg, *args, **kwargs)


def unavailable_handlers(failure: LoadFailure) -> list[tuple[str, Any, dict[str, Any]]]:
    """Return the URL table of an extension that did not load (patterns relative to base_url)."""
    return [(r"/torchlab/api(/.*)?", UnavailableHandler, {"failure": failure})]
