"""Customers, identification, profiles and the aggregates behind them, on SQLite and PostgreSQL.

History is written the way the product writes it: journeys and their interactions go through the
write-behind ``JourneyStore``; the profile is read back through ``CustomerStore``.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Row, event, text

from ivr.errors import StoreError
from ivr.flow.model import REDACTED, Interaction, Journey, JourneyStatus
from ivr.store.agents import CallbackStore
from ivr.store.aggregates import DAY, tally
from ivr.store.continuations import ContinuationStore
from ivr.store.customers import CONTACTS_CAP, CallerProfiles, Cursor, CustomerStore
from ivr.store.journeys import ROWS_PER_STATEMENT, JourneyStore, make_engine

HALF_LIFE_DAYS = 30.0


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[JourneyStore]:
    s = JourneyStore(make_engine(database_url), batch_delay=0.0, half_life_days=HALF_LIFE_DAYS)
    await s.start()
    yield s
    await s.stop()


@pytest.fixture
def customers(store: JourneyStore) -> CustomerStore:
    return CustomerStore(store.engine)


def journey(customer_id: str | None, *, caller: str = "+15551230001", channel: str = "voice") -> Journey:
    return Journey(
        id=uuid.uuid4().hex, flow="support", version="v1", channel=channel, caller=caller, customer_id=customer_id
    )


def chose(option: str, at: float, step: str = "main_menu") -> Interaction:
    return Interaction("option_chosen", step, {"option": option, "key": "1", "mode": "dtmf"}, at)


def filled(slot: str, at: float, step: str = "account") -> Interaction:
    return Interaction("slot_filled", step, {"slot": slot, "mode": "dtmf", "length": 8}, at)


class StatementCounter:
    """Counts statements sent to the database: SQLAlchemy's ``before_cursor_execute``, and on
    SQLite what the library itself runs (its trace callback on each connection checked out, and
    on the store's connection on the loop's thread), since the caller lookup reads SQLite through
    sqlite3 directly."""

    def __init__(self, customers: CustomerStore) -> None:
        self.statements: list[str] = []
        self._engine = customers.engine.sync_engine
        self._sqlite = customers.engine.dialect.name == "sqlite"
        self._traced: list[Any] = []
        self._loop = customers.loop_reads

    def __enter__(self) -> StatementCounter:
        if self._loop is not None:
            self._loop.set_trace_callback(self.statements.append)
        if self._sqlite:
            event.listen(self._engine, "checkout", self._trace)
        else:
            event.listen(self._engine, "before_cursor_execute", self._seen)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._loop is not None:
            self._loop.set_trace_callback(None)
        if self._sqlite:
            event.remove(self._engine, "checkout", self._trace)
            for conn in self._traced:  # the checkout ran in SQLAlchemy's greenlet; this cannot
                conn._conn.set_trace_callback(None)  # sqlite3 allows it from any thread
        else:
            event.remove(self._engine, "before_cursor_execute", self._seen)

    def _trace(self, dbapi_conn: Any, _record: Any, _proxy: Any) -> None:
        from sqlalchemy.util import await_

        driver = dbapi_conn.driver_connection  # the aiosqlite connection
        await_(driver.set_trace_callback(self.statements.append))
        self._traced.append(driver)

    def _seen(self, _conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        self.statements.append(statement)


# ------------------------------------------------------------------------------ identification
async def test_an_unknown_number_becomes_an_unverified_customer_once(customers: CustomerStore) -> None:
    first = await customers.identify("+15551230001")
    again = await customers.identify("+1 555 123 0001")
    assert first == again
    info = await customers.get(first)
    assert info is not None
    assert info["verified"] is False
    assert info["identities"] == [{"kind": "phone", "value": "+15551230001"}]


async def test_concurrent_first_calls_from_one_number_make_one_customer(customers: CustomerStore) -> None:
    ids = await asyncio.gather(*(customers.identify("+447700900123") for _ in range(8)))
    assert len(set(ids)) == 1
    async with customers.engine.connect() as conn:
        count = (await conn.execute(text("SELECT count(*) FROM customers"))).scalar_one()
    assert count == 1


async def test_identities_are_unique_and_normalised(customers: CustomerStore) -> None:
    ann = await customers.create(name="Ann", email="Ann@Example.com", crm_id="CRM-1", phones=["+15550000001"])
    assert await customers.find("email", "ann@example.COM ") == ann
    assert await customers.find("crm", "CRM-1") == ann
    with pytest.raises(StoreError):
        await customers.add_identity(await customers.create(), "phone", "+15550000001")
    with pytest.raises(StoreError):
        await customers.identify("anonymous")


async def test_deleting_a_customer_forgets_identities_and_aggregates(
    store: JourneyStore, customers: CustomerStore
) -> None:
    cid = await customers.identify("+15551230009")
    j = journey(cid)
    j.slots["account_number"] = "12345678"
    store.save(j, [chose("pay_bill", 1000.0), filled("account_number", 1001.0)])
    await store.flush()
    assert await customers.delete(cid)
    assert await customers.load_profile(customer_id=cid) is None
    assert await customers.find("phone", "+15551230009") is None
    async with customers.engine.connect() as conn:
        for table in ("option_stats", "customer_slots", "customer_identities"):
            assert (await conn.execute(text(f"SELECT count(*) FROM {table}"))).scalar_one() == 0
        # the log itself is append-only: the events stay
        assert (await conn.execute(text("SELECT count(*) FROM interactions"))).scalar_one() == 2


# ------------------------------------------------------------------------------ the profile
async def test_profile_of_an_unknown_number_is_none(customers: CustomerStore) -> None:
    assert await customers.load_profile(phone="+15559999999") is None


async def test_profile_carries_fields_history_slots_and_contacts(store: JourneyStore, customers: CustomerStore) -> None:
    cid = await customers.create(
        name="Ann Lee", email="ann@example.com", tier="gold", language="en", verified=True, phones=["+15551230001"]
    )
    t0 = 1_700_000_000.0
    for n in range(3):  # three calls paying the bill, one of them also reporting an outage
        j = journey(cid)
        j.slots["account_number"] = f"1234567{n}"
        events = [chose("pay_bill", t0 + n * DAY), filled("account_number", t0 + n * DAY + 5)]
        if n == 1:
            events.append(chose("outage", t0 + n * DAY + 10, step="other_menu"))
        store.save(j, events)
    await store.flush()

    profile = await customers.load_profile(phone="+15551230001")
    assert profile is not None
    assert profile.customer_id == cid
    assert profile.fields == {"name": "Ann Lee", "email": "ann@example.com", "tier": "gold", "language": "en"}
    assert profile.verified is True
    assert profile.contacts == 3
    (bill,) = profile.option_stats("support", "main_menu")
    assert (bill.option, bill.count, bill.last_at) == ("pay_bill", 3, t0 + 2 * DAY)
    expected = tally([t0, t0 + DAY, t0 + 2 * DAY], HALF_LIFE_DAYS * DAY)
    assert expected is not None
    assert bill.score == pytest.approx(expected.score)
    assert [o.option for o in profile.option_stats("support", "other_menu")] == ["outage"]
    slot = profile.slot("account_number")
    assert slot is not None
    assert (slot.value, slot.channel, slot.at) == ("12345672", "voice", t0 + 2 * DAY + 5)
    assert await customers.load_profile(customer_id=cid) == profile


async def test_profile_is_one_statement(store: JourneyStore, customers: CustomerStore) -> None:
    cid = await customers.identify("+15551230002")
    j = journey(cid)
    j.slots["account_number"] = "87654321"
    store.save(j, [chose("pay_bill", 1.0), chose("outage", 2.0, step="m2"), filled("account_number", 3.0)])
    await store.flush()
    await customers.load_profile(phone="+15551230002")  # warm the pool
    with StatementCounter(customers) as counter:
        profile = await customers.load_profile(phone="+15551230002")
    assert profile is not None and len(profile.options) == 2 and len(profile.slots) == 1
    assert len(counter.statements) == 1, counter.statements


async def test_decayed_score_is_the_same_however_choices_are_batched(
    store: JourneyStore, customers: CustomerStore
) -> None:
    """The writer's SQL upsert merges batches exactly like the pure ``tally`` of all choices."""
    cid = await customers.identify("+15551230003")
    rng = random.Random(3)
    times = sorted(1_700_000_000.0 + rng.uniform(0, 200) * DAY for _ in range(25))
    batches: list[list[float]] = [[]]
    for at in times:
        batches[-1].append(at)
        if rng.random() < 0.4:
            batches.append([])
    # a late batch arriving after newer ones (a resumed journey's events) must merge the same way
    late = batches.pop(1) if len(batches) > 2 else []
    for batch in [*batches, late]:
        store.save(journey(cid), [chose("pay_bill", at) for at in batch])
        await store.flush()
    profile = await customers.load_profile(customer_id=cid)
    assert profile is not None
    (stat,) = profile.options
    expected = tally(times, HALF_LIFE_DAYS * DAY)
    assert expected is not None
    assert stat.count == expected.count == 25
    assert stat.last_at == expected.last_at
    assert stat.score == pytest.approx(expected.score, rel=1e-9)


