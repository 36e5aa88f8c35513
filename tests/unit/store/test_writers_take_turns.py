"""Every writer on the call and ACD paths takes SQLite's write turn (``ivr.store.turns``), on a
real SQLite file: none sleeps in SQLite's busy handler on a pooled connection while another
writer holds the lock, and a lease renewal during a burst of journeys and first calls does not
stall."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event as sa_event

from ivr.flow.loader import load_flow_file
from ivr.flow.model import Interaction, Journey
from ivr.store.agents import AgentStore, CallbackStore
from ivr.store.continuations import ContinuationStore
from ivr.store.customers import CustomerStore
from ivr.store.flow_versions import FlowVersionStore
from ivr.store.journeys import JourneyStore, make_engine
from ivr.store.leases import ACD_LEASE, LeaseStore
from ivr.store.turns import Turn, turn_of, writing

DIALPLANS = Path(__file__).resolve().parents[3] / "dialplans"


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[JourneyStore]:
    journeys = JourneyStore(make_engine(f"sqlite+aiosqlite:///{tmp_path / 'ivr.sqlite3'}"), batch_delay=0.001)
    await journeys.start()
    yield journeys
    await journeys.stop()


async def test_every_writer_waits_for_its_turn_without_a_pooled_connection(store: JourneyStore) -> None:
    """A batch holds the write lock; a lease renewal, a callback ticket, a continuation link, an
    agent's sign-in and a flow version all queue for the turn, holding no connection (before,
    each held one, asleep in SQLite's busy handler), and all go through once it is free."""
    engine = store.engine
    leases, callbacks = LeaseStore(engine), CallbackStore(engine)
    continuations, agents = ContinuationStore(engine), AgentStore(engine)
    customer = await CustomerStore(engine).create(phones=["+15551230001"])
    agent = await agents.add(username="ann", display_name="Ann", password_hash="x", endpoint="ann", skills={})
    journey = Journey.new(load_flow_file(DIALPLANS / "support.yaml"), "voice", caller="+15551230001")
    store.save(journey)
    await store.flush()
    writers: list[Callable[[], Coroutine[Any, Any, object]]] = [
        lambda: leases.acquire(ACD_LEASE, "node-a", ttl=5.0, now=time.time()),
        lambda: callbacks.open(
            customer_id=customer,
            journey_id=journey.id,
            phone="+15551230001",
            queue="support",
            skill="support",
            priority=0,
            ticket_at=time.time(),
            not_before=0.0,
            context={},
        ),
        lambda: continuations.create(
            id="k1", journey_id=journey.id, customer_id=customer, channel="chat", step="menu", expires_at=2e9
        ),
        lambda: agents.create_session(agent, "token-hash", "csrf"),
        lambda: FlowVersionStore(engine).record(
            "support", text="flow: support\n", version="v1", author="ann", source="studio", after=0
        ),
    ]
    async with writing(engine) as conn:  # the journey writer's batch, mid-transaction
        await conn.exec_driver_sql("UPDATE journeys SET step = step")
        tasks = [asyncio.create_task(w()) for w in writers]
        await asyncio.sleep(0.3)
        assert not any(t.done() for t in tasks)
        assert engine.pool.checkedout() == 1  # type: ignore[attr-defined]  # the batch's own
    started = time.perf_counter()
    await asyncio.gather(*tasks)
    assert time.perf_counter() - started < 2.0  # handed over at once, not after busy-handler naps
    assert await leases.holder(ACD_LEASE) is not None


