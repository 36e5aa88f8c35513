"""Single use of continuation links, enforced by the database (SQLite and PostgreSQL).

A replayed link, or two browsers racing for one link, can claim it once; an expired row never.
"""

from __future__ import annotations

import asyncio
import time

from ivr.channels.handoff import new_continuation_id
from ivr.store import schema
from ivr.store.continuations import ContinuationStore
from ivr.store.journeys import make_engine


async def _store(database_url: str) -> ContinuationStore:
    engine = make_engine(database_url)
    await schema.upgrade(engine)
    return ContinuationStore(engine)


def test_a_continuation_is_claimed_once_even_in_a_race(database_url: str) -> None:
    async def scenario() -> None:
        store = await _store(database_url)
        try:
            now = time.time()
            cid = new_continuation_id()
            await store.create(
                id=cid, journey_id="j" * 32, customer_id="c1", channel="chat", step="pay_menu", expires_at=now + 60
            )
            results = await asyncio.gather(*(store.claim(cid, f"session-{i}", now) for i in range(8)))
            assert results.count(True) == 1
            assert not await store.claim(cid, "replayed", now + 1)  # replay
            found = await store.get(cid)
            assert found is not None and found.claimed_at == now
            winner = results.index(True)
            assert (await store.by_session(f"session-{winner}")) == found

            expired = new_continuation_id()
            await store.create(
                id=expired, journey_id="k" * 32, customer_id="c1", channel="chat", step="s", expires_at=now - 1
            )
            assert not await store.claim(expired, "late", now)
        finally:
            await store.engine.dispose()

    asyncio.run(scenario())
