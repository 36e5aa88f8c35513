"""The continuation funnel's "opened" step: opening a link's page is logged (the KPIs count it),
claiming it is logged as the journey changing channel, through the real web app and store."""

from __future__ import annotations

import aiohttp
from sqlalchemy import select

from ivr.store.models import ContactFactRow, InteractionRow
from tests.unit.web.conftest import Live


async def test_opening_a_link_is_logged_and_folded_into_the_contact(live: Live) -> None:
    token = await live.chat_link("+15551230077")
    async with aiohttp.ClientSession() as http:
        for _ in range(2):  # an SMS app's preview, then the customer
            async with http.get(f"{live.base}/c/{token}") as reply:
                assert reply.status == 200
        async with http.post(f"{live.base}/c/{token}", headers={"Origin": live.base}, allow_redirects=False) as reply:
            assert reply.status == 303
    await live.app.store.flush()
    async with live.app.store.engine.connect() as conn:
        opened = (
            await conn.execute(select(InteractionRow.journey_id).where(InteractionRow.kind == "link_opened"))
        ).all()
        assert len(opened) == 2 and len({row.journey_id for row in opened}) == 1
        (journey_id,) = {row.journey_id for row in opened}
        contact = (
            await conn.execute(select(ContactFactRow.opened_at).where(ContactFactRow.journey_id == journey_id))
        ).one()
        assert contact.opened_at is not None
