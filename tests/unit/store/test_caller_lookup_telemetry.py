"""What the caller lookup tells operators: every lookup's time (the silence before the first
prompt), and apart from it the time to create a caller seen for the first time. Real SQLite."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from pathlib import Path

import pytest

from ivr.store import customers
from ivr.store.customers import CallerProfiles, CustomerStore
from ivr.store.journeys import JourneyStore, make_engine


async def test_lookups_and_first_call_creations_are_timed_apart(tmp_path: Path) -> None:
    store = JourneyStore(make_engine(f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite3'}"))
    await store.start()  # the schema
    lookups: list[float] = []
    creations: list[float] = []
    profiles = CallerProfiles(
        CustomerStore(store.engine), timeout=5.0, observe_lookup=lookups.append, observe_create=creations.append
    )
    try:
        first = await profiles.load("+15551230001")  # unknown: created
        again = await profiles.load("+15551230001")  # known now: one statement
        assert first is not None and again is not None and again.customer_id == first.customer_id
        assert await profiles.load(None) is None  # withheld: no lookup at all
        assert len(lookups) == 2 and len(creations) == 1
        assert all(0 < t < 5 for t in lookups + creations)
        assert creations[0] <= lookups[0]  # the creation is part of that call's lookup
    finally:
        await store.stop()


async def test_failed_lookups_log_one_line_then_count(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A database that cannot be opened fails every lookup: each call goes on as an unknown
    caller, every failure is counted, and only the first is logged within LOG_EVERY."""
    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'missing' / 'db.sqlite3'}")  # no such folder
    lookups: list[float] = []
    profiles = CallerProfiles(CustomerStore(engine), timeout=5.0, observe_lookup=lookups.append)
    try:
        with caplog.at_level(logging.ERROR, logger="ivr.store.customers"):
            for n in range(5):
                assert await profiles.load(f"+1555123000{n}") is None
        assert profiles.failures == 5 and len(lookups) == 5
        lines = [r.getMessage() for r in caplog.records if r.name == "ivr.store.customers"]
        assert len(lines) == 1 and "+15551230000 failed, continuing as an unknown caller" in lines[0]
        profiles._logged_at -= customers.LOG_EVERY  # the next window
        caplog.clear()
        with caplog.at_level(logging.ERROR, logger="ivr.store.customers"):
            assert await profiles.load("+15551230009") is None
        lines = [r.getMessage() for r in caplog.records if r.name == "ivr.store.customers"]
        assert len(lines) == 1 and lines[0].endswith("(4 more lookups failed since the last line)")
    finally:
        await engine.dispose()


async def test_a_first_call_never_waits_out_a_locked_database_and_the_caller_is_created_anyway(
    tmp_path: Path,
) -> None:
    """Another writer holds SQLite's write lock for 2 s while a new number calls: the call waits
    only its lookup timeout and goes on as an unknown caller (before, cancelling the INSERT made
    it wait for the lock, then the next lookups too); the creation finishes by itself once the
    lock is free, so the number is a known customer afterwards, and stop() awaits it."""
    db = tmp_path / "db.sqlite3"
    store = JourneyStore(make_engine(f"sqlite+aiosqlite:///{db}"))
    await store.start()
    customers_ = CustomerStore(store.engine)
    profiles = CallerProfiles(customers_, timeout=0.3)
    holder = sqlite3.connect(db, isolation_level=None, check_same_thread=False)
    try:
        holder.execute("BEGIN IMMEDIATE")  # the write lock, as a long journey batch would hold it
        started = time.perf_counter()
        assert await profiles.load("+15551230042") is None
        assert time.perf_counter() - started < 1.5
        assert profiles.failures == 1
        await asyncio.sleep(2.0 - (time.perf_counter() - started))
        holder.execute("COMMIT")
        await profiles.stop()  # the creation, still in progress, is awaited
        assert await customers_.find("phone", "+15551230042") is not None
        known = await profiles.load("+15551230042")
        assert known is not None and known.customer_id == await customers_.find("phone", "+15551230042")
    finally:
        holder.close()
        await profiles.stop()
        await store.stop()
