"""Click-to-call: an agent calls a customer from the desktop, their own phone first.

Why the agent's phone rings first: the customer must never answer to silence. AMI Originate calls
``PJSIP/<the agent's endpoint>``; only when the agent answers does the dialplan context
``outbound.context`` (``[ivr-outbound]`` in extensions.conf) dial the customer through the trunk,
with the configured caller id (``outbound.caller_id``: the centre's number; no default pretends to
be someone, so with it empty click-to-call is off and says so).

Who may be called (:func:`dialable`, pure): a number of the customer on the agent's card (the
agent's own contact: ``Acd.authorize``), or a number the agent types that starts with one of the
``outbound.typed_prefixes``. Anything else is refused with a message the agent reads, before
anything is dialled. A number is E.164 (+, country code, 7 to 15 digits in all).

The call is a contact like an inbound one: a journey (channel voice, flow ``outbound``, so the
KPIs' ``by=flow`` tells outbound contacts from inbound ones), an ``outbound_call`` entry on the
customer's timeline, the same card (``ivr.acd.screenpop``, ``direction: outbound``) on the agent's
desktop, the agent's state ringing -> on call -> wrap-up, and notes and a disposition after it.
Runs on the ACD leader (it holds AMI), reached through the desk op ``call``.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ivr.acd.screenpop import TIMELINE_EVENTS, build_pop
from ivr.acd.topics import agent_topic
from ivr.agi import variables as var
from ivr.ami import actions
from ivr.ami import events as ev
from ivr.ami.client import AmiError
from ivr.flow.model import Interaction, Journey

if TYPE_CHECKING:
    from ivr.acd.service import Acd

log = logging.getLogger(__name__)

FLOW = "outbound"
#: seconds the agent's phone rings before the attempt is given up
AGENT_RING_S = 30
E164 = re.compile(r"\+[1-9][0-9]{6,14}")
_SEPARATORS = re.compile(r"[\s\-./()]")
ACTION_PREFIX = "out-"
#: DIALSTATUS in the agent's words
DIAL_STATUS = {
    "BUSY": "busy",
    "NOANSWER": "no answer",
    "CONGESTION": "network busy",
    "CHANUNAVAIL": "unreachable",
    "CANCEL": "cancelled",
}


class NotDialable(ValueError):
    """A number the agent may not call, or no number at all: the message says which and why."""


def e164(raw: str) -> str | None:
    """``raw`` without spaces, dashes, dots or brackets, if that is E.164; else None."""
    text = _SEPARATORS.sub("", raw.strip())
    if text.startswith("00"):
        text = "+" + text[2:]
    return text if E164.fullmatch(text) else None


def dialable(raw: str, *, customers_numbers: Iterable[str] = (), typed_prefixes: Sequence[str] = ()) -> str:
    """The E.164 number to dial, or :class:`NotDialable` with the reason in the agent's words."""
    number = e164(raw or "")
    if number is None:
        shown = (raw or "").strip()[:32]
        raise NotDialable(f"{shown!r} is not a phone number: use +, the country code and the number")
    own = {e164(n) for n in customers_numbers}
    if number in own:
        return number
    if any(number.startswith("+" + p.lstrip("+")) for p in typed_prefixes if p.strip("+")):
        return number
    if typed_prefixes:
        allowed = ", ".join("+" + p.lstrip("+") for p in typed_prefixes)
        raise NotDialable(f"{number} is not this customer's number, nor one you may dial ({allowed}…)")
    raise NotDialable(f"{number} is not this customer's number: you may call only the numbers on the card")


def agent_leg_caller_id(number: str, name: str | None) -> str:
    """What the agent's phone shows: who they are about to call (quotes cannot reach the wire)."""
    label = "".join(ch for ch in (name or "Customer") if ch not in '"<>\r\n')[:40]
    return f'"Call {label}" <{number}>'


