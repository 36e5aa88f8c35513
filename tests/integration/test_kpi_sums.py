"""The sums the writer keeps per 15 minutes give every report exactly as the contact rows do, on
SQLite and PostgreSQL: a seeded random log of a few hundred journeys (every KPI event kind, facts
that change in later batches, customers named late, starts logged after later events, two writers
at once on overlapping journeys), then every grouping, split, flow filter and interval, over
windows on slot boundaries (sums alone) and off them (sums plus contact rows), compared figure by
figure with ``KpiStore.report_from_contacts``. Then the migration's rebuild of the sums from the
contact rows gives the rows the writer kept.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from sqlalchemy import event, select

from ivr.flow.model import Interaction
from ivr.kpis import DIMENSIONS, INTERVALS, ReportRequest, ReportRow
from ivr.store import schema
from ivr.store.journeys import JourneyStore, make_engine
from ivr.store.kpi_sums import SumsWriter
from ivr.store.kpis import KpiStore
from ivr.store.models import ContactFactRow, KpiSums, KpiWaits

T0 = 1_764_720_000.0  # 2025-12-03T00:00:00Z
SEED = 20261203
JOURNEYS = 300
CUSTOMERS = [f"c{i}" for i in range(25)]

Batch = tuple[str, str | None, str, list[Interaction]]  # journey, customer, channel, events
#: an agent transfer's mode and outcome, as ivr.acd.transfers logs them (two took, four did not)
TRANSFER_OUTCOMES = [
    ("blind", "transferred"),
    ("consult", "completed"),
    ("consult", "cancelled"),
    ("consult", "caller_hung_up"),
    ("consult", "target_failed"),
    ("consult", "target_hung_up"),
]


def outbound_call(rng: random.Random, start: float) -> list[tuple[str, float, dict[str, Any], str | None]]:
    """A click-to-call journey as ivr.acd.outbound logs it: answered by the customer or not."""
    agent = rng.choice(["ag1", "ag2", "ag3"])
    events: list[tuple[str, float, dict[str, Any], str | None]] = [
        ("journey_started", start, {"flow": "outbound", "direction": "outbound"}, None),
        ("outbound_call", start, {"agent_id": agent, "to_number": "+15551230005"}, None),
    ]
    if rng.random() < 0.6:
        events.append(("outbound_answered", start + rng.uniform(3, 30), {}, None))
    else:
        events.append(("outbound_failed", start + rng.uniform(3, 30), {"why": "no answer"}, None))
    events.append(("agent_completed", start + rng.uniform(31, 300), {"agent_id": agent, "by": "agent"}, None))
    return events


def journey_log(rng: random.Random, n: int) -> list[Batch]:
    """Each journey's events in one to three batches, batches of all journeys shuffled."""
    batches: list[Batch] = []
    for i in range(n):
        jid = f"j{i}"
        channel = rng.choice(["voice", "voice", "chat", "sms"])
        start = T0 + rng.uniform(-86400, 86400) if rng.random() < 0.8 else T0 + rng.randrange(-96, 96) * 900.0
        at = start
        events: list[tuple[str, float, dict[str, Any], str | None]] = [
            ("journey_started", start, {"flow": rng.choice(["support", "sales"])}, None)
        ]

        def later(low: float = 0.5, high: float = 30.0) -> float:
            nonlocal at
            at += rng.choice([rng.uniform(low, high), float(rng.randint(1, 25))])
            return at

        if rng.random() < 0.1:  # a click-to-call: no flow ran, the agent called out
            events, channel = outbound_call(rng, start), "voice"
        else:
            if rng.random() < 0.6:
                events.append(("menu_personalized", later(), {"holdout": rng.choice([True, False, None])}, None))
            for _ in range(rng.randint(0, 3)):
                status, mode = rng.choice(["nomatch", "noinput", "match"]), rng.choice(["dtmf", "speech", "text"])
                if mode == "speech" and status != "noinput":
                    events.append(("intent_recognised", later(), {"status": status}, None))
                events.append(("input_rejected", later(), {"status": status, "mode": mode}, None))
            if rng.random() < 0.2:
                events.append(("tries_exhausted", later(), rng.choice([{}, {"status": "noinput"}]), None))
            if rng.random() < 0.3:
                events.append(("confirmation_asked", later(), {}, None))
                events.append(("confirmation_answered", later(), {"confirmed": rng.random() < 0.7}, None))
            if rng.random() < 0.7:
                data = {"position": rng.randint(1, 3), "mode": rng.choice(["dtmf", "speech", None])}
                events.append(("option_chosen", later(), data, None))
            roll = rng.random()
            if roll < 0.5:
                queue = rng.choice(["billing", "support", "sales"])
                data = {"queue": queue, "skill": queue, "intent": rng.choice(["agent", "billing", None])}
                events.append(("queued", later(), data, None))
                events.append(("journey_queued", at, {}, "to_queue"))
                fate = rng.random()
                if fate < 0.6:
                    kind = "agent_connected" if channel == "voice" else "chat_offered"
                    events.append((kind, later(1, 60), {"agent_id": rng.choice(["ag1", "ag2", "ag3"])}, None))
                    for _ in range(rng.choice([0, 0, 1, 2])):  # the agent transfers it (or tries to)
                        mode, outcome = rng.choice(TRANSFER_OUTCOMES)
                        events.append(("agent_transfer", later(5, 120), {"mode": mode, "outcome": outcome}, None))
                    if rng.random() < 0.8:
                        events.append(("agent_completed", later(10, 300), {}, None))
                elif fate < 0.85:
                    events.append(("queue_abandoned", later(1, 90), {}, None))
            elif roll < 0.6:
                events.append(("transferred", later(), {"to": "+15550100"}, None))
                events.append(("journey_completed", at, {}, "transfer"))
            elif roll < 0.7:
                events.append(("handed_off", later(), {"to": rng.choice(["sms", "chat"])}, None))
                events.append(("journey_handed_off", at, {}, "offer_sms"))
                if rng.random() < 0.7:
                    events.append(("link_opened", later(), {}, None))
                    if rng.random() < 0.7:
                        events.append(("channel_changed", later(), {"via": "link"}, None))
                        if rng.random() < 0.7:
                            events.append(("journey_completed", later(), {}, "goodbye"))
            elif roll < 0.8:
                events.append(("callback_requested", later(), {"ticket": jid}, None))
                for _ in range(rng.randint(0, 2)):
                    events.append(("callback_dialled", later(10, 600), {}, None))
                events.append(
                    rng.choice([("callback_connected", later(), {}, None), ("callback_failed", later(), {}, None)])
                )
            else:
                end = rng.choice(["completed", "abandoned", "failed"])
                events.append((f"journey_{end}", later(), {}, rng.choice(["goodbye", "main_menu", None])))
        customer = rng.choice(CUSTOMERS) if rng.random() < 0.7 else None
        cuts = sorted(rng.sample(range(1, len(events)), min(len(events) - 1, rng.randint(0, 2))))
        parts = [events[a:b] for a, b in zip([0, *cuts], [*cuts, len(events)], strict=True)]
        for k, part in enumerate(parts):
            named = customer if k > 0 or rng.random() < 0.7 else None  # sometimes known only later
            batches.append((jid, named, channel, [Interaction(e[0], e[3], e[2], e[1]) for e in part]))
    rng.shuffle(batches)
    return batches


