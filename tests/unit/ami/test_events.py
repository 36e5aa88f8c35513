"""Typed AMI events from transcripts recorded on the lab's Asterisk 22 (tests/fixtures/ami/record.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ivr.ami import events as ev

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "ami"


def typed(name: str) -> list[ev.AmiEvent]:
    text = (FIXTURES / name).read_bytes().decode()
    return [e for m in ev.parse_transcript(text) if (e := ev.parse(m)) is not None]


def test_a_queue_call_parses_to_the_events_the_acd_consumes_in_order() -> None:
    events = typed("queue_call.txt")
    kinds = [type(e).__name__ for e in events if not isinstance(e, ev.QueueMember | ev.Hangup)]
    assert kinds == [
        "FullyBooted",
        "QueueCallerJoin",
        "QueueParams",  # the QueueStatus reply while the caller waited
        "QueueEntry",
        "AgentCalled",
        "DialEnd",  # app_queue's ring of the agent, answered
        "QueueCallerLeave",
        "AgentConnect",
        "AgentComplete",
    ]
    join = next(e for e in events if isinstance(e, ev.QueueCallerJoin))
    called = next(e for e in events if isinstance(e, ev.AgentCalled))
    connect = next(e for e in events if isinstance(e, ev.AgentConnect))
    complete = next(e for e in events if isinstance(e, ev.AgentComplete))
    dialled = next(e for e in events if isinstance(e, ev.DialEnd))
    assert (dialled.channel.name, dialled.dest.name, dialled.status) == (
        "PJSIP/trunk-00000000",
        "PJSIP/agent1001-00000001",
        "ANSWER",
    )
    assert join.queue == "billing" and join.position == 1 and join.caller.callerid == "+15551237001"
    journey = join.caller.journey_id
    assert journey and len(journey) == 32
    assert called.interface == "PJSIP/agent1001" and called.member_name == "agent1001"
    assert called.caller.journey_id == journey and called.caller.uniqueid == join.caller.uniqueid
    assert called.agent_channel.name.startswith("PJSIP/agent1001-")
    assert called.agent_channel.variables["IVR_SKILL"] == "billing"  # inherited by the agent's leg
    assert connect.caller.uniqueid == join.caller.uniqueid and connect.hold_time >= 1
    assert complete.reason == "caller" and complete.talk_time >= 1
    assert called.timestamp > join.timestamp > 1.7e9


def test_member_lifecycle_added_paused_with_reason_ringing_removed() -> None:
    members = [e for e in typed("queue_call.txt") if isinstance(e, ev.QueueMember)]
    assert [m.kind for m in members][:3] == ["added", "pause", "listed"]
    added, pause, listed = members[:3]
    assert added.interface == "PJSIP/agent1001" and added.queue == "billing" and added.paused
    assert pause.paused and pause.reason == "lunch"
    # QueueStatus's QueueMember names the member by Location/Name, not Interface/MemberName
    assert listed.interface == "PJSIP/agent1001" and listed.name == "agent1001" and listed.paused
    assert any(m.kind == "status" and m.status == 6 for m in members)  # AST_DEVICE_RINGING
    assert members[-1].kind == "removed"


def test_abandon() -> None:
    events = typed("abandon.txt")
    abandon = next(e for e in events if isinstance(e, ev.QueueCallerAbandon))
    assert abandon.queue == "billing" and abandon.original_position == 1 and abandon.caller.journey_id


def test_repeated_headers_become_lists_and_crlf_or_lf_both_parse() -> None:
    text = "Event: Hangup\r\nChannel: PJSIP/x-1\r\nUniqueid: 1.1\r\nChanVariable: A=1\r\nChanVariable: B=x=y\r\nCause: 16\r\n\r\n"
    (msg,) = list(ev.parse_transcript(text))
    assert msg["ChanVariable"] == ["A=1", "B=x=y"]
    event = ev.parse(msg)
    assert isinstance(event, ev.Hangup) and event.channel.variables == {"A": "1", "B": "x=y"} and event.cause == 16
    assert list(ev.parse_transcript(text.replace("\r\n", "\n"))) == [msg]


def test_unconsumed_events_are_none_and_a_broken_consumed_one_is_an_error() -> None:
    assert ev.parse({"Event": "RTCPSent"}) is None
    with pytest.raises(ev.AmiEventError, match="Queue"):
        ev.parse({"Event": "AgentCalled", "Interface": "PJSIP/a"})
    with pytest.raises(ev.AmiEventError, match="not a number"):
        ev.parse({"Event": "QueueCallerJoin", "Queue": "q", "Position": "x", "Count": "1"})


def test_a_dialplan_user_event_keeps_its_own_fields_apart_from_the_channels() -> None:
    from ivr.ami.events import UserEvent, parse

    event = parse(
        {
            "Event": "UserEvent",
            "Privilege": "user,all",
            "Channel": "PJSIP/agent1002-00000007",
            "Uniqueid": "1700000000.7",
            "Linkedid": "1700000000.1",
            "CallerIDNum": "agent1002",
            "Context": "ivr-transfer-answered",
            "Exten": "s",
            "ChanVariable": "IVR_JOURNEY_ID=j1",
            "UserEvent": "IvrTransfer",
            "Transfer": "t1",
            "Status": "ANSWER",
        }
    )
    assert isinstance(event, UserEvent)
    assert event.name == "IvrTransfer" and event.fields == {"Transfer": "t1", "Status": "ANSWER"}
    assert event.channel.uniqueid == "1700000000.7" and event.channel.journey_id == "j1"
