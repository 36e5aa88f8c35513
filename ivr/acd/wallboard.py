"""The supervisors' wallboard: queues and agents as one snapshot, published on the bus.

``snapshot`` is pure (the ACD's agent states and waiting callers in, a JSON-ready dict out), so
its rules are tested with literal states. ``WallboardPublisher`` owns one task that publishes the
snapshot on ``WALLBOARD`` at most every ``interval`` seconds, when it changed, and at least every
``heartbeat`` seconds, so a supervisor page that opens late has a full picture within one
heartbeat, on whichever web node it runs (with Redis, the ACD node and the web node may differ).
Times are absolute (``since``, ``joined_at``); the page counts the seconds itself, so an unchanged
board is not republished just because a clock moved.

Why a quarter of a second: an event reaches an open page within about 0.3 s on average and 0.6 s
at worst (the target is 1 s), while a centre of 300 agents and 1,000 waiting callers costs about
7 ms of snapshot per round and at most four messages a second per page, however many AMI events
arrived in between (bench/wallboard.py).

What a supervisor sees of a contact is its channel (call, chat, SMS), its queue and when it began:
never the caller's name, and of a waiting caller's number only the last four digits (the wallboard
is a room display; four digits are enough to match a caller who rings back).

Waiting callers carry what the IVR learned, from the screen pop the ACD prepared when they joined
the queue: the intent, whether the customer was verified, and why they are here (the menu option
they chose, keyed or said, as the menu words it; else the intent, else the routing's first reason,
else the last step of their path), and their newest timeline lines in words, as the wording module
words them for supervisors (no utterance, numbers masked). Only the ``MAX_CALLERS`` who
waited longest are listed (with the total), so a queue of a thousand callers is a message of a
bounded size: the board shows who to worry about, not a phone book.

Today's KPIs (``ivr.acd.kpitoday``) ride in the same message when known, so a page needs one
subscription and a supervisor sees the queues and the day's figures move together.

Per queue: callers waiting now, the longest wait (as the time the oldest joined), and the agents
who take that queue (its skill, or the catch-all ``main``) by state: ready, busy (ringing, on a
call, wrapping up) and paused. Logged-out agents are not counted.
"""

from __future__ import annotations

import asyncio
import heapq
import json
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from ivr.acd.agents import AgentState, memberships
from ivr.acd.topics import WALLBOARD
from ivr.aio import cancel_and_wait
from ivr.bus.pubsub import Bus

log = logging.getLogger(__name__)

BUSY = frozenset({"ringing", "on_call", "wrap_up"})
#: callers listed on the board, the longest waiting first (the queue rows count them all)
MAX_CALLERS = 50


def mask_number(number: object) -> str:
    """The last four digits of a phone number, the rest as dots: "+15551230005" -> "…0005"."""
    digits = "".join(ch for ch in str(number or "") if ch.isdigit())
    if not digits:
        return ""
    return "…" + digits[-4:] if len(digits) > 4 else "…" + digits


def _why(pop: Mapping[str, Any]) -> str:
    """The menu option they chose, else what they said it was about, else how routing saw it."""
    for found in (pop.get("choice"), (pop.get("recognition") or {}).get("intent")):
        if found:
            return str(found)[:80]
    reasons = (pop.get("routing") or {}).get("reasons") or []
    if reasons:
        return str(reasons[0])[:80]
    path = pop.get("path") or []
    return str(path[-1])[:80] if path else ""


def caller_row(call: Mapping[str, Any], pop: Mapping[str, Any] | None) -> dict[str, Any]:
    """One waiting caller as the board shows it: masked number, queue, since when, IVR context."""
    p: Mapping[str, Any] = pop or {}
    customer = p.get("customer") or {}
    return {
        "queue": str(call["queue"]),
        "joined_at": float(call["joined_at"]),
        "caller": mask_number(call.get("callerid") or p.get("caller")),
        "intent": (p.get("recognition") or {}).get("intent"),
        "verified": bool(customer.get("verified")) or any(s.get("verified") for s in p.get("slots") or []),
        "known": bool(p.get("known_customer")),
        "why": _why(p),
        # what happened last, in words (``ivr.channels.wording``, worded for supervisors)
        "story": [dict(line) for line in (p.get("story") or [])],
        "context": pop is not None,
    }


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
    states: Iterable[AgentState],
    waiting: Mapping[str, Mapping[str, Any]],
    queues: Iterable[str],
    *,
    contexts: Mapping[str, Mapping[str, Any]] | None = None,
    kpis: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Queues (every name in ``queues`` and any with a caller or an agent), logged-in agents, the
    longest-waiting callers with their IVR context (``contexts``: prepared pops by uniqueid) and
    today's KPIs when known."""
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
    pops = contexts or {}
    longest = heapq.nsmallest(
        MAX_CALLERS, waiting.items(), key=lambda item: (float(item[1]["joined_at"]), str(item[0]))
    )
    callers = [caller_row(call, pops.get(uid)) for uid, call in longest]
    board_out: dict[str, Any] = {
        "type": "wallboard",
        "queues": [board[q] for q in sorted(board)],
        "agents": agents,
        "callers": callers,
        "callers_total": len(waiting),
    }
    if kpis is not None:
        board_out["kpis"] = dict(kpis)
    return board_out


class WallboardPublisher:
    """Publishes ``snapshot`` of a live ACD on the bus; ``start``/``stop`` own its one task."""

    def __init__(
        self,
        bus: Bus,
        read: Callable[[], dict[str, Any]],
        *,
        interval: float = 0.25,
        heartbeat: float = 5.0,
        topic: str = WALLBOARD,
    ) -> None:
        self.bus = bus
        self.read = read
        #: the board's topic; the ACD's queue view (``ivr.acd.queueview``) rides the same way
        self.topic = topic
        self.interval = interval
        self.heartbeat = heartbeat
        self._task: asyncio.Task[None] | None = None
        self.published = 0

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="wallboard")

    async def stop(self) -> None:
        if self._task is not None:
            await cancel_and_wait(self._task)
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
                    await self.bus.publish(self.topic, {**board, "at": time.time()})
                    last, sent_at = encoded, now
                    self.published += 1
            except Exception:  # the board must keep going whatever one snapshot hit
                log.exception("%s snapshot failed", self.topic)
            await asyncio.sleep(self.interval)
