"""The admin page in Chromium, signed in through the hub: both users' kernels, busy as busy,
a frozen server with its reason; a user who is not an admin gets no page."""

from __future__ import annotations

import os
import re
import signal
import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest

from tests.browser.conftest import CHROMIUM, CHROMIUM_ARGS

from .hubenv import ADMIN, PASSWORD, Hub

pytestmark = [pytest.mark.browser, pytest.mark.slow]

IDLE_FROM: dict[str, float] = {}
# wall time the fixture's kernels, cells and freeze were all done; a round that begins a second
# later reads samples taken after it (each server samples every 0.5 s, an idle settles in 0.2 s)
SET_UP: dict[str, float] = {}
FRESH_AFTER = 1.0


@pytest.fixture(scope="module")
def hub(make_hub: Any) -> Hub:
    hub = make_hub(culler_timeout=3600)
    for name in ("alice", "bob", "carol"):
        hub.start_server(name)
    hub.run_cell("alice", hub.start_kernel("alice"), "import time; time.sleep(600)")
    hub.run_cell("bob", hub.start_kernel("bob"), "x = 1")
    IDLE_FROM["bob"] = time.monotonic()  # the cell took a moment: bob's kernel idle from about now
    carol = hub.server_pid("carol")
    os.kill(carol, signal.SIGSTOP)  # frozen: the hub still lists it, it answers nobody
    hub.stopped_pids.append(carol)
    SET_UP["at"] = time.time()
    return hub


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"Chromium not found at {CHROMIUM}: apt-get install chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def signed_in(browser: Any, hub: Hub, user: str) -> Any:
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    context.set_default_timeout(30_000)
    page = context.new_page()
    page.goto(f"{hub.url}hub/login")
    page.fill("input[name=username]", user)
    page.fill("input[name=password]", PASSWORD)
    page.click("input[type=submit], button[type=submit]")
    page.wait_for_url(lambda url: "/hub/login" not in url)  # the hub home, or the user's lab
    return page


def round_began(collected: Any) -> float:
    """The unix time the page's round began, from its ``<time datetime>``."""
    return datetime.fromisoformat(collected.get_attribute("datetime")).timestamp()


def test_the_admin_page_shows_every_users_kernels_and_a_frozen_server(
    browser: Any, hub: Hub
) -> None:
    page = signed_in(browser, hub, ADMIN)
    try:
        page.goto(hub.service_url)  # hub OAuth: redirected to the hub and back, no prompt
        page.wait_for_url(hub.service_url)
        kernels = page.locator("#kernels tbody tr[data-user]")
        alice = page.locator('#kernels tr[data-user="alice"]')
        bob = page.locator('#kernels tr[data-user="bob"]')
        carol = page.locator('#servers tr[data-user="carol"]')
        collected = page.locator("time#collected")
        # the page reloads itself every few seconds; wait for a round that began once the
        # fixture was done (an earlier one may have asked alice before her cell started, and
        # carol just before she froze): the page says when its round began
        for _ in range(60):
            if collected.count() and round_began(collected) > SET_UP["at"] + FRESH_AFTER:
                break
            page.wait_for_timeout(1000)
            page.reload()
        assert round_began(collected) > SET_UP["at"] + FRESH_AFTER, page.content()[:3000]
        assert alice.count() == 1, page.content()[:3000]
        assert bob.count() == 1, page.content()[:3000]
        assert carol.get_attribute("data-status") == "unreachable"
        assert alice.get_attribute("data-state") == "busy"
        assert "busy" in alice.inner_text()
        assert bob.get_attribute("data-state") == "idle"
        # idle for how long: "idle M:SS" (or H:MM:SS), as long as bob's kernel has been idle,
        # give or take the age of the round the page shows
        shown = re.search(r"\bidle (?:(\d+):)?(\d+):(\d\d)\b", bob.inner_text())
        assert shown, bob.inner_text()
        elapsed = time.monotonic() - IDLE_FROM["bob"]
        hours, minutes, seconds = (int(g or 0) for g in shown.groups())
        idle_for = hours * 3600 + minutes * 60 + seconds
        assert elapsed - 10 <= idle_for <= elapsed + 1, (shown.group(0), elapsed)
        assert re.search(r"\bbusy \d+:\d\d\b", alice.inner_text()), alice.inner_text()
        assert kernels.count() == 2
        reason = carol.inner_text()
        assert "no answer from 127.0.0.1:" in reason
        assert "within 2 s" in reason
        assert page.locator('#servers tr[data-user="alice"]').get_attribute("data-status") == "ok"
    finally:
        page.context.close()


def test_a_user_who_is_not_an_admin_gets_no_page(browser: Any, hub: Hub) -> None:
    page = signed_in(browser, hub, "bob")  # bob may reach the service, he is not an admin
    try:
        response = page.goto(hub.service_url)
        page.wait_for_load_state()
        assert response is not None
        assert response.status == 403
        assert "this page is for hub admins and members of gpu-watch" in page.content()
        assert "alice" not in page.content()
    finally:
        page.context.close()
