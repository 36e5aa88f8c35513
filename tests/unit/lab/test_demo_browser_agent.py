"""The browser-agent scene's readings, from literal inputs: which channels an AMI CoreShowChannels
reply lists (the scene's "no channel left"), which one is the caller's, and the ring-to-card gap
read from the page; and that the scene runs right after the desktop scene."""

from __future__ import annotations

from lab.demo.registry import select
from lab.demo.scenes.browser_agent import channel_names, channel_of, ring_pop_gap_ms

LISTED = [
    {"Response": "Success", "EventList": "start", "Message": "Channels will follow"},
    {"Event": "CoreShowChannel", "Channel": "PJSIP/trunk-00000007", "Uniqueid": "1764790000.14"},
    {"Event": "CoreShowChannel", "Channel": "PJSIP/agent1002-00000009", "Uniqueid": "1764790000.18"},
    {"Event": "CoreShowChannelsComplete", "EventList": "Complete", "ListItems": "2"},
]
EMPTY = [
    {"Response": "Success", "EventList": "start", "Message": "Channels will follow"},
    {"Event": "CoreShowChannelsComplete", "EventList": "Complete", "ListItems": "0"},
]


def test_channel_names_are_the_list_events_not_the_reply_or_the_complete() -> None:
    assert channel_names(LISTED) == ["PJSIP/trunk-00000007", "PJSIP/agent1002-00000009"]
    assert channel_names(EMPTY) == []


def test_the_callers_channel_is_found_by_its_uniqueid_and_none_once_it_is_gone() -> None:
    assert channel_of(LISTED, "1764790000.14") == "PJSIP/trunk-00000007"
    assert channel_of(LISTED, "1764790000.99") is None
    assert channel_of(EMPTY, "1764790000.14") is None


def test_the_gap_is_the_ring_minus_the_paint_in_ms_positive_when_the_card_came_first() -> None:
    rings = [{"at": 1764790001.250, "call_id": "x"}]
    assert round(ring_pop_gap_ms(rings, [{"painted_at": 1764790001.000}])) == 250
    assert round(ring_pop_gap_ms(rings, [{"painted_at": 1764790001.400}])) == -150


def test_the_scene_runs_right_after_the_desktop_scene() -> None:
    names = [s.name for s in select([])]
    assert names.index("browser_agent") == names.index("desktop") + 1
