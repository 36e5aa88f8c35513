"""A supervisor signs in through the page's own form in a real browser and the wallboard renders
what the controller publishes: an agent who opened the desktop shows as paused, their queue too.

Why a browser: the login form's Origin and the websocket's are what Chromium sends, not what a
test client is told to send, and the page builds its tables itself."""

from __future__ import annotations

import re

import pytest

from ivr.web.agents_auth import hash_password
from lab.browser import chromium
from tests.unit.web.conftest import Live
from tests.unit.web.test_supervisor import Site


@pytest.mark.requires("chromium")
async def test_a_supervisor_signs_in_and_sees_the_agent_on_the_wallboard(live: Live) -> None:
    agents = live.app.agents
    for username, role, endpoint in (("sue", "supervisor", ""), ("ann", "agent", "agent1001")):
        await agents.add(
            username=username,
            display_name=f"{username.title()} Example",
            password_hash=hash_password(f"{username}-password"),
            endpoint=endpoint,
            skills={"billing": 0} if role == "agent" else {},
            role=role,
        )
    agent, agent_csrf, _ = await Site(live.base, agents).login("desktop", "ann", "ann-password")
    async with agent:
        desk = await agent.ws_connect(f"{live.base}/desktop/ws?csrf={agent_csrf}")
        async with chromium() as browser:
            page = await browser.new_page()  # type: ignore[attr-defined]
            await page.goto(f"{live.base}/supervisor/")
            assert page.url.endswith("/supervisor/login")  # no session yet: the form
            await page.fill("#username", "sue")
            await page.fill("#password", "sue-password")
            await page.click("#signin")
            await page.wait_for_url(re.compile(r".*/supervisor/$"), timeout=10000)
            row = page.locator("#agents tbody tr", has_text="Ann Example")
            await row.wait_for(timeout=10000)
            cells = await row.locator("td").all_inner_texts()
            assert cells[0] == "Ann Example" and cells[1].startswith("paused")
            billing = page.locator("#queues tbody tr", has_text="billing")
            assert (await billing.locator("td").all_inner_texts())[5] == "1"  # paused in billing
            assert await page.inner_text("#who") == "Sue Example"
            assert await page.inner_text("#status") == "live"
        await desk.close()
