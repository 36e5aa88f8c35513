"""Saving journeys after every step without putting the database on the call's critical path.

Why write-behind: at a couple of hundred calls a second, each with several steps, a commit per
step would make the database the bottleneck and add its latency to every prompt. ``save()`` is
synchronous and cheap (it snapshots the journey as plain data); one writer task commits whatever
accumulated in a single transaction, coalescing repeated saves of the same journey. Nothing is
dropped when the database fails: the batch stays pending and is retried with backoff, and reads
see pending snapshots first. ``flush()`` waits until everything saved so far is committed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine

from ivr.errors import StoreError
from ivr.flow.model import Interaction, Journey
from ivr.store.models import Base, InteractionRow, JourneyRow

log = logging.getLogger(__name__)


def make_engine(url: str) -> AsyncEngine:
    if url.startswith("sqlite"):
        engine = create_async_engine(url, connect_args={"timeout": 30})

        from sqlalchemy import event

        @event.listens_for(engine.sync_engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:  # WAL: readers never block the writer
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

        return engine
    return create_async_engine(url, pool_size=10, max_overflow=10, pool_pre_ping=True)


class JourneyStore:
    def __init__(self, engine: AsyncEngine, *, batch_delay: float = 0.02) -> None:
        self.engine = engine
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)
        self._pending: dict[str, dict[str, Any]] = {}
        self._events: list[tuple[str, str | None, str, Interaction]] = []
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._task: asyncio.Task[None] | None = None
        self._batch_delay = batch_delay
        self.commits = 0

    async def start(self) -> None:
        async with self.engine.begin() as conn:
            await conn.run_sync(Base.metadata.create_all)
        self._task = asyncio.create_task(self._writer(), name="journey-writer")

    async def stop(self) -> None:
        """Flush what is pending (bounded), then stop the writer task and close the pool."""
        if self._task is None:
            return
        try:
            await asyncio.wait_for(self.flush(), timeout=10)
        except TimeoutError:
            log.error("journey store: %d journeys not written at shutdown", len(self._pending))
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None
        await self.engine.dispose()

    def save(self, journey: Journey, events: Sequence[Interaction] = ()) -> None:
        self._pending[journey.id] = journey.persisted()
        for event in events:
            self._events.append((journey.id, journey.customer_id, journey.channel, event))
        self._idle.clear()
        self._wake.set()

    async def flush(self) -> None:
        if self._task is None or self._task.done():
            raise StoreError("journey store is not running")
        await self._idle.wait()

    async def _writer(self) -> None:
        backoff = 0.1
        while True:
            await self._wake.wait()
            await asyncio.sleep(self._batch_delay)  # let a burst of saves coalesce into one commit
            self._wake.clear()
            journeys, self._pending = self._pending, {}
            events, self._events = self._events, []
            try:
                await self._write(journeys, events)
                self.commits += 1
                backoff = 0.1
            except Exception as exc:  # keep everything; retry later
                log.error(
                    "journey store write failed (%d journeys pending, retry in %.1fs): %s", len(journeys), backoff, exc
                )
                for jid, data in journeys.items():
                    self._pending.setdefault(jid, data)
                self._events[:0] = events
                self._wake.set()
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            if not self._pending and not self._events:
                self._idle.set()

    async def _write(
        self, journeys: dict[str, dict[str, Any]], events: list[tuple[str, str | None, str, Interaction]]
    ) -> None:
        dialect = self.engine.dialect.name
        insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
        async with self.engine.begin() as conn:
            if journeys:
                rows = [
                    {
                        "id": d["id"],
                        "flow": d["flow"],
                        "flow_version": d["version"],
                        "channel": d["channel"],
                        "step": d["step"],
                        "status": d["status"],
                        "caller": d["caller"],
                        "customer_id": d["customer_id"],
                        "data": d,
                        "started_at": d["started_at"],
                        "updated_at": d["updated_at"],
                    }
                    for d in journeys.values()
                ]
                stmt = insert(JourneyRow).values(rows)
                stmt = stmt.on_conflict_do_update(
                    index_elements=[JourneyRow.id],
                    set_={
                        c: stmt.excluded[c]
                        for c in (
                            "flow",
                            "flow_version",
                            "channel",
                            "step",
                            "status",
                            "caller",
                            "customer_id",
                            "data",
                            "updated_at",
                        )
                    },
                )
                await conn.execute(stmt)
            if events:
                await conn.execute(
                    insert(InteractionRow),
                    [
                        {
                            "journey_id": jid,
                            "customer_id": cid,
                            "channel": ch,
                            "kind": e.kind,
                            "step": e.step,
                            "data": e.data,
                            "at": e.at,
                        }
                        for jid, cid, ch, e in events
                    ],
                )

    # ----------------------------------------------------------------------------------- reads
    async def get(self, journey_id: str) -> Journey | None:
        if journey_id in self._pending:
            return Journey.from_dict(self._pending[journey_id])
        async with self._sessions() as session:
            row = await session.get(JourneyRow, journey_id)
            return Journey.from_dict(row.data) if row else None

    async def recent(self, limit: int = 20) -> list[Journey]:
        async with self._sessions() as session:
            rows = (await session.scalars(select(JourneyRow).order_by(JourneyRow.updated_at.desc()).limit(limit))).all()
        return [Journey.from_dict(r.data) for r in rows]

    async def interactions(self, journey_id: str) -> list[dict[str, Any]]:
        async with self._sessions() as session:
            rows = (
                await session.scalars(
                    select(InteractionRow).where(InteractionRow.journey_id == journey_id).order_by(InteractionRow.id)
                )
            ).all()
        return [{"kind": r.kind, "step": r.step, "data": r.data, "at": r.at, "channel": r.channel} for r in rows]