async def test_a_lease_renewal_during_a_burst_of_journeys_and_first_calls_does_not_stall(
    store: JourneyStore,
) -> None:
    """For two seconds 200 journeys a second are saved while 10 first callers at a time are
    created, 10 callers at a time take a callback ticket and a chat link, and the ACD lease is
    renewed every 50 ms. Writers waiting for the lock hold no pooled connection (the pool the
    callers' lookups need), and no writer waits long: a renewal inside the 1 s the leader gives
    each attempt (it goes first in the turn), a creation in under 2 s. Before, only the journey writer and the creations took turns: the others slept in SQLite's
    busy handler, each on a pooled connection."""
    engine = store.engine
    store._batch_delay = 0.1  # the product's: a batch every tenth of a second
    customers, leases = CustomerStore(engine), LeaseStore(engine)
    callbacks, continuations = CallbackStore(engine), ContinuationStore(engine)
    flow = load_flow_file(DIALPLANS / "support.yaml")
    anchor = Journey.new(flow, "voice", caller="+15550000000")  # what tickets and links point at
    store.save(anchor)
    await store.flush()
    held = [0, 0]  # connections checked out now, at most

    def checkout(*_: object) -> None:
        held[0] += 1
        held[1] = max(held)

    def checkin(*_: object) -> None:
        held[0] -= 1

    sa_event.listen(engine.sync_engine.pool, "checkout", checkout)
    sa_event.listen(engine.sync_engine.pool, "checkin", checkin)
    stop = asyncio.Event()
    renewals: list[float] = []
    creations: list[float] = []
    tickets: list[float] = []

    async def calls() -> None:
        n = 0
        while not stop.is_set():
            for _ in range(2):
                n += 1
                journey = Journey.new(flow, "voice", caller=f"+1555{n:07d}")
                store.save(journey, [Interaction("journey_started", journey.step, {}, time.time())])
            await asyncio.sleep(0.01)

    async def first_callers(k: int) -> None:
        n = 0
        while not stop.is_set():
            n += 1
            started = time.perf_counter()
            await customers.create(phones=[f"+16{k:03d}{n:06d}"])
            creations.append(time.perf_counter() - started)

    async def callers_leaving(k: int) -> None:  # a callback ticket, then a link to the chat
        n = 0
        while not stop.is_set():
            n += 1
            started = time.perf_counter()
            await callbacks.open(
                customer_id=None,
                journey_id=anchor.id,
                phone="+15550000000",
                queue="support",
                skill="support",
                priority=0,
                ticket_at=time.time(),
                not_before=0.0,
                context={},
            )
            await continuations.create(
                id=f"k{k}-{n}", journey_id=anchor.id, customer_id=None, channel="chat", step="menu", expires_at=2e9
            )
            tickets.append(time.perf_counter() - started)

    async def renew() -> None:
        while not stop.is_set():
            started = time.perf_counter()
            assert await leases.acquire(ACD_LEASE, "node-a", ttl=3.0, now=time.time()) is not None
            renewals.append(time.perf_counter() - started)
            await asyncio.sleep(0.05)

    loads = [asyncio.create_task(calls()), asyncio.create_task(renew())]
    loads += [asyncio.create_task(first_callers(k)) for k in range(10)]
    loads += [asyncio.create_task(callers_leaving(k)) for k in range(10)]
    await asyncio.sleep(2.0)
    stop.set()
    await asyncio.gather(*loads)
    await store.flush()
    print(
        f"{len(renewals)} renewals, longest {1000 * max(renewals):.0f} ms; {len(creations)} creations, longest "
        f"{1000 * max(creations):.0f} ms; {len(tickets)} tickets and links, longest {1000 * max(tickets):.0f} ms; "
        f"{store.commits} batches; at most {held[1]} connections out"
    )
    # the writer in the turn's connection, and beside it at most the journey writer's checkpoint
    # (which never waits for the turn): never one per writer waiting
    assert held[1] <= 2
    assert max(renewals) < 1.0
    assert max(creations) < 2.0
    assert len(renewals) >= 5


async def test_the_turn_is_per_database_file_not_per_engine(tmp_path: Path) -> None:
    """Two engines on one file share SQLite's one lock, so they share one turn; another file has
    its own."""
    one = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'a.sqlite3'}")
    same = make_engine(f"sqlite+aiosqlite:///{tmp_path / '.' / 'a.sqlite3'}")
    other = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'b.sqlite3'}")
    try:
        assert turn_of(one) is turn_of(same)
        assert turn_of(one) is not turn_of(other)
    finally:
        for engine in (one, same, other):
            await engine.dispose()


async def test_the_turn_goes_in_arrival_order_urgent_writers_first() -> None:
    turn, order = Turn(), []

    async def writer(name: str, *, urgent: bool = False) -> None:
        async with turn(urgent=urgent):
            order.append(name)
            await asyncio.sleep(0)

    await turn.acquire()  # a batch in progress
    tasks = [asyncio.create_task(writer(n)) for n in ("creation-1", "creation-2")]
    tasks.append(asyncio.create_task(writer("lease", urgent=True)))
    tasks.append(asyncio.create_task(writer("creation-3")))
    await asyncio.sleep(0.01)
    assert turn.waiting == 4 and not order
    turn.release()
    await asyncio.gather(*tasks)
    assert order == ["lease", "creation-1", "creation-2", "creation-3"]
    assert not turn.held and turn.waiting == 0


async def test_a_writer_cancelled_while_waiting_or_just_handed_the_turn_passes_it_on() -> None:
    turn = Turn()
    await turn.acquire()
    gone = asyncio.create_task(turn.acquire())
    handed = asyncio.create_task(turn.acquire())
    last = asyncio.create_task(turn.acquire())
    await asyncio.sleep(0.01)
    gone.cancel()  # gave up waiting: skipped
    await asyncio.sleep(0)
    turn.release()  # handed to `handed`, which is cancelled before it runs
    handed.cancel()
    await asyncio.wait_for(last, 1.0)  # so the turn went on, not lost
    assert gone.cancelled() and handed.cancelled()
    assert turn.held
    turn.release()
    assert not turn.held


async def test_a_writer_asking_for_the_turn_it_holds_is_refused_not_left_waiting_for_itself() -> None:
    turn = Turn()
    async with turn():
        with pytest.raises(RuntimeError, match="already holds"):
            async with asyncio.timeout(1.0):  # the old turn: a TimeoutError (forever, unbounded)
                await turn.acquire()  # in this task (wait_for would ask from a task of its own)
        # another task still queues behind it, and gets it next
        other = asyncio.create_task(turn.acquire())
        await asyncio.sleep(0.01)
        assert not other.done() and turn.waiting == 1
    await asyncio.wait_for(other, 1.0)
    assert turn.held
    turn.release()
    assert not turn.held
    async with turn():  # and the holder's next turn, after it let go, is granted
        pass
