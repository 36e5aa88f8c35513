"""What a caller's queue estimate is computed from, the same on every node.

Why: the estimate a queue step speaks ("you are number 3, about 6 minutes") needs the callers
waiting, the open callback tickets and the agents serving the queue. Only the ACD leader knows
them (it alone reads AMI; ``ivr.acd.leader``), but a call may reach any node (the dialplan's
``[ivr-agi]`` tries a second node when the first is down). So the leader publishes a
:class:`QueueView` on the bus topic :data:`QUEUES` when it changes (checked every 0.25 s) and
every 5 s regardless, and every node estimates from the latest one it received: a follower's
caller hears what the leader's would, at most a quarter of a second late, with no round trip on
the call's path. A follower that has heard nothing from a leader for :data:`STALE_AFTER` seconds
(a takeover under way) knows nothing: the caller goes straight to the queue unannounced, as when
an agent is free, rather than being told a position that may be wrong.

:func:`queue_view` and :func:`estimate` are pure; :class:`QueueViews` owns the publishing task
(while this node leads) and the reading task (always).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ivr.acd.agents import AgentState
from ivr.acd.wallboard import WallboardPublisher
from ivr.aio import cancel_and_wait
from ivr.bus.pubsub import Bus, Message, Subscription
from ivr.routing.rules import CATCH_ALL

log = logging.getLogger(__name__)

#: the bus topic of the leader's queue view
QUEUES = "acd.queues"
#: seconds without a view from the leader after which a follower knows nothing (3 heartbeats)
STALE_AFTER = 15.0


@dataclass(frozen=True)
class QueueView:
    """Callers waiting and open callback tickets per queue; logged-in and ready agents per skill."""

    waiting: Mapping[str, int]
    tickets: Mapping[str, int]
    #: skill -> (logged-in agents holding it, of whom ready)
    skills: Mapping[str, tuple[int, int]]
    #: (logged-in agents, of whom ready): who serves the catch-all queue
    everyone: tuple[int, int]

    def to_dict(self) -> dict[str, Any]:
        return {
            "waiting": dict(sorted(self.waiting.items())),
            "tickets": dict(sorted(self.tickets.items())),
            "skills": {k: list(v) for k, v in sorted(self.skills.items())},
            "everyone": list(self.everyone),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> QueueView:
        """The view as published; raises ValueError/TypeError/KeyError on a malformed message."""

        def pair(value: Any) -> tuple[int, int]:
            logged_in, ready = (int(x) for x in value)
            return logged_in, ready

        return cls(
            waiting={str(k): int(v) for k, v in data["waiting"].items()},
            tickets={str(k): int(v) for k, v in data["tickets"].items()},
            skills={str(k): pair(v) for k, v in data["skills"].items()},
            everyone=pair(data["everyone"]),
        )


def queue_view(
    states: Iterable[AgentState], waiting: Iterable[Mapping[str, Any]], tickets: Iterable[Mapping[str, Any]]
) -> QueueView:
    """The leader's live view: its agents' states, the callers waiting (``Acd.waiting``), the open
    tickets (``Callbacks.open``). Pure."""
    skills: dict[str, tuple[int, int]] = {}
    everyone = (0, 0)
    for state in states:
        if not state.logged_in:
            continue
        ready = 1 if state.status == "ready" else 0
        everyone = (everyone[0] + 1, everyone[1] + ready)
        for skill in state.skills:
            logged_in, ready_now = skills.get(skill, (0, 0))
            skills[skill] = (logged_in + 1, ready_now + ready)
    return QueueView(
        waiting=dict(Counter(str(c.get("queue")) for c in waiting)),
        tickets=dict(Counter(str(t.get("queue")) for t in tickets)),
        skills=skills,
        everyone=everyone,
    )


def estimate(view: QueueView, queue: str, skill: str | None, handle_time: float) -> tuple[int, float]:
    """(position the caller would take, estimated wait in seconds). Pure.

    The position counts the callers waiting and the tickets keeping a place in the queue; agents
    handle callers in parallel, ``handle_time`` seconds each. An agent free for this caller now
    means nothing to announce (wait 0)."""
    position = view.waiting.get(queue, 0) + view.tickets.get(queue, 0) + 1
    serving, ready = view.everyone if queue == CATCH_ALL else view.skills.get(skill or queue, (0, 0))
    if ready >= position:
        return position, 0.0
    return position, estimate_wait(position, serving, handle_time)


def estimate_wait(position: int, agents: int, handle_time: float) -> float:
    """Seconds until a caller at ``position`` reaches an agent: handled in parallel by ``agents``."""
    rounds = -(-position // max(1, agents))  # ceil without floats
    return rounds * handle_time if position > 0 else 0.0


class QueueViews:
    """Owned by the App. ``start``/``stop`` (every node) read the leader's views from the bus;
    ``lead``/``follow`` publish this node's live view while it holds the ACD lease.
    :meth:`current` is what an estimate reads: the live view on the leader, else the latest one
    received (None when there is none, or it is older than ``stale_after``)."""

    def __init__(
        self,
        bus: Bus,
        live: Callable[[], QueueView],
        *,
        is_leader: Callable[[], bool],
        interval: float = 0.25,
        heartbeat: float = 5.0,
        stale_after: float = STALE_AFTER,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.bus = bus
        self.live = live
        self.is_leader = is_leader
        self.stale_after = stale_after
        self._monotonic = monotonic
        self._publisher = WallboardPublisher(
            bus, lambda: self.live().to_dict(), interval=interval, heartbeat=heartbeat, topic=QUEUES
        )
        self._latest: tuple[QueueView, float] | None = None
        self._reader: asyncio.Task[None] | None = None

    async def start(self) -> None:
        if self._reader is None:
            subscription = await self.bus.subscribe(QUEUES)
            self._reader = asyncio.create_task(self._read(subscription), name="acd-queue-views")

    async def stop(self) -> None:
        await self._publisher.stop()
        if self._reader is not None:
            await cancel_and_wait(self._reader)
            self._reader = None

    async def lead(self) -> None:
        await self._publisher.start()

    async def follow(self) -> None:
        await self._publisher.stop()
        self._latest = None  # the old view was ours: a follower waits for the new leader's

    def received(self, message: Message) -> None:
        """A view from the leader (malformed ones are logged and ignored; the leader reads its own
        live view, so it keeps none)."""
        if self.is_leader():
            return
        try:
            view = QueueView.from_dict(message)
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            log.warning("queue view from the ACD leader not understood: %s", exc)
            return
        if self.current() is None:
            log.info("queue estimates: from the ACD leader's view (%d callers waiting)", sum(view.waiting.values()))
        self._latest = (view, self._monotonic())

    async def _read(self, subscription: Subscription) -> None:
        async with subscription:
            async for message in subscription:
                self.received(message)

    def current(self) -> QueueView | None:
        if self.is_leader():
            return self.live()
        if self._latest is None:
            return None
        view, at = self._latest
        return view if self._monotonic() - at <= self.stale_after else None
