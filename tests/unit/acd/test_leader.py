"""The ACD lease between controller nodes, on a real (SQLite) database: one leader at a time, a
takeover once the holder stops renewing, a step-down when the database is away, and callback
claims fenced by the leader's token. PostgreSQL: tests/integration/test_nodes.py."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from ivr.acd.callbacks import ORPHAN_QUIET_S, TAKEOVER_QUIET_S, Callbacks, channel_id, orphan_fate, ticket_of_channel
from ivr.acd.leader import EXPIRY_SLACK, LEASE_TTL, RENEW_EVERY, Leadership
from ivr.acd.service import Acd
from ivr.ami.client import AmiError
from ivr.store.agents import CallbackStore
from ivr.store.customers import CustomerStore
from ivr.store.journeys import JourneyStore, make_engine
from ivr.store.leases import ACD_LEASE, LeaseStore


@pytest.fixture
async def journeys(tmp_path: Path) -> AsyncIterator[JourneyStore]:
    store = JourneyStore(make_engine(f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite3'}"))
    await store.start()
    try:
        yield store
    finally:
        await store.stop()


class Clocks:
    """Wall and monotonic time moved by the test, shared by the nodes it plays."""

    def __init__(self) -> None:
        self.now = 1000.0

    def wall(self) -> float:
        return self.now

    def mono(self) -> float:
        return self.now


class Node:
    """One node's leadership and what its duties saw (started with a token, stopped)."""

    def __init__(
        self, leases: LeaseStore, clocks: Clocks, name: str, *, ttl: float = 3.0, renew_every: float = 1.0
    ) -> None:
        self.duties: list[str] = []
        self.leadership = Leadership(
            leases,
            on_lead=self._lead,
            on_follow=self._follow,
            holder=name,
            clock=clocks.wall,
            monotonic=clocks.mono,
            ttl=ttl,
            renew_every=renew_every,
        )

    async def _lead(self, token: int) -> None:
        self.duties.append(f"lead {token}")

    async def _follow(self) -> None:
        self.duties.append("follow")


@pytest.mark.parametrize("on_loop", [True, False], ids=["loop-thread", "database-thread"])
async def test_one_holder_at_a_time_and_the_token_grows_when_it_changes_hands(
    journeys: JourneyStore, on_loop: bool
) -> None:
    """The same answers from the loop's own connection and from the engine's statements."""
    leases = LeaseStore(journeys.engine)
    assert leases.loop_writes is not None
    if not on_loop:
        leases.loop_writes = None
    assert await leases.acquire("acd", "a", ttl=3, now=100) == 1
    assert await leases.acquire("acd", "b", ttl=3, now=101) is None  # a's lease runs until 103
    assert await leases.acquire("acd", "a", ttl=3, now=102) == 1  # renewed: same token, until 105
    assert await leases.acquire("acd", "b", ttl=3, now=104.9) is None
    assert await leases.acquire("acd", "b", ttl=3, now=105) == 2  # expired: b takes it
    assert await leases.acquire("acd", "a", ttl=3, now=106) is None
    await leases.release("acd", "a")  # not a's to give up: nothing changes
    assert await leases.holder("acd") == ("b", 2, 108)
    await leases.release("acd", "b")  # a clean shutdown: the next node need not wait
    assert await leases.acquire("acd", "a", ttl=3, now=106.5) == 3
    if on_loop:  # every one on the loop's connection (the first found no row: the engine's INSERT made it)
        assert leases.loop_writes is not None
        assert (leases.loop_writes.served, leases.loop_writes.stepped_aside) == (7, 0)
    leases.close()


async def test_a_renewal_on_the_loop_steps_aside_from_another_writer_and_lands_on_the_database_thread(
    journeys: JourneyStore, tmp_path: Path
) -> None:
    """Another process's writer holds SQLite's lock: the loop's renewal gets SQLITE_BUSY at once
    (it never waits on the loop), and the engine's statement waits for the lock and renews."""
    leases = LeaseStore(journeys.engine)
    assert await leases.acquire("acd", "a", ttl=3, now=100) == 1
    lock = sqlite3.connect(tmp_path / "db.sqlite3", timeout=5, isolation_level=None, check_same_thread=False)
    lock.execute("BEGIN IMMEDIATE")
    renewal = asyncio.create_task(leases.acquire("acd", "a", ttl=3, now=101))
    await asyncio.sleep(0.3)
    assert not renewal.done()  # waiting on the database thread, not on the loop
    lock.execute("ROLLBACK")
    lock.close()
    assert await renewal == 1
    assert leases.loop_writes is not None and leases.loop_writes.stepped_aside == 1
    assert await leases.holder("acd") == ("a", 1, 104)
    assert await leases.acquire("acd", "a", ttl=3, now=102) == 1  # the loop's connection again
    assert leases.loop_writes.served == 2  # the first acquire and this one
    leases.close()


