"""Resuming a journey on another channel, the engine's way: ``resume``, ``question`` and the
system ``continue_offer`` step, with the shipped payments flow and literal inputs."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from ivr.flow.library import FlowLibrary
from ivr.flow.machine import FlowMachine
from ivr.flow.model import (
    WELCOME_BACK_PROMPT,
    Ask,
    CallerLeft,
    Continue,
    HandoffResult,
    InputResult,
    Journey,
    Menu,
    Play,
    Waiting,
)
from ivr.flow.system import started_over

DIALPLANS = Path(__file__).resolve().parents[3] / "dialplans"
NOON = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
LATER = datetime(2026, 11, 23, 15, 30, tzinfo=UTC)


def library() -> FlowLibrary:
    flows = FlowLibrary(DIALPLANS)
    flows.reload()
    return flows


def handed_off(flows: FlowLibrary) -> Journey:
    """A call that typed its account number and pressed 8: saved handed off, to resume at pay_menu."""
    journey = Journey.new(flows.get("payments"), "voice", caller="+15551230001")
    machine = FlowMachine(flows, journey, clock=lambda: NOON)
    machine.start()
    machine.receive(Continue())
    machine.receive(InputResult("match", "dtmf", "12345678"))
    machine.receive(InputResult("match", "dtmf", "8"))
    machine.receive(HandoffResult(True, "accepted"))
    assert journey.status == "handed_off" and journey.step == "pay_menu" and journey.waiting is None
    return Journey.from_dict(journey.persisted())


def test_resume_records_the_channel_change_once_and_re_enters_the_saved_step() -> None:
    flows = library()
    machine = FlowMachine(flows, handed_off(flows), clock=lambda: LATER)
    commands = machine.resume("chat", via="link", refs={"session": "s1"})
    assert len(commands) == 1 and isinstance(commands[0], Menu) and commands[0].step == "pay_menu"
    assert [(c.key, c.option) for c in commands[0].choices] == [("1", "card"), ("0", "agent")]
    j = machine.journey
    assert (j.channel, j.status, j.step, j.refs["session"]) == ("chat", "active", "pay_menu", "s1")
    assert j.waiting == Waiting("pay_menu", "input") and machine.expecting == "input"
    events = machine.take_events()
    changed = [e for e in events if e.kind == "channel_changed"]
    assert [(e.step, e.data) for e in changed] == [("pay_menu", {"from": "voice", "to": "chat", "via": "link"})]
    assert [e.kind for e in events][:3] == ["channel_changed", "journey_resumed", "step_entered"]
    assert {e.at for e in events} == {LATER.timestamp()}  # the machine's clock, not the channel's


def test_resume_at_the_continuations_own_step() -> None:
    """The continuation knows where to resume even when the saved snapshot is older."""
    flows = library()
    journey = handed_off(flows)
    journey.step = "account"  # an older snapshot
    machine = FlowMachine(flows, journey)
    commands = machine.resume("chat", via="link", step="pay_menu")
    assert isinstance(commands[0], Menu) and commands[0].step == "pay_menu"


def test_a_reply_is_taken_from_the_saved_waiting_state_by_a_new_machine() -> None:
    """No channel tells the machine what the journey waits for: the saved journey does."""
    flows = library()
    first = FlowMachine(flows, handed_off(flows))
    first.resume("chat", via="link")
    saved = Journey.from_dict(first.journey.persisted())
    later = FlowMachine(flows, saved)
    assert later.expecting == "input"
    commands = later.receive(InputResult("match", "text", "1", "card"))
    assert isinstance(commands[0], Ask) and commands[0].slot == "amount"
    assert later.journey.waiting == Waiting("amount", "input")


def test_question_re_renders_the_waiting_question_and_records_nothing() -> None:
    flows = library()
    first = FlowMachine(flows, handed_off(flows))
    spoken = first.resume("chat", via="link")
    saved = first.journey.persisted()
    again = FlowMachine(flows, Journey.from_dict(saved))
    assert again.question() == spoken[0]
    assert again.take_events() == [] and again.journey.to_dict() == saved


def test_question_is_none_when_nothing_is_waited_for() -> None:
    flows = library()
    assert FlowMachine(flows, handed_off(flows)).question() is None  # handed off: waits for nobody
    journey = Journey.new(flows.get("payments"), "chat")
    machine = FlowMachine(flows, journey)
    machine.start()  # "Example Power payments." waits for the channel to finish saying it
    assert machine.expecting == "continue" and machine.question() is None


def test_the_continue_offer_is_a_step_in_the_path_and_1_continues_at_the_saved_menu() -> None:
    flows = library()
    machine = FlowMachine(flows, handed_off(flows), clock=lambda: LATER)
    commands = machine.resume("voice", via="caller id", offer=True)
    assert len(commands) == 1 and isinstance(commands[0], Menu)
    offer = commands[0]
    assert (offer.step, offer.prompt, offer.speech) == ("continue_offer", WELCOME_BACK_PROMPT, False)
    assert [(c.key, c.option) for c in offer.choices] == [("1", "continue"), ("2", "restart")]
    assert machine.journey.path[-1] == "system.continue_offer" and machine.question() == offer
    commands = machine.receive(InputResult("match", "dtmf", "1"))
    j = machine.journey
    assert isinstance(commands[0], Menu) and commands[0].step == "pay_menu"
    assert [(c.key, c.option) for c in commands[0].choices] == [("1", "card"), ("8", "text"), ("0", "agent")]
    assert j.path[-3:] == ["text_me", "system.continue_offer", "pay_menu"]
    assert (j.flow, j.stack, j.channel, j.status) == ("payments", [], "voice", "active")
    events = machine.take_events()
    kinds = [(e.kind, e.step) for e in events]
    assert kinds.count(("channel_changed", "pay_menu")) == 1
    assert ("step_entered", "continue_offer") in kinds
    answered = [e.data for e in events if e.kind == "continue_offer_answered"]
    assert answered == [{"choice": "continue", "status": "match", "mode": "dtmf", "key": "1"}]
    assert {e.at for e in events} == {LATER.timestamp()}


def test_no_key_at_the_offer_also_continues() -> None:
    flows = library()
    machine = FlowMachine(flows, handed_off(flows))
    machine.resume("voice", via="caller id", offer=True)
    commands = machine.receive(InputResult("noinput", "dtmf"))
    assert isinstance(commands[0], Menu) and commands[0].step == "pay_menu"


def test_2_at_the_offer_starts_over_and_ends_the_open_journey_at_its_own_step() -> None:
    flows = library()
    machine = FlowMachine(flows, handed_off(flows))
    machine.resume("voice", via="caller id", offer=True)
    assert machine.receive(InputResult("match", "dtmf", "2")) == []
    j = machine.journey
    assert started_over(j) and machine.expecting == "nothing"
    assert (j.flow, j.step, j.stack) == ("payments", "pay_menu", [])


def test_a_hangup_during_the_offer_leaves_the_journey_at_its_own_step() -> None:
    flows = library()
    machine = FlowMachine(flows, handed_off(flows))
    machine.resume("voice", via="caller id", offer=True)
    machine.receive(CallerLeft())
    j = machine.journey
    assert (j.status, j.flow, j.step, j.stack, j.waiting) == ("abandoned", "payments", "pay_menu", [], None)
    assert not started_over(j)
    # and it can be resumed later, at the same menu
    again = FlowMachine(flows, Journey.from_dict(j.persisted()))
    commands = again.resume("chat", via="link")
    assert isinstance(commands[0], Menu) and commands[0].step == "pay_menu"


def test_a_journey_saved_while_the_offer_waited_loads_and_resumes_at_its_own_step() -> None:
    flows = library()
    machine = FlowMachine(flows, handed_off(flows))
    machine.resume("voice", via="caller id", offer=True)
    saved = Journey.from_dict(machine.journey.persisted())
    assert (saved.flow, saved.step) == ("system", "continue_offer")
    loaded = FlowMachine(flows, saved)
    assert isinstance(loaded.question(), Menu)
    commands = loaded.resume("chat", via="link")
    assert isinstance(commands[0], Menu) and commands[0].step == "pay_menu"
    assert (loaded.journey.flow, loaded.journey.stack) == ("payments", [])


def test_a_failed_handoff_waits_for_continue_then_goes_on() -> None:
    flows = library()
    journey = Journey.new(flows.get("payments"), "voice")
    machine = FlowMachine(flows, journey)
    machine.start()
    machine.receive(Continue())
    machine.receive(InputResult("match", "dtmf", "12345678"))
    machine.receive(InputResult("match", "dtmf", "8"))
    commands = machine.receive(HandoffResult(False, "no mobile"))
    assert [type(c) for c in commands] == [Play] and journey.waiting == Waiting("text_me", "continue")
    assert [e.data for e in machine.take_events() if e.kind == "handoff_failed"] == [
        {"to": "chat", "reason": "no mobile"}
    ]