async def test_events_known_only_by_journey_id_are_appended_without_touching_the_journey(store: JourneyStore) -> None:
    # An SMS delivery report names a journey by id only: it joins the log through the writer,
    # and neither creates nor rewrites a journey row.
    store.append("sms-only-journey", None, "sms", [Interaction("sms_delivery", None, {"status": "1"}, 5.0)])
    await store.flush()
    assert await store.interactions("sms-only-journey") == [
        {"kind": "sms_delivery", "step": None, "data": {"status": "1"}, "at": 5.0, "channel": "sms"}
    ]
    assert await store.get("sms-only-journey") is None


async def test_a_journey_being_written_is_read_as_its_newest_state(store: JourneyStore) -> None:
    # Between leaving the pending batch and its commit, a journey is in neither place: get()
    # must still answer with it (an agent's screen pop can ask at exactly that moment).
    written = asyncio.Event()
    release = asyncio.Event()
    real_write = store._write

    async def slow_write(*args: Any) -> None:
        written.set()
        await release.wait()
        await real_write(*args)

    store._write = slow_write  # type: ignore[method-assign,assignment]
    j = journey(None)
    j.step, j.slots = "account", {"account_number": "12345678"}
    store.save(j)
    await asyncio.wait_for(written.wait(), 10)
    assert j.id not in store._pending
    seen = await store.get(j.id)
    assert seen is not None and (seen.step, seen.slots) == ("account", {"account_number": "12345678"})
    seen.slots["account_number"] = "changed"  # a copy: the batch being written is not touched
    release.set()
    await store.flush()
    stored = await store.get(j.id)
    assert stored is not None and stored.slots == {"account_number": "12345678"}


