"""Signing out of the desktop and the wallboard lands on the login form, every time, in one
navigation.

Why a browser: signing out ends the session, and the controller closes the page's socket with
code 4001 while the sign-out request is still being answered. A page that leaves for the login
form from both places starts two navigations to the same address; the second aborts the first
(``net::ERR_ABORTED``) and, depending on timing, the person sees an error page. Only a real
browser's event timing shows this; the assertion counts the login form's document requests,
which is one per sign-out whatever the timing."""

from __future__ import annotations

import re

import pytest

from ivr.web.agents_auth import hash_password
from lab.browser import chromium
from tests.unit.web.conftest import Live

ROUNDS = 4


async def _add(live: Live, username: str, role: str, endpoint: str) -> None:
    await live.app.agents.add(
        username=username,
        display_name=f"{username.title()} Example",
        password_hash=hash_password(f"{username}-password"),
        endpoint=endpoint,
        skills={"billing": 0} if role == "agent" else {},
        role=role,
    )


@pytest.mark.requires("chromium")
@pytest.mark.parametrize(
    ("site", "username", "role", "endpoint", "ready", "logout"),
    [
        ("desktop", "ann", "agent", "agent1001", "#link.up", "#btn-logout"),
        ("supervisor", "sue", "supervisor", "", "#status:text('live')", "#logout"),
    ],
)
async def test_signing_out_reaches_the_login_form_in_one_navigation(
    live: Live, site: str, username: str, role: str, endpoint: str, ready: str, logout: str
) -> None:
    await _add(live, username, role, endpoint)
    async with chromium() as browser:
        page = await browser.new_page()  # type: ignore[attr-defined]
        login_loads: list[str] = []
        page.on(
            "request",
            lambda r: (
                login_loads.append(r.url)
                if r.resource_type == "document" and r.url.endswith(f"/{site}/login")
                else None
            ),
        )
        failures: list[str] = []
        page.on("requestfailed", lambda r: failures.append(f"{r.url} {r.failure}"))
        for round_ in range(ROUNDS):
            await page.goto(f"{live.base}/{site}/login")
            await page.fill("#username", username)
            await page.fill("#password", f"{username}-password")
            await page.click("#signin")
            await page.wait_for_url(re.compile(rf".*/{site}/$"), timeout=10000)
            await page.wait_for_selector(ready, timeout=10000)  # the socket is open
            login_loads.clear()
            await page.click(logout)
            await page.wait_for_url(f"{live.base}/{site}/login", timeout=10000)
            await page.wait_for_selector("#username", timeout=10000)
            await page.wait_for_timeout(300)  # a late second navigation would show up here
            assert login_loads == [f"{live.base}/{site}/login"], f"round {round_}: {login_loads}"
            assert not [f for f in failures if "/login" in f], failures
