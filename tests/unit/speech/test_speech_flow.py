"""Spoken answers in the flow engine: recognition saved and logged, the low-confidence read-back
(a pending confirmation on the journey, so any channel can render and answer it), and the
``speech``/``confirm_below`` menu keys."""

from __future__ import annotations

import pytest

from ivr.flow.loader import FlowLoadError, parse_flow
from ivr.flow.machine import FlowMachine
from ivr.flow.model import Flow, InputResult, Journey, Menu, Play
from ivr.flow.steps import MenuStep

FLOW = """
flow: s
start: menu
steps:
  menu:
    menu:
      prompt: How can we help?
      confirm_below: 0.6
      tries: 3
      options:
        pay_bill: {dtmf: "1", say: paying your bill, intents: [billing, pay], next: billing}
        outage: {dtmf: "2", say: reporting an outage, intents: [outage], next: outage}
  billing: {say: Billing., next: end}
  outage: {say: Outage., next: end}
  end: {hangup: {}}
"""


class Flows:
    def __init__(self, *flows: Flow) -> None:
        self.flows = {f.name: f for f in flows}

    def get(self, name: str, version: str | None = None) -> Flow:
        return self.flows[name]


def machine(text: str = FLOW) -> FlowMachine:
    flow = parse_flow(text, "s.yaml")
    m = FlowMachine(Flows(flow), Journey.new(flow, "voice", caller="+15551230001"))
    cmds = m.start()
    assert isinstance(cmds[0], Menu)
    return m


def said(text: str, option: str | None, confidence: float, intent: str | None = None) -> InputResult:
    if option:
        return InputResult("match", "speech", text, option, confidence, intent=intent)
    return InputResult("nomatch", "speech", text, option, confidence, intent=intent)


def kinds(m: FlowMachine) -> list[str]:
    return [e.kind for e in m.take_events()]


def test_a_confident_spoken_answer_chooses_and_is_recorded() -> None:
    m = machine()
    m.take_events()
    cmds = m.receive(said("I want to pay my bill", "pay_bill", 0.9, intent="pay"))
    assert m.journey.step == "billing" and isinstance(cmds[0], Play)
    assert m.journey.intent == "pay"  # the intent heard, not just the option's first
    assert m.journey.recognition == {
        "step": "menu",
        "utterance": "I want to pay my bill",
        "intent": "pay",
        "option": "pay_bill",
        "confidence": 0.9,
        "status": "match",
    }
    events = m.take_events()
    heard = next(e for e in events if e.kind == "intent_recognised")
    assert heard.step == "menu" and heard.data["utterance"] == "I want to pay my bill"
    assert heard.data["intent"] == "pay" and heard.data["option"] == "pay_bill"
    chosen = next(e for e in events if e.kind == "option_chosen")
    assert chosen.data["mode"] == "speech" and chosen.data["confidence"] == 0.9


def test_words_without_an_option_are_recorded_and_retried() -> None:
    m = machine()
    m.take_events()
    cmds = m.receive(said("what a lovely day", None, 0.8))
    assert m.journey.step == "menu" and m.journey.attempts == 1
    assert isinstance(cmds[0], Play) and cmds[0].prompt.text == "Sorry, that is not a valid choice."
    assert m.journey.recognition["status"] == "nomatch" and m.journey.recognition["option"] is None
    assert "intent_recognised" in kinds(m)


def test_silence_is_not_a_recognition() -> None:
    m = machine()
    m.take_events()
    m.receive(InputResult("noinput", "speech"))
    assert m.journey.recognition == {}
    assert "intent_recognised" not in kinds(m)


def test_low_confidence_is_read_back_and_yes_by_key_confirms() -> None:
    m = machine()
    cmds = m.receive(said("pay bill", "pay_bill", 0.4, intent="billing"))
    assert [type(c) for c in cmds] == [Play, Play, Menu]
    assert isinstance(cmds[0], Play) and isinstance(cmds[1], Play)
    assert cmds[0].prompt.text == "Did you say" and cmds[1].prompt.text == "paying your bill"
    question = cmds[2]
    assert isinstance(question, Menu) and question.prompt.text == "Is that right?"
    assert [(c.key, c.option, c.label.text) for c in question.choices] == [("1", "yes", "yes"), ("2", "no", "no")]
    assert m.journey.step == "menu" and m.journey.confirming is not None
    assert m.journey.confirming["option"] == "pay_bill"
    m.take_events()
    cmds = m.receive(InputResult("match", "dtmf", "1"))
    assert m.journey.step == "billing" and m.journey.confirming is None
    assert m.journey.intent == "billing"
    events = m.take_events()
    answered = next(e for e in events if e.kind == "confirmation_answered")
    assert answered.data["confirmed"] is True
    chosen = next(e for e in events if e.kind == "option_chosen")
    assert chosen.data["option"] == "pay_bill" and chosen.data["utterance"] == "pay bill"
    assert "intent_recognised" not in [e.kind for e in events]  # it was logged when first heard