async def test_a_node_takes_over_once_the_leader_stops_renewing(journeys: JourneyStore) -> None:
    clocks = Clocks()
    leases = LeaseStore(journeys.engine)
    a, b = Node(leases, clocks, "a"), Node(leases, clocks, "b")
    assert await a.leadership.attempt() == "leader"
    assert await b.leadership.attempt() == "follower"
    assert (a.duties, b.duties) == (["lead 1"], [])
    for _ in range(5):  # a renews each second; b keeps trying
        clocks.now += 1
        assert await a.leadership.attempt() == "leader"
        assert await b.leadership.attempt() == "follower"
    # a stalls (killed, or frozen): b waits out the lease, then leads with the next token
    clocks.now += 2.9
    assert await b.leadership.attempt() == "follower"
    clocks.now += 0.1
    assert await b.leadership.attempt() == "leader"
    assert b.duties == ["lead 2"] and b.leadership.token == 2
    # a wakes up: its renewal fails and it steps down (its duties stop)
    assert await a.leadership.attempt() == "follower"
    assert a.duties == ["lead 1", "follow"] and a.leadership.token is None
    assert a.leadership.changes == 2 and b.leadership.changes == 1


async def test_a_leader_cut_off_from_the_database_steps_down_before_its_lease_expires(
    journeys: JourneyStore, tmp_path: Path
) -> None:
    clocks = Clocks()
    a = Node(LeaseStore(journeys.engine), clocks, "a")
    assert await a.leadership.attempt() == "leader"
    # the same node, its database gone: a path that cannot be opened
    gone = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'missing' / 'db.sqlite3'}")
    a.leadership.leases = LeaseStore(gone)
    try:
        clocks.now += 1
        assert await a.leadership.attempt() == "leader"  # one missed renewal: its lease still runs
        clocks.now += 1
        assert await a.leadership.attempt() == "follower"  # ttl - renew_every without renewing: stop now
        assert a.duties == ["lead 1", "follow"]
    finally:
        await gone.dispose()
    # the lease itself runs out at 1003: only then may another node lead, after a stopped
    b = Node(LeaseStore(journeys.engine), clocks, "b")
    assert await b.leadership.attempt() == "follower"
    clocks.now += 1
    assert await b.leadership.attempt() == "leader"


async def test_a_follower_tries_again_when_the_lease_it_saw_held_expires_not_on_its_next_round(
    journeys: JourneyStore,
) -> None:
    clocks = Clocks()
    leases = LeaseStore(journeys.engine)
    a = Node(leases, clocks, "a", ttl=LEASE_TTL, renew_every=RENEW_EVERY)
    b = Node(leases, clocks, "b", ttl=LEASE_TTL, renew_every=RENEW_EVERY)
    assert await a.leadership.attempt() == "leader"  # the lease runs until 1000 + LEASE_TTL
    assert a.leadership.next_attempt_in() == RENEW_EVERY  # the holder renews on its rounds
    assert await b.leadership.attempt() == "follower"
    assert b.leadership.next_attempt_in() == RENEW_EVERY  # the expiry is further off than a round
    # a is killed; b's next round falls 0.1 s before the expiry: the one after it is aimed at it
    clocks.now = 1000 + LEASE_TTL - 0.1
    assert await b.leadership.attempt() == "follower"
    wait = b.leadership.next_attempt_in()
    assert 0.1 <= wait <= 0.1 + EXPIRY_SLACK + 1e-9 and wait < RENEW_EVERY
    clocks.now += wait
    assert await b.leadership.attempt() == "leader"
    assert b.duties == ["lead 2"]


