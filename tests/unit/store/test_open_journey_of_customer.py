"""A returning caller's journey open on another channel: the same answer on the loop's thread and
through the pooled connection (a real SQLite file)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import insert

from ivr.store.continuations import ContinuationStore
from ivr.store.journeys import JourneyStore, make_engine
from ivr.store.models import CustomerRow, JourneyRow

T0 = 1_764_748_800.0


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[JourneyStore]:
    journeys = JourneyStore(make_engine(f"sqlite+aiosqlite:///{tmp_path / 'ivr.sqlite3'}"))
    await journeys.start()
    rows = [  # (id, customer, channel, status, updated_at)
        ("voice-done", "c1", "voice", "completed", T0 + 50),
        ("voice-handed", "c1", "voice", "handed_off", T0 + 10),
        ("chat-active", "c1", "chat", "active", T0 + 20),
        ("voice-active", "c1", "voice", "active", T0 + 40),  # a call in a menu: not "open elsewhere"
        ("sms-old", "c2", "sms", "active", T0 - 5000),
        ("sms-other", "c3", "sms", "active", T0 + 30),
        ("handed-only", "c4", "voice", "handed_off", T0 + 10),
    ]
    async with journeys.engine.begin() as conn:
        await conn.execute(
            insert(CustomerRow),
            [{"id": c, "verified": False, "created_at": T0, "updated_at": T0} for c in ("c1", "c2", "c3", "c4")],
        )
        await conn.execute(
            insert(JourneyRow),
            [
                {
                    "id": id_,
                    "flow": "support",
                    "flow_version": "v1",
                    "channel": channel,
                    "step": "main_menu",
                    "status": status,
                    "caller": None,
                    "customer_id": customer,
                    "data": {},
                    "started_at": updated - 1,
                    "updated_at": updated,
                }
                for id_, customer, channel, status, updated in rows
            ],
        )
    yield journeys
    await journeys.stop()


async def answers(continuations: ContinuationStore) -> list[str | None]:
    return [
        await continuations.open_journey_of_customer("c1", T0),  # the newest open one
        await continuations.open_journey_of_customer("c1", T0 + 15),  # the handoff is too old now
        await continuations.open_journey_of_customer("c1", T0 + 25),  # nothing open since
        await continuations.open_journey_of_customer("c2", T0 - 3600),  # only an expired one
        await continuations.open_journey_of_customer("c9", T0),  # no such customer
        await continuations.open_journey_of_customer("c3", T0),  # active in SMS
        await continuations.open_journey_of_customer("c4", T0),  # handed off by a call
    ]


async def test_the_newest_journey_handed_off_or_active_in_chat_or_sms_since_the_bound(store: JourneyStore) -> None:
    expected = ["chat-active", "chat-active", None, None, None, "sms-other", "handed-only"]
    on_loop = ContinuationStore(store.engine)
    assert on_loop.loop_reads is not None
    on_loop.loop_reads.budget = 10.0  # seven reads counted: one preempted past 0.5 ms would step aside
    assert await answers(on_loop) == expected
    assert on_loop.loop_reads is not None and on_loop.loop_reads.served == 7
    aside = ContinuationStore(store.engine)
    assert aside.loop_reads is not None
    aside.loop_reads.close()
    aside.loop_reads = None  # as on PostgreSQL, or after a read stepped aside: the pooled connection
    assert await answers(aside) == expected
    on_loop.close()
