"""The shipped flows read back a spoken answer the matcher is not sure of: every menu that listens
has a ``confirm_below``, and at the support line's main menu an unsure answer is read back, a
spoken "no" brings "Sorry about that." and the options read out again, a sure answer goes
straight through. Literal inputs through the real flow file and the flow machine."""

from __future__ import annotations

from pathlib import Path

import pytest

from ivr.flow.loader import load_flow_file
from ivr.flow.machine import FlowMachine
from ivr.flow.model import Continue, Flow, InputResult, Journey, Menu, Play
from ivr.flow.steps import MenuStep

DIALPLANS = Path(__file__).resolve().parents[3] / "dialplans"
SHIPPED = ("support", "payments", "support_ru")  # the bench flows are measuring rigs, not lines


class Flows:
    def __init__(self, *flows: Flow) -> None:
        self.flows = {f.name: f for f in flows}

    def get(self, name: str, version: str | None = None) -> Flow:
        return self.flows[name]


@pytest.mark.parametrize("name", SHIPPED)
def test_every_listening_menu_of_the_shipped_flows_reads_back_unsure_answers(name: str) -> None:
    flow = load_flow_file(DIALPLANS / f"{name}.yaml")
    menus = [s for s in flow.steps.values() if isinstance(s, MenuStep) and s.speech]
    assert menus
    for menu in menus:
        assert menu.confirm_below == 0.6, (name, menu.name)


def at_main_menu() -> FlowMachine:
    flow = load_flow_file(DIALPLANS / "support.yaml")
    m = FlowMachine(Flows(flow), Journey.new(flow, "voice", caller="+15551230009"))
    m.start()  # "Welcome to Example Power."
    m.receive(Continue())  # open around the clock: on to the main menu
    assert m.journey.step == "main_menu"
    return m


def spoken(text: str, option: str, confidence: float) -> InputResult:
    return InputResult("match", "speech", text, option, confidence, intent=option)


def test_an_unsure_answer_is_read_back_and_a_spoken_no_reads_the_options_again() -> None:
    m = at_main_menu()
    cmds = m.receive(spoken("the lights are funny", "outage", 0.5))
    assert [type(c) for c in cmds] == [Play, Play, Menu]
    assert [c.prompt.text for c in cmds[:2] if isinstance(c, Play)] == ["Did you say", "reporting an outage"]
    assert m.journey.step == "main_menu" and m.journey.confirming is not None

    cmds = m.receive(InputResult("match", "speech", "no, that's not it", "no", 0.9, intent="no"))
    assert m.journey.step == "main_menu" and m.journey.confirming is None and m.journey.attempts == 1
    assert isinstance(cmds[0], Play) and cmds[0].prompt.text == "Sorry about that."
    again = cmds[1]
    assert isinstance(again, Menu) and again.prompt.text == "How can we help you today?"
    assert [(c.key, c.label.text) for c in again.choices] == [
        ("1", "paying your bill"),
        ("2", "reporting an outage"),
        ("0", "talking to an agent"),
    ]
    events = [e for e in m.take_events() if e.kind == "confirmation_answered"]
    assert [e.data["confirmed"] for e in events] == [False]

    m.receive(spoken("I want to pay my bill", "pay_bill", 0.95))  # sure: no read-back
    assert m.journey.step == "account"


def test_a_spoken_yes_to_the_read_back_takes_the_option() -> None:
    m = at_main_menu()
    m.receive(spoken("the lights are funny", "outage", 0.5))
    m.receive(InputResult("match", "speech", "yes", "yes", 0.9, intent="yes"))
    assert m.journey.step == "outage_info"
