"""The desktop page in a real Chromium leaves for the login form when its session ends elsewhere
(the agent is disabled, as ``ivr agents disable`` does it: one database write, nothing else)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from ivr.acd.service import Acd
from ivr.bus.pubsub import MemoryBus
from ivr.store.agents import AgentStore
from ivr.store.customers import CustomerStore
from ivr.store.journeys import JourneyStore, make_engine
from ivr.web.agents_auth import hash_password
from ivr.web.desktop import setup_desktop
from lab.browser import chromium


@pytest.fixture
async def desktop(tmp_path: Path) -> AsyncIterator[tuple[str, Acd, AgentStore]]:
    journeys = JourneyStore(make_engine(f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite3'}"))
    await journeys.start()
    agents = AgentStore(journeys.engine)
    await agents.add(
        username="ann",
        display_name="Ann",
        password_hash=hash_password("ann-password"),
        endpoint="agent1001",
        skills={"billing": 0},
        agent_id="ann",
    )
    bus = MemoryBus()
    acd = Acd(ami=None, journeys=journeys, customers=CustomerStore(journeys.engine), bus=bus)
    app = web.Application()
    setup_desktop(app, acd=acd, agents=agents, bus=bus, session_check=0.2)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    yield str(server.make_url("")).rstrip("/"), acd, agents
    await server.close()
    await acd.stop()
    await journeys.stop()


async def test_a_disabled_agents_open_desktop_goes_back_to_the_login_form(
    desktop: tuple[str, Acd, AgentStore],
) -> None:
    base, acd, agents = desktop
    async with chromium() as browser:
        page: Any = await (await browser.new_context()).new_page()  # type: ignore[attr-defined]
        await page.goto(f"{base}/desktop/login")
        await page.fill("#username", "ann")
        await page.fill("#password", "ann-password")
        await page.click("#signin")
        await page.wait_for_url(f"{base}/desktop/")
        await page.click("#btn-ready")
        await page.wait_for_selector("#status[data-status=ready]")

        assert await agents.set_disabled("ann", True)
        await page.wait_for_url(f"{base}/desktop/login", timeout=5000)
        assert (acd.states["ann"].status, acd.states["ann"].reason) == ("paused", "desktop closed")
