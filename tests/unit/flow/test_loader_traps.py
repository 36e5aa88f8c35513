"""YAML 1.1 traps, loops the engine could only stop at run time, numbers claimed twice, and files
too big or too bushy to parse: each from a literal flow file, reported as file:line: step: message."""

from __future__ import annotations

import textwrap
import time
from pathlib import Path

import pytest

from ivr.flow.library import FlowLibrary
from ivr.flow.loader import MAX_FLOW_BYTES, FlowLoadError, check_paths, parse_flow
from ivr.flow.steps import MenuStep


def problems(text: str) -> list[str]:
    with pytest.raises(FlowLoadError) as info:
        parse_flow(textwrap.dedent(text), "f.yaml")
    return [str(p) for p in info.value.problems]


YES_NO_MENU = """\
flow: confirm
start: ask
personalize: off
steps:
  ask:
    menu:
      prompt: Is your address still 12 Main Street?
      personalize: no
      options:
        yes: {dtmf: "1", say: yes, intents: [yes, y, on], next: thanks}
        no: {dtmf: "2", say: no, intents: [no, n, off], next: thanks}
  thanks:
    hangup: Thank you.
"""


def test_a_yes_no_menu_written_the_natural_way_reads_as_meant() -> None:
    flow = parse_flow(YES_NO_MENU, "f.yaml")
    menu = flow.steps["ask"]
    assert isinstance(menu, MenuStep)
    assert [o.id for o in menu.options] == ["yes", "no"]
    assert [o.label.text for o in menu.options] == ["yes", "no"]
    assert [o.intents for o in menu.options] == [("yes", "y", "on"), ("no", "n", "off")]
    # where a setting is a boolean, the bare words still mean what the admin meant
    assert flow.personalize is False and menu.personalize is False


def test_quoted_yes_is_text_not_a_boolean() -> None:
    out = problems(YES_NO_MENU.replace("personalize: off", 'personalize: "off"'))
    assert out == ["f.yaml:3: -: personalize (for the whole flow) must be true or false"]


def test_number_looking_keys_keep_their_digits() -> None:
    text = YES_NO_MENU.replace("yes: {", "010: {").replace("no: {", "08: {")
    menu = parse_flow(text, "f.yaml").steps["ask"]
    assert isinstance(menu, MenuStep)
    assert [o.id for o in menu.options] == ["010", "08"]  # YAML 1.1: 8 and "08"


def test_leading_zero_and_colon_values_stay_text() -> None:
    text = YES_NO_MENU.replace("start: ask", 'start: ask\nnumbers: [0100, 1:30, 5550100, "0200", +15555550100]')
    flow = parse_flow(text)
    assert flow.numbers == ("0100", "1:30", "5550100", "0200", "+15555550100")  # YAML 1.1: 64, 90, no +


def test_true_where_a_name_is_expected_is_reported_with_the_fix() -> None:
    out = problems(YES_NO_MENU.replace("intents: [yes, y, on]", "intents: [true, y]"))
    assert out == [
        'f.yaml:10: ask: option yes: intents must be a list of names (YAML reads true as a boolean: quote it: "true")'
    ]


def test_number_where_a_step_name_is_expected_is_reported_with_the_fix() -> None:
    text = YES_NO_MENU.replace("next: thanks}", "next: 404}", 1).replace(
        "  thanks:", "  '404':\n    goto: thanks\n  thanks:"
    )
    out = problems(text)
    assert out[0] == (
        'f.yaml:10: ask: next of option yes must be a step name (YAML reads 404 as a number: quote it: "404")'
    )


def test_a_goto_to_itself_is_a_loop_without_input() -> None:
    out = problems(
        """\
        flow: f
        start: a
        steps:
          a: {goto: a}
        """
    )
    assert out == [
        "f.yaml:4: a: loop without input: a -> a never waits for the caller (put a say, ask or menu in it, or end it)"
    ]


def test_a_branch_goto_cycle_is_a_loop_but_one_through_a_say_is_not() -> None:
    looping = """\
    flow: f
    start: hello
    steps:
      hello:
        say: Hello.
        next: decide
      decide:
        branch:
          when:
            - if: slots.x == "1"
              next: bye
          else: again
      again: {goto: decide}
      bye:
        hangup: Bye.
    """
    out = problems(looping)
    assert out == [
        "f.yaml:7: decide: loop without input: decide -> again -> decide never waits for the caller "
        "(put a say, ask or menu in it, or end it)"
    ]
    parse_flow(textwrap.dedent(looping).replace("again: {goto: decide}", "again: {goto: hello}"), "f.yaml")


def test_a_flow_that_invokes_itself() -> None:
    out = problems(
        """\
        flow: f
        start: a
        steps:
          a:
            invoke: f
            next: b
          b:
            hangup: Bye.
        """
    )
    assert out == ["f.yaml:4: a: flow 'f' invokes itself: every call would go one level deeper"]