async def test_a_leader_whose_renewal_hangs_steps_down_at_its_deadline_not_a_round_later(
    journeys: JourneyStore, tmp_path: Path
) -> None:
    """The renewal waits behind SQLite's write lock. The holder must stop ``ttl - renew_every``
    after its last renewal started; the wait for the hanging write ends then, not ``renew_every``
    later (which, with a lease four rounds long, was the very moment another node could take it)."""
    node = Leadership(
        LeaseStore(journeys.engine), on_lead=noop_lead, on_follow=noop, holder="a", ttl=2.0, renew_every=0.5
    )
    assert await node.attempt() == "leader"
    renewed = time.monotonic()
    lock = sqlite3.connect(tmp_path / "db.sqlite3", timeout=5, isolation_level=None, check_same_thread=False)
    lock.execute("BEGIN IMMEDIATE")
    try:
        await asyncio.sleep(max(0.0, renewed + 1.35 - time.monotonic()))
        started = time.monotonic()
        assert await node.attempt() == "follower"
        stopped = time.monotonic()
        assert stopped - started < 0.3, stopped - started  # at the deadline (0.15 s away), not 0.5 s on
        assert stopped - renewed < 2.0 - 0.4  # well before the lease could change hands
    finally:
        lock.execute("ROLLBACK")
        lock.close()
    if node._acquiring is not None:  # the write goes through once the lock is gone
        await asyncio.wait_for(asyncio.shield(node._acquiring[0]), 5)
    await node.stop()


async def test_a_renewal_that_comes_back_after_the_step_down_deadline_does_not_keep_the_leader(
    journeys: JourneyStore, tmp_path: Path
) -> None:
    clocks = Clocks()
    node = Node(LeaseStore(journeys.engine), clocks, "a", ttl=2.0, renew_every=0.5)
    assert await node.leadership.attempt() == "leader"  # renewed at 1000
    lock = sqlite3.connect(tmp_path / "db.sqlite3", timeout=5, isolation_level=None, check_same_thread=False)
    lock.execute("BEGIN IMMEDIATE")
    try:
        clocks.now += 0.1
        assert await node.leadership.attempt() == "leader"  # the write (asked at 1000.1) hangs; 1000 still holds
        writing = node.leadership._acquiring
        assert writing is not None
    finally:
        lock.execute("ROLLBACK")
        lock.close()
    await asyncio.wait_for(asyncio.shield(writing[0]), 5)  # it renews the row ...
    clocks.now = 1001.7  # ... but is read only after 1000.1 + 1.5, when the holder must be down
    assert await node.leadership.attempt() == "follower"
    assert node.duties == ["lead 1", "follow"]
    await node.leadership.stop()


async def test_a_leader_whose_start_up_outlasts_its_lease_keeps_it_renewed_meanwhile(journeys: JourneyStore) -> None:
    """The new leader's duties take longer than the lease (a loaded machine): the lease is
    renewed while they start, so no other node leads meanwhile and this one stays the leader."""
    leases = LeaseStore(journeys.engine)
    started: list[int] = []
    starting = asyncio.Event()

    async def slow_lead(token: int) -> None:
        starting.set()
        await asyncio.sleep(2.3)  # longer than the 2 s lease
        started.append(token)

    a = Leadership(leases, on_lead=slow_lead, on_follow=noop, holder="a", ttl=2.0, renew_every=0.5)
    b = Leadership(leases, on_lead=noop_lead, on_follow=noop, holder="b", ttl=2.0, renew_every=0.5)
    taking = asyncio.create_task(a.attempt())
    await starting.wait()  # a took the lease and is starting its duties
    roles: list[str] = []
    while not taking.done():
        roles.append(await b.attempt())
        await asyncio.sleep(0.1)
    assert await taking == "leader" and started == [1]
    assert set(roles) == {"follower"}, roles
    assert await a.attempt() == "leader" and a.token == 1
    await a.stop()
    await b.stop()