async def test_a_secret_slot_is_never_stored(store: JourneyStore, customers: CustomerStore) -> None:
    cid = await customers.identify("+15551230004")
    j = journey(cid)
    j.slots.update({"pin": "4321", "account_number": "11112222"})
    j.secret_slots.append("pin")
    store.save(j, [filled("pin", 1.0, step="pin"), filled("account_number", 2.0)])
    await store.flush()
    profile = await customers.load_profile(customer_id=cid)
    assert profile is not None
    assert [s.name for s in profile.slots] == ["account_number"]
    async with customers.engine.connect() as conn:
        rows: list[Row[Any]] = []
        for table in ("customer_slots", "interactions", "journeys"):
            rows += (await conn.execute(text(f"SELECT * FROM {table}"))).all()
    dump = " ".join(str(value) for row in rows for value in row)
    assert "4321" not in dump
    assert REDACTED in dump  # the journey snapshot keeps the slot, redacted


async def test_newest_slot_value_wins_whatever_the_batch_order(store: JourneyStore, customers: CustomerStore) -> None:
    cid = await customers.identify("+15551230005")
    newer, older = journey(cid, channel="chat"), journey(cid)
    newer.slots["account_number"] = "22222222"
    older.slots["account_number"] = "11111111"
    store.save(newer, [filled("account_number", 200.0)])
    await store.flush()
    store.save(older, [filled("account_number", 100.0)])  # arrives late
    await store.flush()
    profile = await customers.load_profile(customer_id=cid)
    assert profile is not None
    assert profile.slot("account_number") == profile.slots[0]
    assert (profile.slots[0].value, profile.slots[0].channel) == ("22222222", "chat")


