"""The wallboard's rules with literal agent states and waiting callers, and its publisher on a
real in-process bus."""

from __future__ import annotations

import asyncio
from typing import Any

from ivr.acd.agents import AgentState, Contact
from ivr.acd.topics import WALLBOARD
from ivr.acd.wallboard import WallboardPublisher, snapshot
from ivr.bus.pubsub import MemoryBus


def agent(agent_id: str, status: str, skills: dict[str, int], **fields: Any) -> AgentState:
    state = AgentState(agent_id, agent_id, agent_id.title(), f"ep-{agent_id}", skills, **fields)
    state.status = status  # type: ignore[assignment]
    return state


def test_queues_count_waiting_callers_the_longest_wait_and_agents_by_state() -> None:
    on_call = agent("bob", "on_call", {"billing": 0}, since=1000.0)
    on_call.call = {"uniqueid": "u1", "queue": "billing", "callerid": "+15551230001", "channel": "PJSIP/trunk-1"}
    on_call.contacts = [
        Contact("j0", "u0", "call", 900.0, ended_at=950.0),  # ended: not current
        Contact("j1", "u1", "call", 1000.0),
        Contact("j2", "c7", "chat", 1010.0),
    ]
    states = [
        agent("ann", "ready", {"billing": 0, "support": 1}, since=990.0),
        on_call,
        agent("cy", "paused", {"support": 0}, reason="lunch", since=980.0),
        agent("dee", "logged_out", {"billing": 0}),
    ]
    waiting = {
        "u5": {"queue": "billing", "joined_at": 1005.0, "callerid": "+15551230005"},
        "u6": {"queue": "billing", "joined_at": 1001.0, "callerid": "+15551230006"},
        "u7": {"queue": "outage", "joined_at": 1003.0, "callerid": "+15551230007"},
    }
    board = snapshot(states, waiting, ["main", "billing", "sales"])
    queues = {q["queue"]: q for q in board["queues"]}
    assert [q["queue"] for q in board["queues"]] == ["billing", "main", "outage", "sales", "support"]
    assert queues["billing"] == {
        "queue": "billing",
        "waiting": 2,
        "oldest_joined_at": 1001.0,
        "ready": 1,
        "busy": 1,
        "paused": 0,
    }
    assert queues["main"] == {
        "queue": "main",
        "waiting": 0,
        "oldest_joined_at": None,
        "ready": 1,
        "busy": 1,
        "paused": 1,
    }
    assert queues["support"]["ready"] == 1 and queues["support"]["paused"] == 1
    assert queues["outage"]["waiting"] == 1 and queues["sales"]["waiting"] == 0
    agents = {a["agent_id"]: a for a in board["agents"]}
    assert set(agents) == {"ann", "bob", "cy"}  # logged out: not on the board
    assert agents["bob"]["contacts"] == [
        {"channel": "call", "since": 1000.0, "queue": "billing"},
        {"channel": "chat", "since": 1010.0},
    ]
    assert (agents["cy"]["status"], agents["cy"]["reason"], agents["cy"]["since"]) == ("paused", "lunch", 980.0)
    assert "+1555" not in repr(board)  # no caller's number on a room display


def test_a_ringing_agent_shows_the_offered_call() -> None:
    ringing = agent("ann", "ringing", {"billing": 0}, since=1000.0)
    ringing.call = {"uniqueid": "u1", "queue": "billing"}
    (row,) = snapshot([ringing], {}, [])["agents"]
    assert row["contacts"] == [{"channel": "call", "since": 1000.0, "queue": "billing", "ringing": True}]


async def test_the_publisher_sends_changes_and_a_heartbeat_and_stops() -> None:
    bus = MemoryBus()
    await bus.start()
    states = [agent("ann", "ready", {"billing": 0}, since=1.0)]
    publisher = WallboardPublisher(bus, lambda: snapshot(states, {}, []), interval=0.01, heartbeat=0.3)
    async with bus.subscribe(WALLBOARD) as sub:
        await publisher.start()
        first = await sub.get(timeout=2)
        assert first["type"] == "wallboard" and first["agents"][0]["status"] == "ready"
        states[0].status = "paused"
        changed = await sub.get(timeout=2)
        assert changed["agents"][0]["status"] == "paused"
        published = publisher.published
        await asyncio.sleep(0.15)  # unchanged and within the heartbeat: nothing new
        assert publisher.published == published
        heartbeat = await sub.get(timeout=2)
        assert heartbeat["agents"] == changed["agents"] and heartbeat["at"] > changed["at"]
        await publisher.stop()
        count = publisher.published
        await asyncio.sleep(0.05)
        assert publisher.published == count
    await bus.stop()
