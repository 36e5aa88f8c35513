"""The simulator runs the real engine on literal flows and profiles; scenarios pin the path."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from ivr.flow.loader import parse_flow
from ivr.flow.model import Flow
from ivr.flow.profile import CallerProfile, KnownSlot, OptionStat
from ivr.flow.scenarios import parse_scenarios, run_scenario
from ivr.flow.simulate import simulate

FLOW = """\
flow: line
start: hello
steps:
  hello:
    say: Hello.
    next: main
  main:
    menu:
      prompt: How can we help?
      personalize: {min_contacts: 1}
      options:
        bill: {dtmf: "1", say: "your bill", intents: [billing], next: account}
        outage: {dtmf: "2", say: "an outage", intents: [outage], next: to_outage}
  account:
    ask: {prompt: Your account number., slot: account_number, digits: 8, prefill: true}
    next: to_billing
  to_billing:
    queue: {skill: billing}
  to_outage:
    queue: {skill: outage}
"""
NOW = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)


class Flows:
    def __init__(self, *flows: Flow) -> None:
        self.flows = {f.name: f for f in flows}

    def get(self, name: str, version: str | None = None) -> Flow:
        return self.flows[name]


def returning_caller() -> CallerProfile:
    at = NOW.timestamp() - 3600
    return CallerProfile(
        "c1",
        contacts=4,
        options=(OptionStat("line", "main", "outage", 4, 4.0, at),),
        slots=(KnownSlot("account_number", "12345678", "chat", at),),
    )


def test_an_unknown_caller_hears_the_file_order_and_reaches_the_queue_by_keys() -> None:
    out = simulate(Flows(parse_flow(FLOW)), "line", caller="+15551230001", inputs=["1", "87654321"], clock=lambda: NOW)
    assert out.path == ["hello", "main", "account", "to_billing"]
    assert (out.status, out.queue, out.skill) == ("queued", "billing", "billing")
    text = out.text()
    assert "[main] For your bill press 1.\n[main] For an outage press 2." in text
    assert "~ caller +15551230001: unknown to the store" in text
    assert "~ flow step asks for skill billing" in text


def test_a_returning_caller_sees_the_reordered_menu_why_and_the_prefill_offer() -> None:
    out = simulate(
        Flows(parse_flow(FLOW)), "line", caller="+1555", profile=returning_caller(), inputs=["2"], clock=lambda: NOW
    )
    text = out.text()
    assert "[main] For an outage press 1.\n[main] For your bill press 2." in text  # outage moved up
    assert "~ menu order outage, bill:" in text
    assert out.path == ["hello", "main", "account"]  # key 2 is now the bill
    assert "(offers 5678: press 1 to use it)" in text  # the account number known from chat
    assert "offers the account_number known from chat" in text
    assert out.status == "active" and "(waits for the caller: no more inputs)" in text


def test_words_go_through_the_intent_matcher_on_chat() -> None:
    out = simulate(Flows(parse_flow(FLOW)), "line", caller=None, channel="chat", inputs=["there is an outage"])
    assert out.path == ["hello", "main", "to_outage"] and out.skill == "outage"


SCENARIOS = """\
scenarios:
  - name: bill by keys
    flow: line
    caller: "+15551230001"
    at: 2026-03-02T10:00:00Z
    inputs: [1, "87654321"]
    path: [hello, main, account, to_billing]
    queue: billing
  - name: wrong expectation
    flow: line
    inputs: ["2"]
    path: [hello, main, to_billing]
  - name: broken
    flow: line
    colour: blue
    path: [hello]
"""


def test_scenarios_pass_fail_with_a_path_diff_and_report_bad_entries() -> None:
    scenarios, problems = parse_scenarios(SCENARIOS, "s.yaml")
    assert [str(p) for p in problems] == [
        "s.yaml:15: broken: unknown key 'colour' (allowed: at, callback, caller, channel, flow, history, inputs, name, path, queue, skill, stage)"
    ]
    flows = Flows(parse_flow(FLOW))
    good, bad = (run_scenario(flows, s) for s in scenarios[:2])
    assert good.ok and scenarios[0].inputs == ("1", "87654321")
    assert not bad.ok
    assert bad.problems == [
        "path differs:\n"
        "    --- expected\n    +++ actual\n    @@ -1,3 +1,3 @@\n     hello\n     main\n    -to_billing\n    +to_outage"
    ]


def test_a_loop_across_flows_ends_the_simulation_in_the_fallback() -> None:
    a = parse_flow("flow: a\nstart: s\nsteps:\n  s: {goto: {flow: b}}\n")
    b = parse_flow("flow: b\nstart: s\nsteps:\n  s: {goto: {flow: a}}\n")
    started = time.perf_counter()
    out = simulate(Flows(a, b), "a", caller=None)
    assert out.status == "failed" and "-> fallback: more than 100 steps without input" in out.text()
    assert time.perf_counter() - started < 1


def test_words_on_voice_are_speech_matched_by_the_speech_services_matchers() -> None:
    from ivr.speech.service import IntentMatchers

    out = simulate(
        Flows(parse_flow(FLOW)), "line", caller=None, inputs=["my power is out"], matchers=IntentMatchers("en")
    )
    assert out.path == ["hello", "main", "to_outage"]
    assert "~ heard 'my power is out' as outage" in out.text()


def test_a_caller_in_the_holdout_hears_the_files_order_and_why() -> None:
    out = simulate(
        Flows(parse_flow(FLOW)), "line", caller="+1555", profile=returning_caller(), holdout=1.0, clock=lambda: NOW
    )
    assert "[main] For your bill press 1.\n[main] For an outage press 2." in out.text()
    assert "~ menu order bill, outage: holdout: this caller hears flow line in the file's order" in out.text()