async def test_stop_ends_the_renewing_task_even_when_a_step_down_swallowed_its_cancel(journeys: JourneyStore) -> None:
    """SIGTERM just as the lease was lost: stop's cancel reaches the renewing task while its
    step-down awaits a duty being stopped the usual way (``cancel()``, then ``await`` under
    ``suppress(CancelledError)``), which swallows it, and the task renews on. Stop still ends it
    (it cancels again after ``renew_every``), where it used to wait forever."""
    node = Leadership(LeaseStore(journeys.engine), on_lead=noop_lead, on_follow=noop, holder="a", renew_every=0.3)
    stepping_down = asyncio.Event()

    async def duty() -> None:
        try:
            await asyncio.sleep(3600)
        finally:
            await asyncio.sleep(0.2)  # its own clean-up: the awaiting step-down waits meanwhile

    async def renewing() -> None:
        child = asyncio.create_task(duty())
        await asyncio.sleep(0)
        child.cancel()  # the step-down stops a duty
        stepping_down.set()
        with contextlib.suppress(asyncio.CancelledError):  # meant for the child; takes stop's too
            await child
        while True:  # noqa: ASYNC110 - the renewal loop goes on, as _run does
            await asyncio.sleep(0.05)

    node._task = asyncio.create_task(renewing())
    await stepping_down.wait()
    started = time.monotonic()
    await asyncio.wait_for(node.stop(), 5.0)
    assert node._task is None
    assert time.monotonic() - started < 2.0


async def noop_lead(token: int) -> None:
    return None


async def noop() -> None:
    return None


async def test_a_ticket_is_claimed_once_and_never_under_a_lost_lease(journeys: JourneyStore) -> None:
    leases = LeaseStore(journeys.engine)
    callbacks = CallbackStore(journeys.engine)
    args = dict(journey_id="j", phone="+1555", queue="billing", skill="billing", priority=0, context={})
    one = await callbacks.open(customer_id="c1", ticket_at=1, not_before=1, **args)  # type: ignore[arg-type]
    two = await callbacks.open(customer_id="c2", ticket_at=2, not_before=2, **args)  # type: ignore[arg-type]
    assert one and two
    now = time.time()
    assert await leases.acquire(ACD_LEASE, "a", ttl=3, now=now) == 1
    assert await callbacks.claim(one, attempts=1, lease=ACD_LEASE, token=1)
    assert not await callbacks.claim(one, attempts=1, lease=ACD_LEASE, token=1)  # dialling already
    # b takes the lease over (a's expired): a, not knowing yet, claims nothing any more
    assert await leases.acquire(ACD_LEASE, "b", ttl=3, now=now + 3) == 2
    assert not await callbacks.claim(two, attempts=1, lease=ACD_LEASE, token=1)
    # b's lease still has to be running when its claim is made (it runs from now + 3 on)
    assert await leases.acquire(ACD_LEASE, "b", ttl=3, now=now) == 2
    assert await callbacks.claim(two, attempts=1, lease=ACD_LEASE, token=2)
    rows = {r["id"]: r for r in await callbacks.waiting()}
    assert (rows[one]["dial_token"], rows[two]["dial_token"]) == (1, 2)
    # the ticket a dialled is orphaned for b once no ring or hold of it can last, never for a
    assert [r["id"] for r in await callbacks.orphaned(2, before=time.time() + 1)] == [one]
    assert await callbacks.orphaned(2, before=now - 1) == []
    assert await callbacks.orphaned(1, before=time.time() + 1) == []
    await callbacks.set_status(one, "done")  # the customer reached an agent meanwhile
    assert not await callbacks.requeue(one, dial_token=1)
    assert await callbacks.requeue(two, dial_token=2)
    assert {r["id"]: r["status"] for r in await callbacks.waiting()} == {two: "waiting"}


class RecordingAmi:
    """The AMI side of one node's dispatcher: connected, accepts every action, keeps what it sent.
    ``channels``: the uniqueids Asterisk lists; ``astdb``: its AstDB entries ("family/key")."""

    def __init__(self) -> None:
        self.sent: list[dict[str, str]] = []
        self.connected = asyncio.Event()
        self.connected.set()
        self.channels: list[str] = []
        self.astdb: dict[str, str] = {}
        self.when_connected: list[Any] = []

    def on_event(self, handler: Any) -> None: ...
    def on_connected(self, handler: Any) -> None:
        self.when_connected.append(handler)

    async def queue_status(self) -> list[Any]:
        return []  # no queue members, nobody waiting: the ACD's rebuild adds its agents back

    async def reconnected(self) -> None:
        """As the client does after a login: connected, then its handlers in order."""
        self.connected.set()
        for handler in self.when_connected:
            await handler()

    async def action(self, action: dict[str, str]) -> dict[str, str]:
        self.sent.append(action)
        key = f"{action.get('Family')}/{action.get('Key')}"
        if action.get("Action") == "DBGet" and key not in self.astdb:
            raise AmiError("AMI DBGet: Database entry not found")  # as Asterisk 22 answers
        if action.get("Action") == "DBDel":
            self.astdb.pop(key, None)
        return {"Response": "Success"}

    async def action_list(self, action: dict[str, str]) -> list[dict[str, Any]]:
        assert action == {"Action": "CoreShowChannels"}
        return [{"Event": "CoreShowChannel", "Uniqueid": uid} for uid in self.channels]


