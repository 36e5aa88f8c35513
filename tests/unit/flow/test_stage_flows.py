"""Flows that greet by journey stage: placeholders spoken in fragments, `ivr check` errors with
file:line, the simulator saying which stage applied and why, scenarios with a past."""

from __future__ import annotations

import textwrap
from datetime import UTC, datetime
from pathlib import Path

import pytest

from ivr.flow.commands import SYSTEM_PROMPTS, Play, Prompt
from ivr.flow.journey import Journey
from ivr.flow.loader import FlowLoadError, parse_flow
from ivr.flow.machine import FlowMachine
from ivr.flow.model import Continue, Flow, InputResult
from ivr.flow.profile import CallerProfile, PastContact
from ivr.flow.scenarios import parse_scenarios, run_scenario
from ivr.flow.simulate import simulate

NOW = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)
FLOW = """\
flow: line
start: check
steps:
  check:
    branch:
      when:
        - if: within(journey.unfinished, hours=2) and journey.unfinished.reason_label
          next: earlier
      else: main
  earlier:
    say: You called about {journey.unfinished.reason_label} {journey.unfinished.ago}.
    next: main
  main:
    menu:
      prompt: How can we help?
      options:
        bill: {dtmf: "1", say: "paying your bill", intents: [billing], next: account}
        outage: {dtmf: "2", say: "reporting an outage", intents: [outage], next: bye}
  account:
    ask: {prompt: Your account number., slot: account_number, digits: 8}
    next: bye
  bye:
    hangup: Goodbye.
"""


class Flows:
    def __init__(self, *flows: Flow) -> None:
        self.flows = {f.name: f for f in flows}

    def get(self, name: str, version: str | None = None) -> Flow:
        return self.flows[name]


def left(minutes: float, intent: str | None = "billing") -> CallerProfile:
    t = NOW.timestamp() - minutes * 60
    return CallerProfile(
        "c1", contacts=1, recent=(PastContact("j0", "line", "voice", "abandoned", "account", intent, t - 30, t),)
    )


def test_the_greeting_is_spoken_in_fragments_that_all_have_audio() -> None:
    flow = parse_flow(FLOW, "line.yaml")
    machine = FlowMachine(
        Flows(flow), Journey("j1", "line", flow.version, "voice"), clock=lambda: NOW, profile=left(10)
    )
    commands = machine.start()
    # the full stop alone has no words, so no fragment: text channels still show the sentence
    play = Play(
        "earlier",
        Prompt("You called about paying your bill ten minutes ago."),
        (Prompt("You called about"), Prompt("paying your bill"), Prompt("ten minutes ago")),
    )
    assert commands == [play]
    # every fragment is built by `ivr prompts build`: the words from the flow, the label from the
    # menu, the phrase from the system prompts; the template itself is never a prompt
    built = {p.text for p in flow.prompts()} | {p.text for p in SYSTEM_PROMPTS}
    assert all(part.text in built for part in play.parts)
    assert not any("{" in p.text for p in flow.prompts())
    kinds = [(e.kind, e.data) for e in machine.take_events()]
    assert (
        "journey_stage",
        {"stage": "unfinished", "why": "left line at step account about bill ten minutes ago"},
    ) in kinds
    assert machine.receive(Continue())[0].step == "main"


def test_no_greeting_when_the_unfinished_call_is_too_old_or_had_no_reason() -> None:
    flow = parse_flow(FLOW, "line.yaml")
    for profile in (left(180), left(10, intent=None), None):
        machine = FlowMachine(
            Flows(flow), Journey("j1", "line", flow.version, "voice"), clock=lambda: NOW, profile=profile
        )
        assert machine.start()[0].step == "main"
        assert machine.journey.path == ["check", "main"]
        machine.receive(InputResult("match", "dtmf", "2"))


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (
            "        - if: journey.unfinished.reasn_label\n",
            "f.yaml:7: check: bad condition: journey.unfinished.reasn_label does not exist",
        ),
        (
            "        - if: journey.last_call\n",
            "f.yaml:7: check: bad condition: journey.last_call does not exist",
        ),
    ],
)
def test_ivr_check_names_a_wrong_journey_attribute_with_its_line(line: str, message: str) -> None:
    text = FLOW.replace("        - if: within(journey.unfinished, hours=2) and journey.unfinished.reason_label\n", line)
    with pytest.raises(FlowLoadError) as caught:
        parse_flow(text, "f.yaml")
    assert str(caught.value.problems[0]).startswith(message), caught.value.problems


@pytest.mark.parametrize(
    ("placeholder", "message"),
    [
        ("{journey.unfinished.step}", "only ago, reason_label can be spoken"),
        ("{journey.stage}", "unknown placeholder {journey.stage}"),
        ("{journey.stage.x}", "journey.stage cannot be spoken"),
        ("{slots.account_number}", "unknown placeholder {slots.account_number}"),
    ],
)
def test_a_placeholder_that_cannot_be_spoken_is_an_error_with_its_line(placeholder: str, message: str) -> None:
    text = FLOW.replace("{journey.unfinished.reason_label}", placeholder)
    with pytest.raises(FlowLoadError) as caught:
        parse_flow(text, "f.yaml")
    (problem,) = caught.value.problems
    assert str(problem).startswith("f.yaml:11: earlier: ") and message in problem.message, problem


def test_the_simulator_says_which_stage_applied_and_why() -> None:
    out = simulate(Flows(parse_flow(FLOW)), "line", caller="+1555", inputs=["1"], profile=left(10), clock=lambda: NOW)
    assert out.stage == "unfinished"
    assert "~ journey stage unfinished: left line at step account about bill ten minutes ago" in out.lines
    assert "[earlier] You called about paying your bill ten minutes ago." in out.lines
    assert out.path == ["check", "earlier", "main", "account"]
    assert simulate(Flows(parse_flow(FLOW)), "line", caller=None, clock=lambda: NOW).stage == "unknown"


SCENARIOS = """\
scenarios:
  - name: left the bill unfinished
    flow: line
    at: 2026-03-02T15:00:00Z
    history:
      - {status: abandoned, step: account, intent: billing, minutes_ago: 10}
    stage: unfinished
    inputs: ["2"]
    path: [check, earlier, main, bye]
"""


def test_a_scenario_gives_the_caller_a_past_and_checks_the_stage(tmp_path: Path) -> None:
    scenarios, problems = parse_scenarios(SCENARIOS, "s.yaml")
    assert problems == []
    flows = Flows(parse_flow(FLOW))
    assert run_scenario(flows, scenarios[0]).ok
    wrong, _ = parse_scenarios(SCENARIOS.replace("stage: unfinished", "stage: recent_contact"), "s.yaml")
    assert run_scenario(flows, wrong[0]).problems == ["stage: expected recent_contact, got unfinished"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("stage: unfinished", "stage: halfway"), "stage must be one of open_callback"),
        (("minutes_ago: 10", "minutes: 10"), "a past contact has minutes_ago"),
        (("status: abandoned", "status: gone"), "a past contact's status is one of"),
        (
            ("    stage: unfinished\n", "    stage: unfinished\n    callback: {minutes_ago: 3}\n"),
            "'callback' is an open ticket",
        ),
    ],
)
def test_a_wrong_past_in_a_scenario_is_a_problem_with_its_line(change: tuple[str, str], message: str) -> None:
    _, problems = parse_scenarios(textwrap.dedent(SCENARIOS).replace(*change), "s.yaml")
    assert len(problems) == 1 and message in problems[0].message and problems[0].line == 2, problems