@pytest.fixture
async def stores(database_url: str) -> AsyncIterator[tuple[JourneyStore, JourneyStore]]:
    """Two writers on one database (two nodes), each with its own pool."""
    first = JourneyStore(make_engine(database_url), batch_delay=0.0)
    await first.start()
    second = JourneyStore(make_engine(database_url), batch_delay=0.0)
    await second.start()
    yield first, second
    await second.stop()
    await first.stop()


def same(got: list[ReportRow], want: list[ReportRow]) -> None:
    assert [(r.key, r.holdout) for r in got] == [(r.key, r.holdout) for r in want]
    for g, w in zip(got, want, strict=True):
        expected = {
            k: pytest.approx(v, rel=1e-9, abs=1e-9) if isinstance(v, float) else v
            for k, v in w.figures.to_dict().items()
        }
        assert g.figures.to_dict() == expected, (g.by, g.key, g.holdout)


async def test_the_sums_give_every_report_the_contacts_give(stores: tuple[JourneyStore, JourneyStore]) -> None:
    first, second = stores
    for i, (jid, customer, channel, events) in enumerate(journey_log(random.Random(SEED), JOURNEYS)):
        (first if i % 2 else second).append(jid, customer, channel, events)
        if i % 7 == 0:  # let the two writers commit in between, in small interleaved batches
            await asyncio.sleep(0)
    await asyncio.gather(first.flush(), second.flush())
    kpis = KpiStore(first.engine)
    contacts = await kpis.contacts(T0 - 2 * 86400, T0 + 2 * 86400)
    assert len(contacts) == JOURNEYS
    assert sum(c.handled for c in contacts) > 30 and sum(c.customer_id is not None for c in contacts) > 150
    assert sum(c.agent_transfers_blind for c in contacts) > 5 and sum(c.agent_transfers_consult for c in contacts) > 5
    assert sum(c.outbound for c in contacts) > 10 and sum(c.outbound_answered for c in contacts) > 5

    windows = [
        (T0 - 86400, T0 + 86400),  # whole slots: all from the sums
        (T0 - 86400 + 123.5, T0 + 86400 - 77.25),  # ragged ends: sums plus contact rows
        (T0 + 100, T0 + 800),  # inside one slot: contact rows alone
    ]
    checked = 0
    for start, end in windows:
        for by in DIMENSIONS if start != T0 + 100 else ("queue",):
            for split, flow in ((False, None), (True, "support")):
                for interval in INTERVALS if by == "interval" else ("hour",):
                    request = ReportRequest(start, end, by, interval, split, flow)
                    # 20 s: the default; 7 s: a threshold amid the whole-second waits
                    for level in (20.0, 7.0) if by in ("queue", "interval") else (20.0,):
                        want = await kpis.report_from_contacts(request, service_level_s=level)
                        same(await kpis.report(request, service_level_s=level), want)
                        checked += len(want)
    assert checked > 300

    # the migration's rebuild from the contact rows gives the rows the writer kept
    # (from before the sums: the downgrade passes through 0015's, and the upgrade fills the
    # transfer and click-to-call facts from the log and builds the sums with a call out under its agent)
    kept = await _tables(first)
    assert any(key[0] == "agent" and key[3] == "outbound" and key[2] != "-" for key in kept[0])
    async with first.engine.begin() as conn:
        await conn.run_sync(lambda c: _alembic(c, "downgrade", "0010"))
    await schema.upgrade(first.engine)
    rebuilt = await _tables(first)
    assert rebuilt[1] == kept[1]
    assert list(rebuilt[0]) == list(kept[0])
    for key, row in kept[0].items():
        assert rebuilt[0][key] == pytest.approx(row, rel=1e-9, abs=1e-9), key