def test_a_spoken_yes_confirms() -> None:
    m = machine()
    m.receive(said("outage", "outage", 0.3, intent="outage"))
    m.receive(said("yes", "yes", 0.9, intent="yes"))
    assert m.journey.step == "outage"


def test_no_asks_the_menu_again() -> None:
    m = machine()
    m.receive(said("pay bill", "pay_bill", 0.4))
    cmds = m.receive(InputResult("match", "dtmf", "2"))
    assert m.journey.step == "menu" and m.journey.attempts == 1 and m.journey.confirming is None
    assert isinstance(cmds[0], Play) and cmds[0].prompt.text == "Sorry about that."
    assert isinstance(cmds[1], Menu) and cmds[1].step == "menu" and len(cmds[1].choices) == 2
    assert [c.option for c in cmds[1].choices] == ["pay_bill", "outage"]  # the real menu again
    # ... and a key now chooses normally
    m.receive(InputResult("match", "dtmf", "2"))
    assert m.journey.step == "outage"


def test_silence_at_the_read_back_is_a_no() -> None:
    m = machine()
    m.receive(said("pay bill", "pay_bill", 0.4))
    m.receive(InputResult("noinput", "speech"))
    assert m.journey.step == "menu" and m.journey.confirming is None and m.journey.attempts == 1


def test_text_channels_answer_yes_with_the_word() -> None:
    m = machine()
    m.receive(said("pay bill", "pay_bill", 0.4))
    m.receive(InputResult("match", "text", "Yes"))
    assert m.journey.step == "billing"


def test_keys_are_never_read_back() -> None:
    m = machine()
    m.receive(InputResult("match", "dtmf", "1", confidence=0.1))
    assert m.journey.step == "billing"


def test_without_confirm_below_low_confidence_is_accepted() -> None:
    m = machine(FLOW.replace("      confirm_below: 0.6\n", ""))
    m.receive(said("pay bill", "pay_bill", 0.2))
    assert m.journey.step == "billing"


def test_a_pending_read_back_is_dropped_when_the_menu_is_entered_again() -> None:
    m = machine()
    m.receive(said("pay bill", "pay_bill", 0.4))
    journey = Journey.from_dict(m.journey.to_dict())  # saved, resumed later on another channel
    assert journey.confirming is not None
    flow = m.flow
    resumed = FlowMachine(Flows(flow), journey)
    cmds = resumed.start()
    assert isinstance(cmds[0], Menu) and len(cmds[0].choices) == 2 and cmds[0].choices[0].option == "pay_bill"
    assert journey.confirming is None
    resumed.receive(InputResult("match", "dtmf", "1"))
    assert journey.step == "billing"  # "1" is the menu's key again, not a yes


def test_menu_speech_flag_reaches_the_command() -> None:
    m = machine()
    assert m.start()[0].speech is True  # type: ignore[union-attr]
    m2 = machine(FLOW.replace("      confirm_below: 0.6\n", "      speech: false\n"))
    cmd = m2.start()[0]
    assert isinstance(cmd, Menu) and cmd.speech is False


def test_loader_reads_the_keys() -> None:
    flow = parse_flow(FLOW, "s.yaml")
    step = flow.steps["menu"]
    assert isinstance(step, MenuStep) and step.speech is True and step.confirm_below == 0.6


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("      speech: maybe\n", "speech must be true or false"),
        ("      confirm_below: 2\n", "confirm_below must be a number from 0.0 to 1.0"),
    ],
)
def test_loader_rejects_bad_values(line: str, message: str) -> None:
    with pytest.raises(FlowLoadError) as info:
        parse_flow(FLOW.replace("      confirm_below: 0.6\n", line), "s.yaml")
    assert any(message in str(p) for p in info.value.problems)


def test_confirmation_words_are_flow_texts_and_rendered() -> None:
    flow = parse_flow(FLOW, "s.yaml")
    texts = {p.text for p in flow.prompts()}
    assert {"Did you say", "Is that right?", "Sorry about that.", "yes", "no"} <= texts
