"""The continuation funnel's "opened" step: the first open of a link's page is logged (the KPIs
count it) and later opens are not, claiming it is logged as the journey changing channel, through
the real web app and store."""

from __future__ import annotations

import asyncio

import aiohttp
from sqlalchemy import select

from ivr.store.models import ContactFactRow, InteractionRow
from tests.unit.web.conftest import Live


async def _opens(live: Live) -> list[tuple[str, float]]:
    await live.app.store.flush()
    async with live.app.store.engine.connect() as conn:
        found = await conn.execute(
            select(InteractionRow.journey_id, InteractionRow.at).where(InteractionRow.kind == "link_opened")
        )
        return [(row.journey_id, row.at) for row in found]


async def test_only_the_first_open_of_a_link_is_logged_and_folded_into_the_contact(live: Live) -> None:
    token = await live.chat_link("+15551230077")
    async with aiohttp.ClientSession() as http:
        # an SMS app's preview, the customer, then a bot refreshing the page (some at once)
        async with http.get(f"{live.base}/c/{token}") as reply:
            assert reply.status == 200
        first = await _opens(live)
        for reply in await asyncio.gather(*(http.get(f"{live.base}/c/{token}") for _ in range(12))):
            assert reply.status == 200
            reply.release()
        async with http.post(f"{live.base}/c/{token}", headers={"Origin": live.base}, allow_redirects=False) as reply:
            assert reply.status == 303
    opened = await _opens(live)
    assert len(opened) == 1 and opened == first
    ((journey_id, at),) = opened
    async with live.app.store.engine.connect() as conn:
        contact = (
            await conn.execute(
                select(ContactFactRow.opened_at, ContactFactRow.claimed_at).where(
                    ContactFactRow.journey_id == journey_id
                )
            )
        ).one()
    assert contact.opened_at == at and contact.claimed_at is not None and contact.claimed_at > at


async def test_each_link_logs_its_own_first_open(live: Live) -> None:
    tokens = [await live.chat_link("+15551230078"), await live.chat_link("+15551230079")]
    async with aiohttp.ClientSession() as http:
        for token in (*tokens, *tokens):
            async with http.get(f"{live.base}/c/{token}") as reply:
                assert reply.status == 200
    opened = await _opens(live)
    assert len(opened) == 2 and len({journey for journey, _ in opened}) == 2