async def test_events_of_a_customer_id_nobody_has_do_not_block_the_writer(
    store: JourneyStore, customers: CustomerStore
) -> None:
    real = await customers.identify("+15551230006")
    store.save(journey("not-a-customer"), [chose("pay_bill", 1.0)])
    store.save(journey(real), [chose("pay_bill", 2.0)])
    await asyncio.wait_for(store.flush(), 5)
    profile = await customers.load_profile(customer_id=real)
    assert profile is not None and profile.options[0].count == 1
    async with customers.engine.connect() as conn:
        assert (await conn.execute(text("SELECT count(*) FROM interactions"))).scalar_one() == 2


async def test_a_backlog_bigger_than_one_statement_is_written_in_one_batch(
    store: JourneyStore, customers: CustomerStore
) -> None:
    """After an outage thousands of journeys are pending: one batch, several statements, no limit hit."""
    busy = await customers.identify("+15551230013")
    others = [await customers.create() for _ in range(ROWS_PER_STATEMENT + 100)]
    for n in range(CONTACTS_CAP + 5):
        store.save(journey(busy), [chose("pay_bill", float(n))])
    for n, cid in enumerate(others):
        store.save(journey(cid), [chose("outage", float(n))])
    commits = store.commits
    await store.flush()
    assert store.commits == commits + 1
    profile = await customers.load_profile(customer_id=busy)
    assert profile is not None
    assert profile.contacts == CONTACTS_CAP  # counting stops there: a test line costs no more than anyone
    assert profile.options[0].count == CONTACTS_CAP + 5
    last = await customers.load_profile(customer_id=others[-1])
    assert last is not None and last.contacts == 1 and last.options[0].option == "outage"


# ------------------------------------------------------------------------------ call path
async def test_caller_profiles_identify_new_callers_and_skip_withheld_ones(customers: CustomerStore) -> None:
    profiles = CallerProfiles(customers)
    new = await profiles.load("+15551230007")
    assert new is not None and new.contacts == 0 and not new.options
    again = await profiles.load("+15551230007")
    assert again is not None and again.customer_id == new.customer_id
    assert await profiles.load(None) is None
    assert await profiles.load("anonymous") is None
    assert profiles.failures == 0


async def test_a_database_that_is_down_leaves_an_unknown_caller(database_url: str, tmp_path: Path) -> None:
    if database_url.startswith("sqlite"):  # a damaged file: SQLite has no server to be down
        (tmp_path / "broken.sqlite3").write_bytes(b"this is not a database" * 100)
        dead = f"sqlite+aiosqlite:///{tmp_path / 'broken.sqlite3'}"
    else:
        dead = database_url.rsplit("@", 1)[0] + "@127.0.0.1:1/nothing"
    engine = make_engine(dead)
    profiles = CallerProfiles(CustomerStore(engine), timeout=2.0)
    try:
        assert await profiles.load("+15551230008") is None
        assert profiles.failures == 1
    finally:
        await engine.dispose()


async def test_a_slow_database_is_given_up_on_within_the_timeout(customers: CustomerStore) -> None:
    class Slow(CustomerStore):
        def profile_now(self, phone: str) -> tuple[bool, Any]:
            return False, None  # the read on the loop's thread stepped aside, as on a locked file

        async def load_profile(self, **_: Any) -> Any:
            await asyncio.sleep(5)

    profiles = CallerProfiles(Slow(customers.engine), timeout=0.1)
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert await profiles.load("+15551230010") is None
    assert loop.time() - started < 1
    assert profiles.failures == 1


