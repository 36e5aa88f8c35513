"""Agent transfers on the ACD leader: blind and consultative, to an agent, a queue or a number.

Why here and through AMI: the agent may be on a SIP phone (or, later, the browser softphone), so
nothing depends on the phone's own transfer keys; the leader holds AMI and every agent's state,
and a desktop anywhere asks it through :class:`ivr.acd.desk.AcdDesk` (ops ``transfer``,
``transfer.complete``, ``transfer.cancel``).

What each transfer does in Asterisk (``[ivr-transfer]`` in extensions.conf)::

    blind   Setvar on the caller's channel (target, original queue and position), then AMI
            BlindTransfer of the agent's leg: the caller runs [ivr-transfer] <kind>, the agent's
            leg hangs up (app_queue: AgentComplete, reason transfer -> the agent wraps up)
    consult Setvar IVR_XFER_* on the agent's leg, then one AMI Redirect of both legs: the
            caller to [ivr-transfer-hold] (a holding bridge with music, never silence), the agent's leg to
            [ivr-transfer] consult-<kind>, which dials the target for the agent.
            complete = AMI Bridge of the caller with the target's leg (it leaves the agent's Dial),
            then Hangup of the agent's leg; cancel = AMI Bridge of the caller with the agent's leg
            (the target's leg, alone in the Dial, is hung up by Asterisk). A target that does not
            answer or hangs up first also gives the caller back to the agent.

Why not AMI Atxfer (the features.conf attended transfer): on Asterisk 22 it queues the feature code
and the extension as DTMF on the agent's channel, and the extension digits are lost while the
transfer prompt plays ("Dialed no digits", measured in the lab); the Redirect + Bridge here needs
no DTMF and no feature code, so it works the same for a SIP phone and the browser softphone.
The Redirect ends the caller's Queue(): app_queue reports AgentComplete, which the ACD ignores for
an agent whose call this module holds (:meth:`Transfers.holds`); the agent's wrap-up comes when
the consult or the call it returned to ends.

A target agent's phone is dialled directly (not through app_queue), so this module drives their
state: ringing with the card published to their desktop at once, on_call when the dialplan reports
the answer (``UserEvent(IvrTransfer, Status: ANSWER)`` from the answered channel), wrap-up when that
channel hangs up. They are paused in app_queue meanwhile, so no queue call rings them too.

A caller who hangs up during a consult leaves the agent and the target talking: the agent's leg
is hung up here (the target's, alone in the Dial, goes with it), so no channel is left behind.
Every transfer is one ``agent_transfer`` entry on the journey's timeline, with its outcome.
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass
from typing import Any, Protocol

from ivr.acd.agents import AgentState
from ivr.acd.topics import agent_topic
from ivr.acd.transfer import (
    Mode,
    Target,
    TransferContext,
    TransferRefused,
    carried_pop,
    clean_note,
    dial_string,
    parse_mode,
    parse_target,
    queue_position,
    timeline_data,
)
from ivr.agi import variables as var
from ivr.ami import actions
from ivr.ami import events as ev
from ivr.ami.client import AmiClient, AmiError
from ivr.bus.pubsub import Bus

log = logging.getLogger(__name__)
CONTEXT = "ivr-transfer"
#: where a caller waits, with music, while their agent consults
HOLD_CONTEXT = "ivr-transfer-hold"
#: the dialplan's report of a transfer's dial (``UserEvent(IvrTransfer, Transfer: id, Status: ...)``)
USER_EVENT = "IvrTransfer"
#: seconds a transfer target's phone rings before the caller goes back to their queue
RING_S = 30
TRANSFER_PAUSE = "transfer"
#: contexts of callers transferred into a queue, kept for their next card (oldest forgotten first)
REMEMBERED = 5000


@dataclass
class Leg:
    """A transfer whose target is an agent's phone, dialled by the dialplan."""

    context: TransferContext
    target_agent_id: str | None
    caller_uniqueid: str
    journey_id: str = ""
    channel_uniqueid: str = ""
    channel: str = ""
    answered: bool = False


