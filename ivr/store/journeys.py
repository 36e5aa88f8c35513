"""Saving journeys after every step without putting the database on the call's critical path.

Why write-behind: at a couple of hundred calls a second, each with several steps, a commit per
step would make the database the bottleneck and add its latency to every prompt. ``save()`` is
synchronous and cheap (it notes the journey and its new events); one writer task snapshots every
noted journey as plain data and commits the lot in a single transaction, so repeated saves of the
same journey between two commits cost one snapshot and one row write. Nothing is
dropped when the database fails: the batch stays pending and is retried with backoff, and reads
see pending snapshots first. ``flush()`` waits until everything saved so far is committed.

The same transaction keeps the per-customer aggregates the call path reads (``option_stats``,
``customer_slots``) in step with the log, from the ``option_chosen`` and ``slot_filled``
interactions: a crash can never leave an aggregate counting an event the log does not have, and a
retried batch never counts one twice. Slot values come from the journey at ``save()`` time; a
secret slot's value is never taken.
"""

from __future__ import annotations

import asyncio
import copy
import json
import logging
import math
import sqlite3
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from typing import Any, NamedTuple, TypeVar

from sqlalchemy import ColumnElement, Float, case, func, literal, select, text
from sqlalchemy import event as sa_event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlalchemy.pool import PoolResetState

from ivr.aio import wait_for
from ivr.errors import StoreError
from ivr.flow.model import REDACTED, Interaction, Journey
from ivr.store import schema
from ivr.store.aggregates import DAY, tally
from ivr.store.kpi_sums import SumsWriter
from ivr.store.kpis import contact_rows, contact_upsert
from ivr.store.models import CustomerRow, CustomerSlotRow, InteractionRow, JourneyRow, OptionStatRow
from ivr.store.turns import writing

log = logging.getLogger(__name__)
MAX_SLOT_VALUE = 256  # customer_slots.value
#: Rows per multi-row statement: a backlog after an outage (thousands of journeys) must stay under
#: the drivers' bind-parameter limits (asyncpg 32767, SQLite 32766) or it could never be written.
ROWS_PER_STATEMENT = 500
T = TypeVar("T")
#: Connections each engine keeps open, and how many more it opens (and closes again) in a burst.
POOL_SIZE = 20
POOL_OVERFLOW = 10
#: seconds ``stop`` waits for the last journeys to be written: a healthy flush takes well under
#: one; longer means the database is stuck, and the lab kills a controller 15 s after SIGTERM
FLUSH_AT_STOP_S = 6.0

#: Seconds between two checkpoints the journey writer runs itself (SQLite files), after a batch and
#: outside the write turn. A checkpoint copies the WAL back into the database file. Why the writer
#: runs it and not SQLite's automatic one: the automatic checkpoint runs inside the commit that
#: crosses its size, in the write turn, so a first caller's creation and the ACD lease waited for
#: it (the longest silence before a first prompt went from 16 to 38 ms with a larger WAL). And why
#: every few seconds: every batch appends each page it changed, and the same pages change in every
#: batch (the last leaf of each index keyed by time or journey id, the quarter hour's KPI sums);
#: a checkpoint copies each page once however often the WAL has it (bench/README.md).
CHECKPOINT_EVERY_S = 2.0
#: WAL pages after which a commit checkpoints anyway (SQLite's default is 1,000): the backstop,
#: when the writer's own checkpoints cannot keep up. The WAL file stays at up to 40 MB.
WAL_CHECKPOINT_PAGES = 10_000


def chunks(rows: Sequence[T], size: int = ROWS_PER_STATEMENT) -> Iterator[Sequence[T]]:
    for start in range(0, len(rows), size):
        yield rows[start : start + size]


def _floor(x: float | None) -> int | None:
    return None if x is None else math.floor(x)


