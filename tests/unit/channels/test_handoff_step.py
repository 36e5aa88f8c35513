"""The ``handoff`` step in the pure machine, with the shipped payments flow and literal flows."""

from __future__ import annotations

from pathlib import Path

from ivr.flow.commands import QueueEstimate
from ivr.flow.library import FlowLibrary
from ivr.flow.loader import FlowLoadError, parse_flow
from ivr.flow.machine import FlowMachine
from ivr.flow.model import (
    Ask,
    Continue,
    Fallback,
    Handoff,
    HandoffResult,
    Hangup,
    InputResult,
    Journey,
    Menu,
    Play,
    Prompt,
)
from ivr.flow.steps import HandoffStep

DIALPLANS = Path(__file__).resolve().parents[3] / "dialplans"


def to_pay_menu(channel: str = "voice") -> FlowMachine:
    library = FlowLibrary(DIALPLANS)
    library.reload()
    journey = Journey.new(library.get("payments"), channel, caller="+15551230001")
    machine = FlowMachine(library, journey)
    commands = machine.start()
    assert isinstance(commands[0], Play)
    commands = machine.receive(Continue())
    assert isinstance(commands[0], Ask)
    commands = machine.receive(InputResult("match", "dtmf", "12345678"))
    assert isinstance(commands[0], Menu) and journey.step == "pay_menu"
    return machine


def test_key_8_hands_off_and_the_journey_waits_at_the_menu() -> None:
    machine = to_pay_menu()
    commands = machine.receive(InputResult("match", "dtmf", "8"))
    assert commands == [Handoff("text_me", "chat", "pay_menu", Prompt("Continue your Example Power payment here"))]
    commands = machine.receive(HandoffResult(True, "link"))
    assert [type(c) for c in commands] == [Play, Hangup]
    journey = machine.journey
    assert journey.status == "handed_off" and journey.step == "pay_menu"
    assert journey.slots == {"account_number": "12345678"}
    kinds = [e.kind for e in machine.take_events()]
    assert "handed_off" in kinds and kinds[-1] == "journey_handed_off"


def test_a_failed_handoff_says_so_and_goes_on_here() -> None:
    machine = to_pay_menu()
    machine.receive(InputResult("match", "dtmf", "8"))
    commands = machine.receive(HandoffResult(False, "disabled"))
    assert commands == [Play("text_me", Prompt(HandoffStep.DEFAULT_FAILED))]
    assert machine.journey.status == "active"
    machine.receive(Continue())  # on_failure of the flow: to_billing
    assert machine.journey.step == "to_billing"
    machine.receive(QueueEstimate(1, 0.0))
    journey: Journey = machine.journey  # a fresh read: the earlier status comparison narrowed the attribute
    assert journey.status == "queued"


def test_a_handoff_answered_like_input_is_a_fallback_not_a_hand_off() -> None:
    """A hand-off's outcome is its own event: an InputResult in its place is a channel bug."""
    machine = to_pay_menu()
    machine.receive(InputResult("match", "dtmf", "8"))
    commands = machine.receive(InputResult("match", "dtmf", "link"))
    assert [type(c) for c in commands] == [Fallback]
    assert machine.journey.status == "failed" and "takes no input" in machine.journey.outcome["fallback"]


def test_resumed_in_chat_the_same_menu_without_the_text_option() -> None:
    machine = to_pay_menu()
    machine.receive(InputResult("match", "dtmf", "8"))
    machine.receive(HandoffResult(True, "link"))
    journey = Journey.from_dict(machine.journey.persisted())
    journey.channel, journey.status = "chat", "active"
    resumed = FlowMachine(machine.flows, journey)
    commands = resumed.start()
    assert len(commands) == 1 and isinstance(commands[0], Menu)
    assert commands[0].step == "pay_menu"
    assert [(c.key, c.option) for c in commands[0].choices] == [("1", "card"), ("0", "agent")]
    # and 8 typed in chat is not an option there
    commands = resumed.receive(InputResult("match", "text", "8"))
    assert isinstance(commands[0], Play) and resumed.journey.step == "pay_menu"


def test_parse_problems() -> None:
    text = """
flow: f
start: a
steps:
  a:
    handoff: {channel: fax}
"""
    try:
        parse_flow(text, "f.yaml")
    except FlowLoadError as exc:
        messages = [p.message for p in exc.problems]
    else:
        raise AssertionError("parsed")
    assert any("channel must be chat" in m for m in messages)
    assert any("resume (or next)" in m for m in messages)
