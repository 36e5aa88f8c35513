"""The ACD service: agents' states, queue events from AMI, screen pops to the right desktop.

Owned by ``ivr.app.App`` (``start``/``stop``). It holds the AMI client's event stream and the
logged-in agents' states (:class:`ivr.acd.agents.AgentState`); desktops talk to it through
``login/ready/pause/logout/finish`` and receive everything through the pub/sub bus on topic
``agent.<agent_id>``, so the node holding an agent's websocket need not be this one. Whatever a
desktop names (a journey, a chat) is checked by :meth:`Acd.authorize` against that agent's own
contacts (the rule is ``ivr.acd.permissions.refusal``); a refusal is an audit line and an error.

The pop path is built for latency: on ``QueueCallerJoin`` the journey, the customer and their
timeline are loaded and a pop prepared; on ``AgentCalled`` it is stamped and published at once
(one dict update and one publish). A call that joined before we were connected is loaded then.

After every AMI (re)connection :meth:`rebuild` reads ``QueueStatus`` and ``CoreShowChannels``:
the waiting callers are known again, and every logged-in agent's memberships and pause state are
put back the way our state says (after an Asterisk restart they are all gone), calls that vanished
end, and every desktop gets its state again ("recovered").
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable
from datetime import UTC, tzinfo
from typing import Any

from ivr.acd.agents import AgentState
from ivr.acd.chat import LEAVE_GRACE_S, ChatOffers
from ivr.acd.permissions import loggable, refusal
from ivr.acd.screenpop import TIMELINE_EVENTS, build_pop
from ivr.acd.sipcreds import phone_endpoint
from ivr.acd.topics import agent_topic
from ivr.acd.transfer import carried_pop
from ivr.acd.transfers import Transfers
from ivr.agi import variables as var
from ivr.aio import wait_cancelled
from ivr.ami import actions
from ivr.ami import events as ev
from ivr.ami.actions import Action
from ivr.ami.client import AmiClient, AmiError
from ivr.bus.pubsub import Bus, MemoryBus
from ivr.flow.model import Interaction
from ivr.store.customers import CustomerStore
from ivr.store.journeys import JourneyStore

#: ``agent_topic`` stays importable from here for the desktop; it lives in ivr.acd.topics.
__all__ = ["DISPOSITIONS", "Acd", "agent_topic"]

log = logging.getLogger(__name__)
#: the ``audit`` logger: one line per refused agent action (who, what, which ids, bounded)
audit = logging.getLogger("ivr.audit")
DISPOSITIONS = ("resolved", "follow_up", "escalated", "callback", "wrong_queue", "other")
#: paint times kept for metrics and benchmarks (the latest ones; older ones fall off)
PAINT_SAMPLES = 1000
#: a paint report outside [0, this] ms is a clock mismatch or a forged message, not a measurement
MAX_PAINT_MS = 600_000.0
RECENT_CONTACT_S = 3600.0


class NotYourContact(PermissionError):
    """An agent named a journey or contact that is not (or no longer) theirs."""


class Acd:
    def __init__(
        self,
        *,
        ami: AmiClient | None,
        journeys: JourneyStore,
        customers: CustomerStore,
        bus: Bus | None = None,
        recent_contact_s: float = RECENT_CONTACT_S,
        chat_leave_grace: float = LEAVE_GRACE_S,
        transfer_dial: str = "PJSIP/{number}@trunk",
        transfer_caller_id: str = "",
        tz: tzinfo = UTC,
    ) -> None:
        self.ami = ami
        #: the deployment's timezone: the times in a card's worded timeline
        self.tz = tz
        #: how long after a contact ended its agent may still write notes and a disposition
        self.recent_contact_s = recent_contact_s
        self.journeys = journeys
        self.customers = customers
        self.bus: Bus = bus or MemoryBus()
        self.states: dict[str, AgentState] = {}
        self._by_interface: dict[str, str] = {}
        #: callers waiting in queues, by their channel's uniqueid
        self.waiting: dict[str, dict[str, Any]] = {}
        self._pops: dict[str, asyncio.Task[dict[str, Any]]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self.rebuilds = 0
        #: ms from AgentCalled to painted in the browser, the latest PAINT_SAMPLES, for metrics
        self.paint_ms: deque[float] = deque(maxlen=PAINT_SAMPLES)
        self.chats = ChatOffers(self, leave_grace=chat_leave_grace)
        self.transfers = Transfers(self, dial=transfer_dial, caller_id=transfer_caller_id)
        #: Asked, in order, when an agent says ready and would be unpaused: True keeps them paused
        #: (a due callback holds them; see ``Callbacks.reserve_on_ready``). Registered by the
        #: service that owns the reason, the way it subscribes to AMI events.
        self._ready_holds: list[Callable[[AgentState], Awaitable[bool]]] = []
        if ami is not None:
            ami.on_event(self.handle)
            ami.on_connected(self.rebuild)

    async def stop(self) -> None:
        await self.chats.stop()
        for task in [*self._tasks, *self._pops.values()]:
            task.cancel()
        for task in [*self._tasks, *self._pops.values()]:
            with contextlib.suppress(Exception):  # a cancel of this task still propagates
                await wait_cancelled(task)
        self._tasks.clear()
        self._pops.clear()

    async def forget(self) -> None:
        """This node stopped being the ACD leader: drop its view of agents, callers and pops.
        Nothing keeps it true any more, and kept it would be acted on if this node led again
        (a rebuild would put stale "ready" agents back into app_queue). Agents with a desktop
        open here are logged in again through the new leader (``ivr.acd.desk``)."""
        pops = list(self._pops.values())
        self._pops.clear()
        for task in pops:
            task.cancel()
        for task in pops:
            with contextlib.suppress(Exception):  # a cancel of this task still propagates
                await wait_cancelled(task)
        self.states.clear()
        self._by_interface.clear()
        self.waiting.clear()
        self.transfers.forget()

    def _spawn(self, coro: Awaitable[Any], name: str) -> asyncio.Task[Any]:
        task: asyncio.Task[Any] = asyncio.ensure_future(coro)
        task.set_name(name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # ------------------------------------------------------------------ sending

    async def _send(self, actions: list[Action]) -> bool:
        """Send in order; False (logged) if AMI is down: ``rebuild`` will reconcile on reconnect."""
        if self.ami is None:
            return False
        for action in actions:
            try:
                await self.ami.action(action)
            except AmiError as exc:
                log.warning("AMI %s for %s failed: %s", action.get("Action"), action.get("Interface"), exc)
                return False
        return True

    async def publish_state(self, agent_id: str, **extra: Any) -> None:
        state = self.states.get(agent_id)
        if state is not None:
            await self.bus.publish(agent_topic(agent_id), {"type": "state", "agent": state.to_dict(), **extra})

    # ------------------------------------------------------------------ desktop commands

    async def login(self, agent: dict[str, Any]) -> AgentState:
        """The agent's desktop connected: join their softphone to their skill queues (paused)."""
        state = self.states.get(agent["id"])
        endpoint = phone_endpoint(agent)
        if state is not None and state.endpoint != endpoint and state.status not in ("ringing", "on_call"):
            # the agent's phone changed (``ivr agents set --phone``): the old one leaves the queues
            await self._send(state.logout())
            self._by_interface.pop(state.interface, None)
            del self.states[state.agent_id]
            state = None
        if state is None:
            state = AgentState(
                agent_id=agent["id"],
                username=agent["username"],
                display_name=agent["display_name"],
                endpoint=endpoint,
                skills={k: int(v) for k, v in agent["skills"].items()},
                max_chats=int(agent.get("max_chats", 3)),
            )
            self.states[state.agent_id] = state
            self._by_interface[state.interface] = state.agent_id
        actions = state.login()
        if actions:
            log.info("agent %s logged in on %s (skills %s)", state.username, state.interface, state.skills)
            await self._send(actions)
        await self.publish_state(state.agent_id)
        return state

    async def logout(self, agent_id: str) -> None:
        state = self.states.get(agent_id)
        if state is None:
            return
        await self._send(state.logout())
        await self.publish_state(agent_id)
        log.info("agent %s logged out", state.username)

    def hold_on_ready(self, hold: Callable[[AgentState], Awaitable[bool]]) -> None:
        """``hold(state)`` runs when an agent says ready; True keeps them paused in app_queue."""
        self._ready_holds.append(hold)

    async def ready(self, agent_id: str) -> None:
        state = self.states[agent_id]
        unpause = state.ready()
        for hold in self._ready_holds:
            if unpause and await hold(state):
                unpause = []  # held (paused) for a due callback: app_queue would give them to a later caller
        await self._send(unpause)
        await self.publish_state(agent_id)

    async def pause(self, agent_id: str, reason: str) -> None:
        state = self.states[agent_id]
        await self._send(state.pause(reason))
        await self.publish_state(agent_id)

    def authorize(
        self,
        agent_id: str,
        action: str,
        *,
        journey_id: str | None = None,
        contact_id: str | None = None,
        open_only: bool = False,
    ) -> None:
        """Raise :class:`NotYourContact` (after an audit line) unless the journey/contact is this
        agent's own call or chat, open or ended less than ``recent_contact_s`` ago."""
        why = refusal(
            self.states.get(agent_id),
            journey_id=journey_id,
            contact_id=contact_id,
            now=time.time(),
            window=self.recent_contact_s,
            open_only=open_only,
        )
        if why is not None:
            audit.warning(
                "refused %s by agent %s on journey %s contact %s: %s",
                action,
                loggable(agent_id),
                loggable(journey_id),
                loggable(contact_id),
                why,
            )
            raise NotYourContact(f"{action} refused: {why}")

    async def finish(self, agent_id: str, *, journey_id: str, disposition: str, notes: str) -> None:
        """Notes and disposition of the agent's own contact go to the customer's timeline."""
        if disposition not in DISPOSITIONS:
            raise ValueError(f"disposition must be one of {', '.join(DISPOSITIONS)}")
        self.authorize(agent_id, "finish", journey_id=journey_id)
        state = self.states.get(agent_id)
        await self.record(
            journey_id,
            "agent_disposition",
            agent_id=agent_id,
            agent=state.display_name if state else agent_id,
            disposition=disposition,
            notes=notes[:4000],
        )

    async def painted(self, agent_id: str, called_at: float, at: float) -> None:
        """A browser's report of when it drew a pop: kept (bounded) for metrics, logged at DEBUG
        (one per pop would be most of the log at a busy site)."""
        ms = (at - called_at) * 1000.0
        if not math.isfinite(ms) or not 0.0 <= ms <= MAX_PAINT_MS:
            raise ValueError("painted: times out of range")
        self.paint_ms.append(ms)
        log.debug("screen pop painted for agent %s %.0f ms after AgentCalled", agent_id, ms)

    async def record(self, journey_id: str | None, kind: str, **data: Any) -> None:
        """Append to the journey's interaction log (the timeline every channel reads)."""
        if not journey_id:
            return
        journey = await self.journeys.get(journey_id)
        if journey is None:
            log.warning("no journey %s to record %s", journey_id, kind)
            return
        self.journeys.log(journey, [Interaction(kind, journey.step, data, time.time())])

    # ------------------------------------------------------------------ pops

    async def _load_pop(self, call: dict[str, Any]) -> dict[str, Any]:
        journey = await self.journeys.get(call["journey_id"]) if call.get("journey_id") else None
        data = journey.to_dict() if journey else None
        customer = None
        timeline: list[dict[str, Any]] = []
        if journey and journey.customer_id:
            customer = await self.customers.get(journey.customer_id)
            timeline = (await self.customers.timeline(journey.customer_id, limit=TIMELINE_EVENTS)).entries
        routing = (data or {}).get("outcome", {}).get("routing") if data else None
        return build_pop(data, customer=customer, timeline=timeline, call=call, routing=routing, tz=self.tz)

    def _prepare(self, call: dict[str, Any]) -> None:
        uid = call["uniqueid"]
        if uid not in self._pops:
            task = asyncio.ensure_future(self._load_pop(call))
            task.set_name(f"pop-{uid}")
            self._pops[uid] = task

    def waiting_contexts(self) -> dict[str, dict[str, Any]]:
        """The prepared pops of the callers waiting now (by uniqueid), for the wallboard: only
        those already loaded, so reading them never waits on the database."""
        found = {}
        for uid in self.waiting:
            task = self._pops.get(uid)
            if task is not None and task.done() and not task.cancelled() and task.exception() is None:
                found[uid] = task.result()
        return found

    async def pop_for(self, call: dict[str, Any]) -> dict[str, Any]:
        self._prepare(call)
        try:
            base = await self._pops[call["uniqueid"]]
        except Exception:
            log.exception("screen pop for %s could not be loaded; sending what AMI said", call["uniqueid"])
            base = build_pop(None, call=call, tz=self.tz)
        joined = call.get("joined_at") or 0.0
        called = call["called_at"]
        return {
            **base,
            "pop_id": f"{call['uniqueid']}:{called:.6f}",
            "called_at": called,
            "queue": call.get("queue") or base.get("queue"),
            "waited_s": round(max(0.0, called - joined), 1) if joined else None,
        }

    # ------------------------------------------------------------------ AMI events

    async def handle(self, event: ev.AmiEvent) -> None:
        await self.transfers.handle(event)
        if isinstance(event, ev.QueueCallerJoin):
            call = self._waiting_from(event.queue, event.caller, event.timestamp or time.time(), event.position)
            carried = self.transfers.context_for(event.caller.uniqueid)
            if carried is not None and carried.first_joined_at:
                call["first_joined_at"] = carried.first_joined_at  # a transferred caller keeps their wait
            self._prepare(call)
        elif isinstance(event, ev.AgentCalled):
            await self._agent_called(event)
        elif isinstance(event, ev.AgentConnect):
            agent_id = self._by_interface.get(event.interface)
            self.waiting.pop(event.caller.uniqueid, None)
            if agent_id:
                state = self.states[agent_id]
                state.connected({"hold_time": event.hold_time, "connected_at": event.timestamp})
                await self.bus.publish(agent_topic(agent_id), {"type": "call.connected", "call": state.call})
                await self.publish_state(agent_id)
                self._spawn(
                    self.record(
                        event.caller.journey_id,
                        "agent_connected",
                        agent_id=agent_id,
                        agent=state.display_name,
                        queue=event.queue,
                        hold_time=event.hold_time,
                    ),
                    "record-connect",
                )
        elif isinstance(event, ev.AgentComplete):
            agent_id = self._by_interface.get(event.interface)
            self._pops.pop(event.caller.uniqueid, None)
            if agent_id and self.transfers.holds(agent_id):
                pass  # the consult moved the call out of app_queue: ivr.acd.transfers ends it
            elif agent_id:
                state = self.states[agent_id]
                ended = state.call
                await self._send(state.completed())
                await self.bus.publish(
                    agent_topic(agent_id),
                    {"type": "call.ended", "call": ended, "talk_time": event.talk_time, "by": event.reason},
                )
                await self.publish_state(agent_id)
                self._spawn(
                    self.record(
                        event.caller.journey_id,
                        "agent_completed",
                        agent_id=agent_id,
                        queue=event.queue,
                        talk_time=event.talk_time,
                        by=event.reason,
                    ),
                    "record-complete",
                )
        elif isinstance(event, ev.AgentRingNoAnswer):
            await self._cancel_ringing(event.caller.uniqueid, only=event.interface, why="no answer")
        elif isinstance(event, ev.QueueCallerAbandon | ev.QueueCallerLeave):
            if isinstance(event, ev.QueueCallerAbandon):
                self.waiting.pop(event.caller.uniqueid, None)
                self._pops.pop(event.caller.uniqueid, None)
                await self._cancel_ringing(event.caller.uniqueid, why="caller hung up")
                self._spawn(
                    self.record(
                        event.caller.journey_id, "queue_abandoned", queue=event.queue, hold_time=event.hold_time
                    ),
                    "record-abandon",
                )
            else:
                self.waiting.pop(event.caller.uniqueid, None)
        elif isinstance(event, ev.Hangup):
            uid = event.channel.uniqueid
            self.waiting.pop(uid, None)
            task = self._pops.pop(uid, None)
            if task is not None and not task.done():
                task.cancel()
            self.transfers.forget_caller(uid)
            await self._cancel_ringing(uid, why="caller hung up")
        elif isinstance(event, ev.Shutdown):
            log.warning("Asterisk is shutting down (restart=%s)", event.restart)

    def _waiting_from(self, queue: str, caller: ev.Channel, joined_at: float, position: int) -> dict[str, Any]:
        call = {
            "uniqueid": caller.uniqueid,
            "channel": caller.name,
            "queue": queue,
            "journey_id": caller.journey_id,
            "callerid": caller.callerid,
            "joined_at": joined_at,
            "position": position,
        }
        self.waiting[caller.uniqueid] = call
        return call

    async def _agent_called(self, event: ev.AgentCalled) -> None:
        agent_id = self._by_interface.get(event.interface)
        if agent_id is None:
            log.warning("queue %s rings %s, which no logged-in agent owns", event.queue, event.interface)
            return
        state = self.states[agent_id]
        known = self.waiting.get(event.caller.uniqueid)
        waiting = known if known is not None else self._waiting_from(event.queue, event.caller, 0.0, 0)
        call = {
            **waiting,
            "journey_id": waiting.get("journey_id") or event.caller.journey_id,
            "called_at": event.timestamp or time.time(),
            "agent_channel": event.agent_channel.name,
        }
        state.ringing(call)
        pop = carried_pop(await self.pop_for(call), self.transfers.context_for(event.caller.uniqueid))
        await self.bus.publish(agent_topic(agent_id), {"type": "pop", "pop": pop, "agent": state.to_dict()})

    async def _cancel_ringing(self, uniqueid: str, *, only: str | None = None, why: str) -> None:
        for state in self.states.values():
            if only and state.interface != only:
                continue
            if state.status == "ringing" and state.call and state.call.get("uniqueid") == uniqueid:
                state.no_answer()
                await self.bus.publish(
                    agent_topic(state.agent_id), {"type": "pop.cancel", "uniqueid": uniqueid, "why": why}
                )
                await self.publish_state(state.agent_id)

    # ------------------------------------------------------------------ after a reconnect

    async def rebuild(self) -> None:
        assert self.ami is not None
        status = await self.ami.queue_status()
        channels = await self.ami.action_list({"Action": "CoreShowChannels"})
        live = {str(c.get("Uniqueid")) for c in channels if c.get("Event") == "CoreShowChannel"}
        members: dict[str, dict[str, dict[str, Any]]] = {}
        now = time.time()
        self.waiting = {}
        for item in status:
            if isinstance(item, ev.QueueMember):
                members.setdefault(item.interface, {})[item.queue] = {"penalty": item.penalty, "paused": item.paused}
            elif isinstance(item, ev.QueueEntry):
                call = self._waiting_from(item.queue, item.caller, now - item.wait, item.position)
                if not call["journey_id"] and self.ami is not None:
                    with contextlib.suppress(AmiError):
                        call["journey_id"] = await self.ami.getvar(item.caller.name, var.JOURNEY_ID)
                self._prepare(call)
        self.rebuilds += 1
        owned = {s.interface for s in self.states.values() if s.logged_in}
        for interface, queues in members.items():
            if interface not in owned:
                # a member no logged-in agent owns (left by a controller that stopped, or added by
                # hand): its phone would ring without a screen pop. Agents rejoin when they log in.
                log.info("removing %s from %s: no agent is logged in on it", interface, ", ".join(sorted(queues)))
                await self._send([actions.queue_remove(q, interface) for q in sorted(queues)])
        for state in list(self.states.values()):
            fixes = state.reconcile(members.get(state.interface, {}), live)
            if fixes:
                log.info("agent %s: restoring %d queue memberships/pauses after reconnect", state.username, len(fixes))
                await self._send(fixes)
            await self.publish_state(state.agent_id, recovered=True)
        log.info(
            "ACD state rebuilt from QueueStatus: %d callers waiting, %d agents logged in",
            len(self.waiting),
            sum(1 for s in self.states.values() if s.logged_in),
        )

    # ------------------------------------------------------------------ for chat and callbacks

    def agents_with_skill(self, skill: str, predicate: Callable[[AgentState], bool]) -> list[AgentState]:
        found = [
            s for s in self.states.values() if s.logged_in and (skill in s.skills or skill == "main") and predicate(s)
        ]
        return sorted(found, key=lambda s: (s.skills.get(skill, 0), len(s.chats), s.since))