def make_engine(url: str) -> AsyncEngine:
    """A pooled engine. SQLite: WAL, enforced foreign keys (as on PostgreSQL), ``power()``, ``floor()``.

    PostgreSQL: no pre-ping. A ping is one more round trip on every checkout, and the call path
    is allowed one; a connection that died in the pool is retried once by the reader instead
    (``ivr.store.customers``), and the writer retries every failed batch anyway.

    Both keep ``POOL_SIZE`` connections open. Why: a caller lookup is one statement, but under a
    burst (or a slow moment) more lookups are in flight than the pool holds, and every connection
    over the pool's size was opened for one lookup and closed after it: a thread, a file and four
    PRAGMAs on SQLite, TCP and SCRAM on PostgreSQL. That made lookups slowest exactly when the
    node was busiest (bench/README.md). Idle connections cost a thread or a server backend each.
    """
    if url.startswith("sqlite"):
        # No rollback on every return to the pool, only when a transaction is open (``_reset``).
        engine = create_async_engine(
            url,
            connect_args={"timeout": 30},
            pool_size=POOL_SIZE,
            max_overflow=POOL_OVERFLOW,
            pool_reset_on_return=None,
        )

        @sa_event.listens_for(engine.sync_engine, "reset")
        def _reset(dbapi_conn: Any, _record: Any, state: PoolResetState) -> None:
            """Roll back a connection coming back to the pool only if SQLite has a transaction open.

            Why: the pool's default rolls back every connection it gets back, and on aiosqlite a
            rollback is a trip to the connection's thread (a queue put, a thread wake-up, a loop
            wake-up) even when there is nothing to roll back, which is nearly always: the caller
            lookup never opens a transaction, and a writer's ``begin()`` has committed. It was one
            of each lookup's two trips (bench/README.md). A connection given back mid-transaction
            (a write cancelled or failed half-way) is still rolled back, so it never keeps the
            write lock. ``in_transaction`` is sqlite3's own flag: no trip to read it.
            """
            if state.asyncio_safe and dbapi_conn.driver_connection.in_transaction:
                dbapi_conn.rollback()

        @sa_event.listens_for(engine.sync_engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:  # WAL: readers never block the writer
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute(f"PRAGMA wal_autocheckpoint={WAL_CHECKPOINT_PAGES}")
            try:
                cur.execute("SELECT power(2, 1), floor(1.5)")  # math functions are a compile-time option
            except Exception:
                dbapi_conn.create_function("power", 2, math.pow, deterministic=True)
                dbapi_conn.create_function("floor", 1, _floor, deterministic=True)
            cur.close()

        return engine
    return create_async_engine(url, pool_size=POOL_SIZE, max_overflow=POOL_OVERFLOW, pool_recycle=1800)


async def in_connection_thread(driver: Any, fn: Callable[..., T], *args: Any) -> T:
    """``fn(sqlite3_connection, *args)`` on an aiosqlite connection's own thread: one trip.

    Why: aiosqlite runs each statement as one trip to that thread; a function that runs several
    statements there makes them one trip. sqlite3 connections refuse use from any other thread,
    so this is the only place such a function can run. ``_execute`` and ``_conn`` are how
    aiosqlite's own public methods do it (0.22 here): every journey writer test fails if a
    release changes them, tests/unit/store/test_sqlite_trips.py first.
    """
    result: T = await driver._execute(fn, driver._conn, *args)
    return result


_JOURNEY_UPDATED = ("flow", "flow_version", "channel", "step", "status", "caller", "customer_id", "data", "updated_at")


_JOURNEY_COLUMNS = ("id", *_JOURNEY_UPDATED[:-1], "started_at", "updated_at")
_INTERACTION_COLUMNS = ("journey_id", "customer_id", "channel", "kind", "step", "data", "at")


class _Statements(NamedTuple):
    journey: Any  # upsert by id
    interaction: Any  # append
    option: Any  # upsert, decayed merge
    slot: Any  # upsert, newest wins
    contact: SumsWriter  # contact rows (KPI merge, ivr.store.kpis) and their sums (ivr.store.kpi_sums)
    #: SQLite: the journey upsert and the interactions' insert as sqlite3's own SQL (see _write_rows)
    sqlite_journey: str | None = None
    sqlite_interaction: str | None = None


def _sqlite_sql(statement: Any, columns: Sequence[str]) -> str:
    """``statement`` compiled once for sqlite3's own ``executemany`` (named parameters)."""
    return str(statement.compile(dialect=sqlite.dialect(paramstyle="named"), column_keys=list(columns)))


class LoggedEvent(NamedTuple):
    """One interaction waiting for the writer, with what the aggregates need from its journey."""

    journey_id: str
    customer_id: str | None
    channel: str
    flow: str
    event: Interaction
    value: str | None  # slot_filled: the value given (None for a secret slot)


def _snapshot(pending: Journey | dict[str, Any]) -> dict[str, Any]:
    return pending.persisted() if isinstance(pending, Journey) else pending


def _slot_value(journey: Journey, event: Interaction) -> str | None:
    if event.kind != "slot_filled":
        return None
    name = event.data.get("slot")
    if not isinstance(name, str) or name in journey.secret_slots:
        return None
    value = journey.slots.get(name)
    if value is None or value == REDACTED or len(str(value)) > MAX_SLOT_VALUE:
        return None
    return str(value)


class JourneyStore:
    """Write-behind store: ``save`` and ``log`` return at once; one writer task commits batches.

    ``batch_delay``: how long a wake-up waits for more saves before it commits. A call saves its
    journey at every step, seconds apart, so every commit carries a slice of all the calls in
    progress: 100 ms instead of 20 ms cut the controller's CPU per menu call by a quarter
    (bench/README.md) for data that reaches the database at most a tenth of a second later.
    Readers of one journey (``get``) see the live or in-flight copy, never an older row.
    ``observe_batch``, when given, is told how long each commit took, failed ones included.
    """

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        batch_delay: float = 0.1,
        half_life_days: float = 30.0,
        observe_batch: Callable[[float], None] | None = None,
        checkpoint_every: float = CHECKPOINT_EVERY_S,
    ) -> None:
        if half_life_days <= 0:
            raise StoreError(f"half-life must be positive, got {half_life_days} days")
        self.engine = engine
        self.half_life = half_life_days * DAY
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)
        #: journey id -> the live journey (snapshotted when the writer runs, so a burst of saves of
        #: one journey costs one snapshot), or a snapshot waiting for a retry after a failed write
        self._pending: dict[str, Journey | dict[str, Any]] = {}
        #: snapshots the writer is committing right now (out of _pending, not yet in the database)
        self._inflight: dict[str, dict[str, Any]] = {}
        self._events: list[LoggedEvent] = []
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._task: asyncio.Task[None] | None = None
        self._batch_delay = batch_delay
        self._observe_batch = observe_batch
        self.commits = 0
        self._stmts: _Statements | None = None
        #: SQLite files: the writer's own checkpoints (``CHECKPOINT_EVERY_S``), and when the last began
        self._checkpoint_every = checkpoint_every if engine.dialect.name == "sqlite" else None
        self._checkpointed_at = time.monotonic()
        self.checkpoints = 0

    async def start(self) -> None:
        """Bring the schema to head (``alembic upgrade head``), then start the writer."""
        await schema.upgrade(self.engine)
        self._task = asyncio.create_task(self._writer(), name="journey-writer")

    async def stop(self) -> None:
        """Flush what is pending (bounded), then stop the writer task and close the pool."""
        if self._task is None:
            return
        try:
            await wait_for(self.flush(), timeout=FLUSH_AT_STOP_S)
        except TimeoutError:
            log.error("journey store: %d journeys not written at shutdown", len(self._pending))
        self._task.cancel()
        # A write inside the driver ends only with its statement (a locked SQLite: the 30 s busy
        # timeout), cancelled or not: wait a moment, then let the process's exit leave it.
        await asyncio.wait([self._task], timeout=1.0)
        self._task = None
        await self.engine.dispose()

    @property
    def backlog(self) -> int:
        """Journeys and events waiting for the writer (it grows while the database is away)."""
        return len(self._pending) + len(self._events)

    async def ping(self) -> None:
        """One ``SELECT 1`` on a pooled connection: raises when the database cannot be reached."""
        async with self.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    def save(self, journey: Journey, events: Sequence[Interaction] = ()) -> None:
        self._pending[journey.id] = journey
        self.log(journey, events)
        self._idle.clear()
        self._wake.set()

    def log(self, journey: Journey, events: Sequence[Interaction]) -> None:
        """Append events to the journey's log without writing the journey itself.

        For services that hold a copy, not the live journey (an agent's disposition): saving
        their copy could overwrite a newer state that the channel saved since.
        """
        for event in events:
            self._events.append(
                LoggedEvent(
                    journey.id, journey.customer_id, journey.channel, journey.flow, event, _slot_value(journey, event)
                )
            )
        if events:
            self._idle.clear()
            self._wake.set()

    def append(self, journey_id: str, customer_id: str | None, channel: str, events: Sequence[Interaction]) -> None:
        """Events for a journey known only by id (an SMS delivery report, a message sent).

        They go through the same writer as everything else, so a database that is down delays
        them instead of losing them, and they never contend with the writer for SQLite's lock.
        They carry no slot values and no flow, so they never touch the aggregates.
        """
        for event in events:
            self._events.append(LoggedEvent(journey_id, customer_id, channel, "", event, None))
        if events:
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
            pending, self._pending = self._pending, {}
            journeys = {jid: _snapshot(j) for jid, j in pending.items()}
            events, self._events = self._events, []
            self._inflight = journeys
            try:
                await self._timed_write(journeys, events)
                self.commits += 1
                backoff = 0.1
                await self._checkpoint_if_due()
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
            finally:
                self._inflight = {}
            if not self._pending and not self._events:
                self._idle.set()

    async def _checkpoint_if_due(self) -> None:
        """``PRAGMA wal_checkpoint(PASSIVE)`` on a pooled connection, one trip, if the last one
        began ``checkpoint_every`` seconds ago; never in the write turn (``CHECKPOINT_EVERY_S``).

        PASSIVE copies what no reader still needs and waits for nobody: writers go on appending
        meanwhile. A checkpoint that fails is logged and tried again at the next interval; the
        WAL only grows meanwhile (and SQLite's backstop, ``WAL_CHECKPOINT_PAGES``, still holds).
        """
        every = self._checkpoint_every
        if every is None or time.monotonic() - self._checkpointed_at < every:
            return
        self._checkpointed_at = time.monotonic()
        try:
            async with self.engine.connect() as conn:
                driver = (await conn.get_raw_connection()).driver_connection
                await driver.execute_fetchall("PRAGMA wal_checkpoint(PASSIVE)")  # type: ignore[union-attr]
            self.checkpoints += 1
        except Exception as exc:  # the data is safe in the WAL: only the copy waits
            log.warning("journey store: WAL checkpoint failed (tried again in %gs): %s", every, exc)

    async def _timed_write(self, journeys: dict[str, dict[str, Any]], events: list[LoggedEvent]) -> None:
        """``_write``, its duration told to ``observe_batch`` (a failure's too: a database that
        times out is exactly what the histogram is for)."""
        started = time.perf_counter()
        try:
            await self._write(journeys, events)
        finally:
            if self._observe_batch is not None:
                self._observe_batch(time.perf_counter() - started)

    def _statements(self) -> _Statements:
        """The writer's four statements, built once per store.

        Why: they run as executemany (one statement, a list of parameter sets), so SQLAlchemy
        compiles each once and caches it. A multi-row ``VALUES (...), (...)`` literal is a new
        statement for every batch size and was recompiled on every commit: it was the largest
        cost in the controller's profile at a hundred calls a second.
        """
        if self._stmts is None:
            insert: Any = postgresql.insert if self.engine.dialect.name == "postgresql" else sqlite.insert
            journey = insert(JourneyRow.__table__)
            journey = journey.on_conflict_do_update(
                index_elements=[JourneyRow.__table__.c.id],
                set_={c: journey.excluded[c] for c in _JOURNEY_UPDATED},
            )
            option = insert(OptionStatRow.__table__)
            option = option.on_conflict_do_update(
                index_elements=[
                    OptionStatRow.__table__.c.customer_id,
                    OptionStatRow.__table__.c.flow,
                    OptionStatRow.__table__.c.step,
                    OptionStatRow.__table__.c.option,
                ],
                set_=merge_option_stats(option.excluded, self.half_life),
            )
            slot = insert(CustomerSlotRow.__table__)
            slot = slot.on_conflict_do_update(
                index_elements=[CustomerSlotRow.__table__.c.customer_id, CustomerSlotRow.__table__.c.slot],
                set_={"value": slot.excluded.value, "channel": slot.excluded.channel, "at": slot.excluded.at},
                where=slot.excluded.at >= CustomerSlotRow.__table__.c.at,
            )
            dialect = self.engine.dialect.name
            contact = SumsWriter(dialect, contact_upsert(dialect), ROWS_PER_STATEMENT)
            interaction = insert(InteractionRow.__table__)
            raw = dialect == "sqlite"
            self._stmts = _Statements(
                journey,
                interaction,
                option,
                slot,
                contact,
                _sqlite_sql(journey, _JOURNEY_COLUMNS) if raw else None,
                _sqlite_sql(interaction, _INTERACTION_COLUMNS) if raw else None,
            )
        return self._stmts

    async def _write(self, journeys: dict[str, dict[str, Any]], events: list[LoggedEvent]) -> None:
        stmts = self._statements()
        journey_rows = [
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
        logged = [
            {
                "journey_id": jid,
                "customer_id": cid,
                "channel": ch,
                "kind": e.kind,
                "step": e.step,
                "data": e.data,
                "at": e.at,
            }
            for jid, cid, ch, _flow, e, _value in events
        ]
        contacts = contact_rows(
            [(jid, ch, e.kind, e.at, e.data, e.step, cid) for jid, cid, ch, _flow, e, _value in events]
        )
        async with writing(self.engine) as conn:
            if stmts.sqlite_journey is not None and stmts.sqlite_interaction is not None:
                driver = (await conn.get_raw_connection()).driver_connection
                await in_connection_thread(driver, self._write_sqlite, stmts, journey_rows, logged, contacts)
            else:
                for rows, statement in ((journey_rows, stmts.journey), (logged, stmts.interaction)):
                    for chunk in chunks(rows):
                        await conn.execute(statement, chunk)
                await stmts.contact.write(conn, contacts)
            if events:
                await self._aggregate(conn, events, stmts)

    @staticmethod
    def _write_sqlite(
        db: sqlite3.Connection,
        stmts: _Statements,
        journeys: list[dict[str, Any]],
        logged: list[dict[str, Any]],
        contacts: list[dict[str, Any]],
    ) -> None:
        """The batch's journeys, interactions and contact rows with their sums, on sqlite3's own
        connection in its thread: one trip for the whole batch, in the writer's transaction
        (sqlite3 begins it with the first statement, ``writing`` commits it).

        Why: each statement through SQLAlchemy and aiosqlite was a trip to this thread (a queue
        put, a wake-up, the rows handed back through the loop's self-pipe, the GIL passed back
        and forth) plus SQLAlchemy's per-row work (parameter processing, the JSON type, result
        rows): most of the writer's CPU per call (bench/README.md). ``data`` is the same JSON
        text SQLAlchemy writes. PostgreSQL keeps SQLAlchemy's path (asyncpg, prepared statements).
        """
        assert stmts.sqlite_journey is not None and stmts.sqlite_interaction is not None
        for rows, sql in ((journeys, stmts.sqlite_journey), (logged, stmts.sqlite_interaction)):
            if rows:
                for row in rows:
                    row["data"] = json.dumps(row["data"])
                db.executemany(sql, rows)
        stmts.contact.write_sqlite(db, contacts)

    async def _aggregate(self, conn: Any, events: list[LoggedEvent], stmts: _Statements) -> None:
        """Fold this batch's choices and slot values into the aggregates (same transaction)."""
        choices: dict[tuple[str, str, str, str], list[float]] = defaultdict(list)
        slots: dict[tuple[str, str], LoggedEvent] = {}
        for logged in events:
            e = logged.event
            if logged.customer_id is None:
                continue
            if e.kind == "option_chosen" and e.step and isinstance(e.data.get("option"), str):
                given = e.data.get("flow")
                flow = given if isinstance(given, str) else logged.flow
                choices[(logged.customer_id, flow, e.step, e.data["option"])].append(e.at)
            elif e.kind == "slot_filled" and logged.value is not None:
                key = (logged.customer_id, str(e.data["slot"]))
                if key not in slots or slots[key].event.at <= e.at:
                    slots[key] = logged
        if not choices and not slots:
            return
        wanted = {k[0] for k in choices} | {k[0] for k in slots}
        # Aggregates reference customers; an id no customer has (a channel's own id, a deleted
        # customer) must not poison the batch: its events stay in the log, it just has no aggregate.
        known: set[str] = set()
        for ids in chunks(sorted(wanted)):
            known.update((await conn.execute(select(CustomerRow.id).where(CustomerRow.id.in_(ids)))).scalars())
        option_rows: list[dict[str, Any]] = []
        for (cid, flow, step, option), times in choices.items():
            t = tally(times, self.half_life)
            if cid in known and t is not None:
                option_rows.append(
                    {
                        "customer_id": cid,
                        "flow": flow,
                        "step": step,
                        "option": option,
                        "count": t.count,
                        "score": t.score,
                        "last_at": t.last_at,
                    }
                )
        for options in chunks(option_rows):
            await conn.execute(stmts.option, options)
        slot_rows: list[dict[str, Any]] = [
            {"customer_id": cid, "slot": slot, "value": e.value, "channel": e.channel, "at": e.event.at}
            for (cid, slot), e in slots.items()
            if cid in known
        ]
        for slot_chunk in chunks(slot_rows):
            await conn.execute(stmts.slot, slot_chunk)

    # ----------------------------------------------------------------------------------- reads
    async def get(self, journey_id: str) -> Journey | None:
        if journey_id in self._pending:
            return Journey.from_dict(_snapshot(self._pending[journey_id]))
        if journey_id in self._inflight:  # the writer may still be serialising it: give a copy
            return Journey.from_dict(copy.deepcopy(self._inflight[journey_id]))
        async with self._sessions() as session:
            row = await session.get(JourneyRow, journey_id)
            return Journey.from_dict(row.data) if row else None

    async def recent(self, limit: int = 20) -> list[Journey]:
        async with self._sessions() as session:
            rows = (await session.scalars(select(JourneyRow).order_by(JourneyRow.updated_at.desc()).limit(limit))).all()
        return [Journey.from_dict(r.data) for r in rows]

    async def queued_on(self, channel: str, since: float) -> list[Journey]:
        """Journeys on ``channel`` that ended waiting for an agent (status ``queued``), last saved
        at or after ``since``: what a new ACD leader looks through for the chats that waited in
        its predecessor's memory."""
        query = select(JourneyRow).where(
            JourneyRow.status == "queued", JourneyRow.channel == channel, JourneyRow.updated_at >= since
        )
        async with self._sessions() as session:
            rows = (await session.scalars(query.order_by(JourneyRow.updated_at))).all()
        return [Journey.from_dict(r.data) for r in rows]

    async def interactions(self, journey_id: str) -> list[dict[str, Any]]:
        async with self._sessions() as session:
            rows = (
                await session.scalars(
                    select(InteractionRow).where(InteractionRow.journey_id == journey_id).order_by(InteractionRow.id)
                )
            ).all()
        return [{"kind": r.kind, "step": r.step, "data": r.data, "at": r.at, "channel": r.channel} for r in rows]


def merge_option_stats(new: Any, half_life: float) -> dict[str, ColumnElement[Any]]:
    """The upsert's SET clause: ``OptionTally.merge`` in SQL (both decayed to the later last_at)."""
    old = OptionStatRow.__table__.c
    two = literal(2.0, Float)
    hl = literal(half_life, Float)
    new_is_later = new.last_at >= old.last_at
    return {
        "count": old.count + new.count,
        "score": case(
            (new_is_later, old.score * func.power(two, (old.last_at - new.last_at) / hl) + new.score),
            else_=old.score + new.score * func.power(two, (new.last_at - old.last_at) / hl),
        ),
        "last_at": case((new_is_later, new.last_at), else_=old.last_at),
    }
