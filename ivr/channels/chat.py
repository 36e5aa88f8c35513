"""Text channels (web chat, SMS): the same flow, the same machine, rendered as words.

Why one driver for chat and SMS: both turn flow commands into text and a reply into an
``InputResult`` (mode ``text``); they differ only in how the words travel (a JSON view for the
browser, a message through the gateway). The journey is loaded from the store for every reply
and saved after it, so a conversation survives a restart of the controller and hours of silence:
nothing lives in a coroutine's stack.

A journey picked up from another channel (``resume``) is resumed by the engine
(``FlowMachine.resume``): its ``channel`` switched, one ``channel_changed`` interaction, and the
step it was saved at entered again: the same menu with the same keys (``menu_keys``), and every
slot already collected stays collected. A reply is taken by the machine from the saved waiting
state; the question is re-rendered by the engine (``FlowMachine.question``).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from ivr.channels import queuedesk
from ivr.channels.queuedesk import QueueDesk
from ivr.channels.rendering import cannot_render
from ivr.errors import CannotRender
from ivr.flow.commands import (
    AnnounceQueue,
    BookCallback,
    CallbackBooked,
    EstimateWait,
    QueueEstimate,
    Transfer,
    TransferEnded,
)
from ivr.flow.machine import FlowMachine, FlowSource
from ivr.flow.model import (
    OFFER_ACCEPT_KEY,
    Ask,
    Choice,
    Command,
    Continue,
    Event,
    Fallback,
    Handoff,
    HandoffResult,
    Hangup,
    InputResult,
    Interaction,
    Journey,
    Menu,
    Play,
    Queue,
)
from ivr.flow.personalize import DEFAULT_HALF_LIFE
from ivr.flow.profile import CallerProfile
from ivr.routing.rules import RoutingRules
from ivr.speech.intents import IntentMatcher
from ivr.store.journeys import JourneyStore

log = logging.getLogger(__name__)

QUEUED_TEXT = "Thank you. An agent will continue with you shortly."
FALLBACK_TEXT = "Sorry, something went wrong on our side. Please call us."
MAX_TEXT = 500


@dataclass
class View:
    """What the customer sees after a turn: the words, and the question waiting for an answer."""

    journey_id: str
    step: str | None
    status: str
    messages: list[str] = field(default_factory=list)
    waiting: Menu | Ask | None = None
    queued: Queue | None = None
    slots: dict[str, str] = field(default_factory=dict)
    customer_id: str | None = None

    @property
    def done(self) -> bool:
        return self.waiting is None

    def to_json(self) -> dict[str, Any]:
        """For the chat page: the same step, the same options, the data already collected."""
        waiting: dict[str, Any] | None = None
        if isinstance(self.waiting, Menu):
            waiting = {
                "kind": "menu",
                "step": self.waiting.step,
                "prompt": self.waiting.prompt.text,
                "choices": [{"key": c.key, "option": c.option, "label": c.label.text} for c in self.waiting.choices],
            }
        elif isinstance(self.waiting, Ask):
            waiting = {
                "kind": "ask",
                "step": self.waiting.step,
                "prompt": self.waiting.prompt.text,
                "slot": self.waiting.slot,
                "min_digits": self.waiting.min_digits,
                "max_digits": self.waiting.max_digits,
                "offer": self.waiting.offer,
            }
        return {
            "step": self.step,
            "status": self.status,
            "messages": self.messages,
            "waiting": waiting,
            "collected": {k: mask(v) for k, v in self.slots.items()},
            "done": self.done,
            "queue": self.queued.queue if self.queued else None,
        }


def mask(value: str) -> str:
    """Collected values are shown, not repeated: the last four characters at most, never more than half."""
    if value == "[redacted]":
        return "(kept private)"
    keep = min(4, len(value) // 2)
    return "\u2022" * (len(value) - keep) + value[len(value) - keep :]


# ------------------------------------------------------------------------------------ pure parts
def menu_text(menu: Menu) -> str:
    """A menu as one message: the question, one line per option, how to answer."""
    lines = [menu.prompt.text]
    lines += [f"{c.key} - {c.label.text}" for c in menu.choices]
    lines.append("Reply with a number or in your own words.")
    return "\n".join(lines)


def announce_text(announce: AnnounceQueue) -> str:
    """The queue announcement voice composes from prompts and numbers, as one sentence."""
    unit = "minute" if announce.minutes == 1 else "minutes"
    return f"You are number {announce.position} in line. The wait is about {announce.minutes} {unit}."


#: Why a text conversation cannot be transferred, shown before the flow's fallback step.
TRANSFER_REFUSED_TEXT = "This conversation cannot be transferred to a phone line from here."


def ask_text(ask: Ask) -> str:
    if ask.offer:
        prefix = ask.offer_prompt.text if ask.offer_prompt else "We have"
        return f"{prefix} {ask.offer}. Reply {OFFER_ACCEPT_KEY} to use it, or send another."
    return ask.prompt.text


@functools.lru_cache(maxsize=256)
def _matcher(choices: tuple[Choice, ...]) -> IntentMatcher:
    return IntentMatcher.from_choices(choices)


def text_input(waiting: Menu | Ask, text: str, option: str | None = None) -> InputResult:
    """A typed (or tapped) reply as the flow's one input type.

    Menus: a tapped button names its option; typed words go through the same intent matcher as
    speech (a lone digit is that key). Asks: the digits typed, separators dropped.
    """
    text = text.strip()[:MAX_TEXT]
    if isinstance(waiting, Menu):
        if option is not None:
            for choice in waiting.choices:
                if choice.option == option:
                    return InputResult("match", "text", choice.key, choice.option)
            return InputResult("nomatch", "text", option)
        if not text:
            return InputResult("noinput", "text")
        found = _matcher(waiting.choices).match(text)
        if not found.matched:
            return InputResult("nomatch", "text", text, None, found.confidence)
        return InputResult("match", "text", text, found.interpretation, found.confidence, intent=found.intent)
    digits = re.sub(r"[\s\-.()]", "", text)
    return InputResult("match", "text", digits) if digits else InputResult("noinput", "text")


# ------------------------------------------------------------------------------------ the driver
HandoffRunner = Callable[[Journey, Handoff], Awaitable[tuple[bool, str]]]
ProfileLoader = Callable[[Journey], Awaitable[CallerProfile | None]]


class TextFlows:
    """Runs journeys on a text channel (``channel``: ``chat`` or ``sms``), one turn at a time."""

    def __init__(
        self,
        channel: str,
        flows: FlowSource,
        store: JourneyStore,
        *,
        profile: ProfileLoader | None = None,
        handoff: HandoffRunner | None = None,
        half_life: float = DEFAULT_HALF_LIFE,
        queue_desk: QueueDesk | None = None,
        routing: RoutingRules | None = None,
        holdout: float = 0.0,
    ) -> None:
        """``queue_desk``: position, wait and callbacks for queue steps (None: no estimates).
        ``holdout``: share of known customers whose menus keep the file's order (see the machine)."""
        self.queue_desk = queue_desk
        self.channel = channel
        self.routing = routing
        self.flows = flows
        self.store = store
        self.profile = profile
        self.handoff = handoff
        self.half_life = half_life
        self.holdout = holdout
        self._locks: dict[str, asyncio.Lock] = {}
        self.turns = 0

    def lock(self, journey_id: str) -> asyncio.Lock:
        """One turn at a time per journey (a double-tap must not advance the flow twice)."""
        found = self._locks.get(journey_id)
        if found is None:
            if len(self._locks) > 10000:  # unlocked ones are free to forget
                self._locks = {k: v for k, v in self._locks.items() if v.locked()}
            found = self._locks[journey_id] = asyncio.Lock()
        return found

    async def _machine(self, journey: Journey) -> FlowMachine:
        profile = await self.profile(journey) if self.profile is not None else None
        return FlowMachine(
            self.flows, journey, profile=profile, half_life=self.half_life, routing=self.routing, holdout=self.holdout
        )

    async def begin(self, journey: Journey) -> View:
        """A new journey started on this channel (an SMS from an unknown conversation)."""
        async with self.lock(journey.id):
            machine = await self._machine(journey)
            return await self._drive(machine, machine.start())

    async def resume(self, journey_id: str, *, via: str = "", step: str | None = None) -> View | None:
        """Pick a journey up on this channel at ``step`` (default: the step it waits at).

        ``step`` is the continuation's own record of where to resume: the snapshot read here may
        predate the handing channel's last save (the link can be faster than the write-behind)."""
        async with self.lock(journey_id):
            journey = await self.store.get(journey_id)
            if journey is None:
                return None
            machine = await self._machine(journey)
            return await self._drive(machine, machine.resume(self.channel, via=via, step=step))

    async def link_opened(self, journey_id: str, at: float) -> None:
        """A customer opened the page of a continuation link (before claiming it): logged for the
        continuation funnel. Only logged: the journey itself is not touched, so an SMS app that
        previews the link changes nothing (its preview is an open, though)."""
        journey = await self.store.get(journey_id)
        if journey is not None:
            self.store.log(journey, [Interaction("link_opened", journey.step, {"to": self.channel}, at)])

    async def view(self, journey_id: str) -> View | None:
        """The current question again (a page reload): the engine re-renders it, records nothing."""
        journey = await self.store.get(journey_id)
        if journey is None:
            return None
        view = View(
            journey.id, journey.step, journey.status, slots=dict(journey.slots), customer_id=journey.customer_id
        )
        if journey.status != "active":
            return view
        machine = await self._machine(journey)
        view.waiting = self._question(machine)
        if view.waiting is not None:
            view.messages.append(view.waiting.prompt.text if isinstance(view.waiting, Menu) else ask_text(view.waiting))
        return view

    async def answer(self, journey_id: str, text: str, option: str | None = None) -> View | None:
        """The customer's reply to the question the journey is waiting at."""
        async with self.lock(journey_id):
            journey = await self.store.get(journey_id)
            if journey is None or journey.status != "active" or journey.channel != self.channel:
                return None
            machine = await self._machine(journey)
            waiting = self._question(machine)
            if waiting is None:
                return None
            self.turns += 1
            event = text_input(waiting, text, option)
            machine.record("message_received", text=text[:MAX_TEXT] if isinstance(waiting, Menu) else "")
            return await self._drive(machine, machine.receive(event))

    def _question(self, machine: FlowMachine) -> Menu | Ask | None:
        """The question the journey waits at, as this channel answers it (a menu or an ask)."""
        match machine.question():
            case Menu() | Ask() as question:
                return question
            case None:
                return None
            case other:
                raise CannotRender(self.channel, other)

    async def _drive(self, machine: FlowMachine, commands: list[Command]) -> View:
        """Run commands until the flow waits for the customer or ends; save after every step.

        A command this channel cannot render fails the journey the engine's way (``fail``):
        the customer reads the fallback message, the journey is saved as failed."""
        journey = machine.journey
        view = View(journey.id, journey.step, journey.status)
        for _ in range(100):
            self.store.save(journey, machine.take_events())
            try:
                event = await self._execute(machine, commands, view)
            except CannotRender as exc:
                log.error("journey %s: %s", journey.id, exc)
                view.waiting = None
                event = await self._execute(machine, machine.fail(str(exc)), view)
            if event is None:
                break
            commands = machine.receive(event)
        self.store.save(journey, machine.take_events())
        view.step, view.status, view.slots = journey.step, journey.status, dict(journey.slots)
        view.customer_id = journey.customer_id
        return view

    async def _execute(self, machine: FlowMachine, commands: list[Command], view: View) -> Event | None:
        """Render the commands as words in ``view``; the event the machine waits for, or None
        when the customer is to answer (or the journey is over)."""
        for command in commands:
            match command:
                case Play():
                    view.messages.append(command.prompt.text)
                case Menu():
                    view.messages.append(command.prompt.text)
                    view.waiting = command
                    return None
                case Ask():
                    view.messages.append(ask_text(command))
                    view.waiting = command
                    return None
                case Queue():
                    view.messages.append(QUEUED_TEXT)
                    view.queued = command
                    return None
                case Hangup():
                    return None
                case Fallback():
                    view.messages.append(FALLBACK_TEXT)
                    return None
                case EstimateWait():
                    return await self.estimate(machine.journey, command)
                case AnnounceQueue():
                    view.messages.append(announce_text(command))
                case BookCallback():
                    return await self.book_callback(machine.journey, command)
                case Transfer():
                    return self.transfer(command, view)
                case Handoff():
                    return await self._send_handoff(machine.journey, command)
                case _:
                    cannot_render(self.channel, command)
        return Continue() if machine.expecting == "continue" else None

    async def _send_handoff(self, journey: Journey, command: Handoff) -> HandoffResult:
        if self.handoff is None:
            return HandoffResult(False, "disabled")
        sent, how = await self.handoff(journey, command)
        return HandoffResult(sent, how)

    async def estimate(self, journey: Journey, command: EstimateWait) -> QueueEstimate:
        return await queuedesk.estimate(self.queue_desk, journey, command)

    async def book_callback(self, journey: Journey, command: BookCallback) -> CallbackBooked:
        return await queuedesk.book_callback(self.queue_desk, journey, command)

    def transfer(self, command: Transfer, view: View) -> TransferEnded:
        """A text conversation has no call to transfer: said plainly, and the step takes its
        fallback (``on_failure``) as when nobody answers."""
        log.warning(
            "%s cannot transfer to %s at step %s: taking the fallback", self.channel, command.destination, command.step
        )
        view.messages.append(TRANSFER_REFUSED_TEXT)
        return TransferEnded("unsupported", f"{self.channel} cannot transfer a call")


__all__ = ["TextFlows", "View", "announce_text", "ask_text", "mask", "menu_text", "text_input"]