@dataclass
class Consult:
    context: TransferContext
    agent_id: str
    caller_uniqueid: str
    caller_channel: str
    agent_channel: str
    leg: Leg
    #: what the desktop asked (complete / cancel) while it is being carried out
    finishing: str = ""
    ended: bool = False


@dataclass
class Returned:
    """A call given back to its agent after a consult: the agent wraps up when it ends (app_queue
    no longer follows it)."""

    caller_uniqueid: str
    agent_channel: str
    journey_id: str


class TransferDesk(Protocol):
    """What transfers need of the ACD (:class:`ivr.acd.service.Acd`), which owns one
    :class:`Transfers`: a protocol, so this module does not import the service (no import cycle)."""

    ami: AmiClient | None
    bus: Bus
    states: dict[str, AgentState]
    waiting: dict[str, dict[str, Any]]

    async def pop_for(self, call: dict[str, Any]) -> dict[str, Any]: ...
    async def publish_state(self, agent_id: str, **extra: Any) -> None: ...
    async def record(self, journey_id: str | None, kind: str, **data: Any) -> None: ...
    def authorize(
        self,
        agent_id: str,
        action: str,
        *,
        journey_id: str | None = None,
        contact_id: str | None = None,
        open_only: bool = False,
    ) -> None: ...


class Transfers:
    """Owned by :class:`ivr.acd.service.Acd` (it passes every AMI event to :meth:`handle`)."""

    def __init__(self, acd: TransferDesk, *, dial: str = "PJSIP/{number}@trunk", caller_id: str = "") -> None:
        self.acd = acd
        self.dial = dial
        self.caller_id = caller_id
        #: the latest transfer of each caller (by their channel's uniqueid): their next card says it
        self.carried: dict[str, TransferContext] = {}
        #: consults in progress, by the transferring agent
        self.consults: dict[str, Consult] = {}
        #: dialled agent legs, by transfer id
        self.legs: dict[str, Leg] = {}
        #: calls back with their agent after a consult, by agent
        self.returned: dict[str, Returned] = {}

    def holds(self, agent_id: str) -> bool:
        """This module follows the agent's call (a consult, or the call it gave back), not app_queue."""
        return agent_id in self.consults or agent_id in self.returned

    # ------------------------------------------------------------------ desktop commands

    async def start(
        self, agent_id: str, *, journey_id: str, kind: object, value: object, mode: object, note: object
    ) -> dict[str, Any]:
        """Transfer the agent's current call. Raises TransferRefused (the caller stays where they
        are) or NotYourContact (not this agent's call)."""
        acd = self.acd
        target = parse_target(kind, value)
        how = parse_mode(mode)
        text = clean_note(note)
        state = acd.states.get(agent_id)
        acd.authorize(agent_id, "transfer", journey_id=journey_id, open_only=True)
        if state is None or state.status != "on_call" or not state.call or state.call.get("journey_id") != journey_id:
            raise TransferRefused("transfer refused: you are not on this call")
        if agent_id in self.consults:
            raise TransferRefused("finish or cancel the consultation first")
        call = state.call
        agent_channel, caller_channel = str(call.get("agent_channel") or ""), str(call.get("channel") or "")
        if not agent_channel or not caller_channel:
            raise TransferRefused("transfer refused: this call's channels are not known")
        target_state = await self._check_target(state, target, how)
        caller_uid = str(call["uniqueid"])
        earlier = self.carried.get(caller_uid)
        first_joined = float(call.get("first_joined_at") or call.get("joined_at") or 0.0)
        if earlier is not None and earlier.first_joined_at:
            first_joined = earlier.first_joined_at
        context = TransferContext(
            transfer_id=uuid.uuid4().hex[:16],
            mode=how,
            target=target,
            by_agent_id=agent_id,
            by_name=state.display_name,
            note=text,
            at=time.time(),
            first_joined_at=first_joined,
        )
        original_queue = str(call.get("queue") or "")
        if how == "blind":
            await self._blind(state, context, target_state, caller_channel, agent_channel, original_queue)
        else:
            await self._consult(state, context, target_state, caller_channel, agent_channel)
        return {"transfer_id": context.transfer_id, "mode": how, "target": target.to_dict()}

    async def complete(self, agent_id: str) -> None:
        """The caller goes to the target (who answered); the agent's leg ends and they wrap up."""
        consult = self.consults.get(agent_id)
        if consult is None:
            raise TransferRefused("no consultation to complete")
        if not consult.leg.answered or not consult.leg.channel:
            raise TransferRefused("the target has not answered yet: wait or cancel")
        consult.finishing = "completed"
        try:
            await self._action(actions.bridge(consult.caller_channel, consult.leg.channel))
        except TransferRefused:
            consult.finishing = ""
            raise
        await self._hangup(consult.agent_channel)
        if consult.leg.target_agent_id is not None:
            # the target's card said "consulted by": the caller is theirs now, by this transfer
            await self.acd.bus.publish(
                agent_topic(consult.leg.target_agent_id),
                {"type": "transfer.received", "transfer": consult.context.to_dict()},
            )
        await self._end_consult(consult, "completed")
        await self._agent_done(agent_id, "transfer")

    async def cancel(self, agent_id: str) -> None:
        """Back to the caller: the target's leg ends."""
        consult = self.consults.get(agent_id)
        if consult is None:
            raise TransferRefused("no consultation to cancel")
        consult.finishing = "cancelled"
        await self._back_to_caller(consult, "cancelled")

    # ------------------------------------------------------------------ the checks

    async def _check_target(self, state: AgentState, target: Target, mode: Mode) -> AgentState | None:
        acd = self.acd
        if target.kind == "agent":
            found = next(
                (s for s in acd.states.values() if s.username == target.value and s.logged_in),
                None,
            )
            if found is None:
                raise TransferRefused(f"no agent {target.value} is signed in")
            if found.agent_id == state.agent_id:
                raise TransferRefused("you cannot transfer a call to yourself")
            if found.status != "ready" or any(leg.target_agent_id == found.agent_id for leg in self.legs.values()):
                raise TransferRefused(f"{found.display_name} is not ready ({found.status})")
            return found
        if target.kind == "queue":
            if mode == "consult":
                raise TransferRefused("a queue cannot be consulted: transfer blind")
            if not await self._queue_exists(target.value):
                raise TransferRefused(f"there is no queue {target.value}")
            return None
        dial_string(self.dial, target.value)  # the number's shape was checked; the template must take it
        return None

    async def _queue_exists(self, queue: str) -> bool:
        """Asked of Asterisk itself: the queues it has loaded are the ones a caller can join."""
        ami = self.acd.ami
        if ami is None:
            raise TransferRefused("the phone system is not connected: try again")
        try:
            status = await ami.queue_status(queue)
        except AmiError as exc:
            raise TransferRefused(f"the phone system did not answer: {exc}") from None
        return any(isinstance(item, ev.QueueParams) and item.queue == queue for item in status)

    async def _action(self, action: actions.Action) -> None:
        ami = self.acd.ami
        if ami is None:
            raise TransferRefused("the phone system is not connected: try again")
        try:
            await ami.action(action)
        except AmiError as exc:
            raise TransferRefused(f"the phone system refused the transfer: {exc}") from None

    # ------------------------------------------------------------------ blind

    async def _blind(
        self,
        state: AgentState,
        context: TransferContext,
        target_state: AgentState | None,
        caller_channel: str,
        agent_channel: str,
        original_queue: str,
    ) -> None:
        caller_uid = str((state.call or {}).get("uniqueid"))
        back_to = original_queue or "main"
        position = queue_position(context.first_joined_at, self.acd.waiting.values(), back_to)
        setvars = {
            var.inherited(var.XFER_ID): context.transfer_id,
            var.XFER_QUEUE: back_to,
            var.XFER_POSITION: str(position) if position else "",
            var.XFER_RING: str(RING_S),
        }
        if context.target.kind == "queue":
            setvars[var.XFER_QUEUE] = context.target.value
            target_pos = queue_position(context.first_joined_at, self.acd.waiting.values(), context.target.value)
            setvars[var.XFER_POSITION] = str(target_pos) if target_pos else ""
        elif context.target.kind == "number":
            setvars[var.XFER_DIAL] = dial_string(self.dial, context.target.value)
            setvars[var.XFER_CALLERID] = self.caller_id
        else:
            assert target_state is not None
            setvars[var.XFER_ENDPOINT] = target_state.endpoint
        for name, value in setvars.items():
            await self._action(actions.setvar(caller_channel, name, value))
        leg = None
        if target_state is not None:
            leg = await self._ring_agent(target_state, context, state.call or {})
        self._carry(caller_uid, context)
        try:
            await self._action(actions.blind_transfer(agent_channel, context=CONTEXT, exten=context.target.kind))
        except TransferRefused:
            if leg is not None:
                await self._leg_failed(leg, "refused")
            self.carried.pop(caller_uid, None)
            raise
        log.info("agent %s transferred %s blind to %s", state.username, caller_channel, context.target.label)
        await self.acd.bus.publish(
            agent_topic(state.agent_id), {"type": "transfer.started", "transfer": context.to_dict()}
        )
        await self._record(str((state.call or {}).get("journey_id") or ""), context, "transferred")

    # ------------------------------------------------------------------ consult

    async def _consult(
        self,
        state: AgentState,
        context: TransferContext,
        target_state: AgentState | None,
        caller_channel: str,
        agent_channel: str,
    ) -> None:
        setvars = {var.inherited(var.XFER_ID): context.transfer_id, var.XFER_RING: str(RING_S)}
        if context.target.kind == "number":
            setvars[var.XFER_DIAL] = dial_string(self.dial, context.target.value)
            setvars[var.XFER_CALLERID] = self.caller_id
        else:
            assert target_state is not None
            setvars[var.XFER_ENDPOINT] = target_state.endpoint
        for name, value in setvars.items():
            await self._action(actions.setvar(agent_channel, name, value))
        call = state.call or {}
        caller_uid = str(call.get("uniqueid"))
        leg = Leg(context, None, caller_uid, str(call.get("journey_id") or ""))
        if target_state is not None:
            leg = await self._ring_agent(target_state, context, call)
        else:
            self.legs[context.transfer_id] = leg
        consult = Consult(context, state.agent_id, caller_uid, caller_channel, agent_channel, leg)
        self.consults[state.agent_id] = consult  # before the Redirect: its AgentComplete is ours
        try:
            await self._action(
                actions.redirect_both(
                    caller_channel,
                    context=HOLD_CONTEXT,
                    exten="s",
                    extra_channel=agent_channel,
                    extra_context=CONTEXT,
                    extra_exten=f"consult-{context.target.kind}",
                )
            )
        except TransferRefused:
            self.consults.pop(state.agent_id, None)
            await self._leg_failed(leg, "refused")
            raise
        log.info("agent %s consults %s; %s on hold", state.username, context.target.label, caller_channel)
        await self.acd.bus.publish(
            agent_topic(state.agent_id), {"type": "transfer.consulting", "transfer": context.to_dict()}
        )

    async def _back_to_caller(self, consult: Consult, outcome: str) -> None:
        """The agent's leg rejoins the held caller (leaving the Dial: the target's leg goes)."""
        await self._action(actions.bridge(consult.caller_channel, consult.agent_channel))
        self.returned[consult.agent_id] = Returned(
            consult.caller_uniqueid, consult.agent_channel, consult.leg.journey_id
        )
        await self._end_consult(consult, outcome)

    async def _end_consult(self, consult: Consult, outcome: str) -> None:
        if consult.ended:
            return
        consult.ended = True
        self.consults.pop(consult.agent_id, None)
        if outcome == "completed":
            self._carry(consult.caller_uniqueid, consult.context)
        await self.acd.bus.publish(
            agent_topic(consult.agent_id),
            {"type": "transfer.ended", "transfer": consult.context.to_dict(), "outcome": outcome},
        )
        await self._record(consult.leg.journey_id, consult.context, outcome)
        log.info("consultation %s of agent %s: %s", consult.context.transfer_id, consult.agent_id, outcome)

    async def _agent_done(self, agent_id: str, by: str) -> None:
        """The transferring agent's call is over (completed, or the caller left): wrap-up, as
        app_queue's AgentComplete would have done."""
        self.returned.pop(agent_id, None)
        state = self.acd.states.get(agent_id)
        if state is None or state.status not in ("on_call", "ringing"):
            return
        ended = state.call
        await self._send(state.completed())
        await self.acd.bus.publish(agent_topic(agent_id), {"type": "call.ended", "call": ended, "by": by})
        await self.acd.publish_state(agent_id)

    async def _hangup(self, channel: str) -> None:
        ami = self.acd.ami
        if channel and ami is not None:
            try:
                await ami.action(actions.hangup(channel))
            except AmiError as exc:  # already gone: what we wanted
                log.debug("hangup of %s: %s", channel, exc)

    # ------------------------------------------------------------------ the target agent's phone

    async def _ring_agent(self, target: AgentState, context: TransferContext, call: dict[str, Any]) -> Leg:
        """Their phone is about to ring outside app_queue: pause them there and pop the card."""
        acd = self.acd
        leg = Leg(context, target.agent_id, str(call.get("uniqueid")), str(call.get("journey_id") or ""))
        self.legs[context.transfer_id] = leg
        await self._send([actions.queue_pause(target.interface, True, reason=TRANSFER_PAUSE)])
        ringing = {
            "uniqueid": call.get("uniqueid"),
            "channel": call.get("channel"),
            "queue": call.get("queue"),
            "journey_id": call.get("journey_id"),
            "callerid": call.get("callerid"),
            "joined_at": call.get("joined_at"),
            "called_at": time.time(),
            "transfer_id": context.transfer_id,
        }
        target.ringing(ringing)
        pop = carried_pop(await acd.pop_for(ringing), context)
        await acd.bus.publish(agent_topic(target.agent_id), {"type": "pop", "pop": pop, "agent": target.to_dict()})
        return leg

    async def _leg_answered(self, leg: Leg, channel: ev.Channel) -> None:
        leg.answered = True
        leg.channel_uniqueid, leg.channel = channel.uniqueid, channel.name
        if leg.target_agent_id is None:
            return
        state = self.acd.states.get(leg.target_agent_id)
        if state is None or state.status != "ringing":
            return
        # their leg is their agent channel, as app_queue's AgentCalled gives it for a queue call:
        # the caller is theirs now, and they may transfer it again (blind or consult) from it
        state.connected({"connected_at": time.time(), "agent_channel": channel.name})
        await self.acd.bus.publish(agent_topic(state.agent_id), {"type": "call.connected", "call": state.call})
        await self.acd.publish_state(state.agent_id)

    async def _leg_failed(self, leg: Leg, why: str) -> None:
        self.legs.pop(leg.context.transfer_id, None)
        if leg.target_agent_id is None:
            return
        state = self.acd.states.get(leg.target_agent_id)
        if state is None or state.status != "ringing":
            return
        state.no_answer()
        await self._send([actions.queue_pause(state.interface, False)])
        await self.acd.bus.publish(
            agent_topic(state.agent_id),
            {"type": "pop.cancel", "uniqueid": leg.caller_uniqueid, "why": f"transfer {why}"},
        )
        await self.acd.publish_state(state.agent_id)

    async def _leg_ended(self, leg: Leg) -> None:
        """The target agent's leg hung up: their call is over (they wrap up), unless they passed
        the caller on by a consult of their own, whose end wraps them up instead (the leg's hangup
        after they complete, or a call given back to them), or this leg's call is no longer theirs."""
        self.legs.pop(leg.context.transfer_id, None)
        if leg.target_agent_id is None or self.holds(leg.target_agent_id):
            return
        state = self.acd.states.get(leg.target_agent_id)
        if state is None or state.status != "on_call" or not state.call:
            return
        if state.call.get("transfer_id") != leg.context.transfer_id:
            return
        ended = state.call
        await self._send(state.completed())
        await self.acd.bus.publish(agent_topic(state.agent_id), {"type": "call.ended", "call": ended, "by": "hangup"})
        await self.acd.publish_state(state.agent_id)

    # ------------------------------------------------------------------ AMI events

    async def handle(self, event: ev.AmiEvent) -> None:
        if isinstance(event, ev.UserEvent) and event.name == USER_EVENT:
            await self._dial_report(event)
        elif isinstance(event, ev.Hangup):
            uid, name = event.channel.uniqueid, event.channel.name
            for leg in [leg for leg in self.legs.values() if leg.channel_uniqueid == uid]:
                await self._leg_ended(leg)
            for consult in [c for c in self.consults.values() if c.caller_uniqueid == uid]:
                await self._caller_gone(consult)
            for leg in [leg for leg in self.legs.values() if leg.caller_uniqueid == uid and not leg.answered]:
                await self._leg_failed(leg, "caller hung up")
            for agent_id, back in list(self.returned.items()):
                if back.caller_uniqueid == uid or back.agent_channel == name:
                    if back.agent_channel != name:
                        await self._hangup(back.agent_channel)
                    await self._agent_done(agent_id, "hangup")

    async def _dial_report(self, event: ev.UserEvent) -> None:
        """The dialplan's word on a target's dial: answered, or over (not answered, or it ended)."""
        leg = self.legs.get(event.fields.get("Transfer", ""))
        status = event.fields.get("Status", "")
        if leg is not None and status == "ANSWER":
            await self._leg_answered(leg, event.channel)
            return
        consult = next(
            (c for c in self.consults.values() if c.context.transfer_id == event.fields.get("Transfer")), None
        )
        if leg is not None and not leg.answered:
            await self._leg_failed(leg, (status or "failed").lower())
        if consult is not None and not consult.finishing:
            # the target did not answer, or hung up on the agent: the caller comes back to them
            outcome = "target_hung_up" if consult.leg.answered else "target_failed"
            try:
                await self._back_to_caller(consult, outcome)
            except TransferRefused as exc:
                log.warning("consultation %s: caller not given back: %s", consult.context.transfer_id, exc)

    async def _caller_gone(self, consult: Consult) -> None:
        """The caller hung up while on hold: the agent's leg is hung up (the target's, alone in
        the Dial, goes with it), so nothing of this call stays up."""
        await self._end_consult(consult, "caller_hung_up")
        await self._hangup(consult.agent_channel)
        await self._agent_done(consult.agent_id, "caller")

    # ------------------------------------------------------------------ context

    def context_for(self, caller_uniqueid: str) -> TransferContext | None:
        return self.carried.get(caller_uniqueid)

    def _carry(self, caller_uniqueid: str, context: TransferContext) -> None:
        self.carried.pop(caller_uniqueid, None)
        self.carried[caller_uniqueid] = context
        while len(self.carried) > REMEMBERED:
            del self.carried[next(iter(self.carried))]

    def forget_caller(self, caller_uniqueid: str) -> None:
        self.carried.pop(caller_uniqueid, None)

    async def _record(self, journey_id: str, context: TransferContext, outcome: str) -> None:
        await self.acd.record(journey_id, "agent_transfer", **timeline_data(context, outcome))

    async def _send(self, sent: list[actions.Action]) -> None:
        """Queue pauses around a target agent's ring: a failure is logged (the ACD's rebuild
        reconciles pauses after a reconnect), never a refused transfer."""
        for action in sent:
            try:
                if self.acd.ami is not None:
                    await self.acd.ami.action(action)
            except AmiError as exc:
                log.warning("AMI %s for %s failed: %s", action.get("Action"), action.get("Interface"), exc)

    def forget(self) -> None:
        self.carried.clear()
        self.consults.clear()
        self.legs.clear()
        self.returned.clear()
