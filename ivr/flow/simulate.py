"""A flow run without a phone: what a caller would hear or read at each step, and why.

Why a transcript and not a channel: the simulator drives the real ``FlowMachine`` with the real
profile and routing table, and writes nothing (no journey, no interaction, no statistic). Every
command is turned into lines of text and every decision the engine records (the caller's journey stage and why, a
menu reordered, a prefill offered, the queue chosen) into a reason, so an admin sees a change before callers do.
The services a channel would run answer the way an idle centre would: an agent is free, a
transfer is answered, a hand-off message is sent.

Inputs are what the caller does at each question, in order: a lone key (``1``, ``#``) is a key
press on voice, anything else is words; an empty input is silence. Words are matched as the
channel would: chat and SMS with the text channels' matcher (``ivr.channels.chat.text_input``),
voice as speech heard with full confidence, by the speech service's matchers when given
(``matchers``: semantic with the encoder, as ``ivr serve`` runs them), else by the word rules. When the inputs run out while the
flow waits for one, the transcript stops there (``status`` stays ``active``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from ivr.channels.chat import announce_text, ask_text, menu_text, text_input
from ivr.flow.commands import (
    AnnounceQueue,
    BookCallback,
    CallbackBooked,
    Choice,
    EstimateWait,
    QueueEstimate,
    Transfer,
    TransferEnded,
)
from ivr.flow.machine import FlowMachine, FlowSource
from ivr.flow.model import (
    FOR_PROMPT,
    OFFER_ACCEPT_KEY,
    PRESS_PROMPT,
    Ask,
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

if TYPE_CHECKING:
    from ivr.speech.service import MenuMatcher

SIMULATED_ID = "simulated"
KEYS = frozenset("0123456789*#")


@dataclass
class Transcript:
    """What happened: ``lines`` as the caller would meet them (``>`` the caller's own input,
    ``~`` why the engine decided something), the path of steps, and how it ended."""

    flow: str
    channel: str
    lines: list[str] = field(default_factory=list)
    path: list[str] = field(default_factory=list)
    status: str = "active"
    queue: str | None = None
    skill: str | None = None
    #: the caller's journey stage (``ivr.flow.stages``) the run started with
    stage: str | None = None

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


class MenuMatchers(Protocol):
    """The speech service's matchers (``ivr.speech.service.IntentMatchers``)."""

    def matcher(self, choices: Sequence[Choice]) -> MenuMatcher: ...


def caller_input(waiting: Menu | Ask, text: str, channel: str, matchers: MenuMatchers | None = None) -> InputResult:
    """One scripted input as the engine's input type (see the module docstring)."""
    if not text.strip():
        return InputResult("noinput", "dtmf" if channel == "voice" else "text")
    if channel == "voice" and (isinstance(waiting, Ask) or text.strip() in KEYS):
        return InputResult("match", "dtmf", text.strip())
    if channel != "voice" or not isinstance(waiting, Menu):
        return text_input(waiting, text)
    if matchers is None:
        return dataclasses.replace(text_input(waiting, text), mode="speech")
    found = matchers.matcher(waiting.choices).match(text)
    if not found.matched:
        return InputResult("nomatch", "speech", text, None, found.confidence, reason=found.reason)
    return InputResult(
        "match", "speech", text, found.interpretation, found.confidence, intent=found.intent, reason=found.reason
    )


def _question_text(question: Menu | Ask, channel: str) -> str:
    """A question as the channel puts it: spoken options on voice, the text channels' message."""
    if channel != "voice":
        return menu_text(question) if isinstance(question, Menu) else ask_text(question)
    if isinstance(question, Ask):
        offer = f"\n(offers {question.offer}: press {OFFER_ACCEPT_KEY} to use it)" if question.offer else ""
        return question.prompt.text + offer
    spoken = [f"{FOR_PROMPT.text} {c.label.text} {PRESS_PROMPT.text} {c.key}." for c in question.choices]
    return "\n".join([question.prompt.text, *(spoken if question.speak_choices else [])])


def _why(event: Interaction) -> str | None:
    """The reasons worth showing an admin, from what the engine records."""
    d = event.data
    match event.kind:
        case "menu_personalized":
            return f"menu order {', '.join(d.get('order', []))}: {d.get('reason', '')}"
        case "prefill_offered":
            return f"offers the {d.get('slot')} known from {d.get('source_channel')} (ending {d.get('offer')})"
        case "branch_taken":
            return f"branch: {d.get('condition')} -> {d.get('next')}"
        case "intent_recognised":
            return f"heard {d.get('utterance')!r} as {d.get('intent') or d.get('option')} ({d.get('confidence')})"
        case "input_rejected":
            return f"input {d.get('status')} (attempt {d.get('attempt')})"
        case "flow_entered":
            return f"enters flow {d.get('flow')}"
        case "flow_error":
            return f"flow error: {d.get('error')}"
    return None


