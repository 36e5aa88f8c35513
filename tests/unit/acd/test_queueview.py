"""The queue view every node estimates from: built from the leader's ACD, published, read back."""

from __future__ import annotations

import asyncio
from typing import Any

from ivr.acd.agents import AgentState
from ivr.acd.queueview import QUEUES, QueueView, QueueViews, estimate, queue_view
from ivr.bus.pubsub import MemoryBus


def agent(name: str, status: Any, **skills: int) -> AgentState:
    return AgentState(name, name, name.title(), f"agent-{name}", dict(skills), status=status)


STATES = [
    agent("ann", "ready", billing=0),
    agent("bob", "on_call", billing=1, support=0),
    agent("cat", "paused", support=0),
    agent("dan", "logged_out", billing=0),
]
WAITING = [{"queue": "billing"}, {"queue": "billing"}, {"queue": "support"}]
TICKETS = [{"id": "t1", "queue": "billing"}]


def test_the_view_counts_callers_tickets_and_logged_in_agents_by_skill() -> None:
    view = queue_view(STATES, WAITING, TICKETS)
    assert view == QueueView(
        waiting={"billing": 2, "support": 1},
        tickets={"billing": 1},
        skills={"billing": (2, 1), "support": (2, 0)},  # dan is logged out: not counted
        everyone=(3, 1),
    )
    assert QueueView.from_dict({**view.to_dict(), "at": 1.0}) == view  # as it rides the bus


def test_estimates_from_a_view_match_the_rules_the_caller_hears() -> None:
    view = queue_view(STATES, WAITING, TICKETS)
    # billing: 2 holding + 1 ticket ahead -> 4th; 2 agents serve it -> 2 rounds of 180 s
    assert estimate(view, "billing", None, 180.0) == (4, 360.0)
    assert estimate(view, "support", "support", 180.0) == (2, 180.0)
    assert estimate(view, "main", None, 60.0) == (1, 0.0)  # ann is ready and takes the catch-all
    assert estimate(view, "sales", None, 60.0) == (1, 60.0)  # nobody holds the skill: counted as one
    nobody = queue_view([], [], [])
    assert estimate(nobody, "billing", None, 180.0) == (1, 180.0)


async def test_a_follower_estimates_from_the_leaders_view_and_forgets_a_stale_one() -> None:
    bus = MemoryBus()
    now = [100.0]
    leading = queue_view(STATES, WAITING, TICKETS)
    leader = QueueViews(bus, lambda: leading, is_leader=lambda: True, interval=0.01, monotonic=lambda: now[0])
    follower = QueueViews(
        bus, lambda: queue_view([], [], []), is_leader=lambda: False, stale_after=15.0, monotonic=lambda: now[0]
    )
    await follower.start()
    try:
        assert follower.current() is None  # nothing heard from a leader yet: nothing known
        await leader.lead()
        for _ in range(100):
            if follower.current() is not None:
                break
            await asyncio.sleep(0.01)
        assert follower.current() == leading
        assert leader.current() == leading  # the leader reads its own live view
        now[0] += 15.5  # no view for longer than 3 heartbeats: a takeover is under way
        assert follower.current() is None
        follower.received({"waiting": "garbage"})  # a malformed message changes nothing
        assert follower.current() is None
    finally:
        await leader.stop()
        await follower.stop()


async def gap(sub: Any, seconds: float) -> bool:
    """True once ``seconds`` pass without a message (those already queued are read first)."""
    for _ in range(10):
        try:
            await asyncio.wait_for(anext(aiter(sub)), seconds)
        except TimeoutError:
            return True
    return False


async def test_a_node_that_stops_leading_stops_publishing_and_drops_its_own_view() -> None:
    bus = MemoryBus()
    sub = await bus.subscribe(QUEUES)
    view = queue_view(STATES, WAITING, TICKETS)
    node = QueueViews(bus, lambda: view, is_leader=lambda: False, interval=0.01, heartbeat=0.05)
    await node.start()
    await node.lead()
    async with sub:
        first = await asyncio.wait_for(anext(aiter(sub)), 1.0)
        assert QueueView.from_dict(first) == view
        await node.follow()
        assert node.current() is None
        assert await gap(sub, 0.2)  # 4 heartbeats without a message: a follower publishes nothing
    await node.stop()
