"""Trips to aiosqlite's connection thread on the call path, counted on a real SQLite file.

Each trip is a queue put, a thread wake-up and an event-loop wake-up: on a loaded controller the
main thread's share of them was the largest item of a call's CPU (bench/README.md).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import math
import sqlite3
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiosqlite.core
import pytest

from ivr.errors import StoreError
from ivr.flow.journey import Interaction, Journey
from ivr.kpis import DIMENSIONS, ReportRequest
from ivr.store import kpis as kpis_store
from ivr.store import loop_reads
from ivr.store.customers import CallerProfiles, CustomerStore, _IdentityTaken
from ivr.store.journeys import WAL_CHECKPOINT_PAGES, JourneyStore, make_engine
from ivr.store.kpi_sums import SumsWriter
from ivr.store.kpis import KpiStore
from ivr.store.turns import turn_of

T0 = 1_764_748_800.0  # 2025-12-03T08:00:00Z


def roomy(customers: CustomerStore) -> CustomerStore:
    """Loop reads and writes with a budget no preemption reaches: these tests count trips, and a
    statement preempted past 0.5 ms on a busy machine rightly steps aside (one trip more)."""
    for connection in (customers.loop_reads, customers.loop_writes):
        assert connection is not None
        connection.budget = 10.0
    return customers


@pytest.fixture
def trips(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """The name of every function aiosqlite runs on a connection's thread (the real one runs)."""
    seen: list[str] = []
    real = aiosqlite.core.Connection._execute

    async def counted(self: aiosqlite.core.Connection, fn: Any, *args: Any, **kwargs: Any) -> Any:
        seen.append(getattr(fn, "__name__", type(fn).__name__))
        return await real(self, fn, *args, **kwargs)  # type: ignore[no-untyped-call]

    monkeypatch.setattr(aiosqlite.core.Connection, "_execute", counted)
    yield seen


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[JourneyStore]:
    # no checkpoint of the writer's own between the trips these tests count
    journeys = JourneyStore(make_engine(f"sqlite+aiosqlite:///{tmp_path / 'ivr.sqlite3'}"), checkpoint_every=math.inf)
    await journeys.start()
    yield journeys
    await journeys.stop()


async def test_the_engines_connections_checkpoint_late_and_the_loops_never(store: JourneyStore) -> None:
    """A checkpoint copies the WAL into the database file: the engine's connections do it (off
    the loop), rarely enough that a page changed in every batch is copied once, not once per
    batch; the loop's writer never does it (it would stall every call for as long)."""
    async with store.engine.connect() as conn:
        driver = (await conn.get_raw_connection()).driver_connection
        (pages,), (mode,) = [
            row
            for sql in ("PRAGMA wal_autocheckpoint", "PRAGMA journal_mode")
            for row in await driver.execute_fetchall(sql)  # type: ignore[union-attr]
        ]
    assert (pages, mode) == (WAL_CHECKPOINT_PAGES, "wal")
    assert pages > 1000  # SQLite's default
    customers = CustomerStore(store.engine)
    assert customers.loop_writes is not None
    assert customers.create_now("+15550001234") is not None
    loops = customers.loop_writes._conn
    assert loops is not None
    assert loops.execute("PRAGMA wal_autocheckpoint").fetchone() == (0,)
    customers.close()


