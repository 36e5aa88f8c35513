"""Desktop commands from a follower node reach the ACD leader over the bus, with answers, refusals
and a clear error when no leader answers; a new leader gets the followers' agents logged in again.
Two nodes share one in-process bus here (the same API as Redis; the Redis path runs in
tests/integration/test_nodes.py)."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from ivr.acd import sipcreds
from ivr.acd.chat import ChatContact
from ivr.acd.desk import AcdDesk, ChatsViaLeader, LeaderUnavailable
from ivr.acd.service import Acd
from ivr.acd.sipcreds import SoftphoneKeys
from ivr.acd.topics import agent_topic
from ivr.bus.pubsub import Bus, MemoryBus
from ivr.flow.journey import Journey
from ivr.flow.model import Interaction
from ivr.store.customers import CustomerStore
from ivr.store.journeys import JourneyStore, make_engine
from ivr.web.chat import adopt_waiting_chats

ANN = {
    "id": "a1",
    "username": "ann",
    "display_name": "Ann",
    "endpoint": "agent1001",
    "skills": {"billing": 0},
    "max_chats": 2,
}


class Node:
    def __init__(self, journeys: JourneyStore, bus: Bus, name: str, leader: bool) -> None:
        self.leader = leader
        self.acd = Acd(ami=None, journeys=journeys, customers=CustomerStore(journeys.engine), bus=bus)
        self.desk = AcdDesk(self.acd, bus, node=name, is_leader=lambda: self.leader, timeout=0.5)


def status(node: Node) -> str:
    """The agent's status in that node's ACD (read afresh: commands change it between reads)."""
    return node.acd.states["a1"].status


@pytest.fixture
async def nodes(tmp_path: Path) -> AsyncIterator[tuple[Node, Node, MemoryBus]]:
    journeys = JourneyStore(make_engine(f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite3'}"))
    await journeys.start()
    bus = MemoryBus()
    a, b = Node(journeys, bus, "a", leader=True), Node(journeys, bus, "b", leader=False)
    await a.desk.start()
    await b.desk.start()
    await a.desk.serve(1)
    try:
        yield a, b, bus
    finally:
        for node in (a, b):
            await node.desk.stop()
            await node.acd.stop()
        await journeys.stop()


async def test_a_followers_desktop_drives_the_leaders_acd(nodes: tuple[Node, Node, MemoryBus]) -> None:
    a, b, bus = nodes
    async with bus.subscribe(agent_topic("a1")) as desktop:  # what ann's browser on b hears
        await b.desk.run("login", "a1", agent=ANN)
        assert status(a) == "paused" and "a1" not in b.acd.states
        assert (await desktop.get(1))["agent"]["status"] == "paused"
        await b.desk.run("ready", "a1")
        assert status(a) == "ready"
        assert (await desktop.get(1))["agent"]["status"] == "ready"
        await b.desk.run("closed", "a1")  # her last tab on b closed: no call rings there unseen
        assert status(a) == "paused"
    # the leader's refusals come back as what the ACD raised
    with pytest.raises(PermissionError, match="finish refused"):
        await b.desk.run("finish", "a1", journey_id="not-hers", disposition="resolved", notes="")
    with pytest.raises(ValueError, match="times out of range"):
        await b.desk.run("painted", "a1", called_at=10.0, at=5.0)


async def test_no_leader_is_a_clear_error_and_a_new_leader_gets_the_agents_back(
    nodes: tuple[Node, Node, MemoryBus],
) -> None:
    a, b, _ = nodes
    await b.desk.run("login", "a1", agent=ANN)
    await b.desk.run("ready", "a1")
    # a steps down (as App._follow does): nobody answers b's commands, and a forgets its view
    a.leader = False
    await a.desk.unserve()
    await a.acd.forget()
    assert a.acd.states == {}
    with pytest.raises(LeaderUnavailable, match="try again"):
        await b.desk.run("ready", "a1")
    # c takes over with no state of ann; b logs her in again through it, paused
    c = Node(a.acd.journeys, b.desk.bus, "c", leader=True)
    await c.desk.start()
    try:
        await c.desk.serve(2)
        for _ in range(50):
            if "a1" in c.acd.states:
                break
            await asyncio.sleep(0.01)
        assert status(c) == "paused"
        await b.desk.run("ready", "a1")
        assert status(c) == "ready"
        # c steps down and a leads again: ann is back paused there, not "ready" from a's old view
        c.leader = False
        await c.desk.unserve()
        await c.acd.forget()
        a.leader = True
        await a.desk.serve(3)
        for _ in range(50):
            if "a1" in a.acd.states:
                break
            await asyncio.sleep(0.01)
        assert status(a) == "paused"
    finally:
        await c.desk.stop()
        await c.acd.stop()


async def test_a_chat_page_on_a_follower_offers_to_the_leaders_agents_and_relays_messages(
    nodes: tuple[Node, Node, MemoryBus],
) -> None:
    a, b, bus = nodes
    on_b = ChatsViaLeader(b.desk)
    contact = ChatContact("chat-j1", "j1", "billing", customer_id="c1", context={"queue": "billing"})
    assert await on_b.offer(contact) is None  # nobody logged in at the leader: no agent now
    await b.desk.run("login", "a1", agent=ANN)
    await b.desk.run("ready", "a1")
    # before, b's own ACD (no agents: they live in the leader's memory) offered the chat to nobody
    assert await b.acd.chats.offer(contact) is None
    async with bus.subscribe(agent_topic("a1")) as desktop:
        assert await on_b.offer(contact) == "a1"
        assert a.acd.chats.agent_of("chat-j1") == "a1" and on_b.agent_of("chat-j1") == "a1"
        while (message := await desktop.get(1))["type"] != "chat.offer":
            pass
        assert message["contact"]["contact_id"] == "chat-j1"
        assert await on_b.customer_message("chat-j1", "hello")
        while (message := await desktop.get(1))["type"] != "chat.message":
            pass
        assert message["text"] == "hello"
    await a.acd.chats.close("chat-j1", by="agent", agent_id="a1")  # she ends it on the leader
    assert not await on_b.customer_message("chat-j1", "still there?")
    assert on_b.agent_of("chat-j1") is None  # the page's event stream offers it again


async def test_a_chat_offer_with_no_leader_is_no_agent_now(nodes: tuple[Node, Node, MemoryBus]) -> None:
    a, b, _ = nodes
    await a.desk.unserve()  # the leader is gone; nobody answers for 0.5 s
    on_b = ChatsViaLeader(b.desk)
    assert await on_b.offer(ChatContact("chat-j2", "j2", "billing")) is None


async def test_a_customer_leaving_a_waiting_chat_on_a_follower_is_known_to_the_leader(
    nodes: tuple[Node, Node, MemoryBus],
) -> None:
    """The leader keeps the waiting chats (their queue timeout comes with the offer); a customer who
    closes the chat on a follower's page leaves the leader's queue: abandoned once, then over."""
    a, b, _ = nodes
    on_b = ChatsViaLeader(b.desk)
    contact = ChatContact("chat-j3", "j3", "billing", context={"queue": "billing"}, timeout=45.0)
    assert await on_b.offer(contact) is None  # no agent: it waits at the leader
    assert a.acd.chats.waiting["chat-j3"].contact.timeout == 45.0 and not b.acd.chats.waiting
    assert await on_b.leave("chat-j3") == "abandoned"
    assert "chat-j3" not in a.acd.chats.waiting and a.acd.chats.left_reason("chat-j3") == "closed"
    assert on_b.left_reason("chat-j3") == "closed"
    assert await on_b.leave("chat-j3") is None  # already over
    assert await on_b.offer(contact) is None and "chat-j3" not in a.acd.chats.waiting  # never offered again


async def queued_chat(journeys: JourneyStore, customer: str, queued_at: float) -> ChatContact:
    """A chat journey that reached the billing queue step at ``queued_at`` (saved as the chat
    channel saves it: status queued, its outcome, ``journey_queued`` in its log)."""
    journey = Journey(id=uuid.uuid4().hex, flow="payments", version="1", channel="chat", step="agent")
    journey.status, journey.customer_id = "queued", customer
    journey.outcome = {"queue": "billing", "skill": "billing", "priority": 0}
    journeys.save(journey, [Interaction("journey_queued", "agent", {}, queued_at)])
    await journeys.flush()
    return ChatContact(
        f"chat-{journey.id}", journey.id, "billing", customer_id=customer, context={"queue": "billing", "priority": 0}
    )


async def test_chats_waiting_when_the_leader_dies_are_adopted_by_the_next_one_offered_or_abandoned(
    nodes: tuple[Node, Node, MemoryBus], tmp_path: Path
) -> None:
    a, b, _ = nodes
    journeys = a.acd.journeys
    now = time.time()
    stays = await queued_chat(journeys, "c1", now - 40)  # her page stays open, served by b
    leaves = await queued_chat(journeys, "c2", now - 30)  # his page was closed while no leader listened
    taken = await queued_chat(journeys, "c3", now - 20)
    journeys.append(taken.journey_id, "c3", "chat", [Interaction("chat_offered", "agent", {}, now - 10)])
    await journeys.flush()
    on_b = ChatsViaLeader(b.desk)
    for contact in (stays, leaves):
        assert await on_b.offer(contact) is None  # nobody logged in: both wait in a's memory
    assert set(a.acd.chats.waiting) == {stays.contact_id, leaves.contact_id}
    # a dies (its memory with it); b takes the lease over and adopts what the store says still waits
    a.leader = False
    await a.desk.unserve()
    b.leader = True
    await b.desk.serve(2)
    b.acd.chats.leave_grace, b.acd.chats.sweep = 0.5, 0.1
    assert await adopt_waiting_chats(journeys, b.acd.chats, now=time.time()) == 2
    assert {c: round(w.joined_at) for c, w in b.acd.chats.waiting.items()} == {
        stays.contact_id: round(now - 40),  # the wait goes on from when it began
        leaves.contact_id: round(now - 30),
    }
    assert await adopt_waiting_chats(journeys, b.acd.chats, now=time.time()) == 0  # once
    # her page offers it again: the agent who signs in on the new leader gets it
    await b.desk.run("login", "a1", agent=ANN)
    await b.desk.run("ready", "a1")
    assert await on_b.offer(stays) == "a1"
    await journeys.flush()
    (offered,) = [e for e in await journeys.interactions(stays.journey_id) if e["kind"] == "chat_offered"]
    assert offered["data"]["hold_time"] >= 40  # its whole wait, the dead leader's part too
    # his page never offers again: abandoned after the grace, with the whole wait, in his log
    abandons: list[dict[str, Any]] = []
    for _ in range(100):  # the grace, the sweep, then the log's writer
        await journeys.flush()
        abandons = [e for e in await journeys.interactions(leaves.journey_id) if e["kind"] == "queue_abandoned"]
        if abandons:
            break
        await asyncio.sleep(0.05)
    assert b.acd.chats.left_reason(leaves.contact_id) == "left"
    (abandon,) = abandons
    assert abandon["data"]["queue"] == "billing" and abandon["data"]["hold_time"] >= 30
    assert b.acd.chats.left_reason(stays.contact_id) is None  # hers was offered, not abandoned


class KeepingAmi:
    """Connected, accepts every action, keeps what it was sent (the leader's AMI)."""

    is_connected = True

    def __init__(self) -> None:
        self.sent: list[dict[str, str]] = []

    def on_event(self, handler: Any) -> None: ...
    def on_connected(self, handler: Any) -> None: ...

    async def action(self, action: dict[str, str]) -> dict[str, str]:
        self.sent.append(action)
        return {"Response": "Success"}


def softphone_nodes(journeys: JourneyStore, bus: Bus, leader_ami: KeepingAmi) -> tuple[Node, Node]:
    keys = SoftphoneKeys.from_secret("the-nodes-ami-secret")  # both nodes' ami.secret
    a, b = Node(journeys, bus, "a", leader=True), Node(journeys, bus, "b", leader=False)
    a.acd.ami = leader_ami  # type: ignore[assignment]
    a.desk.keys = b.desk.keys = keys
    return a, b


async def test_a_followers_softphone_grant_carries_no_password_and_a_new_leader_clears_astdb_but_the_live_one(
    tmp_path: Path,
) -> None:
    journeys = JourneyStore(make_engine(f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite3'}"))
    await journeys.start()
    bus = MemoryBus()
    ami = KeepingAmi()
    a, b = softphone_nodes(journeys, bus, ami)
    for node in (a, b):
        await node.desk.start()
    await a.desk.serve(1)
    try:
        async with bus.subscribe("acd.commands") as wire:
            password = await b.desk.grant_softphone("a1", "agent1001")
            command = await wire.get(1)
        assert command["op"] == "sip.grant" and password not in repr(command)
        assert set(command["args"]) == {"endpoint", "nonce", "tag"}
        puts = [x for x in ami.sent if x["Action"] == "DBPut"]
        # (b may also re-send it on hearing a's announcement: the same password again)
        assert puts and {json.loads(x["Val"])["password"] for x in puts} == {password}

        # a late revoke (ann signed in again since, here on the leader's node) deletes nothing
        stale = b.desk.grants["a1"]
        newer = await a.desk.grant_softphone("a1", "agent1001")
        await a.desk.run("sip.revoke", "a1", endpoint="agent1001", nonce=stale.nonce)
        assert ami.sent[-1]["Action"] == "DBPut" and json.loads(ami.sent[-1]["Val"])["password"] == newer
        await a.desk.revoke_softphone("a1", "agent1001")  # her page there logged out
        assert ami.sent[-1] == sipcreds.revoke_action("agent1001")
        await b.desk.grant_softphone("a1", "agent1001")

        # b takes the lead: astdb's family is cleared, and b's own page's password put back as it was
        a.leader, b.leader = False, True
        await a.desk.unserve()
        b.acd.ami = ami  # type: ignore[assignment]
        ami.sent.clear()
        await b.desk.serve(2)
        assert ami.sent[0] == sipcreds.clear_action()
        live = b.desk.grants["a1"]
        assert ami.sent[-1] == sipcreds.grant_action("agent1001", b.desk.keys.password("agent1001", live.nonce))
    finally:
        for node in (a, b):
            await node.desk.stop()
            await node.acd.stop()
        await journeys.stop()