def dispatcher(journeys: JourneyStore, token: int) -> tuple[Callbacks, RecordingAmi]:
    ami = RecordingAmi()
    acd = Acd(ami=ami, journeys=journeys, customers=CustomerStore(journeys.engine))  # type: ignore[arg-type]
    callbacks = Callbacks(acd, CallbackStore(journeys.engine))
    callbacks.token = token
    return callbacks, ami


def originated(ami: RecordingAmi) -> list[str]:
    return [a["ActionID"] for a in ami.sent if a.get("Action") == "Originate"]


async def test_a_dispatcher_under_a_lost_lease_dials_nothing_and_its_successor_dials_once(
    journeys: JourneyStore,
) -> None:
    leases = LeaseStore(journeys.engine)
    old, old_ami = dispatcher(journeys, token=1)
    new, new_ami = dispatcher(journeys, token=2)
    ticket = await old.store.open(
        customer_id="c1", journey_id="j", phone="+1555", queue="billing", skill="billing",
        priority=0, ticket_at=1, not_before=1, context={},
    )  # fmt: skip
    assert ticket
    now = time.time()
    assert await leases.acquire(ACD_LEASE, "old", ttl=3, now=now - 10) == 1  # long expired
    assert await leases.acquire(ACD_LEASE, "new", ttl=30, now=now) == 2
    agent = {"id": "a1", "username": "ann", "display_name": "Ann", "endpoint": "agent1001", "skills": {"billing": 0}}
    for node in (old, new):
        await node.acd.login(agent)
    await old.acd.ready("a1")  # would hold ann and dial the ticket, had it the lease
    assert originated(old_ami) == [] and old.reserved == {}
    await new.acd.ready("a1")
    assert originated(new_ami) == [f"cb-{ticket}-1"] and set(new.reserved) == {ticket}
    assert await new.tick() == []  # dialling already: not twice
    assert await old.tick() == []
    (row,) = await new.store.waiting()
    assert (row["status"], row["dial_token"]) == ("dialing", 2)


def test_a_callback_channel_names_its_ticket_and_no_other_channel_does() -> None:
    assert channel_id("0f3a", 2) == "cb-0f3a-2"
    assert ticket_of_channel("cb-0f3a-2") == "0f3a"
    assert ticket_of_channel("cb-0f-3a-12") == "0f-3a"
    for other in ("1764780000.42", "cb-", "cb-0f3a", "cb-0f3a-x", "cb--2", "xcb-0f3a-2"):
        assert ticket_of_channel(other) is None, other


def test_an_orphaned_ticket_is_done_if_asterisk_connected_it_and_dialled_again_only_when_nothing_is_up() -> None:
    claimed = 100.0
    later = claimed + ORPHAN_QUIET_S
    # an agent was connected to it (the dialplan's AstDB mark), up or ended: done, never dialled again
    assert orphan_fate(connected=True, alive=False, claimed_at=claimed, now=later) == "done"
    assert orphan_fate(connected=True, alive=True, claimed_at=claimed, now=claimed) == "done"
    # ringing, queued or talking without the mark yet: its events reach this leader now
    assert orphan_fate(connected=False, alive=True, claimed_at=claimed, now=later + 60) == "in_flight"
    # nothing up: a dial sent just after the claim may not have its channel yet
    assert orphan_fate(connected=False, alive=False, claimed_at=claimed, now=later - 0.1) == "wait"
    assert orphan_fate(connected=False, alive=False, claimed_at=claimed, now=later) == "requeue"


