"""A chat customer who leaves before an agent takes the chat is abandoned, as a caller who hangs
up in the queue: through the real controller's web chat (aiohttp client, real server, SQLite, the
shipped payments flow, no agent logged in), read back as KPIs from the stored contact rows.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
from sqlalchemy import select

from ivr.acd.chat import ChatContact, WaitingChat, left_because
from ivr.kpis import ReportRequest
from ivr.store.kpis import KpiStore
from ivr.store.models import InteractionRow
from tests.unit.web.conftest import Live


@asynccontextmanager
async def queued_chat(live: Live, phone: str) -> AsyncIterator[aiohttp.ClientSession]:
    """A customer's browser: the link claimed, the account number given, "talk to an agent"
    chosen; the chat waits in billing (nobody can take it)."""
    token = await live.chat_link(phone)
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        async with http.post(f"{live.base}/c/{token}", headers={"Origin": live.base}) as reply:
            assert reply.status == 200  # redirected to the chat page
        async with http.post(f"{live.base}/chat/api/input", json={"text": "12345678"}) as reply:
            assert (await reply.json())["step"] == "pay_menu"
        async with http.post(f"{live.base}/chat/api/input", json={"option": "agent"}) as reply:
            view = await reply.json()
        assert (view["status"], view["queue"], view["agent"]) == ("queued", "billing", False)
        yield http


async def abandons(live: Live) -> list[dict[str, Any]]:
    await live.app.store.flush()
    async with live.app.store.engine.connect() as conn:
        rows = await conn.execute(select(InteractionRow.data).where(InteractionRow.kind == "queue_abandoned"))
        return [dict(row.data) for row in rows]


async def chat_kpis(live: Live) -> dict[str, Any]:
    await live.app.store.flush()
    now = time.time()
    request = ReportRequest.parse(_iso(now - 3600), _iso(now + 3600), by="channel")
    rows = {r.key: r.figures.to_dict() for r in await KpiStore(live.app.store.engine).report(request)}
    return rows["chat"]


def _iso(at: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(at))


async def test_a_customer_who_closes_the_chat_before_an_agent_takes_it_abandoned_it(live: Live) -> None:
    before = time.time()
    async with queued_chat(live, "+15551230081") as http:
        queued = time.time()
        await asyncio.sleep(1.5)  # waits a little, then gives up
        async with http.post(f"{live.base}/chat/api/leave", json={}) as reply:
            assert reply.status == 200 and (await reply.json()) == {"left": "abandoned"}
        left = time.time()
        async with http.post(f"{live.base}/chat/api/leave", json={}) as reply:
            assert (await reply.json()) == {"left": None}  # once
        async with http.get(f"{live.base}/chat/api/state") as reply:
            assert (await reply.json())["left"] == "closed"
        async with http.get(f"{live.base}/chat/api/events") as reply:  # a page opened again is told
            assert b'"type":"queue.left"' in await reply.content.readuntil(b"\n\n")
    (logged,) = await abandons(live)
    assert (logged["queue"], logged["reason"], logged["channel"]) == ("billing", "closed", "chat")
    figures = await chat_kpis(live)
    assert (figures["offered"], figures["handled"], figures["abandoned"]) == (1, 0, 1)
    assert 1.5 <= figures["avg_abandon_s"] <= left - before
    assert abs(figures["avg_abandon_s"] - (left - queued)) < 1.0
    assert figures["contained"] == 0 and figures["service_level"] == 0.0


async def test_a_customer_whose_page_is_gone_for_the_grace_abandoned_the_chat(live: Live) -> None:
    chats = live.app.acd.chats
    chats.leave_grace, chats.sweep = 2.0, 0.1
    live.app.chat_settings.retry_offer = 0.2  # the open page offers the chat again this often
    async with queued_chat(live, "+15551230082") as http:
        # the page listens for 3 s, longer than the grace: a customer still there is not gone
        events = await http.get(f"{live.base}/chat/api/events")
        await asyncio.sleep(3.0)
        assert await abandons(live) == []
        events.close()  # the page is closed
        closed = time.monotonic()
        deadline = closed + 8
        while not await abandons(live):
            assert time.monotonic() < deadline, "the chat was never abandoned"
            await asyncio.sleep(0.1)
        assert time.monotonic() - closed >= 1.5  # not before the grace (less the last offer's age)
        async with http.get(f"{live.base}/chat/api/state") as reply:
            assert (await reply.json())["left"] == "left"
    (logged,) = await abandons(live)
    assert logged["reason"] == "left" and logged["hold_time"] >= 4.5
    figures = await chat_kpis(live)
    assert (figures["offered"], figures["abandoned"]) == (1, 1)


def test_why_a_waiting_chat_is_gone() -> None:
    """The rule, on literal times: the queue step's timeout, or no offer from a page for the grace."""
    chat = WaitingChat(ChatContact("c", "j", "billing", timeout=600), joined_at=100.0, last_seen=100.0)
    assert left_because(chat, 129.9, grace=30) is None
    assert left_because(chat, 130.0, grace=30) == "left"
    chat.last_seen = 690.0  # the page offered it again at 690: still there...
    assert left_because(chat, 699.9, grace=30) is None
    assert left_because(chat, 700.0, grace=30) == "timeout"  # ...until the queue step gives up
    assert left_because(WaitingChat(ChatContact("d", "k", "billing"), 0.0, 20.0), 49.0, grace=30) is None