@dataclass
class Placed:
    """One click-to-call under way: what its AMI events are matched against."""

    agent_id: str
    journey_id: str
    number: str
    interface: str
    answered: bool = False


class Outbound:
    """Owned by the App beside the ACD; registers for AMI events on it (no task of its own)."""

    def __init__(
        self,
        acd: Acd,
        *,
        caller_id: str,
        dial: str = "PJSIP/{number}@trunk",
        context: str = "ivr-outbound",
        typed_prefixes: Sequence[str] = (),
    ) -> None:
        self.acd = acd
        self.caller_id = caller_id.strip()
        self.dial = dial
        self.context = context
        self.typed_prefixes = tuple(typed_prefixes)
        #: by Originate ActionID
        self.placed: dict[str, Placed] = {}
        if acd.ami is not None:
            acd.ami.on_event(self.on_event)

    async def _numbers_of(self, customer_id: str | None, journey: Journey | None) -> list[str]:
        numbers = [journey.caller] if journey is not None and journey.caller else []
        if customer_id:
            found = await self.acd.customers.get(customer_id)
            numbers += [i["value"] for i in (found or {}).get("identities", []) if i.get("kind") == "phone"]
        return numbers

    async def call(self, agent_id: str, number: str, journey_id: str | None = None) -> dict[str, Any]:
        """Ring the agent's phone, then (dialplan) the customer. Returns {"journey_id", "number"}.

        Raises NotDialable (the agent's words), PermissionError (a card that is not theirs),
        ValueError (off, not logged in, busy, AMI down)."""
        acd = self.acd
        if not self.caller_id:
            raise ValueError("calling out is off: the administrator has not set outbound.caller_id")
        state = acd.states.get(agent_id)
        if state is None or not state.logged_in:
            raise ValueError("log in first")
        if state.status in ("ringing", "on_call"):
            raise ValueError("finish the current call first")
        card: Journey | None = None
        if journey_id:
            acd.authorize(agent_id, "call", journey_id=journey_id)
            card = await acd.journeys.get(journey_id)
        customer_id = card.customer_id if card is not None else None
        to = dialable(
            number,
            customers_numbers=await self._numbers_of(customer_id, card),
            typed_prefixes=self.typed_prefixes,
        )
        if customer_id is None:  # a typed number: the customer it belongs to, if known
            customer_id = await acd.customers.find("phone", to)
        if acd.ami is None:
            raise ValueError("the phone system is not connected: try again")
        journey = Journey(id=uuid.uuid4().hex, flow=FLOW, version="1", channel="voice", caller=to)
        journey.customer_id = customer_id
        journey.refs["direction"] = "outbound"
        journey.outcome = {"direction": "outbound", "agent_id": agent_id, "from_journey": journey_id or ""}
        now = time.time()
        action_id = f"{ACTION_PREFIX}{journey.id}"
        # no queue call may ring this phone meanwhile: paused in the queues until the agent is ready
        await acd.pause(agent_id, "outbound call")
        try:
            await acd.ami.action(
                actions.originate(
                    state.interface,
                    context=self.context,
                    exten="s",
                    caller_id=agent_leg_caller_id(to, None),
                    timeout_ms=AGENT_RING_S * 1000,
                    variables={
                        var.JOURNEY_ID: journey.id,
                        var.OUTBOUND_DIAL: self.dial.format(number=to),
                        var.OUTBOUND_CALLERID: self.caller_id,
                    },
                    action_id=action_id,
                )
            )
        except AmiError as exc:
            log.warning("click-to-call by agent %s not placed: %s", state.username, exc)
            await acd.publish_state(agent_id)
            raise ValueError("the phone system refused the call: try again") from None
        self.placed[action_id] = Placed(agent_id, journey.id, to, state.interface)
        acd.journeys.save(
            journey,
            [
                Interaction("journey_started", None, {"flow": FLOW, "direction": "outbound"}, now),
                Interaction(
                    "outbound_call",
                    None,
                    {"agent_id": agent_id, "agent": state.display_name, "to_number": to, "from_journey": journey_id},
                    now,
                ),
            ],
        )
        call = {
            "uniqueid": action_id,
            "journey_id": journey.id,
            "callerid": to,
            "called_at": now,
            "direction": "outbound",
        }
        state.ringing(call, now)
        pop = await self._pop(journey, call)
        log.info("click-to-call: agent %s calls %s (journey %s)", state.username, to, journey.id)
        await acd.bus.publish(agent_topic(agent_id), {"type": "pop", "pop": pop, "agent": state.to_dict()})
        return {"journey_id": journey.id, "number": to}

    async def _pop(self, journey: Journey, call: dict[str, Any]) -> dict[str, Any]:
        """The card as for an inbound call: the customer and their timeline (this call on it)."""
        customer = await self.acd.customers.get(journey.customer_id) if journey.customer_id else None
        timeline: list[dict[str, Any]] = []
        if journey.customer_id:
            await self.acd.journeys.flush()  # the outbound_call entry is on the card it pops
            timeline = (await self.acd.customers.timeline(journey.customer_id, limit=TIMELINE_EVENTS)).entries
        return build_pop(journey.to_dict(), customer=customer, timeline=timeline, call=call, tz=self.acd.tz)

    def _leg_of(self, channel: ev.Channel) -> tuple[str, Placed] | None:
        """The call under way whose agent leg ``channel`` is (its journey, the agent's interface)."""
        for action_id, placed in self.placed.items():
            if channel.journey_id == placed.journey_id and channel.name.startswith(placed.interface + "-"):
                return action_id, placed
        return None

    async def on_event(self, event: ev.AmiEvent) -> None:
        if isinstance(event, ev.OriginateResponse) and event.action_id in self.placed:
            placed = self.placed[event.action_id]
            state = self.acd.states.get(placed.agent_id)
            if event.response.lower() != "success":
                del self.placed[event.action_id]
                log.info("click-to-call %s: the agent's phone did not answer (%s)", placed.journey_id, event.reason)
                await self.acd.record(placed.journey_id, "outbound_failed", why="agent did not answer")
                if state is not None and state.status == "ringing":
                    state.no_answer()
                    await self.acd.bus.publish(
                        agent_topic(placed.agent_id),
                        {"type": "pop.cancel", "uniqueid": event.action_id, "why": "your phone did not answer"},
                    )
                    await self.acd.pause(placed.agent_id, "outbound call failed")
                return
            placed.answered = True  # the agent picked up: the dialplan now dials the customer
            if state is not None and state.call and state.call.get("uniqueid") == event.action_id:
                state.connected({"agent_channel": event.channel, "connected_at": time.time()})
                await self.acd.bus.publish(agent_topic(placed.agent_id), {"type": "call.connected", "call": state.call})
                await self.acd.publish_state(placed.agent_id)
        elif isinstance(event, ev.DialEnd):
            found = self._leg_of(event.channel)
            if found is not None:  # the agent's leg dialled the customer: answered, or why not
                status = event.status.upper()
                if status == "ANSWER":
                    await self.acd.record(found[1].journey_id, "outbound_answered")
                else:
                    await self.acd.record(found[1].journey_id, "outbound_failed", why=DIAL_STATUS.get(status, status))
        elif isinstance(event, ev.Hangup):
            found = self._leg_of(event.channel)
            if found is None:
                return
            action_id, placed = found
            del self.placed[action_id]
            state = self.acd.states.get(placed.agent_id)
            await self.acd.record(placed.journey_id, "agent_completed", agent_id=placed.agent_id, by="agent")
            if state is not None and state.call and state.call.get("uniqueid") == action_id:
                ended = state.call
                await self.acd._send(state.completed())
                await self.acd.bus.publish(
                    agent_topic(placed.agent_id), {"type": "call.ended", "call": ended, "by": "hangup"}
                )
                await self.acd.publish_state(placed.agent_id)
