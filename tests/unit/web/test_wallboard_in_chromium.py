"""A supervisor signs in through the page's own form in a real browser and the wallboard renders
what the controller publishes: an agent who opened the desktop shows as paused, their queue too.

Why a browser: the login form's Origin and the websocket's are what Chromium sends, not what a
test client is told to send, and the page builds its tables itself."""

from __future__ import annotations

import re
import time

import pytest
from playwright.async_api import expect

from ivr.ami import events as ev
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
            assert (await billing.locator("td").all_inner_texts())[6] == "1"  # paused in billing
            assert await page.inner_text("#who") == "Sue Example"
            assert await page.inner_text("#status") == "live"
        await desk.close()


@pytest.mark.requires("chromium")
async def test_a_caller_joins_and_leaves_the_board_and_the_day_is_shown(live: Live) -> None:
    """The ACD's own event handling (the AMI client's events, given by hand) to the painted page:
    the caller appears with only the last four digits of their number, then leaves; today's KPIs
    come from the cache the controller keeps."""
    await live.app.agents.add(
        username="sue",
        display_name="Sue Example",
        password_hash=hash_password("sue-password"),
        endpoint="",
        skills={},
        role="supervisor",
    )
    caller = ev.Channel("PJSIP/trunk-00000001", "1764748800.7", callerid="+15551239876")
    async with chromium() as browser:
        page = await browser.new_page()  # type: ignore[attr-defined]
        await page.goto(f"{live.base}/supervisor/login")
        await page.fill("#username", "sue")
        await page.fill("#password", "sue-password")
        await page.click("#signin")
        await expect(page.locator("#status")).to_have_text("live", timeout=10000)
        await expect(page.locator("#offered")).to_have_text("0", timeout=10000)  # today's KPIs read
        joined = time.time()
        await live.app.acd.handle(ev.QueueCallerJoin(joined, "billing", caller, 1, 1))
        row = page.locator("#callers tbody tr")
        await row.wait_for(timeout=5000)
        painted = float(await page.get_attribute("body", "data-painted-at"))
        cells = await row.locator("td").all_inner_texts()
        assert cells[0] == "…9876" and cells[1] == "billing" and cells[4] == "no"
        assert "5551239876" not in await page.content()
        billing = page.locator("#queues tbody tr", has_text="billing")
        assert (await billing.locator("td").all_inner_texts())[1] == "1"
        await live.app.acd.handle(ev.QueueCallerLeave(time.time(), "billing", caller, 1, 0))
        await expect(page.locator("#callers tbody tr")).to_have_count(0, timeout=5000)
        assert (await billing.locator("td").all_inner_texts())[1] == "0"
        print(f"\nevent -> painted: {(painted - joined) * 1000:.0f} ms")
        assert painted - joined < 2.0