async def test_the_writer_checkpoints_after_its_batch_in_one_trip_and_outside_the_write_turn(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The batch's rows reach the database file itself (read here ignoring the WAL) at the
    writer's checkpoint, which takes one trip of its own after the commit, with the write turn
    free: a first caller's creation or the ACD lease never waits for it."""
    path = tmp_path / "ivr.sqlite3"
    store = JourneyStore(make_engine(f"sqlite+aiosqlite:///{path}"), checkpoint_every=0.0)
    await store.start()
    turn_free_at_trip: list[tuple[str, bool]] = []
    counted = aiosqlite.core.Connection._execute

    async def noting(self: aiosqlite.core.Connection, fn: Any, *args: Any, **kwargs: Any) -> Any:
        turn = turn_of(store.engine)
        assert turn is not None
        turn_free_at_trip.append((getattr(fn, "__name__", ""), turn.free))
        return await counted(self, fn, *args, **kwargs)  # type: ignore[no-untyped-call]

    monkeypatch.setattr(aiosqlite.core.Connection, "_execute", noting)
    try:
        store.save(Journey("call-0", "bench", "v1", "voice"), [Interaction("journey_started", "hello", {}, T0)])
        await store.flush()
        batch = list(turn_free_at_trip)  # (what follows is the pool's closing at stop)
    finally:
        await store.stop()
    assert batch == [("_write_sqlite", False), ("commit", False), ("_execute_fetchall", True)]
    assert store.checkpoints == 1
    database_file_alone = sqlite3.connect(f"file:{path}?immutable=1", uri=True)
    try:
        assert database_file_alone.execute("SELECT id FROM journeys").fetchall() == [("call-0",)]
    finally:
        database_file_alone.close()


async def test_a_failed_checkpoint_costs_nothing_but_a_log_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The data is in the WAL already: the batch stays committed, the writer goes on, and the
    next interval tries again."""
    store = JourneyStore(make_engine(f"sqlite+aiosqlite:///{tmp_path / 'ivr.sqlite3'}"), checkpoint_every=0.0)
    await store.start()
    real = aiosqlite.core.Connection.execute_fetchall

    async def failing(self: aiosqlite.core.Connection, sql: str, *args: Any) -> Any:
        if "wal_checkpoint" in sql:
            raise sqlite3.OperationalError("disk I/O error")
        return await real(self, sql, *args)

    monkeypatch.setattr(aiosqlite.core.Connection, "execute_fetchall", failing)
    try:
        for n in range(2):
            store.save(Journey(f"call-{n}", "bench", "v1", "voice"), [])
            await store.flush()
        assert (await store.get("call-0")) is not None and store.commits == 2 and store.checkpoints == 0
        assert store.backlog == 0
    finally:
        await store.stop()
    failures = [r for r in caplog.records if "WAL checkpoint failed" in r.getMessage()]
    assert len(failures) == 2 and "disk I/O error" in failures[0].getMessage()


async def test_a_known_callers_lookup_takes_no_trip_and_one_when_the_loop_read_steps_aside(
    store: JourneyStore, trips: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The profile statement runs on the loop's thread (ivr.store.loop_reads). A read that
    cannot be quick (here: interrupted at once, as one over its budget is) takes the threaded
    path: one trip, and no rollback when the connection goes back to the pool, since the lookup
    opened no transaction (before: a second trip, for nothing)."""
    customers = roomy(CustomerStore(store.engine))
    profiles = CallerProfiles(customers)
    first = await profiles.load("+15551230001")  # created
    trips.clear()
    again = await profiles.load("+15551230001")
    assert first is not None and again is not None and again.customer_id == first.customer_id
    assert trips == []
    assert customers.loop_reads is not None and customers.loop_reads.served == 2  # the miss, then the hit

    slow = CustomerStore(store.engine)
    monkeypatch.setattr(loop_reads, "CHECK_EVERY", 1)  # read when its connection opens
    assert slow.loop_reads is not None
    slow.loop_reads.budget = -1.0  # every statement is over its budget
    aside = await CallerProfiles(slow).load("+15551230001")
    assert aside is not None and aside.customer_id == first.customer_id
    assert trips == ["_execute_fetchall"] and slow.loop_reads.stepped_aside == 1
    customers.close()
    slow.close()


async def test_a_connection_given_back_mid_transaction_is_rolled_back(store: JourneyStore, tmp_path: Path) -> None:
    """A write abandoned half-way must not keep SQLite's write lock in the pool: any other writer
    (here another process's, which waits for nothing) gets it at once."""
    async with store.engine.connect() as conn:  # behind SQLAlchemy's back, as a cancelled write leaves it
        raw = (await conn.get_raw_connection()).driver_connection
        assert isinstance(raw, aiosqlite.Connection)
        await raw.execute("BEGIN IMMEDIATE")
        assert raw.in_transaction
    other = sqlite3.connect(tmp_path / "ivr.sqlite3", timeout=0, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")  # "database is locked" if the pool still held it
        other.execute("ROLLBACK")
    finally:
        other.close()


async def test_a_first_callers_creation_takes_no_trip_and_three_when_another_process_writes(
    store: JourneyStore, trips: list[str], tmp_path: Path
) -> None:
    """The customer, their number, the commit: on the loop's thread in the write turn, no trip.
    When another process holds SQLite's write lock, the loop's transaction steps aside at once
    (it never waits on the loop) and the threaded path waits for the lock: one trip each
    (before: seven, three per statement through SQLAlchemy's adapter and a rollback on return).
    Still one transaction either way: a number that is taken leaves no customer behind."""
    customers = roomy(CustomerStore(store.engine))
    other = sqlite3.connect(tmp_path / "ivr.sqlite3", timeout=0, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    creating = asyncio.create_task(customers.create(phones=["+15551230009"]))
    async with asyncio.timeout(10):
        while not trips:  # noqa: ASYNC110 - the loop's try stepped aside; the threaded path waits for the lock
            await asyncio.sleep(0.01)
    assert customers.loop_writes is not None and customers.loop_writes.stepped_aside == 1
    other.execute("ROLLBACK")
    other.close()
    await creating
    assert trips == ["execute", "execute", "commit"]
    trips.clear()
    customer_id = await customers.create(phones=["+15551230001"])
    assert trips == [] and customers.loop_writes.served == 1
    assert await customers.find("phone", "+15551230001") == customer_id
    profiles = CallerProfiles(customers)
    assert (profile := await profiles.load("+15551230001")) is not None and profile.customer_id == customer_id
    with pytest.raises(_IdentityTaken):
        await customers.create(name="Second", phones=["+15551230001"])
    async with store.engine.connect() as conn:
        names = (await conn.exec_driver_sql("SELECT display_name FROM customers")).scalars().all()
    assert names == [None, None]
    await customers.create(crm_id="C1", phones=["+15551230002"])
    with pytest.raises(StoreError, match="cannot create customer"):  # a CRM id another customer has
        await customers.create(crm_id="C1")
    customers.close()


async def test_a_first_caller_is_created_at_once_while_the_turn_is_free_and_in_turn_while_it_is_not(
    store: JourneyStore, trips: list[str]
) -> None:
    """With the write turn free, a new number's customer is created right in the lookup, on the
    loop's thread: no task of its own, no timeout, no trip. While another writer of this process
    holds the turn, the creation waits for it in its own task, as before, and lands after."""
    customers = roomy(CustomerStore(store.engine))
    timed: list[float] = []
    profiles = CallerProfiles(customers, observe_create=timed.append)
    started: list[str] = []
    real = profiles._start_creation

    def start_creation(number: str) -> asyncio.Task[str]:
        started.append(number)
        return real(number)

    profiles._start_creation = start_creation  # type: ignore[method-assign]
    first = await profiles.load("+15551230001")
    assert (started, trips, len(timed)) == ([], [], 1)
    assert first is not None and await customers.find("phone", "+15551230001") == first.customer_id
    assert customers.loop_writes is not None and customers.loop_writes.served == 1

    turn = turn_of(store.engine)
    assert turn is not None
    await turn.acquire()  # another writer of this process (the journey writer's batch, say)
    try:
        loading = asyncio.create_task(profiles.load("+15551230002"))
        await asyncio.sleep(0.05)
        assert not loading.done() and started == ["+15551230002"]
    finally:
        turn.release()
    second = await loading
    assert second is not None and await customers.find("phone", "+15551230002") == second.customer_id
    assert second.customer_id != first.customer_id and customers.loop_writes.served == 2 and len(timed) == 2
    again = await profiles.load("+15551230001")
    assert again is not None and again.customer_id == first.customer_id and len(started) == 1
    customers.close()


async def test_a_journey_writers_batch_is_one_trip_and_a_commit(
    store: JourneyStore, trips: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The journey writer's batch of a short call's steps: one trip to the connection's thread
    runs every statement (journeys and interactions as sqlite3's own executemany, the contact
    rows read, their merge giving the merged rows back, the sums), then the commit. Before: seven
    statements and twenty-four trips (a claim of empty rows to lock and a read after the merge;
    SQLite's one writer needs neither), then eighteen (three trips per executemany through
    SQLAlchemy's adapter), then fourteen (a trip or more per statement). A handled contact adds
    its waits, one statement more in the same trip."""
    statements: list[str] = []
    real = JourneyStore._write_sqlite

    def traced(db: sqlite3.Connection, *args: Any) -> None:
        """The real batch, with sqlite3's trace on for it (it runs on the connection's thread)."""
        db.set_trace_callback(statements.append)
        try:
            real(db, *args)
        finally:
            db.set_trace_callback(None)

    monkeypatch.setattr(JourneyStore, "_write_sqlite", staticmethod(traced))
    journeys = [Journey(f"call-{n}", "bench", "v1", "voice", caller=f"+1555123000{n}") for n in range(3)]
    for step, kind in enumerate(("journey_started", "journey_completed")):
        for journey in journeys:
            store.save(journey, [Interaction(kind, "hello", {"flow": "bench"}, T0 + step)])
        trips.clear()
        statements.clear()
        await store.flush()
        assert trips == ["traced", "commit"], trips
        # sqlite3's trace shows an executemany's every row: runs of one statement, in this order
        kinds = [" ".join(s.split()[:3]) if s.startswith("INSERT") else s.split()[0] for s in statements]
        runs = [(kind, len(list(run))) for kind, run in itertools.groupby(kinds)]
        assert runs[:-1] == [
            ("BEGIN", 1),
            ("INSERT INTO journeys", 3),
            ("INSERT INTO interactions", 3),
            ("SELECT", 1),  # the contact rows as they were
            ("INSERT INTO contact_facts", 3),  # the merge, one RETURNING each
        ], runs
        assert runs[-1][0] == "INSERT INTO kpi_sums", runs  # the groups whose sums moved
    async with store.engine.connect() as conn:
        stored = (await conn.exec_driver_sql("SELECT id, step, data FROM journeys ORDER BY id")).all()
        logged = (await conn.exec_driver_sql("SELECT journey_id, kind, data, at FROM interactions ORDER BY id")).all()
    assert [(r.id, r.step) for r in stored] == [(f"call-{n}", None) for n in range(3)]
    assert json.loads(stored[0].data) == journeys[0].persisted()  # the JSON that reads back as it was
    assert [tuple(r) for r in logged[:1]] == [("call-0", "journey_started", '{"flow": "bench"}', T0)]
    assert len(logged) == 6
    assert (await store.get("call-1")) is not None
    async with store.engine.connect() as conn:
        rows = (await conn.exec_driver_sql("SELECT ended, started_at FROM contact_facts")).all()
        contacts = (await conn.exec_driver_sql("SELECT sum(contacts) FROM kpi_sums WHERE dim = 'all'")).scalar()
    assert [tuple(r) for r in rows] == [("completed", T0)] * 3 and contacts == 3


async def test_a_batch_that_fails_half_way_through_its_trip_leaves_nothing_and_is_written_once_later(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The one trip runs several statements in the writer's transaction: a failure after the
    journeys and interactions went in (here the sums' step, as a full disk or a corrupt page
    would) rolls all of them back, and the writer's retry writes the batch exactly once."""
    store = JourneyStore(make_engine(f"sqlite+aiosqlite:///{tmp_path / 'ivr.sqlite3'}"), batch_delay=0.0)
    await store.start()
    real = SumsWriter.write_sqlite
    failures: list[int] = []

    def failing(self: SumsWriter, db: sqlite3.Connection, contacts: Any) -> None:
        if not failures:
            failures.append(db.execute("SELECT count(*) FROM interactions").fetchone()[0])
            raise sqlite3.OperationalError("database or disk is full")
        real(self, db, contacts)

    monkeypatch.setattr(SumsWriter, "write_sqlite", failing)
    try:
        journey = Journey("call-1", "bench", "v1", "voice", caller="+15551230001")
        store.save(journey, [Interaction("journey_started", "hello", {"flow": "bench"}, T0)])
        async with asyncio.timeout(10):
            await store.flush()  # the first write fails, the retry (0.1 s later) succeeds
        assert failures == [1]  # the interaction was in the transaction when it failed
        async with store.engine.connect() as conn:
            counts = [
                (await conn.exec_driver_sql(f"SELECT count(*) FROM {table}")).scalar()
                for table in ("journeys", "interactions", "contact_facts")
            ]
            contacts = (await conn.exec_driver_sql("SELECT sum(contacts) FROM kpi_sums WHERE dim = 'all'")).scalar()
        assert counts == [1, 1, 1] and contacts == 1
    finally:
        await store.stop()


async def test_a_kpi_report_is_one_trip_per_statement_with_sqlalchemys_figures(
    store: JourneyStore, trips: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The wallboard's reports run every 5 s on every node: each statement is one trip to the
    connection's thread, not SQLAlchemy's five, and gives the rows SQLAlchemy gives, by every
    grouping, from the quarter hours' sums and from the contact rows at a window's ends."""
    for n in range(12):
        events = [Interaction("journey_started", "hello", {"flow": "bench"}, T0 + n)]
        if n % 3:
            events.append(Interaction("queued", "agent", {"queue": f"q{n % 2}", "skill": "billing"}, T0 + n + 1))
        if n % 4 == 0:
            events.append(Interaction("agent_connected", "agent", {"agent": "a1"}, T0 + n + 20))
        events.append(Interaction("journey_completed" if n % 2 else "journey_abandoned", "agent", {}, T0 + n + 60))
        store.append(f"call-{n:02}", "cust-1" if n < 6 else None, "voice", events)
    await store.flush()
    kpis = KpiStore(store.engine)
    requests = [ReportRequest(T0 - 3600, T0 + 7200, by) for by in DIMENSIONS]  # slots and both ends
    requests.append(ReportRequest(T0 - 900, T0 + 900, "queue", split_holdout=True))
    await asyncio.gather(*(kpis.report(request) for request in requests))  # the pool's connections opened
    trips.clear()
    one_trip_each = [await kpis.report(request) for request in requests]
    assert set(trips) == {"_execute_fetchall"}, trips
    monkeypatch.setattr(kpis_store, "_sqlite_query", lambda *_: None)  # SQLAlchemy's own path
    assert one_trip_each == [await kpis.report(request) for request in requests]
    assert sum(row.figures.offered for row in one_trip_each[DIMENSIONS.index("queue")]) == 8