def simulate(
    flows: FlowSource,
    flow: str,
    *,
    caller: str | None,
    channel: str = "voice",
    inputs: Sequence[str] = (),
    profile: CallerProfile | None = None,
    routing: RoutingRules | None = None,
    half_life: float = DEFAULT_HALF_LIFE,
    clock: Callable[[], datetime] | None = None,
    matchers: MenuMatchers | None = None,
    holdout: float = 0.0,
) -> Transcript:
    """Run ``flow`` for ``caller`` on ``channel`` with ``inputs``; pure apart from the clock.
    ``holdout``: the configured share of callers who keep the file's order, so a caller in it
    sees what they would really hear (and the reason says so)."""
    start = flows.get(flow)
    journey = Journey(SIMULATED_ID, start.name, start.version, channel, caller=caller)
    machine = FlowMachine(
        flows, journey, clock=clock, profile=profile, half_life=half_life, routing=routing, holdout=holdout
    )
    out = Transcript(start.name, channel)
    if profile is not None:
        out.lines.append(f"~ caller {caller}: customer {profile.customer_id}, {profile.contacts} past contact(s)")
    else:
        out.lines.append(f"~ caller {caller or '(no number)'}: unknown to the store")
    out.stage = machine.stage.stage
    out.lines.append(f"~ journey stage {machine.stage.stage}: {machine.stage.why}")
    todo = list(inputs)
    commands = machine.start()
    for _ in range(1000):  # each round is one step the caller meets; a flow file cannot loop forever
        event = _render(machine, commands, out, todo, matchers)
        if event is None:
            break
        commands = machine.receive(event)
    _reasons(machine, out)
    out.path, out.status = list(journey.path), journey.status
    return out


def _reasons(machine: FlowMachine, out: Transcript) -> None:
    for event in machine.take_events():
        why = _why(event)
        if why:
            out.lines.append(f"  ~ {why}")


def _render(
    machine: FlowMachine, commands: list[Command], out: Transcript, todo: list[str], matchers: MenuMatchers | None
) -> Event | None:
    """Lines for ``commands``; the event the machine waits for, or None when the run is over."""
    _reasons(machine, out)
    channel = machine.journey.channel
    for command in commands:
        match command:
            case Play():
                out.lines.append(f"[{command.step}] {command.prompt.text}")
            case Menu() | Ask():
                text = _question_text(command, channel)
                out.lines.append(f"[{command.step}] " + text.replace("\n", f"\n[{command.step}] "))
                if not todo:
                    out.lines.append("(waits for the caller: no more inputs)")
                    return None
                said = todo.pop(0)
                out.lines.append(f"> {said}")
                return caller_input(command, said, channel, matchers)
            case Queue():
                out.queue, out.skill = command.queue, command.skill
                routing: dict[str, Any] = machine.journey.outcome.get("routing") or {}
                out.lines.append(
                    f"[{command.step}] -> queue {command.queue}, skill {command.skill or '-'}, "
                    f"priority {command.priority}"
                )
                for reason in routing.get("reasons", []):
                    out.lines.append(f"  ~ {reason}")
                return None
            case EstimateWait():
                out.lines.append(f"  ~ {command.queue}: an agent is free (simulated)")
                return QueueEstimate(position=1, wait_s=0)
            case AnnounceQueue():
                out.lines.append(f"[{command.step}] {announce_text(command)}")
            case BookCallback():
                return CallbackBooked(None, "simulated: no callbacks")
            case Transfer():
                out.lines.append(f"[{command.step}] -> transfer to {command.destination} (answered, simulated)")
                return TransferEnded("answer")
            case Handoff():
                out.lines.append(f"[{command.step}] -> message with a {command.channel} link (sent, simulated)")
                return HandoffResult(True, "simulated")
            case Hangup():
                out.lines.append(f"[{command.step or '-'}] (hangs up: {command.reason})")
                return None
            case Fallback():
                out.lines.append(f"[{command.step or '-'}] -> fallback: {command.reason}")
                return None
    return Continue() if machine.expecting == "continue" else None