def test_an_orphan_claimed_just_before_a_kill_waits_only_briefly_after_the_takeover() -> None:
    """The earlier leader sent any dial before this node took the lease: TAKEOVER_QUIET_S after
    the takeover, no channel means no dial, even when the claim was under ORPHAN_QUIET_S ago."""
    claimed = 100.0
    led = claimed + 2.0  # the lease changed hands 2 s after the claim
    fate = {
        now: orphan_fate(connected=False, alive=False, claimed_at=claimed, now=now, led_at=led)
        for now in (led, led + TAKEOVER_QUIET_S - 0.01, led + TAKEOVER_QUIET_S)
    }
    assert list(fate.values()) == ["wait", "wait", "requeue"]
    assert led + TAKEOVER_QUIET_S < claimed + ORPHAN_QUIET_S  # sooner than the claim's bound alone
    # a claim long before the takeover is judged on the claim, as before
    assert orphan_fate(connected=False, alive=False, claimed_at=claimed, now=claimed + ORPHAN_QUIET_S, led_at=200) == (
        "requeue"
    )
    # and a channel up or an agent connected still wins over any timing
    assert orphan_fate(connected=False, alive=True, claimed_at=claimed, now=led + 60, led_at=led) == "in_flight"


async def test_a_new_leader_dials_a_due_ticket_as_soon_as_ami_is_connected_not_a_round_later(
    journeys: JourneyStore,
) -> None:
    """The agent said ready before AMI was connected (the desktops log in again at once); the
    dispatcher, whose round is long here, dials once AMI is up and the ACD rebuilt."""
    store = CallbackStore(journeys.engine)
    ticket = await store.open(
        customer_id="c1", journey_id="j", phone="+1555", queue="billing", skill="billing",
        priority=0, ticket_at=1, not_before=1, context={},
    )  # fmt: skip
    assert await LeaseStore(journeys.engine).acquire(ACD_LEASE, "new", ttl=30, now=time.time()) == 1
    new, ami = dispatcher(journeys, token=1)
    new.interval = 60.0
    ami.connected.clear()
    await new.acd.login(ANN)
    await new.acd.ready("a1")
    await new.start(1)
    try:
        await asyncio.sleep(0.05)  # its first pass: AMI not connected, nothing dialled
        assert originated(ami) == []
        await ami.reconnected()
        await wait_for(lambda: originated(ami) == [f"cb-{ticket}-1"], 2.0)
    finally:
        await new.stop()


