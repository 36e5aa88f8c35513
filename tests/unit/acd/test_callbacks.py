"""Callback ordering (pure), estimates, opening times, and the one-open-ticket-per-customer rule."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from ivr.acd.callbacks import (
    Reservation,
    Ticket,
    due_tickets,
    expired,
    next_opening,
    ticket_for_agent,
)
from ivr.acd.queueview import estimate_wait
from ivr.flow.hours import parse_hours
from ivr.store.agents import CallbackStore
from ivr.store.journeys import JourneyStore, make_engine


def t(id_: str, at: float, status: str = "waiting", queue: str = "billing", not_before: float = 0) -> Ticket:
    return Ticket(id_, queue, queue, at, not_before, status)


def test_a_ticket_waits_for_every_caller_who_joined_before_it() -> None:
    assert due_tickets([t("a", 100)], {"billing": [90.0, 120.0]}, {"billing"}, now=200) == []
    assert due_tickets([t("a", 100)], {"billing": [120.0, 130.0]}, {"billing"}, now=200) == [t("a", 100)]


def test_only_the_oldest_ticket_of_a_queue_goes_and_not_while_one_is_dialling() -> None:
    assert due_tickets([t("b", 200), t("a", 100)], {}, {"billing"}, now=300) == [t("a", 100)]
    assert due_tickets([t("a", 100, "dialing"), t("b", 200)], {}, {"billing"}, now=300) == []
    both = due_tickets([t("a", 100), t("s", 150, queue="sales")], {}, {"billing", "sales"}, now=300)
    assert [x.id for x in both] == ["a", "s"]


def test_nothing_is_dialled_without_a_ready_agent_or_before_opening_time() -> None:
    assert due_tickets([t("a", 100)], {}, set(), now=300) == []
    assert due_tickets([t("a", 100, not_before=400)], {}, {"billing"}, now=300) == []
    assert due_tickets([t("a", 100, not_before=400)], {}, {"billing"}, now=400) == [t("a", 100, not_before=400)]


def test_an_agent_who_becomes_free_is_held_for_a_ticket_ahead_of_the_callers_holding() -> None:
    # C joined at 150, after the ticket booked at 100: the ticket is ahead, the agent is held for it
    assert ticket_for_agent([t("a", 100)], {"billing": [150.0]}, {"billing": 0}, now=200) == t("a", 100)
    # B joined at 90, before the ticket: B is ahead, app_queue gives the agent to B
    assert ticket_for_agent([t("a", 100)], {"billing": [90.0, 150.0]}, {"billing": 0}, now=200) is None
    # not the agent's skill; but every agent serves the catch-all queue
    assert ticket_for_agent([t("a", 100)], {}, {"sales": 0}, now=200) is None
    assert ticket_for_agent([t("m", 100, queue="main")], {}, {"sales": 0}, now=200) == t("m", 100, queue="main")
    # due in two of the agent's queues: the older ticket
    two = [t("s", 120, queue="sales"), t("a", 100)]
    assert ticket_for_agent(two, {}, ["billing", "sales"], now=200) == t("a", 100)
    # the queue's older ticket is still being dialled (another agent is held for it): none
    assert ticket_for_agent([t("a", 100, "dialing"), t("b", 110)], {}, ["billing"], now=200) is None


def test_a_hold_ends_at_its_bound() -> None:
    holds = [Reservation("a", "ann", "PJSIP/agent1001", 145.0), Reservation("b", "bob", "PJSIP/agent1002", 160.0)]
    assert expired(holds, 144.9) == []
    assert expired(holds, 145.0) == [holds[0]]
    assert expired(holds, 200.0) == holds


def test_estimates() -> None:
    assert estimate_wait(0, 3, 180) == 0
    assert estimate_wait(1, 1, 180) == 180
    assert estimate_wait(4, 2, 120) == 240
    assert estimate_wait(5, 0, 60) == 300  # nobody logged in: counted as one


def test_after_hours_callbacks_are_scheduled_at_opening() -> None:
    hours = parse_hours("support", {"timezone": "UTC", "mon-fri": "09:00-17:00"})
    friday_night = datetime(2026, 11, 27, 20, 3, tzinfo=UTC).timestamp()
    assert datetime.fromtimestamp(next_opening(hours, friday_night), UTC) == datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
    open_now = datetime(2026, 11, 27, 10, 0, tzinfo=UTC).timestamp()
    assert next_opening(hours, open_now) == open_now


async def test_one_open_callback_per_customer(tmp_path: Path) -> None:
    journeys = JourneyStore(make_engine(f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite3'}"))
    await journeys.start()
    try:
        store = CallbackStore(journeys.engine)
        args = dict(journey_id="j", phone="+1555", queue="billing", skill="billing", priority=0, context={})
        first = await store.open(customer_id="c1", ticket_at=1, not_before=1, **args)  # type: ignore[arg-type]
        assert first is not None
        assert await store.open(customer_id="c1", ticket_at=2, not_before=2, **args) is None  # type: ignore[arg-type]
        assert await store.open(customer_id="c2", ticket_at=3, not_before=3, **args)  # type: ignore[arg-type]
        assert [r["customer_id"] for r in await store.waiting("billing")] == ["c1", "c2"]
        await store.set_status(first, "done")
        assert await store.open(customer_id="c1", ticket_at=4, not_before=4, **args)  # type: ignore[arg-type]
    finally:
        await journeys.stop()


async def test_an_after_hours_ticket_is_due_at_opening_and_a_second_booking_is_refused(tmp_path: Path) -> None:
    from ivr.acd.callbacks import Callbacks
    from ivr.acd.service import Acd
    from ivr.flow.model import Journey, Queue
    from ivr.store.customers import CustomerStore

    journeys = JourneyStore(make_engine(f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite3'}"))
    await journeys.start()
    try:
        acd = Acd(ami=None, journeys=journeys, customers=CustomerStore(journeys.engine))
        hours = parse_hours("billing", {"timezone": "UTC", "mon-fri": "09:00-17:00"})
        saturday = datetime(2026, 11, 28, 12, 0, tzinfo=UTC).timestamp()
        callbacks = Callbacks(acd, CallbackStore(journeys.engine), clock=lambda: saturday, hours=lambda j, q: hours)
        journey = Journey(id="j1", flow="f", version="v", channel="voice", caller="+15551230001", customer_id="c1")
        queue = Queue("to_billing", "billing", "billing", 5, 600, {"IVR_JOURNEY_ID": "j1"})
        assert callbacks.estimate("billing") == (1, 180.0)  # nobody waiting, nobody logged in
        assert await callbacks.book(journey, queue)
        assert await callbacks.book(journey, queue) is None
        (row,) = await callbacks.store.waiting()
        assert row["ticket_at"] == saturday
        assert datetime.fromtimestamp(row["not_before"], UTC) == datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
        assert callbacks.estimate("billing")[0] == 2  # the ticket holds a place in line
    finally:
        await journeys.stop()
