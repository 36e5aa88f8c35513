"""Continuation rows: the only SQL behind handoff links. See ``ivr.channels.handoff``.

Single use is enforced here, by the database: ``claim`` is one conditional UPDATE that succeeds
for exactly one caller, however many browsers race for the same link.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import insert, select, text, update
from sqlalchemy.ext.asyncio import AsyncEngine

from ivr.store.loop_reads import LoopReader, sqlite_file
from ivr.store.models import ContinuationRow, JourneyRow
from ivr.store.turns import writing


@dataclass(frozen=True)
class Continuation:
    id: str
    journey_id: str
    customer_id: str | None
    channel: str
    step: str
    created_at: float
    expires_at: float
    claimed_at: float | None


def _row(r: Any) -> Continuation:
    return Continuation(r.id, r.journey_id, r.customer_id, r.channel, r.step, r.created_at, r.expires_at, r.claimed_at)


#: A customer's newest journey open on another channel since ``:since``: handed off by a call, or
#: active in chat or SMS (see ``open_journey_of_customer``). Plain SQL, the same on both databases:
#: on SQLite it runs on the loop's thread (``ivr.store.loop_reads``) on every known caller's call.
OPEN_JOURNEY_OF_CUSTOMER_SQL = (
    "SELECT id FROM journeys WHERE customer_id = :customer_id"
    " AND (status = 'handed_off' OR (status = 'active' AND channel IN ('chat', 'sms')))"
    " AND updated_at >= :since ORDER BY updated_at DESC LIMIT 1"
)
_OPEN_JOURNEY_OF_CUSTOMER = text(OPEN_JOURNEY_OF_CUSTOMER_SQL)


class ContinuationStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        database = sqlite_file(engine.url.database, engine.dialect.name)
        #: the call path's read (``open_journey_of_customer``) on the loop's thread while it is quick
        self.loop_reads = LoopReader(database) if database is not None else None

    def close(self) -> None:
        """Close what the store holds beside the engine (whose owner disposes of it)."""
        if self.loop_reads is not None:
            self.loop_reads.close()

    async def create(
        self, *, id: str, journey_id: str, customer_id: str | None, channel: str, step: str, expires_at: float
    ) -> None:
        async with writing(self.engine) as conn:
            await conn.execute(
                insert(ContinuationRow).values(
                    id=id,
                    journey_id=journey_id,
                    customer_id=customer_id,
                    channel=channel,
                    step=step,
                    created_at=time.time(),
                    expires_at=expires_at,
                )
            )

    async def get(self, continuation_id: str) -> Continuation | None:
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(ContinuationRow).where(ContinuationRow.id == continuation_id))).first()
        return _row(row) if row else None

    async def claim(self, continuation_id: str, session_hash: str, now: float) -> bool:
        """Mark the continuation used by this session: True for exactly one caller."""
        c = ContinuationRow
        async with writing(self.engine) as conn:
            result = await conn.execute(
                update(c)
                .where(c.id == continuation_id, c.claimed_at.is_(None), c.expires_at > now)
                .values(claimed_at=now, session_hash=session_hash)
            )
        return bool(result.rowcount == 1)

    async def first_open(self, continuation_id: str, now: float) -> bool:
        """Note that the link's page was opened: True only the first time (one conditional UPDATE,
        so two browsers, or a bot refreshing the page, cannot both be first)."""
        c = ContinuationRow
        async with writing(self.engine) as conn:
            result = await conn.execute(
                update(c).where(c.id == continuation_id, c.opened_at.is_(None)).values(opened_at=now)
            )
        return bool(result.rowcount == 1)

    async def by_session(self, session_hash: str) -> Continuation | None:
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(select(ContinuationRow).where(ContinuationRow.session_hash == session_hash))
            ).first()
        return _row(row) if row else None

    async def open_for_customer(self, customer_id: str, now: float) -> Continuation | None:
        """The newest unexpired continuation of this customer (returning callers)."""
        c = ContinuationRow
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(
                    select(c).where(c.customer_id == customer_id, c.expires_at > now).order_by(c.created_at.desc())
                )
            ).first()
        return _row(row) if row else None

    async def open_journey(self, caller: str, channel: str) -> str | None:
        """The newest active journey of this number on this channel (an SMS conversation)."""
        j = JourneyRow
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(
                    select(j.id)
                    .where(j.caller == caller, j.channel == channel, j.status == "active")
                    .order_by(j.updated_at.desc())
                    .limit(1)
                )
            ).first()
        return str(row[0]) if row else None

    async def open_journey_of_customer(self, customer_id: str, since: float) -> str | None:
        """The newest journey of a customer open on another channel since ``since``: handed off by a
        call, or active in chat or SMS. (A call abandoned mid-menu is not: that caller starts afresh.)

        Every known caller's call asks this before its first prompt when handoffs are on: on
        SQLite the read runs on the loop's thread (no trip to the database's thread), and steps
        aside to the pooled connection whenever it cannot be quick."""
        params = {"customer_id": customer_id, "since": since}
        if self.loop_reads is not None:
            rows = self.loop_reads.fetchall(OPEN_JOURNEY_OF_CUSTOMER_SQL, params)
            if rows is not None:
                return str(rows[0][0]) if rows else None
        async with self.engine.connect() as conn:
            row = (await conn.execute(_OPEN_JOURNEY_OF_CUSTOMER, params)).first()
        return str(row[0]) if row else None