def _flow(name: str, numbers: str, body: str = "    say: Hi.") -> str:
    return f"flow: {name}\nstart: a\nnumbers: {numbers}\nsteps:\n  a:\n{body}\n"


def test_two_flows_claiming_one_number(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(_flow("a", '["5550100"]'))
    (tmp_path / "b.yaml").write_text(_flow("b", '["5550199", "5550100"]'))
    _, found = check_paths([tmp_path])
    assert [str(p) for p in found] == [
        f"{tmp_path / 'b.yaml'}:3: -: number 5550100 is also claimed by flow 'a' ({tmp_path / 'a.yaml'}): "
        "a number belongs to one flow"
    ]


def test_the_file_watcher_reports_a_number_claimed_twice(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(_flow("a", '["5550100"]'))
    library = FlowLibrary(tmp_path)
    assert not library.reload().problems
    (tmp_path / "b.yaml").write_text(_flow("b", '["5550100"]'))
    report = library.reload()
    assert [p.message.split(":")[0] for p in report.problems] == [
        "number 5550100 is also claimed by flow 'a' (" + str(tmp_path / "a.yaml") + ")"
    ]


def test_flows_invoking_each_other_in_a_circle(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(_flow("a", "[]", "    invoke: b\n    next: z\n  z:\n    hangup: Bye."))
    (tmp_path / "b.yaml").write_text(_flow("b", "[]", "    invoke: a\n    next: z\n  z:\n    hangup: Bye."))
    _, found = check_paths([tmp_path])
    assert [str(p) for p in found] == [f"{tmp_path / 'a.yaml'}:5: a: flows invoke each other in a circle: a -> b -> a"]


_ANCHORS = ["&a [x, x, x, x, x, x, x, x, x]"] + [
    f"&{chr(98 + i)} [{', '.join([f'*{chr(97 + i)}'] * 9)}]" for i in range(7)
]
#: A valid flow whose description expands to 9 ** 8 (43 million) words: before the limit it
#: loaded in 18 s as a 254 MB string, and one more line makes it 2.3 GB.
ALIAS_BOMB = "flow: f\nstart: s\ndescription: [" + ", ".join(_ANCHORS) + "]\nsteps:\n  s:\n    say: Hi.\n"


def test_an_alias_bomb_is_refused_quickly() -> None:
    started = time.perf_counter()
    out = problems(ALIAS_BOMB)
    assert time.perf_counter() - started < 0.5
    assert out == [
        "f.yaml:1: -: YAML: anchors and aliases expand to more than 50000 nodes; refused (write the steps out, or share less)"
    ]


def test_a_recursive_alias_is_refused() -> None:
    assert problems("flow: &a [*a]\n") == ["f.yaml:1: -: YAML: an anchor contains itself (a recursive alias)"]


def test_a_ten_megabyte_file_is_refused_unread(tmp_path: Path) -> None:
    big = tmp_path / "big.yaml"
    big.write_text(YES_NO_MENU + "# " + "x" * 10_000_000 + "\n")
    started = time.perf_counter()
    _, found = check_paths([big])
    assert time.perf_counter() - started < 0.5
    assert [str(p) for p in found] == [
        f"{big}:1: -: file too big: over {MAX_FLOW_BYTES // 1024} KiB; a flow file is a page of YAML"
    ]


def test_the_file_watcher_keeps_the_good_version_of_a_bombed_file(tmp_path: Path) -> None:
    path = tmp_path / "confirm.yaml"
    path.write_text(YES_NO_MENU)
    library = FlowLibrary(tmp_path)
    library.reload()
    good = library.current("confirm").version
    path.write_text(ALIAS_BOMB.replace("flow: f", "flow: confirm"))
    started = time.perf_counter()
    report = library.reload()
    assert time.perf_counter() - started < 0.5
    assert report.kept == ["confirm"] and library.current("confirm").version == good


def test_gotos_between_flows_that_never_wait(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("flow: a\nstart: s\nsteps:\n  s: {goto: {flow: b}}\n")
    (tmp_path / "b.yaml").write_text("flow: b\nstart: s\nsteps:\n  s: {goto: {flow: a}}\n")
    _, found = check_paths([tmp_path])
    assert [str(p) for p in found] == [
        f"{tmp_path / 'a.yaml'}:4: s: loop without input across flows: a.s -> b.s -> a.s never waits for the caller"
    ]
    (tmp_path / "b.yaml").write_text("flow: b\nstart: s\nsteps:\n  s: {say: Hi., next: t}\n  t: {goto: {flow: a}}\n")
    assert check_paths([tmp_path])[1] == []