# ------------------------------------------------------------------------------ timeline
async def test_timeline_is_newest_first_across_channels_and_pages_by_cursor(
    store: JourneyStore, customers: CustomerStore
) -> None:
    cid = await customers.identify("+15551230011")
    other = await customers.identify("+15551230012")
    voice, chat = journey(cid), journey(cid, channel="chat")
    store.save(voice, [Interaction("journey_started", None, {"flow": "support"}, 10.0), chose("pay_bill", 11.0)])
    store.save(chat, [Interaction("message_received", "start", {"text": "hi"}, 12.0)])
    # two events at the same instant: the cursor must not lose or repeat one of them
    store.save(voice, [Interaction("queued", "to_queue", {"queue": "billing"}, 13.0)] * 2)
    store.save(journey(other), [chose("outage", 14.0)])
    await store.flush()

    page = await customers.timeline(cid, limit=2)
    seen = list(page.entries)
    while page.next is not None:
        page = await customers.timeline(cid, limit=2, before=Cursor.decode(page.next.encode()))
        seen += page.entries
    assert [(e["kind"], e["channel"]) for e in seen] == [
        ("queued", "voice"),
        ("queued", "voice"),
        ("message_received", "chat"),
        ("option_chosen", "voice"),
        ("journey_started", "voice"),
    ]
    assert seen[2] == {
        "at": "1970-01-01T00:00:12.000Z",
        "channel": "chat",
        "kind": "message_received",
        "journey_id": chat.id,
        "step": "start",
        "data": {"text": "hi"},
    }
    assert (await customers.timeline(cid, limit=5)).next is None


async def test_profile_carries_the_latest_journeys_the_open_ticket_and_the_unused_link(
    store: JourneyStore, customers: CustomerStore
) -> None:
    """What the journey stages are computed from, written by the product's own stores and read
    back in the same one statement: the newest three journeys of the last week (an older one and
    another customer's are not read), the open callback ticket, the newest unused link."""
    cid = await customers.identify("+15551230003")
    other = await customers.identify("+15551230004")
    now = time.time()
    saved: list[Journey] = []
    past: list[tuple[int, JourneyStatus]] = [(9 * 24 * 60, "completed"), (90, "queued"), (30, "completed")]
    for minutes, status in past:
        j = journey(cid)
        j.status, j.started_at, j.updated_at = status, now - minutes * 60 - 60, now - minutes * 60
        saved.append(j)
    left, handed = journey(cid), journey(cid, channel="chat")
    left.status, left.step, left.intent = "abandoned", "account", "billing"
    handed.status, handed.step = "handed_off", "card"
    left.started_at, left.updated_at = now - 700, now - 600
    handed.started_at, handed.updated_at = now - 400, now - 300
    elsewhere = journey(other)
    elsewhere.updated_at = now
    for j in (*saved, left, handed, elsewhere):
        store.save(j)
    await store.flush()
    links = ContinuationStore(store.engine)
    await links.create(id="k1", journey_id=handed.id, customer_id=cid, channel="sms", step="card", expires_at=now + 600)
    ticket = await CallbackStore(store.engine).open(
        customer_id=cid,
        journey_id=left.id,
        phone="+15551230003",
        queue="billing",
        skill="billing",
        priority=0,
        ticket_at=now - 120,
        not_before=now,
        context={},
    )
    with StatementCounter(customers) as counter:
        profile = await customers.load_profile(phone="+15551230003")
    assert len(counter.statements) == 1, counter.statements
    assert profile is not None
    assert [(p.journey_id, p.status, p.step, p.intent, p.channel) for p in profile.recent] == [
        (handed.id, "handed_off", "card", None, "chat"),
        (left.id, "abandoned", "account", "billing", "voice"),
        (saved[2].id, "completed", None, None, "voice"),
    ]
    assert profile.recent[1].updated_at == pytest.approx(now - 600)
    assert profile.callback is not None
    assert (profile.callback.ticket_id, profile.callback.queue, profile.callback.journey_id) == (
        ticket,
        "billing",
        left.id,
    )
    assert profile.continuation is not None
    assert (profile.continuation.journey_id, profile.continuation.channel, profile.continuation.step) == (
        handed.id,
        "sms",
        "card",
    )
    assert profile.continuation.flow == "support"
    assert await links.claim("k1", "session", now)
    used = await customers.load_profile(phone="+15551230003")
    assert used is not None and used.continuation is None  # a link used is no longer open
