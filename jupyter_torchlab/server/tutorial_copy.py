"""The service behind ``POST torchlab/api/tutorial``: copy the bundled tutorial into the workspace.

The copy goes through the server's contents manager (so it works with any storage backend) under a
fresh name; two requests in flight never pick the same name.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

from jupyter_core.utils import ensure_async
from tornado import web

from jupyter_torchlab._format import quote

__all__ = ["TutorialWriter"]

_DRIVE = re.compile(r"^[A-Za-z]:")


class TutorialWriter:
    """Copy the bundled tutorial into the user's workspace through the contents manager."""

    max_tries = 1000

    def __init__(self, contents_manager: Any) -> None:
        self._cm = contents_manager
        # two POSTs in flight must not both pick the same free name
        self._lock = asyncio.Lock()

    async def copy(self, directory: Any) -> str:
        """Save a copy under a fresh name in ``directory`` (relative to the root); return it."""
        from jupyter_torchlab.tutorial import TUTORIAL_NAME, fresh_name

        dir_path = self._clean(directory)
        shown = quote(dir_path or "/")
        try:
            model = await ensure_async(self._cm.get(dir_path, content=False))
        except web.HTTPError as e:
            if e.status_code == 404:
                raise web.HTTPError(
                    404,
                    f"no such directory {shown}; create it first or pick an existing one",
                ) from None
            raise
        if model.get("type") != "directory":
            raise web.HTTPError(
                400, f"{shown} is a file, not a directory; pass the directory to copy into"
            )
        if model.get("writable") is False:
            raise web.HTTPError(
                403,
                f"cannot write into {shown}: it is read-only; pick a directory you can write to",
            )
        content = self._notebook()
        async with self._lock:
            taken: set[str] = set()
            for _ in range(self.max_tries):
                name = fresh_name(taken, TUTORIAL_NAME)
                path = f"{dir_path}/{name}" if dir_path else name
                if await ensure_async(self._cm.exists(path)):
                    taken.add(name)
                    continue
                try:
                    await ensure_async(
                        self._cm.save(
                            {"type": "notebook", "format": "json", "content": content}, path
                        )
                    )
                except web.HTTPError as e:
                    if e.status_code == 403:
                        raise web.HTTPError(
                            403,
                            f"cannot write into {shown}: permission denied; "
                            "pick a directory you can write to",
                        ) from None
                    raise
                return path
        raise web.HTTPError(
            409,
            f"no free name for the tutorial in {shown} after {self.max_tries} tries; "
            "pick another directory",
        )

    @staticmethod
    def _clean(directory: Any) -> str:
        if not isinstance(directory, str):
            raise web.HTTPError(
                400,
                f'"dir" must be a string: a path relative to the server root, e.g. "" or '
                f'"notebooks"; got {_json_type(directory)}',
            )
        path = directory.replace("\\", "/")
        if path.startswith("/") or _DRIVE.match(path) or "\x00" in path:
            raise web.HTTPError(
                400,
                f"{quote(directory)} is not a path relative to the server root; "
                'pass e.g. "" (the root) or "notebooks"',
            )
        parts = [p for p in path.split("/") if p not in ("", ".")]
        if ".." in parts:
            raise web.HTTPError(
                403, f"{quote(directory)} is outside the server root; pick a directory inside it"
            )
        return "/".join(parts)

    @staticmethod
    def _notebook() -> Any:
        import nbformat

        from jupyter_torchlab.tutorial import tutorial_path

        try:
            return nbformat.read(tutorial_path(), as_version=4)
        except FileNotFoundError as e:
            raise web.HTTPError(500, str(e)) from None


def _json_type(value: object) -> str:
    """Name a JSON value's type as a user sent it: null, a number, a list, an object..."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return f"the number {quote(value, 40)}"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__
