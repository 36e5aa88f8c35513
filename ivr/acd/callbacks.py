"""Callbacks that keep their place, and the queue estimates the caller hears.

A caller told "you are number 4, the wait is about 6 minutes" may press 1 to be called back. They
hang up; a **ticket** keeps their place: ``ticket_at`` is the moment they would have joined the
queue. The dispatcher dials the customer (AMI Originate) only when

1. the ticket is due (``not_before``: after hours, the next opening time),
2. no caller still holding in that queue joined before ``ticket_at`` (never ahead of them),
3. no older open ticket of that queue is still waiting or being dialled (first come, first served),
4. an agent with the skill is ready now (so the customer does not answer into a long wait).

The answered callback joins the queue (``[ivr-callback]`` in extensions.conf) with the highest
priority, which puts it ahead only of callers who joined after its ticket: exactly its place. The
journey variables travel with it, so the agent's screen pop shows the same context as the original
call. One open ticket per customer (a database constraint). Every step is recorded in the journey's
timeline: ``callback_requested``, ``callback_dialled`` (with the agent held for it),
``callback_connected``/``callback_failed``.

**A leader that dies with a callback under way.** What it claimed is stamped with its fencing
token; the dial's outcome (OriginateResponse, AgentConnect) may then reach nobody. The next leader
settles each such *orphan* from Asterisk, never by guessing from time alone: every callback's
channel is created with a known uniqueid (:func:`channel_id`), so a channel still up means the
dial is under way (its events now reach the new leader); and the dialplan writes an AstDB entry
(:data:`CONNECTED_FAMILY`) the moment an agent is connected to a callback, so a connection nobody
saw is still known. Connected: done. Neither up nor connected, ``ORPHAN_QUIET_S`` after the claim
or ``TAKEOVER_QUIET_S`` after this node took the lease, whichever comes first: it was never
dialled, or not answered, or the customer left the queue: waiting again. :func:`orphan_fate` is
that decision. The dispatcher's first pass runs as soon as AMI is connected and the ACD rebuilt
(not on its next one-second round), so a takeover dials what is due at once.

**The agent is held for the callback while it is dialled.** app_queue offers a free agent to
whoever is waiting the moment they are unpaused (``autofill``), within milliseconds, while the
customer's phone rings for seconds and the callback's priority only counts once they have answered
and joined. Dialled after the agent is free, a callback would lose that agent to a caller who came
after its ticket -- every time such a caller is holding, so the ticket would never be served. So
the agent the callback needs stays paused in app_queue (``QueuePause`` with reason ``callback``)
from the decision until the callback joins the queue, where it is then the head; a failed dial,
a hang-up before joining or :data:`RESERVE_S` without a join releases them. When an agent says
ready, the ACD asks :meth:`Callbacks.reserve_on_ready` first, before it would unpause them.

:func:`due_tickets` and :func:`ticket_for_agent` are the pure decision, :func:`expired` the pure
bound on a hold; :class:`Callbacks` wires them to the store, AMI and the ACD.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

from ivr.acd.queueview import QueueView, estimate, queue_view
from ivr.agi import variables as var
from ivr.aio import cancel_and_wait, wait_for
from ivr.ami import actions
from ivr.ami import events as ev
from ivr.ami.client import AmiError
from ivr.flow.hours import BusinessHours
from ivr.flow.model import Journey, Queue
from ivr.routing.rules import CATCH_ALL
from ivr.store.leases import ACD_LEASE

if TYPE_CHECKING:
    from ivr.acd.agents import AgentState
    from ivr.acd.service import Acd
    from ivr.store.agents import CallbackStore

log = logging.getLogger(__name__)
CALLBACK_PRIORITY = 10  # the queue's highest: ahead of everyone who joined after the ticket
MAX_ATTEMPTS = 3
RETRY_S = 60.0
DIAL_TIMEOUT_S = 30.0  # how long the customer's phone rings (Originate's Timeout)
#: the longest an agent is held for a callback: the ring, then the answered call reaching Queue()
RESERVE_S = DIAL_TIMEOUT_S + 15.0
#: a ticket left ``dialing`` by an earlier leader, with no channel of its dial in Asterisk, is
#: settled this long after its claim: the dial follows the claim within milliseconds, so a dial
#: the old leader had sent has a channel by then
ORPHAN_QUIET_S = 5.0
#: ... or this long after this node took the lease: an earlier leader dials only while it holds
#: the lease and stops before another node can take it (``ivr.acd.leader``), so its last dial
#: reached Asterisk before the takeover, and Asterisk creates an Originate's channel within
#: milliseconds. Measured: the 5 s from the claim alone held a ticket claimed just before a kill
#: until 5 s after it, 2 s after the survivor led.
TAKEOVER_QUIET_S = 1.0
RESERVE_REASON = "callback"  # the pause reason app_queue shows (QueueStatus, queue_log) while held
#: AstDB family where ``[ivr-callback-connected]`` (extensions.conf) marks a callback, by ticket id,
#: when app_queue connects it to an agent: Asterisk's record, whichever controller was listening
CONNECTED_FAMILY = "ivr-callback"
CHANNEL_PREFIX = "cb-"
OrphanFate = Literal["done", "in_flight", "wait", "requeue"]


def channel_id(ticket: str, attempt: int) -> str:
    """The uniqueid of the channel dialled for ``ticket``'s ``attempt`` (also the Originate's ActionID)."""
    return f"{CHANNEL_PREFIX}{ticket}-{attempt}"


def ticket_of_channel(uniqueid: str) -> str | None:
    """The ticket a channel was dialled for (:func:`channel_id`), or None for any other channel. Pure."""
    if not uniqueid.startswith(CHANNEL_PREFIX):
        return None
    ticket, sep, attempt = uniqueid[len(CHANNEL_PREFIX) :].rpartition("-")
    return ticket if sep and ticket and attempt.isdigit() else None


def orphan_fate(
    *, connected: bool, alive: bool, claimed_at: float, now: float, led_at: float | None = None
) -> OrphanFate:
    """What becomes of a ticket an earlier leader left ``dialing``. ``connected``: Asterisk's
    AstDB says an agent was connected to it; ``alive``: a channel of its dial is up; ``led_at``:
    when this node took the lease (None: not known). Read in that order after listing the
    channels, a channel that ends meanwhile is still judged right: it was connected before it
    ended, or never. Pure.

    ``done``: it reached an agent. ``in_flight``: ringing, queued or talking: its events reach
    this leader now. ``wait``: too soon after the claim (and after the takeover) to tell an unsent
    dial from one not yet up. ``requeue``: never dialled, not answered, or the customer left the
    queue: dial again."""
    if connected:
        return "done"
    if alive:
        return "in_flight"
    quiet_from = claimed_at + ORPHAN_QUIET_S
    if led_at is not None:
        quiet_from = min(quiet_from, led_at + TAKEOVER_QUIET_S)
    if now < quiet_from:
        return "wait"
    return "requeue"


@dataclass(frozen=True)
class Ticket:
    id: str
    queue: str
    skill: str
    ticket_at: float
    not_before: float
    status: str  # waiting | dialing


def due_tickets(
    tickets: Sequence[Ticket],
    holding: dict[str, list[float]],
    ready_skills: set[str],
    now: float,
) -> list[Ticket]:
    """Tickets to dial now. ``holding``: queue -> join times of callers still waiting in it;
    ``ready_skills``: skills (queue names) with at least one ready agent. Pure."""
    out: list[Ticket] = []
    by_queue: dict[str, list[Ticket]] = {}
    for ticket in sorted(tickets, key=lambda t: t.ticket_at):
        by_queue.setdefault(ticket.queue, []).append(ticket)
    for queue, queue_tickets in by_queue.items():
        head = queue_tickets[0]  # an older ticket of this queue, waiting or dialling, goes first
        if head.status != "waiting" or head.not_before > now:
            continue
        if any(joined < head.ticket_at for joined in holding.get(queue, [])):
            continue  # someone who called before this ticket is still holding
        if queue not in ready_skills and head.skill not in ready_skills:
            continue
        out.append(head)
    return out


def ticket_for_agent(
    tickets: Sequence[Ticket],
    holding: dict[str, list[float]],
    agent_skills: Iterable[str],
    now: float,
) -> Ticket | None:
    """The ticket an agent who has just become free should be held for, if any: the oldest due
    ticket of a queue they serve (every agent serves the catch-all queue). Pure."""
    due = due_tickets(tickets, holding, {*agent_skills, CATCH_ALL}, now)
    return min(due, key=lambda t: t.ticket_at) if due else None


@dataclass(frozen=True)
class Reservation:
    """An agent kept paused in app_queue for the callback ``ticket_id`` until ``until``."""

    ticket_id: str
    agent_id: str
    interface: str
    until: float


def expired(reservations: Iterable[Reservation], now: float) -> list[Reservation]:
    """Holds past their bound: the callback never joined (lost event, stuck channel). Pure."""
    return [r for r in reservations if r.until <= now]


def next_opening(hours: BusinessHours, now: float, step_min: int = 5, horizon_days: int = 14) -> float:
    """The first moment (to ``step_min``) at or after ``now`` when ``hours`` is open; ``now`` if open."""
    t = datetime.fromtimestamp(now, UTC)
    if hours.is_open(t):
        return now
    t = t.replace(second=0, microsecond=0) + timedelta(minutes=step_min - t.minute % step_min)
    for _ in range(horizon_days * 24 * 60 // step_min):
        if hours.is_open(t):
            return t.timestamp()
        t += timedelta(minutes=step_min)
    raise ValueError(f"calendar {hours.name} never opens in the next {horizon_days} days")


class Callbacks:
    """Owned by the App through the ACD: ``start``/``stop`` run the dispatcher task."""

    def __init__(
        self,
        acd: Acd,
        store: CallbackStore,
        *,
        dial: str = "PJSIP/{number}@trunk",
        offer_after: float = 120.0,
        handle_time: float = 180.0,
        interval: float = 1.0,
        clock: Callable[[], float] = time.time,
        hours: Callable[[Journey, Queue], BusinessHours | None] | None = None,
        shared: Callable[[], QueueView | None] | None = None,
    ) -> None:
        self.acd = acd
        #: the queue view estimates read (``QueueViews.current``: the leader's, on every node);
        #: None: this node's own (a lone controller)
        self.shared = shared
        self.store = store
        self.dial = dial
        self.offer_after = offer_after
        self.handle_time = handle_time
        self.interval = interval
        self.clock = clock
        #: the calendar that says when this queue is staffed (after hours: dial at opening)
        self.hours = hours
        self.open: list[dict[str, Any]] = []  # cache of open tickets, refreshed by the dispatcher
        self._dialing: dict[str, dict[str, Any]] = {}  # action id -> ticket
        #: ticket id -> the agent held (paused in app_queue) while that callback is dialled
        self.reserved: dict[str, Reservation] = {}
        #: one decision at a time: the dispatcher and an agent's "ready" must not both take a ticket
        self._deciding = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        #: the fencing token of the ACD lease this node dials under (see ``start``)
        self.token: int | None = None
        #: when this node started dialling under ``token`` (it had just taken the lease)
        self.led_at: float | None = None
        #: set to run the next pass now rather than at the end of ``interval``
        self._wake = asyncio.Event()
        if acd.ami is not None:  # registered after the ACD: sees every event after the ACD did
            acd.ami.on_event(self.on_event)
            acd.ami.on_connected(self._connected_again)  # after the ACD's rebuild, likewise
            acd.hold_on_ready(self.reserve_on_ready)

    # ------------------------------------------------------------------ what the caller hears

    def view(self) -> QueueView:
        """This node's live queue view (meaningful on the ACD leader, whose ACD reads AMI)."""
        return queue_view(self.acd.states.values(), self.acd.waiting.values(), self.open)

    def estimate(self, queue: str, skill: str | None = None) -> tuple[int, float]:
        """(position the caller would take, estimated wait in seconds), from the leader's view on
        any node (``shared``); (0, 0) when no view is known (a takeover under way): the caller goes
        straight to the queue unannounced."""
        view = self.shared() if self.shared is not None else self.view()
        if view is None:
            return 0, 0.0
        return estimate(view, queue, skill, self.handle_time)

    def callback_after(self) -> float | None:
        """The wait from which a queue step offers a callback unless it says otherwise
        (``callbacks.offer_after``; negative: never)."""
        return self.offer_after if self.offer_after >= 0 else None

    async def book(self, journey: Journey, queue: Queue, *, open_at: float | None = None) -> str | None:
        """A ticket for this caller at their place now; None if they already have an open one."""
        if not journey.caller:
            return None
        now = self.clock()
        calendar = self.hours(journey, queue) if self.hours and open_at is None else None
        if calendar is not None:
            open_at = next_opening(calendar, now)
        ticket = await self.store.open(
            customer_id=journey.customer_id or f"phone:{journey.caller}",
            journey_id=journey.id,
            phone=journey.caller,
            queue=queue.queue,
            skill=queue.skill or queue.queue,
            priority=queue.priority,
            ticket_at=now,
            not_before=open_at or now,
            context={k: v for k, v in queue.variables.items()},
        )
        if ticket is not None:
            self.open.append({"id": ticket, "queue": queue.queue, "ticket_at": now})
            log.info("callback %s booked for journey %s in %s", ticket, journey.id, queue.queue)
        return ticket

    # ------------------------------------------------------------------ dispatcher

    async def start(self, token: int | None = None) -> None:
        """Dial from now on; ``token``: the ACD lease's fencing token every claim must still hold
        (None: a lone controller with no lease to check)."""
        self.token = token
        self.led_at = self.clock() if token is not None else None
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="callback-dispatcher")

    async def stop(self) -> None:
        if self._task is not None:
            await cancel_and_wait(self._task)
            self._task = None
        for ticket_id in list(self.reserved):  # nobody will release them after us
            await self._release(ticket_id, "controller stopping")

    async def _run(self) -> None:
        while True:
            self._wake.clear()  # a wake-up during the pass runs another one at once
            try:
                await self.tick()
            except Exception:
                log.exception("callback dispatcher failed; retrying")
            with contextlib.suppress(TimeoutError):
                await wait_for(self._wake.wait(), self.interval)

    async def _connected_again(self) -> None:
        """AMI is (re)connected and the ACD rebuilt from it: a pass now, not at the next round
        (after a takeover the tickets due meanwhile wait for nothing else)."""
        self._wake.set()

    def _ready(self) -> bool:
        return self.acd.ami is not None and self.acd.ami.connected.is_set()

    def _holding(self) -> dict[str, list[float]]:
        """queue -> join times of the callers holding in it (callbacks are tickets, not holders)."""
        holding: dict[str, list[float]] = {}
        for call in self.acd.waiting.values():
            # a callback is a ticket; known by its channel's uniqueid when it joined before this
            # node led (the ACD's rebuild does not read its variables)
            if not call.get("callback") and ticket_of_channel(str(call.get("uniqueid", ""))) is None:
                holding.setdefault(call["queue"], []).append(float(call.get("joined_at") or 0.0))
        return holding

    @staticmethod
    def _tickets(rows: list[dict[str, Any]]) -> list[Ticket]:
        return [Ticket(r["id"], r["queue"], r["skill"], r["ticket_at"], r["not_before"], r["status"]) for r in rows]

    def _free(self, state: AgentState) -> bool:
        held = {r.agent_id for r in self.reserved.values()}
        return state.status == "ready" and state.agent_id not in held

    async def tick(self) -> list[str]:
        """One pass: release holds past their bound, then dial every ticket that is due and has a
        free agent to hold for it. Returns the ids dialled."""
        for hold in expired(self.reserved.values(), self.clock()):
            log.warning(
                "callback %s: agent %s held %.0f s without the callback joining",
                hold.ticket_id,
                hold.agent_id,
                RESERVE_S,
            )
            await self._release(hold.ticket_id, "held too long")
        rows = await self.store.waiting()
        self.open = rows
        if not self._ready():
            return []
        await self._settle_orphans()
        dialled: list[str] = []
        async with self._deciding:
            rows = await self.store.waiting()  # fresh: a "ready" may have taken one meanwhile
            self.open = rows
            ready = {skill for s in self.acd.states.values() if self._free(s) for skill in [*s.skills, CATCH_ALL]}
            for ticket in due_tickets(self._tickets(rows), self._holding(), ready, self.clock()):
                agents = self.acd.agents_with_skill(ticket.skill, self._free) or self.acd.agents_with_skill(
                    ticket.queue, self._free
                )
                if not agents:
                    continue
                row = next(r for r in rows if r["id"] == ticket.id)
                if await self._dial(row, agents[0]):
                    dialled.append(ticket.id)
        return dialled

    async def _settle_orphans(self) -> None:
        """Settle the tickets an earlier leader left ``dialing`` (see :func:`orphan_fate`): their
        dial's outcome went to a node that is gone, and a dialling ticket blocks its queue's later
        tickets. Each is changed compared on the token it was claimed under."""
        if self.token is None or self.acd.ami is None:
            return
        orphans = await self.store.orphaned(self.token, before=self.clock())
        if not orphans:
            return
        channels = await self.acd.ami.action_list({"Action": "CoreShowChannels"})
        alive = {ticket_of_channel(str(c.get("Uniqueid", ""))) for c in channels} - {None}
        for row in orphans:
            ticket = row["id"]
            connected = await self._connected(ticket)
            fate = orphan_fate(
                connected=connected,
                alive=ticket in alive,
                claimed_at=row["updated_at"],
                now=self.clock(),
                led_at=self.led_at,
            )
            if fate == "done":
                if await self.store.requeue(ticket, dial_token=row["dial_token"], status="done"):
                    log.warning("callback %s: reached an agent under an earlier ACD leader: done", ticket)
                    await self._record(row["journey_id"], "callback_connected", ticket=ticket, queue=row["queue"])
                await self._forget_connected(ticket)
            elif fate == "requeue" and await self.store.requeue(ticket, dial_token=row["dial_token"]):
                log.warning("callback %s: an earlier ACD leader's dial never reached an agent: waiting again", ticket)

    async def _connected(self, ticket: str) -> bool:
        """Whether the dialplan marked ``ticket`` connected to an agent (its AstDB entry exists).
        Raises AmiError when AMI cannot say: the orphan is then settled on a later pass."""
        assert self.acd.ami is not None
        try:  # the entry's value follows as an event; its existence is the answer
            await self.acd.ami.action({"Action": "DBGet", "Family": CONNECTED_FAMILY, "Key": ticket})
        except AmiError as exc:
            if "not found" in str(exc).lower():  # "Database entry not found"
                return False
            raise
        return True

    async def _forget_connected(self, ticket: str) -> None:
        """Drop the dialplan's AstDB mark of a settled ticket (absent when it never connected)."""
        assert self.acd.ami is not None
        with contextlib.suppress(AmiError):
            await self.acd.ami.action({"Action": "DBDel", "Family": CONNECTED_FAMILY, "Key": ticket})

    async def reserve_on_ready(self, state: AgentState) -> bool:
        """``state`` has just said ready and is still paused in app_queue. If a callback is due
        that this agent can take, keep them paused for it and dial the customer: True, and the
        ACD must not unpause them (the callback's join does). Also True while they are held already."""
        if not self._ready():
            return False
        async with self._deciding:
            if any(r.agent_id == state.agent_id for r in self.reserved.values()):
                return True
            rows = await self.store.waiting()
            self.open = rows
            ticket = ticket_for_agent(self._tickets(rows), self._holding(), state.skills, self.clock())
            if ticket is None:
                return False
            return await self._dial(next(r for r in rows if r["id"] == ticket.id), state)

    async def _dial(self, row: dict[str, Any], agent: AgentState) -> bool:
        """Claim the ticket, hold ``agent`` for it, then dial the customer. True if the dial is
        under way. The claim comes first: it is what makes a ticket dialled once, by one leader."""
        assert self.acd.ami is not None
        attempts = int(row["attempts"]) + 1
        if not await self.store.claim(row["id"], attempts=attempts, lease=ACD_LEASE, token=self.token):
            log.warning("callback %s: not claimed (taken meanwhile, or this node lost the ACD lease)", row["id"])
            return False
        try:
            await self.acd.ami.action(actions.queue_pause(agent.interface, True, reason=RESERVE_REASON))
        except AmiError as exc:
            log.warning("callback %s: could not hold agent %s: %s", row["id"], agent.username, exc)
            await self.store.set_status(row["id"], "waiting", attempts=int(row["attempts"]))
            return False
        self.reserved[row["id"]] = Reservation(row["id"], agent.agent_id, agent.interface, self.clock() + RESERVE_S)
        context = dict(row["context"] or {})
        variables = {
            var.inherited(k): v for k, v in context.items() if k.startswith(var.JOURNEY_PREFIX) and "," not in v
        }
        variables.update(
            {
                var.QUEUE: row["queue"],
                var.QUEUE_PRIO: str(CALLBACK_PRIORITY),
                var.inherited(var.CALLBACK_ID): row["id"],
            }
        )
        action_id = channel_id(row["id"], attempts)
        self._dialing[action_id] = row
        try:
            await self.acd.ami.action(
                actions.originate(
                    self.dial.format(number=row["phone"]),
                    context="ivr-callback",
                    exten="s",
                    caller_id=row["phone"],
                    timeout_ms=int(DIAL_TIMEOUT_S * 1000),
                    variables=variables,
                    action_id=action_id,
                    channel_id=action_id,
                )
            )
        except AmiError as exc:
            log.warning("callback %s: originate refused: %s", row["id"], exc)
            self._dialing.pop(action_id, None)
            await self._release(row["id"], "originate refused")
            await self._failed(row, attempts, str(exc))
            return False
        log.info("callback %s: dialling %s, agent %s held for it", row["id"], row["queue"], agent.username)
        await self._record(
            row["journey_id"], "callback_dialled", ticket=row["id"], attempt=attempts, agent_id=agent.agent_id
        )
        return True

    async def _release(self, ticket_id: str, why: str) -> None:
        """Stop holding the agent kept for ``ticket_id``: unpause them if they are still ready (an
        agent who paused, logged out or took a call meanwhile keeps the state they are in)."""
        hold = self.reserved.pop(ticket_id, None)
        if hold is None:
            return
        state = self.acd.states.get(hold.agent_id)
        if state is None or state.status != "ready" or self.acd.ami is None:
            return
        log.info("callback %s: agent %s released (%s)", ticket_id, state.username, why)
        try:
            await self.acd.ami.action(actions.queue_pause(hold.interface, False))
        except AmiError as exc:  # AMI down: the ACD's rebuild puts the agent's pause state back
            log.warning("callback %s: could not release agent %s: %s", ticket_id, state.username, exc)

    async def on_event(self, event: ev.AmiEvent) -> None:
        if isinstance(event, ev.OriginateResponse) and event.action_id in self._dialing:
            row = self._dialing.pop(event.action_id)
            if event.response.lower() != "success":
                await self._release(row["id"], "not answered")
                await self._failed(row, int(row["attempts"]) + 1, f"originate {event.response} ({event.reason})")
        elif isinstance(event, ev.QueueCallerJoin) and event.caller.variables.get(var.CALLBACK_ID):
            joined = event.caller.variables[var.CALLBACK_ID]
            call = self.acd.waiting.get(event.caller.uniqueid)
            if call is not None:
                call["callback"] = joined
            await self._release(joined, "joined the queue")  # at the head: the agent is offered it
        elif isinstance(event, ev.Hangup) and event.channel.variables.get(var.CALLBACK_ID):
            await self._release(event.channel.variables[var.CALLBACK_ID], "hung up")  # no-op once joined
        elif isinstance(event, ev.QueueCallerAbandon) and event.caller.variables.get(var.CALLBACK_ID):
            # the customer answered the callback but hung up before an agent did: try again later
            left = event.caller.variables[var.CALLBACK_ID]
            rows = [r for r in self.open if r["id"] == left]
            if rows:
                await self._failed(rows[0], int(rows[0]["attempts"]), "customer left the queue")
        elif isinstance(event, ev.AgentConnect):
            ticket = event.caller.variables.get(var.CALLBACK_ID)
            if ticket:
                await self.store.set_status(ticket, "done")
                await self._record(event.caller.journey_id, "callback_connected", ticket=ticket, queue=event.queue)
                await self._forget_connected(ticket)

    async def _failed(self, row: dict[str, Any], attempts: int, why: str) -> None:
        if attempts >= MAX_ATTEMPTS:
            await self.store.set_status(row["id"], "failed")
            await self._record(row["journey_id"], "callback_failed", ticket=row["id"], why=why)
        else:
            await self.store.set_status(row["id"], "waiting", attempts=attempts)
            await self.store.postpone(row["id"], self.clock() + RETRY_S)

    async def _record(self, journey_id: str | None, kind: str, **data: Any) -> None:
        await self.acd.record(journey_id, kind, **data)
