"""The pure part of agent transfers: targets, the queue position that keeps a caller's wait, and
the context the next agent's card carries."""

from __future__ import annotations

import pytest

from ivr.acd.transfer import (
    Target,
    TransferContext,
    TransferRefused,
    carried_pop,
    clean_note,
    dial_string,
    parse_mode,
    parse_target,
    queue_position,
    timeline_data,
)


def test_targets_of_each_kind_are_parsed_and_numbers_lose_their_separators() -> None:
    assert parse_target("agent", " bob ") == Target("agent", "bob")
    assert parse_target("queue", "support") == Target("queue", "support")
    assert parse_target("number", "+1 (555) 123-4567") == Target("number", "+15551234567")
    assert parse_target("number", "0044.20.7946.0000") == Target("number", "00442079460000")


@pytest.mark.parametrize(
    ("kind", "value", "message"),
    [
        ("fax", "bob", "must be one of agent, queue, number"),
        ("agent", "", "name the agent"),
        ("agent", None, "name the agent"),
        ("agent", "bob smith", "not an agent's user name"),
        ("queue", "sup,port", "not a queue name"),
        ("number", "12", "not a phone number"),
        ("number", "+1555abc", "not a phone number"),
        ("number", "1234567890123456", "not a phone number"),
        ("number", "555&PJSIP/agent1001", "not a phone number"),
    ],
)
def test_bad_targets_are_refused_with_a_clear_message(kind: object, value: object, message: str) -> None:
    with pytest.raises(TransferRefused, match=message):
        parse_target(kind, value)


def test_modes_and_notes() -> None:
    assert parse_mode("blind") == "blind" and parse_mode("consult") == "consult"
    with pytest.raises(TransferRefused, match="blind, consult"):
        parse_mode("warm")
    assert clean_note(None) == "" and clean_note("  hi  ") == "hi" and len(clean_note("x" * 5000)) == 1000
    with pytest.raises(TransferRefused):
        clean_note(12)


def test_the_dial_string_takes_only_a_checked_number() -> None:
    assert dial_string("PJSIP/{number}@trunk", "+15551234567") == "PJSIP/+15551234567@trunk"
    with pytest.raises(TransferRefused):
        dial_string("PJSIP/{number}@trunk", "1&Local/x")


def test_a_transferred_caller_goes_behind_only_those_who_first_joined_before_them() -> None:
    waiting = [
        {"queue": "support", "joined_at": 100.0},
        {"queue": "support", "joined_at": 300.0},
        {"queue": "support", "joined_at": 250.0, "first_joined_at": 150.0},  # transferred earlier
        {"queue": "billing", "joined_at": 50.0},  # another queue: not counted
    ]
    assert queue_position(200.0, waiting, "support") == 3  # behind 100 and 150, ahead of 300
    assert queue_position(50.0, waiting, "support") == 1  # the longest wait of all: the head
    assert queue_position(400.0, waiting, "support") == 4
    assert queue_position(0.0, waiting, "support") == 0  # unknown wait: app_queue's end of the queue


def context() -> TransferContext:
    return TransferContext(
        transfer_id="t1",
        mode="blind",
        target=Target("queue", "support"),
        by_agent_id="a1",
        by_name="Ann Agent",
        note="wants the router reset",
        at=1000.0,
        first_joined_at=900.0,
    )


def test_the_next_card_is_the_same_card_plus_who_transferred_it_and_the_original_wait() -> None:
    pop = {"customer": {"name": "Dana"}, "slots": [{"name": "account_number"}], "called_at": 1030.0, "waited_s": 5.0}
    card = carried_pop(pop, context())
    assert card["customer"] == {"name": "Dana"} and card["slots"] == pop["slots"]
    assert card["transfer"]["by"] == {"agent_id": "a1", "name": "Ann Agent"}
    assert card["transfer"]["note"] == "wants the router reset"
    assert card["transfer"]["target"] == {"kind": "queue", "value": "support"}
    assert card["waited_s"] == 130.0  # from the first join, not from the transfer
    assert carried_pop(pop, None) == pop


def test_the_timeline_entry_names_mode_target_agent_note_and_outcome() -> None:
    assert timeline_data(context(), "transferred") == {
        "transfer_id": "t1",
        "mode": "blind",
        "target_kind": "queue",
        "target": "support",
        "agent_id": "a1",
        "agent": "Ann Agent",
        "note": "wants the router reset",
        "outcome": "transferred",
    }
