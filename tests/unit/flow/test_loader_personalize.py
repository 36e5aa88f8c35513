"""`ivr check` on the personalization and prefill keys: good values parse, bad ones are reported
as file:line: step: message."""

from __future__ import annotations

import textwrap

import pytest

from ivr.flow.loader import FlowLoadError, parse_flow
from ivr.flow.model import Prompt
from ivr.flow.steps import AskStep, MenuStep

FLOW = """\
flow: demo
start: menu
steps:
  menu:
    menu:
      prompt: Choose.
      personalize: {min_contacts: 2}
      options:
        bill:  {dtmf: "1", say: "bills", next: account}
        other: {dtmf: "2", say: "other", next: account}
        agent: {dtmf: "0", say: "an agent", next: account, pin: last}
  account:
    ask: {prompt: Account number., slot: account_number, digits: 8, prefill: true, reuse_for: 90d}
"""


def problems(text: str) -> list[str]:
    with pytest.raises(FlowLoadError) as info:
        parse_flow(textwrap.dedent(text), "f.yaml")
    return [str(p) for p in info.value.problems]


def test_good_values_parse() -> None:
    flow = parse_flow(FLOW, "f.yaml")
    menu, ask = flow.steps["menu"], flow.steps["account"]
    assert isinstance(menu, MenuStep) and menu.personalize and menu.min_contacts == 2
    assert isinstance(ask, AskStep) and ask.prefill and ask.reuse_for == 90 * 86400
    assert ask.prefill_prompt == Prompt("We have your account number ending in")
    assert Prompt("We have your account number ending in") in flow.prompts()
    assert flow.personalize is True


@pytest.mark.parametrize(
    ("value", "seconds"), [("90d", 90 * 86400), ("12h", 12 * 3600), ("30m", 1800), ("2w", 14 * 86400), ("45s", 45)]
)
def test_reuse_for_units(value: str, seconds: int) -> None:
    ask = parse_flow(FLOW.replace("reuse_for: 90d", f"reuse_for: {value}"), "f.yaml").steps["account"]
    assert isinstance(ask, AskStep) and ask.reuse_for == seconds


def test_personalize_true_and_flow_switch() -> None:
    flow = parse_flow("personalize: false\n" + FLOW.replace("{min_contacts: 2}", "true"), "f.yaml")
    menu = flow.steps["menu"]
    assert isinstance(menu, MenuStep) and menu.personalize and menu.min_contacts == 1
    assert flow.personalize is False


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("personalize: {min_contacts: 2}", "personalize: yes please", "personalize must be true, false or"),
        ("{min_contacts: 2}", "{min_contacts: -1}", "min_contacts must be a whole number from 0 to 10000"),
        ("{min_contacts: 2}", "{min_contact: 2}", "unknown key 'min_contact' in personalize"),
        ("prefill: true", 'prefill: "yes"', "prefill must be true or false"),
        ("reuse_for: 90d", "reuse_for: 90", "reuse_for must be a duration like 90d"),
        ("reuse_for: 90d", "reuse_for: 3 months", "reuse_for must be a duration like 90d"),
        ("reuse_for: 90d", "reuse_for: 0d", "reuse_for must be a duration like 90d"),
        ("prefill: true", "prefill: true, secret: true", "a secret slot is never reused"),
        ("digits: 8", "min_digits: 1", "prefill needs at least 2 digits (a lone 1 accepts the offer)"),
        ("prefill: true, reuse_for: 90d", "reuse_for: 90d", "reuse_for only applies with prefill: true"),
        ("prefill: true, reuse_for: 90d", "prefill_prompt: Yours ends in", "prefill_prompt only applies with"),
        ("prefill: true", 'prefill: true, secret: "no"', "secret must be true or false"),
    ],
)
def test_bad_values_are_reported_with_their_line(old: str, new: str, message: str) -> None:
    assert old in FLOW
    found = problems(FLOW.replace(old, new))
    assert any(message in p for p in found), found
    assert all(p.startswith("f.yaml:") for p in found)


def test_flow_level_personalize_must_be_a_switch() -> None:
    assert problems("personalize: sometimes\n" + FLOW) == [
        "f.yaml:1: -: personalize (for the whole flow) must be true or false"
    ]


def test_pins_must_sit_where_they_are_pinned() -> None:
    out = problems(FLOW.replace("next: account}\n        agent:", "next: account, pin: first}\n        agent:"))
    assert out == ["f.yaml:10: menu: option other is pinned first: list it before the unpinned options"]
    out = problems(FLOW.replace('"bills", next: account}', '"bills", next: account, pin: last}'))
    assert out == ["f.yaml:9: menu: option bill is pinned last: list it after the unpinned options"]
