"""The demo's verdict, from literal scene results: any failed scene, and any failed SIP call inside
a scene whose own checks held, makes the exit code non-zero; the table says which."""

from __future__ import annotations

import pytest

from lab.demo.registry import Scene, select
from lab.demo.report import SceneResult, exit_code, summary_table
from lab.demo.stack import parse_journey_detail, parse_journey_list

OK = SceneResult("returning", "bill first on key 1", "bill first (pay_bill chosen 3 times)", ok=True, sip_calls=5)
SPEECH = SceneResult("speech", "outage by voice", "outage at 83%", ok=True, sip_calls=1)


def test_all_scenes_ok_exit_zero_and_every_line_says_ok() -> None:
    table = summary_table([OK, SPEECH])
    assert exit_code([OK, SPEECH]) == 0
    lines = table.splitlines()
    assert lines[2].startswith("returning") and lines[2].endswith("5/5  ok")
    assert lines[3].startswith("speech") and lines[3].endswith("1/1  ok")
    assert lines[-1] == "2 of 2 scenes ok"


def test_a_failed_scene_fails_the_demo() -> None:
    failed = SceneResult("handoff", "link by SMS", "check failed: no link", ok=False, sip_calls=1)
    assert exit_code([OK, failed]) == 1
    table = summary_table([OK, failed])
    assert "handoff" in table.splitlines()[3] and table.splitlines()[3].endswith("FAILED")
    assert table.splitlines()[-1] == "1 of 2 scenes ok; failed: handoff"


def test_a_sip_failure_fails_the_demo_even_when_the_scene_checks_held() -> None:
    sip = SceneResult(
        "desktop", "card painted", "card painted 80 ms after AgentCalled", ok=True, sip_calls=1, sip_failures=1
    )
    assert not sip.passed
    assert exit_code([OK, sip]) == 1
    assert summary_table([sip]).splitlines()[2].endswith("0/1  FAILED (SIP)")


def test_nothing_run_is_a_failure() -> None:
    assert exit_code([]) == 1


def test_long_text_is_cut_to_the_column() -> None:
    long = SceneResult("speech", "x" * 100, "y\n" * 3, ok=True)
    line = summary_table([long], width=20).splitlines()[2]
    assert "x" * 19 + "…" in line and "y y y" in line


def test_scenes_are_registered_in_story_order_and_selectable_by_name() -> None:
    import lab.demo.scenes  # noqa: F401

    assert [s.name for s in select([])][:5] == ["returning", "speech", "desktop", "browser_agent", "handoff"]
    assert [s.name for s in select(["handoff", "returning", "handoff"])] == ["returning", "handoff"]
    assert [s.name for s in select(["handoff"])] == ["handoff"]
    assert all(isinstance(s, Scene) for s in select([]))
    with pytest.raises(ValueError, match="unknown scene nope; known: returning"):
        select(["nope"])


def test_journey_list_as_ivr_journeys_prints_it() -> None:
    text = (
        "5f0c9a1e2b3d4c5e  voice +15551240001  history      completed  main_menu > account > goodbye\n"
        "77aa0000bbbb1111  chat  -              payments     active     \n"
    )
    rows = parse_journey_list(text)
    assert rows[0].id == "5f0c9a1e2b3d4c5e" and rows[0].caller == "+15551240001" and rows[0].flow == "history"
    assert rows[0].status == "completed" and rows[0].path == ["main_menu", "account", "goodbye"]
    assert rows[1].caller is None and rows[1].channel == "chat" and rows[1].path == []


def test_journey_detail_as_ivr_journeys_id_prints_it() -> None:
    text = (
        '{\n  "id": "5f0c",\n  "path": [\n    "main_menu"\n  ],\n  "recognition": {"utterance": "went dark"}\n}\n'
        '  step_entered     main_menu            {"flow": "support"}\n'
        "  journey_completed -                    {}\n"
    )
    journey, log = parse_journey_detail(text)
    assert journey["path"] == ["main_menu"] and journey["recognition"]["utterance"] == "went dark"
    assert log == [
        {"kind": "step_entered", "step": "main_menu", "data": {"flow": "support"}},
        {"kind": "journey_completed", "step": None, "data": {}},
    ]
