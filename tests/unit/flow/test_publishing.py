"""Publishing from the studio: names that cannot become paths, the check of an edited text beside
the other files (as ``ivr check`` reports it), diffs, conflicts, and the atomic write."""

from __future__ import annotations

from pathlib import Path

import pytest

from ivr.flow.loader import flow_files
from ivr.flow.publishing import BadFlowName, check_text, conflict, diff, flow_path, write_atomic

GOOD = "flow: sales\nstart: hi\nnumbers: ['5550111']\nsteps:\n  hi: {say: Hello., next: bye}\n  bye: {hangup: {}}\n"


@pytest.mark.parametrize(
    "name",
    [
        "../etc/passwd",
        "..",
        "a/b",
        "a\\b",
        "/abs",
        ".hidden",
        "sales.yaml",
        "Sales",
        "",
        "x" * 65,
        "a\x00b",
        "%2e%2e",
        "1sales",
        "sales\n",
    ],
)
def test_a_name_that_is_not_a_plain_flow_name_is_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(BadFlowName):
        flow_path(tmp_path, name)


def test_a_plain_name_is_a_file_directly_in_the_directory(tmp_path: Path) -> None:
    assert flow_path(tmp_path, "support_ru") == tmp_path.resolve() / "support_ru.yaml"
    assert flow_path(tmp_path, "bench-menu").parent == tmp_path.resolve()


def test_a_text_is_checked_with_the_problems_ivr_check_prints(tmp_path: Path) -> None:
    flow, problems = check_text(tmp_path, "sales", GOOD.replace("next: bye", "next: nowhere"))
    assert flow is None
    assert [str(p) for p in problems] == ["sales.yaml:5: hi: next step 'nowhere' does not exist"]
    flow, problems = check_text(tmp_path, "sales", GOOD)
    assert flow is not None and flow.name == "sales" and problems == []


def test_the_check_sees_the_other_files(tmp_path: Path) -> None:
    (tmp_path / "support.yaml").write_text(GOOD.replace("sales", "support"))
    _, problems = check_text(tmp_path, "sales", GOOD)
    assert len(problems) == 1 and "number 5550111 is also claimed by flow 'support'" in problems[0].message
    assert (problems[0].file, problems[0].line) == ("sales.yaml", 3)
    _, problems = check_text(tmp_path, "sales", GOOD.replace("say: Hello., next: bye", "invoke: nothere, next: bye"))
    assert [p.message for p in problems if "nothere" in p.message] == ["flow 'nothere' does not exist"]


def test_the_file_s_own_old_version_is_not_a_clash(tmp_path: Path) -> None:
    (tmp_path / "sales.yaml").write_text(GOOD)
    assert check_text(tmp_path, "sales", GOOD.replace("Hello.", "Hi."))[1] == []


def test_a_file_holds_the_flow_of_its_name(tmp_path: Path) -> None:
    flow, problems = check_text(tmp_path, "sales", GOOD.replace("flow: sales", "flow: support"))
    assert flow is not None  # still drawn
    assert [str(p) for p in problems] == ["sales.yaml:1: -: this file holds flow 'sales': 'flow' must say sales"]


def test_an_alias_bomb_and_a_huge_text_are_problems_at_line_one(tmp_path: Path) -> None:
    anchors = ["&a [x, x, x, x, x, x, x, x, x]"] + [
        f"&{chr(98 + i)} [{', '.join([f'*{chr(97 + i)}'] * 9)}]" for i in range(7)
    ]
    bomb = "flow: sales\nstart: s\ndescription: [" + ", ".join(anchors) + "]\nsteps:\n  s: {say: Hi.}\n"
    _, problems = check_text(tmp_path, "sales", bomb)
    assert problems[0].line == 1 and "expand to more than" in problems[0].message
    _, problems = check_text(tmp_path, "sales", GOOD + "#" + "x" * 300_000)
    assert problems[0].line == 1 and "file too big" in problems[0].message


def test_diff_and_conflict() -> None:
    assert diff("a\nb\n", "a\nc\n", "sales").splitlines() == [
        "--- sales.yaml (before)",
        "+++ sales.yaml",
        "@@ -1,2 +1,2 @@",
        " a",
        "-b",
        "+c",
    ]
    assert diff("same\n", "same\n", "sales") == ""
    assert not conflict("abc", "abc")
    assert conflict("abc", "def")  # someone published (or edited the file) since
    assert conflict("abc", None)  # the file was deleted meanwhile
    assert not conflict("", None)  # a new file


def test_the_write_replaces_the_file_whole_and_leaves_nothing_beside_it(tmp_path: Path) -> None:
    path = tmp_path / "sales.yaml"
    path.write_text("old\n")
    write_atomic(path, GOOD)
    assert path.read_text() == GOOD
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sales.yaml"]
    assert flow_files(tmp_path) == [path]


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    path = tmp_path / "sales.yaml"
    path.write_text("old\n")
    with pytest.raises(UnicodeEncodeError):
        write_atomic(path, "bad \udcff surrogate")
    assert path.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sales.yaml"]


def test_a_queue_asterisk_lacks_is_a_problem_as_in_ivr_check(tmp_path: Path) -> None:
    text = "flow: sales\nstart: hi\nsteps:\n  hi: {say: Hello., next: q}\n  q: {queue: {name: nowhere}}\n"
    conf = ("/etc/asterisk/queues.conf", frozenset({"main", "billing"}))
    _, problems = check_text(tmp_path, "sales", text, conf)
    assert [str(p) for p in problems] == ["sales.yaml:5: q: /etc/asterisk/queues.conf: no queue [nowhere]"]
    assert check_text(tmp_path, "sales", text.replace("nowhere", "billing"), conf)[1] == []
    assert check_text(tmp_path, "sales", text, None)[1] == []  # no queues.conf here: not checked
