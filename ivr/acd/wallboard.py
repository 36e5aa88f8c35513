"""The supervisors' wallboard: queues and agents as one snapshot, published on the bus.

``snapshot`` is pure (the ACD's agent states and waiting callers in, a JSON-ready dict out), so
its rules are tested with literal states. ``WallboardPublisher`` owns one task that publishes the
snapshot on ``WALLBOARD`` every ``interval`` seconds when it changed, and at least every
``heartbeat`` seconds, so a supervisor page that opens late has a full picture within one
heartbeat, on whichever web node it runs (with Redis, the ACD node and the web node may differ).
Times are absolute (``since``, ``joined_at``); the page counts the seconds itself, so an unchanged
board is not republished just because a clock moved.

What a supervisor sees of a contact is its channel (call, chat, SMS), its queue and when it began:
never the caller's number or name (the wallboard is a room display).

Per queue: callers waiting now, the longest wait (as the time the oldest joined), and the agents
who take that queue (its skill, or the catch-all ``main``) by state: ready, busy (ringing, on a
call, wrapping up) and paused. Logged-out agents are not counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from ivr.acd.agents import AgentState, memberships
from ivr.acd.topics import WALLBOARD
from ivr.bus.pubsub import Bus

log = logging.getLogger(__name__)

BUSY = frozenset({"ringing", "on_call", "wrap_up"})


def _contacts(state: AgentState) -> list[dict[str, Any]]:
    found = []
    for contact in state.contacts:
        if not contact.open:
            continue
        entry: dict[str, Any] = {"channel": contact.channel, "since": contact.started_at}
        if contact.channel == "call" and state.call and state.call.get("uniqueid") == contact.contact_id:
            entry["queue"] = state.call.get("queue")
        found.append(entry)
    if state.status == "ringing" and state.call:  # offered, not yet a contact
        found.append({"channel": "call", "since": state.since, "queue": state.call.get("queue"), "ringing": True})
    return found


def snapshot(
    states: Iterable[AgentState], waiting: Mapping[str, Mapping[str, Any]], queues: Iterable[str]
) -> dict[str, Any]:
    """Queues (every name in ``queues`` and any with a caller or an agent) and logged-in agents."""
    board: dict[str, dict[str, Any]] = {
        q: {"queue": q, "waiting": 0, "oldest_joined_at": None, "ready": 0, "busy": 0, "paused": 0} for q in queues
    }

    def queue(name: str) -> dict[str, Any]:
        return board.setdefault(
            name, {"queue": name, "waiting": 0, "oldest_joined_at": None, "ready": 0, "busy": 0, "paused": 0}
        )

    for call in waiting.values():
        row = queue(str(call["queue"]))
        row["waiting"] += 1
        joined = float(call["joined_at"])
        if row["oldest_joined_at"] is None or joined < row["oldest_joined_at"]:
            row["oldest_joined_at"] = joined
    agents = []
    for state in states:
        if not state.logged_in:
            continue
        kind = "busy" if state.status in BUSY else state.status  # ready | paused
        for name, _penalty in memberships(state.skills):
            queue(name)[kind] += 1
        agents.append(
            {
                "agent_id": state.agent_id,
                "display_name": state.display_name,
                "status": state.status,
                "reason": state.reason,
                "since": state.since,
                "contacts": _contacts(state),
            }
        )
    agents.sort(key=lambda a: (a["display_name"], a["agent_id"]))
    return {"type": "wallboard", "queues": [board[q] for q in sorted(board)], "agents": agents}


class WallboardPublisher:
    """Publishes ``snapshot`` of a live ACD on the bus; ``start``/``stop`` own its one task."""

    def __init__(
        self,
        bus: Bus,
        read: Callable[[], dict[str, Any]],
        *,
        interval: float = 1.0,
        heartbeat: float = 5.0,
    ) -> None:
        self.bus = bus
        self.read = read
        self.interval = interval
        self.heartbeat = heartbeat
        self._task: asyncio.Task[None] | None = None
        self.published = 0

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="wallboard")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        last = ""
        sent_at = -float("inf")
        while True:
            try:
                board = self.read()
                encoded = json.dumps(board, sort_keys=True)
                now = time.monotonic()
                if encoded != last or now - sent_at >= self.heartbeat:
                    await self.bus.publish(WALLBOARD, {**board, "at": time.time()})
                    last, sent_at = encoded, now
                    self.published += 1
            except Exception:  # the board must keep going whatever one snapshot hit
                log.exception("wallboard snapshot failed")
            await asyncio.sleep(self.interval)
