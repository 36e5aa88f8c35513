"""Trips to aiosqlite's connection thread on the call path, counted on a real SQLite file.

Each trip is a queue put, a thread wake-up and an event-loop wake-up: on a loaded controller the
main thread's share of them was the largest item of a call's CPU (bench/README.md).
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiosqlite.core
import pytest
from sqlalchemy import event as sa_event

from ivr.errors import StoreError
from ivr.flow.journey import Interaction, Journey
from ivr.store.customers import CallerProfiles, CustomerStore, _IdentityTaken
from ivr.store.journeys import JourneyStore, make_engine

T0 = 1_764_748_800.0  # 2025-12-03T08:00:00Z


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
    journeys = JourneyStore(make_engine(f"sqlite+aiosqlite:///{tmp_path / 'ivr.sqlite3'}"))
    await journeys.start()
    yield journeys
    await journeys.stop()


async def test_a_known_callers_lookup_is_one_trip(store: JourneyStore, trips: list[str]) -> None:
    """The profile statement, and no rollback when the connection goes back to the pool: the
    lookup opened no transaction (before: a second trip, for nothing)."""
    profiles = CallerProfiles(CustomerStore(store.engine))
    first = await profiles.load("+15551230001")  # created
    trips.clear()
    again = await profiles.load("+15551230001")
    assert first is not None and again is not None and again.customer_id == first.customer_id
    assert trips == ["_execute_fetchall"]


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


async def test_a_first_callers_creation_is_three_trips(store: JourneyStore, trips: list[str]) -> None:
    """The customer, their number, the commit: one trip each (before: seven, three per statement
    through SQLAlchemy's adapter and a rollback on return). Still one transaction: a number that
    is taken leaves no customer behind."""
    customers = CustomerStore(store.engine)
    customer_id = await customers.create(phones=["+15551230001"])
    assert trips == ["execute", "execute", "commit"]
    assert await customers.find("phone", "+15551230001") == customer_id
    profiles = CallerProfiles(customers)
    assert (profile := await profiles.load("+15551230001")) is not None and profile.customer_id == customer_id
    with pytest.raises(_IdentityTaken):
        await customers.create(name="Second", phones=["+15551230001"])
    async with store.engine.connect() as conn:
        names = (await conn.exec_driver_sql("SELECT display_name FROM customers")).scalars().all()
    assert names == [None]
    await customers.create(crm_id="C1", phones=["+15551230002"])
    with pytest.raises(StoreError, match="cannot create customer"):  # a CRM id another customer has
        await customers.create(crm_id="C1")


async def test_a_journey_writers_batch_is_five_statements_and_eighteen_trips(
    store: JourneyStore, trips: list[str]
) -> None:
    """The journey writer's batch of a short call's steps, statement by statement: journeys,
    interactions, the contact rows read, their merge (which gives the merged rows back: no read
    after it), the sums, one commit. Before: seven statements and twenty-four trips (a claim of
    empty rows to lock and a read after the merge; SQLite's one writer needs neither).
    A handled contact adds its waits, the eighth statement."""
    statements: list[str] = []

    def seen(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        words = statement.split()
        statements.append(" ".join(words[:3]) if words[0] == "INSERT" else f"SELECT {words[words.index('FROM') + 1]}")

    sa_event.listen(store.engine.sync_engine, "before_cursor_execute", seen)
    journeys = [Journey(f"call-{n}", "bench", "v1", "voice", caller=f"+1555123000{n}") for n in range(3)]
    for step, kind in enumerate(("journey_started", "journey_completed")):
        for journey in journeys:
            store.save(journey, [Interaction(kind, "hello", {"flow": "bench"}, T0 + step)])
        trips.clear()
        statements.clear()
        await store.flush()
        assert statements == [
            "INSERT INTO journeys",
            "INSERT INTO interactions",
            "SELECT contact_facts",
            "INSERT INTO contact_facts",
            "INSERT INTO kpi_sums",
        ], step
        # executemany: cursor, executemany, close; a statement with rows: cursor, execute, fetchall, close
        assert len(trips) == 18 and trips[-1] == "commit", trips
    async with store.engine.connect() as conn:
        rows = (await conn.exec_driver_sql("SELECT ended, started_at FROM contact_facts")).all()
        contacts = (await conn.exec_driver_sql("SELECT sum(contacts) FROM kpi_sums WHERE dim = 'all'")).scalar()
    assert [tuple(r) for r in rows] == [("completed", T0)] * 3 and contacts == 3