async def wait_for(predicate: Any, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


async def old_leaders_ticket(journeys: JourneyStore) -> tuple[CallbackStore, str]:
    """A ticket claimed under token 1 by a leader that then died; token 2 leads now."""
    leases = LeaseStore(journeys.engine)
    store = CallbackStore(journeys.engine)
    ticket = await store.open(
        customer_id="c1", journey_id="j", phone="+1555", queue="billing", skill="billing",
        priority=0, ticket_at=1, not_before=1, context={},
    )  # fmt: skip
    assert ticket
    now = time.time()
    assert await leases.acquire(ACD_LEASE, "old", ttl=3, now=now) == 1
    assert await store.claim(ticket, attempts=1, lease=ACD_LEASE, token=1)  # then the old leader died
    assert await leases.acquire(ACD_LEASE, "new", ttl=30, now=now + 3) == 2
    return store, ticket


ANN = {"id": "a1", "username": "ann", "display_name": "Ann", "endpoint": "agent1001", "skills": {"billing": 0}}


async def test_a_ticket_an_earlier_leader_claimed_but_never_dialled_is_dialled_again_within_seconds(
    journeys: JourneyStore,
) -> None:
    store, ticket = await old_leaders_ticket(journeys)
    new, new_ami = dispatcher(journeys, token=2)
    await new.acd.login(ANN)
    await new.acd.ready("a1")  # a dial sent right after the claim may not be up yet: not yet
    assert originated(new_ami) == []
    new.clock = lambda: time.time() + ORPHAN_QUIET_S  # no channel of it in Asterisk, no agent connected
    await new.acd.pause("a1", "")
    assert await new.tick() == []  # back to waiting, but nobody is ready
    assert [r["status"] for r in await store.waiting()] == ["waiting"]
    await new.acd.ready("a1")
    assert originated(new_ami) == [f"cb-{ticket}-2"]
    (dial,) = [a for a in new_ami.sent if a.get("Action") == "Originate"]
    assert dial["ChannelId"] == dial["ActionID"]  # the channel names its ticket for the next leader


async def test_a_callback_an_earlier_leader_dialled_is_left_while_up_and_closed_once_asterisk_says_it_connected(
    journeys: JourneyStore,
) -> None:
    store, ticket = await old_leaders_ticket(journeys)
    new, new_ami = dispatcher(journeys, token=2)
    new.clock = lambda: time.time() + ORPHAN_QUIET_S + 60
    await new.acd.login(ANN)
    new_ami.channels = ["1764780000.1", f"cb-{ticket}-1"]  # the customer's channel is up: ringing or queued
    await new.acd.ready("a1")
    assert await new.tick() == []
    assert originated(new_ami) == [] and [r["status"] for r in await store.waiting()] == ["dialing"]
    # an agent was connected to it while no leader listened (the dialplan's AstDB mark), and it ended
    new_ami.channels = []
    new_ami.astdb[f"ivr-callback/{ticket}"] = "connected"
    assert await new.tick() == []
    assert await store.waiting() == []  # done: not dialled a second time
    assert originated(new_ami) == [] and new_ami.astdb == {}


async def test_a_renewal_behind_a_locked_database_gives_up_on_time_and_its_write_finishes_after(
    journeys: JourneyStore, tmp_path: Path
) -> None:
    """Another connection holds SQLite's write lock: the attempt answers after ``renew_every``
    (a cancelled write waited out the 30 s busy timeout), the write is not cancelled, and once
    the lock is free the same write renews the lease (no second write started meanwhile)."""
    node = Node(LeaseStore(journeys.engine), Clocks(), "a")
    node.leadership.renew_every, node.leadership.ttl = 0.3, 5.0
    assert await node.leadership.attempt() == "leader"
    lock = sqlite3.connect(tmp_path / "db.sqlite3", timeout=5, isolation_level=None, check_same_thread=False)
    lock.execute("BEGIN IMMEDIATE")
    try:
        started = time.monotonic()
        await node.leadership.attempt()
        assert time.monotonic() - started < 1.0
        writing = node.leadership._acquiring
        assert writing is not None and not writing[0].done()
        await node.leadership.attempt()  # still blocked: waits for the same write again
        assert node.leadership._acquiring is writing
    finally:
        lock.execute("ROLLBACK")
        lock.close()
    assert await node.leadership.attempt() == "leader"  # the write that was waiting, now done
    assert writing[0].done() and node.leadership._acquiring is None
    await node.leadership.stop()
    assert node.duties == ["lead 1", "follow"]


class StopWhenRenewed(LeaseStore):
    """A real lease store that, once armed, calls ``stop`` on the node the moment one of its
    renewals' writes has returned, before the renewing task has read the answer: the instant at
    which Python 3.11's ``asyncio.wait_for`` swallowed the task's cancellation."""

    def __init__(self, journeys: JourneyStore) -> None:
        super().__init__(journeys.engine)
        self.node: Leadership | None = None
        self.stopping: asyncio.Future[None] | None = None
        self.stop_called = asyncio.Event()

    async def acquire(self, name: str, holder: str, *, ttl: float, now: float) -> int | None:
        token = await super().acquire(name, holder, ttl=ttl, now=now)
        write = asyncio.current_task()
        if self.node is not None and self.stopping is None and write is not None:
            node = self.node

            def stop(_: object) -> None:
                self.stopping = asyncio.ensure_future(node.stop())
                self.stop_called.set()

            write.add_done_callback(stop)  # runs after the shield's callback: the answer is in
        return token


async def test_stopping_as_a_renewal_returns_ends_the_renewing_task(journeys: JourneyStore) -> None:
    """The App's stop cancels the renewing task and awaits it. A cancel that arrived just as the
    lease write returned was swallowed by ``asyncio.wait_for`` (3.11), the task renewed on and
    the stop (and the test run's teardown) waited forever."""
    leases = StopWhenRenewed(journeys)
    node = Leadership(leases, on_lead=noop_lead, on_follow=noop, holder="a", ttl=2.0, renew_every=0.05)
    await node.start()
    assert node.is_leader
    leases.node = node  # the next renewal (from the renewing task, 0.05 s on) stops the node
    await asyncio.wait_for(leases.stop_called.wait(), 5)
    assert leases.stopping is not None
    done, _ = await asyncio.wait([leases.stopping], timeout=3)
    if not done:  # cancelling the stop cancels the renewing task it awaits (a second cancel)
        leases.stopping.cancel()
        await asyncio.wait([leases.stopping], timeout=3)
    assert done, "stop() still waiting for the renewing task"
    leases.stopping.result()
    assert not node.is_leader
    held = await leases.holder(ACD_LEASE)
    assert held is not None and held[2] == 0.0  # and the lease was given up (expired at once)