async def _tables(store: JourneyStore) -> tuple[dict[tuple[Any, ...], tuple[Any, ...]], dict[tuple[Any, ...], Any]]:
    """kpi_sums and kpi_waits without the rows that add up to nothing (a contact that moved)."""
    async with store.engine.connect() as conn:
        sums = (await conn.execute(select(KpiSums).order_by(*KpiSums.primary_key.columns))).all()
        waits = (await conn.execute(select(KpiWaits).order_by(*KpiWaits.primary_key.columns))).all()
    return (
        {tuple(r[:5]): tuple(r[5:]) for r in sums if r.contacts},
        {tuple(r[:6]): tuple(r[6:]) for r in waits if r.n},
    )


def _alembic(conn: Any, verb: str, revision: str) -> None:
    cfg = schema.alembic_config()
    cfg.attributes["connection"] = conn
    getattr(command, verb)(cfg, revision)


async def test_a_batch_is_the_fewest_statements_each_database_needs(database_url: str) -> None:
    """The KPI writer's statements per batch, first batch and later ones: the merge gives the
    merged rows back (no read after it). PostgreSQL still claims the new contacts' rows and locks
    them before reading (two nodes: the sums' correctness above); SQLite's one writer only reads,
    in one trip to its connection's thread. Before: a claim, a locked read, the merge and a read
    after it on both."""
    store = JourneyStore(make_engine(database_url), batch_delay=0.0)
    await store.start()
    statements: list[str] = []

    def seen(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        words = statement.split()
        if words[0] == "INSERT":
            statements.append(f"{words[2]}{' returning' if ' RETURNING ' in statement else ''}")
        elif words[0] == "SELECT":
            statements.append(
                f"select {words[words.index('FROM') + 1]}{' locked' if 'FOR UPDATE' in statement else ''}"
            )

    event.listen(store.engine.sync_engine, "before_cursor_execute", seen)
    sqlite = database_url.startswith("sqlite")
    try:
        for step, kind in enumerate(("journey_started", "journey_completed")):
            statements.clear()
            for n in range(3):
                store.append(f"j{n}", None, "voice", [Interaction(kind, "hello", {"flow": "bench"}, T0 + step)])
            await store.flush()
            if sqlite:  # one function on sqlite3's own connection, out of SQLAlchemy's sight (test_sqlite_trips.py)
                assert statements == [], step
            else:
                read = ["interactions", "contact_facts", "select contact_facts locked"]
                assert statements == [*read, "contact_facts returning", "kpi_sums"], step
        async with store.engine.connect() as conn:
            sums = (await conn.execute(select(KpiSums.c.contacts, KpiSums.c.contained_completed))).all()
            logged = (await conn.exec_driver_sql("SELECT count(*) FROM interactions")).scalar()
        assert {tuple(r) for r in sums if r.contacts} == {(3, 3)}
        assert logged == 6
    finally:
        await store.stop()


async def _same_log(first: JourneyStore, second: JourneyStore) -> None:
    """The seeded journey log into both stores, in the same batches (a flush every five journeys)."""
    for i, (jid, customer, channel, events) in enumerate(journey_log(random.Random(SEED), JOURNEYS)):
        for store in (first, second):
            store.append(jid, customer, channel, events)
        if i % 5 == 4:
            await asyncio.gather(first.flush(), second.flush())
    await asyncio.gather(first.flush(), second.flush())


async def _dump(store: JourneyStore, tables: tuple[str, ...]) -> dict[str, Any]:
    """Every row of ``tables``, in key order."""
    async with store.engine.connect() as conn:
        return {t: (await conn.exec_driver_sql(f"SELECT * FROM {t} ORDER BY 1, 2, 3")).all() for t in tables}


async def test_sqlites_one_trip_writes_every_row_sqlalchemys_path_writes(tmp_path: Path) -> None:
    """SQLite's writer runs a batch as one function on sqlite3's own connection (its SQL compiled
    once, ``SumsWriter.write_sqlite``); PostgreSQL's goes statement by statement through
    SQLAlchemy (``SumsWriter.write``). The same log through both on two SQLite files, in the same
    batches, leaves the same interactions, contact rows, sums and waits, to the bit."""
    one_trip = JourneyStore(make_engine(f"sqlite+aiosqlite:///{tmp_path / 'one-trip.sqlite3'}"), batch_delay=0.0)
    through = JourneyStore(make_engine(f"sqlite+aiosqlite:///{tmp_path / 'sqlalchemy.sqlite3'}"), batch_delay=0.0)
    real = through._statements

    def without_raw_sql() -> Any:  # what PostgreSQL gets: no sqlite3 SQL, so SQLAlchemy's path
        return real()._replace(sqlite_journey=None, sqlite_interaction=None)

    through._statements = without_raw_sql  # type: ignore[method-assign]
    for store in (one_trip, through):
        await store.start()
    try:
        await _same_log(one_trip, through)
        tables = ("interactions", "contact_facts", "kpi_sums", "kpi_waits")
        dumps = [await _dump(store, tables) for store in (one_trip, through)]
        assert len(dumps[0]["contact_facts"]) == JOURNEYS
        assert sum(1 for r in dumps[0]["contact_facts"] if r.repeat_7d) > 10  # the repeat flags moved too
        for table in tables:
            assert [tuple(r) for r in dumps[0][table]] == [tuple(r) for r in dumps[1][table]], table
    finally:
        for store in (one_trip, through):
            await store.stop()


async def test_sqlites_new_contacts_inserted_as_they_are_leave_the_rows_the_merge_leaves(tmp_path: Path) -> None:
    """On SQLite a contact with no row yet is a plain INSERT, its merged row built in Python
    (``SumsWriter.insert_new``), not a merge with one RETURNING per row. The same log, in the
    same batches, through a writer that merges every contact leaves the same contact rows, sums
    and waits, to the bit: the rows built in Python are the rows the database gives back."""
    inserting = JourneyStore(make_engine(f"sqlite+aiosqlite:///{tmp_path / 'inserting.sqlite3'}"), batch_delay=0.0)
    merging = JourneyStore(make_engine(f"sqlite+aiosqlite:///{tmp_path / 'merging.sqlite3'}"), batch_delay=0.0)
    real = merging._statements

    def merge_all() -> Any:
        stmts = real()
        stmts.contact.insert_new = False
        return stmts

    merging._statements = merge_all  # type: ignore[method-assign]
    for store in (inserting, merging):
        await store.start()
    try:
        steps: dict[str, list[str]] = {"inserting": [], "merging": []}
        for name, store in (("inserting", inserting), ("merging", merging)):
            writer = store._statements().contact
            fold = writer.fold

            def watched(contacts: Any, fold: Any = fold, seen: list[str] = steps[name]) -> Any:
                for_fold = fold(contacts)
                rows = None
                while True:
                    try:
                        step = for_fold.send(rows)
                    except StopIteration:
                        return
                    seen.append(step.name)
                    rows = yield step

            writer.fold = watched  # type: ignore[method-assign]
        await _same_log(inserting, merging)
        assert steps["inserting"].count("insert") > 10 and "insert" not in steps["merging"]
        assert steps["inserting"].count("upsert") < steps["merging"].count("upsert")
        tables = ("contact_facts", "kpi_sums", "kpi_waits")
        dumps = [await _dump(store, tables) for store in (inserting, merging)]
        assert len(dumps[0]["contact_facts"]) == JOURNEYS
        for table in tables:
            assert [tuple(r) for r in dumps[0][table]] == [tuple(r) for r in dumps[1][table]], table
    finally:
        for store in (inserting, merging):
            await store.stop()


async def test_a_frequent_callers_new_contact_reads_the_contacts_it_can_change_not_the_week(tmp_path: Path) -> None:
    """SQLite's read for the repeat flags: a customer with 300 contacts over the last six days
    calls again; the batch reads that contact and the one started just before it, not the 300
    (the two weeks around the batch were read, row by row into Python, on every batch). A contact
    logged late reads the contacts whose flags it may change. The flags are what the whole history
    gives (``ivr.kpis.mark_repeats``; every case of it in the report's test above)."""
    store = JourneyStore(make_engine(f"sqlite+aiosqlite:///{tmp_path / 'ivr.sqlite3'}"), batch_delay=0.0)
    await store.start()
    read: list[int] = []
    real_fold = SumsWriter.fold

    def fold(self: SumsWriter, contacts: Any) -> Any:  # the rows each "repeats" statement gave
        inner = real_fold(self, contacts)
        rows = None
        while True:
            try:
                step = inner.send(rows)
            except StopIteration:
                return
            rows = yield step
            if step.name == "repeats":
                read.append(len(rows or []))

    def started(jid: str, at: float) -> None:
        store.append(jid, "c-frequent", "voice", [Interaction("journey_started", None, {"flow": "bench"}, at)])

    try:
        for i in range(300):  # six days, one call every 28.8 minutes
            started(f"old{i}", T0 - 6 * 86400 + i * 1728.0)
        await store.flush()
        SumsWriter.fold = fold  # type: ignore[method-assign]
        started("new", T0 + 3600.0)  # 1 h after the last: a repeat within 24 h
        await store.flush()
        assert read == [2]  # itself and the one before it
        started("late", T0 - 3 * 86400 + 10.0)  # logged late, 10 s after an old one, 28 min before the next
        await store.flush()
        # itself, the one before (10 s before), and every contact up to 7 days after it, whose flags
        # are recomputed: the 149 old ones after it and "new"
        assert read == [2, 1 + 1 + 149 + 1]
        async with store.engine.connect() as conn:
            result = await conn.execute(
                select(ContactFactRow.journey_id, ContactFactRow.repeat_24h, ContactFactRow.repeat_7d).where(
                    ContactFactRow.journey_id.in_(["old0", "old1", "new", "late"])
                )
            )
            flags = {jid: r24 + 2 * r7 for jid, r24, r7 in result.all()}
        assert flags == {"old0": 0, "old1": 3, "new": 3, "late": 3}
    finally:
        SumsWriter.fold = real_fold  # type: ignore[method-assign]
        await store.stop()
