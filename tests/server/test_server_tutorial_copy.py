"""POST torchlab/api/tutorial: copy the bundled notebook through the contents manager."""

from __future__ import annotations

import asyncio
import json
import logging
import os
from pathlib import Path
from typing import Any

import pytest
from tornado.httpclient import HTTPClientError

from jupyter_torchlab.tutorial import TUTORIAL_NAME, tutorial_path


async def post(jp_fetch: Any, body: Any) -> Any:
    raw = body if isinstance(body, str) else json.dumps(body)
    return await jp_fetch("torchlab", "api", "tutorial", method="POST", body=raw)


async def post_error(jp_fetch: Any, body: Any) -> tuple[int, str]:
    with pytest.raises(HTTPClientError) as e:
        await post(jp_fetch, body)
    return e.value.code, json.loads(e.value.response.body)["message"]


async def test_copies_into_the_root_under_fresh_names_and_never_overwrites(
    jp_fetch: Any, jp_root_dir: Path
) -> None:
    mine = jp_root_dir / "first_pytorch_classifier-1.ipynb"
    mine.write_text("my own work", encoding="utf-8")

    r = await post(jp_fetch, {"dir": ""})
    assert r.code == 201
    assert json.loads(r.body) == {"path": TUTORIAL_NAME}
    assert r.headers["Location"].endswith("/api/contents/" + TUTORIAL_NAME)
    copied = json.loads((jp_root_dir / TUTORIAL_NAME).read_text(encoding="utf-8"))
    original = json.loads(tutorial_path().read_text(encoding="utf-8"))
    assert [c["source"] for c in copied["cells"]] == [c["source"] for c in original["cells"]]

    r = await post(jp_fetch, {})  # no dir: the root
    assert json.loads(r.body) == {"path": "first_pytorch_classifier-2.ipynb"}
    assert mine.read_text(encoding="utf-8") == "my own work"


async def test_concurrent_copies_get_distinct_names(jp_fetch: Any, jp_root_dir: Path) -> None:
    (jp_root_dir / "work").mkdir()
    replies = await asyncio.gather(*(post(jp_fetch, {"dir": "work"}) for _ in range(4)))
    paths = sorted(json.loads(r.body)["path"] for r in replies)
    assert paths == [
        "work/first_pytorch_classifier-1.ipynb",
        "work/first_pytorch_classifier-2.ipynb",
        "work/first_pytorch_classifier-3.ipynb",
        "work/first_pytorch_classifier.ipynb",
    ]
    assert len([n for n in os.listdir(jp_root_dir / "work") if n.endswith(".ipynb")]) == 4


@pytest.mark.parametrize(
    ("body", "code", "words"),
    [
        ({"dir": "../elsewhere"}, 403, "outside the server root"),
        ({"dir": "a/../../b"}, 403, "outside the server root"),
        ({"dir": "/etc"}, 400, "not a path relative to the server root"),
        ({"dir": "C:\\Users"}, 400, "not a path relative to the server root"),
        ({"dir": "missing"}, 404, "no such directory 'missing'"),
        ({"dir": 3}, 400, "must be a string: a path relative to the server root"),
    ],
)
async def test_refuses_bad_directories_with_a_clear_message(
    jp_fetch: Any, jp_root_dir: Path, body: Any, code: int, words: str
) -> None:
    status, message = await post_error(jp_fetch, body)
    assert status == code
    assert words in message
    assert os.listdir(jp_root_dir) == []  # nothing was written anywhere


async def test_refuses_a_file_as_the_directory(jp_fetch: Any, jp_root_dir: Path) -> None:
    (jp_root_dir / "notes.txt").write_text("x", encoding="utf-8")
    code, message = await post_error(jp_fetch, {"dir": "notes.txt"})
    assert code == 400
    assert "is a file, not a directory" in message


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write into read-only directories")
async def test_reports_a_read_only_directory(jp_fetch: Any, jp_root_dir: Path) -> None:
    locked = jp_root_dir / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        code, message = await post_error(jp_fetch, {"dir": "locked"})
    finally:
        locked.chmod(0o755)
    assert code == 403
    assert "read-only" in message or "permission denied" in message
    assert os.listdir(locked) == []


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ("[]", 'the body must be a JSON object, got a list; send a JSON object like {"dir"'),
        ("[1, 2]", "the body must be a JSON object, got a list"),
        ("0", "the body must be a JSON object, got a number"),
        ("null", "the body must be a JSON object, got null"),
        ('"notebooks"', "the body must be a JSON object, got a string"),
        ("{not json", "Invalid JSON in the body (line 1, column 2"),
        ('{"dir": null}', '"dir" must be a string: a path relative to the server root, e.g. ""'),
        ('{"dir": null}', "got null"),
        ('{"dir": 3}', "got the number 3"),
        ('{"dir": ["a"]}', "got a list"),
        ('{"dir": false}', "got false"),
        (b'{"dir": "caf\xe9"}', "the body is not UTF-8 text (byte 13 is invalid); send a JSON"),
    ],
)
async def test_a_body_that_is_not_an_object_with_a_string_dir_is_a_400_saying_what_to_send(
    jp_fetch: Any, jp_root_dir: Path, body: Any, words: str
) -> None:
    with pytest.raises(HTTPClientError) as e:
        await jp_fetch("torchlab", "api", "tutorial", method="POST", body=body)
    assert e.value.code == 400
    assert words in json.loads(e.value.response.body)["message"]
    assert os.listdir(jp_root_dir) == []


async def test_an_empty_body_copies_into_the_root(jp_fetch: Any, jp_root_dir: Path) -> None:
    r = await jp_fetch(
        "torchlab", "api", "tutorial", method="POST", body=b"", allow_nonstandard_methods=True
    )
    assert r.code == 201
    assert json.loads(r.body) == {"path": TUTORIAL_NAME}


class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


async def test_a_huge_dir_is_quoted_briefly_in_the_reply_and_the_log(
    jp_fetch: Any, jp_serverapp: Any, jp_root_dir: Path
) -> None:
    huge = "x" * 5_000_000
    loggers = [
        jp_serverapp.log,
        logging.getLogger("tornado.access"),
        logging.getLogger("tornado.general"),
        logging.getLogger("tornado.application"),
    ]
    seen = _Lines()
    for log in loggers:
        log.addHandler(seen)
    try:
        with pytest.raises(HTTPClientError) as e:
            await post(jp_fetch, {"dir": huge})
    finally:
        for log in loggers:
            log.removeHandler(seen)
    message = json.loads(e.value.response.body)["message"]
    assert e.value.code == 404
    assert message.startswith("no such directory 'xxxx")
    assert "(5,000,002 characters)" in message  # says how much was left out
    assert len(message) < 400
    logged = "\n".join(seen.lines)
    assert seen.lines, "the refusal is logged"
    assert "x" * 250 not in logged
    assert max(len(line) for line in seen.lines) < 1000
