"""Each error class `ivr check` must catch, reported as file:line: step: message."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from ivr.flow.loader import FlowLoadError, check_paths, parse_flow

GOOD = """\
flow: demo
start: hello
steps:
  hello:
    say: Hello.
    next: menu
  menu:
    menu:
      prompt: Choose.
      options:
        a: {dtmf: "1", say: "option a", next: bye}
        b: {dtmf: "2", say: "option b", next: bye}
  bye:
    hangup: Goodbye.
"""


def problems(text: str) -> list[str]:
    with pytest.raises(FlowLoadError) as info:
        parse_flow(textwrap.dedent(text), "f.yaml")
    return [str(p) for p in info.value.problems]


def test_good_flow_parses_with_version() -> None:
    flow = parse_flow(GOOD, "f.yaml")
    assert flow.name == "demo" and flow.start == "hello"
    assert len(flow.version) == 12
    assert parse_flow(GOOD.replace("Hello.", "Hi."), "f.yaml").version != flow.version


def test_unknown_step_kind() -> None:
    out = problems(GOOD.replace("    say: Hello.", "    speak: Hello."))
    assert out == [
        "f.yaml:5: hello: unknown step kind or key 'speak' (kinds: ask, branch, goto, handoff, "
        "hangup, invoke, menu, queue, return, say, transfer)"
    ]


def test_dangling_next() -> None:
    out = problems(GOOD.replace("next: menu", "next: manu"))
    assert "f.yaml:6: hello: next step 'manu' does not exist" in out


def test_dangling_next_in_option() -> None:
    out = problems(GOOD.replace('"option b", next: bye', '"option b", next: nowhere'))
    assert out == ["f.yaml:12: menu: next step 'nowhere' does not exist"]


def test_unreachable_step() -> None:
    out = problems(GOOD + "  orphan:\n    say: Nobody hears this.\n    next: bye\n")
    assert out == ["f.yaml:15: orphan: unreachable: no step leads here from start"]


def test_duplicate_dtmf_key() -> None:
    out = problems(GOOD.replace('dtmf: "2"', 'dtmf: "1"'))
    assert out == ["f.yaml:12: menu: duplicate DTMF key '1': options a and b"]


def test_missing_prompt() -> None:
    out = problems(GOOD.replace("      prompt: Choose.\n", ""))
    assert out == ["f.yaml:8: menu: missing prompt: give the words to say (text)"]


def test_missing_say_text() -> None:
    out = problems(GOOD.replace("    say: Hello.", "    say: ''"))
    assert out == ["f.yaml:5: hello: missing text to say: give the words to say (text)"]


def test_bad_condition_syntax_and_names() -> None:
    text = GOOD.replace(
        "    say: Hello.\n    next: menu",
        "    branch:\n      when:\n        - if: slots.x ==\n          next: menu\n        - if: __import__('os')\n"
        "          next: menu\n        - if: open('nope')\n          next: menu\n      else: menu",
    )
    out = problems(text)
    assert out[0].startswith("f.yaml:7: hello: bad condition: cannot parse 'slots.x =='")
    assert (
        out[1]
        == "f.yaml:9: hello: bad condition: unknown function in \"__import__('os')\" (allowed: digits, len, open, within)"
    )
    assert out[2] == "f.yaml:11: hello: bad condition: open('nope'): no such calendar under 'hours'"


def test_yaml_syntax_error_has_line() -> None:
    out = problems("flow: x\nstart: a\nsteps:\n  a:\n    say: [unclosed\n")
    assert out[0].startswith("f.yaml:6: -: YAML:") or out[0].startswith("f.yaml:5: -: YAML:")


def test_duplicate_yaml_key_is_an_error() -> None:
    out = problems(GOOD + "  hello:\n    say: again\n")
    assert out[0].startswith("f.yaml:15: -: YAML: duplicate key 'hello'")


def test_many_problems_reported_together_sorted_by_line() -> None:
    text = GOOD.replace("next: menu", "next: manu").replace('dtmf: "2"', 'dtmf: "1"')
    out = problems(text)
    assert len(out) == 2 and out[0].startswith("f.yaml:6:") and out[1].startswith("f.yaml:12:")


def test_bad_values_and_unknown_keys() -> None:
    text = GOOD.replace("      prompt: Choose.", "      prompt: Choose.\n      tires: 3\n      timeout: -1")
    out = problems(text)
    assert (
        "f.yaml:10: menu: unknown key 'tires' in menu (allowed: confirm_below, invalid, noinput, on_failure, "
        "options, personalize, prompt, speech, timeout, tries)" in out
    )
    assert "f.yaml:11: menu: timeout must be a number from 0.5 to 60" in out


def test_next_on_terminal_step_is_an_error() -> None:
    out = problems(GOOD.replace("    hangup: Goodbye.", "    hangup: Goodbye.\n    next: hello"))
    assert out == ["f.yaml:15: bye: a hangup step does not continue: remove 'next'"]


def test_ask_validation() -> None:
    text = GOOD.replace(
        "    say: Hello.", "    ask: {prompt: Enter it., slot: Bad-Name, min_digits: 5, max_digits: 2, pattern: '('}"
    )
    out = problems(text)
    assert any("ask needs a slot" in p for p in out)
    assert any("max_digits is smaller than min_digits" in p for p in out)
    assert any("bad pattern" in p for p in out)


def test_check_paths_cross_flow_references(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("flow: a\nstart: s\nsteps:\n  s:\n    invoke: missing_flow\n")
    (tmp_path / "b.yaml").write_text(GOOD.replace("flow: demo", "flow: b"))
    flows, found = check_paths([tmp_path])
    assert [f.name for f in flows] == ["a", "b"]
    assert [str(p) for p in found] == [f"{tmp_path / 'a.yaml'}:4: s: flow 'missing_flow' does not exist"]


def test_shipped_dialplans_are_valid() -> None:
    root = Path(__file__).resolve().parents[3] / "dialplans"
    flows, found = check_paths([root])
    assert not found, "\n".join(map(str, found))
    assert {"support", "verify_identity", "bench"} <= {f.name for f in flows}


def test_queue_named_general_is_refused() -> None:
    out = problems(GOOD.replace("    hangup: Goodbye.", "    queue: {name: general}"))
    assert out == ["f.yaml:14: bye: 'general' cannot be a queue name in Asterisk (use e.g. 'main')"]
