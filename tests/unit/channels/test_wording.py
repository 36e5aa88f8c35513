"""The timeline in words, from literal events as the store returns them (newest first)."""

from __future__ import annotations

from typing import Any
from zoneinfo import ZoneInfo

import pytest

from ivr.channels.wording import WORDS, duration, raw, sentence, worded, zone


def ev(
    kind: str,
    data: dict[str, Any] | None = None,
    *,
    step: str | None = "s",
    at: str = "2026-12-03T10:41:05.000Z",
    channel: str = "voice",
    journey: str = "j1",
) -> dict[str, Any]:
    return {"at": at, "channel": channel, "kind": kind, "journey_id": journey, "step": step, "data": data or {}}


#: every kind the product records -> its words (one literal event each)
CASES: list[tuple[str, dict[str, Any], str]] = [
    ("journey_started", {"flow": "support"}, "Started support on a call"),
    ("journey_resumed", {"flow": "support"}, "Picked up support where they left off"),
    (
        "journey_stage",
        {"stage": "open_callback", "why": "a callback is booked"},
        "Seen as open callback, a callback is booked",
    ),
    ("journey_completed", {}, "Finished in the IVR"),
    ("journey_queued", {}, "Handed to the queue"),
    ("journey_abandoned", {}, "Hung up in the IVR"),
    ("journey_failed", {"error": "boom"}, "The IVR failed and sent them to an agent"),
    ("journey_handed_off", {}, "Left the call to continue elsewhere"),
    ("journey_active", {}, "Back in the IVR"),
    ("channel_changed", {"from": "voice", "to": "chat", "via": "link"}, "Moved from a call to chat"),
    ("caller_left", {"reason": "hangup"}, "Hung up (hangup)"),
    ("flow_error", {"error": "x"}, "The IVR hit an error here"),
    ("step_entered", {"kind": "menu"}, "Reached 's' (menu)"),
    ("flow_entered", {"flow": "verify_identity", "returns": True}, "Went into verify identity"),
    ("flow_returned", {"flow": "support"}, "Came back to support"),
    ("branch_taken", {"condition": "tier == 'gold'", "next": "vip"}, "Went on to 'vip'"),
    ("menu_personalized", {"reordered": True}, "Heard the menu in their own order"),
    (
        "option_chosen",
        {"option": "pay_bill", "label": "paying your bill", "mode": "speech", "confidence": 0.994},
        "Chose 'paying your bill' by speech, 99%",
    ),
    (
        "intent_recognised",
        {"utterance": "my bill", "intent": "billing", "option": "pay_bill", "confidence": 0.8, "status": "match"},
        "Said “my bill” meaning 'billing', 80%",
    ),
    ("confirmation_asked", {"option": "pay_bill", "confidence": 0.55}, "Asked to confirm 'pay bill', 55% sure"),
    ("confirmation_answered", {"option": "pay_bill", "confirmed": True}, "Confirmed 'pay bill'"),
    ("input_rejected", {"status": "noinput", "mode": "dtmf", "attempt": 1}, "Said nothing (try 1)"),
    ("tries_exhausted", {"tries": 3, "status": "nomatch"}, "Ran out of tries after 3"),
    ("prefill_offered", {"slot": "account_number", "offer": "5678"}, "Offered the account number on file"),
    (
        "slot_prefilled",
        {"slot": "account_number", "source_channel": "sms", "age_s": 120},
        "Confirmed the account number given on SMS 2 min ago",
    ),
    ("slot_filled", {"slot": "account_number", "mode": "dtmf", "length": 8}, "Gave account number, keyed"),
    (
        "queue_announced",
        {"position": 2, "eta_s": 80, "callback_offered": True},
        "Told position 2, about 1 min 20 s wait; offered a callback",
    ),
    ("queue_estimated", {"position": 1, "eta_s": 30}, "Estimated position 1, about 30 s wait"),
    ("queued", {"queue": "billing", "skill": "billing", "priority": 5}, "Queued for billing, priority 5"),
    ("callback_declined", {}, "Chose to keep holding"),
    ("callback_refused", {"why": "one_open"}, "Could not book a callback (one open)"),
    ("callback_requested", {"queue": "billing", "position": 3}, "Asked to be called back by billing, keeping place 3"),
    ("callback_dialled", {"attempt": 1}, "Called back (try 1)"),
    ("callback_connected", {"queue": "billing"}, "The callback reached an agent"),
    ("callback_failed", {"why": "no answer"}, "The callback failed (no answer)"),
    ("call_requested", {"from": "chat"}, "Asked for a call from chat"),
    ("handed_off", {"to": "chat", "via": "sms"}, "Texted a link to continue in chat"),
    ("handoff_failed", {"to": "chat", "reason": "no mobile"}, "Could not send a link (no mobile)"),
    ("link_opened", {"to": "chat"}, "Opened the link and continued in chat"),
    ("continue_offer_answered", {"choice": "resume"}, "Chose to resume"),
    ("transferred", {"to": "sales_desk"}, "Transferred to sales desk"),
    ("transfer_failed", {"to": "sales_desk"}, "Transfer to sales desk failed"),
    ("message_received", {"text": "hello"}, "Wrote on a call"),
    ("sms_sent", {"reference": "r1", "length": 80}, "Sent a text message"),
    ("sms_delivery", {"reference": "r1", "status": "1"}, "Text message delivered"),
    (
        "agent_connected",
        {"agent": "Ann", "queue": "billing", "hold_time": 80},
        "Waited 1 min 20 s in billing; answered by Ann",
    ),
    (
        "agent_completed",
        {"talk_time": 185, "by": "caller"},
        "Call with the agent ended after 3 min 5 s, the caller hung up",
    ),
    (
        "agent_disposition",
        {"agent": "Ann", "disposition": "follow_up", "notes": "moved house"},
        "Ann closed it: follow up (with notes)",
    ),
    ("queue_abandoned", {"queue": "billing", "hold_time": 42}, "Hung up in the queue billing after 42 s"),
    ("chat_offered", {"agent": "Ann", "skill": "billing"}, "Chat offered to Ann"),
    ("chat_message", {"from": "customer", "text": "my card number is 4111"}, "Customer wrote in chat"),
    ("chat_closed", {"by": "customer"}, "The customer closed the chat"),
    ("outbound_call", {"agent": "Ann", "to_number": "+15551230005"}, "Ann called the customer at +15551230005"),
    ("outbound_answered", {}, "The customer answered the agent's call"),
    ("outbound_failed", {"why": "busy"}, "The agent's call did not connect (busy)"),
]


def test_every_kind_with_words_has_a_literal_case() -> None:
    assert {kind for kind, _, _ in CASES} == set(WORDS)


@pytest.mark.parametrize(("kind", "data", "words"), CASES, ids=[c[0] for c in CASES])
def test_each_event_kind_reads_as_a_sentence(kind: str, data: dict[str, Any], words: str) -> None:
    assert sentence(ev(kind, data)) == words


def test_an_unknown_kind_reads_as_its_kind_and_short_fields() -> None:
    assert (
        sentence(ev("refund_issued", {"amount": 12, "text": "secret", "blob": {"a": 1}})) == "Refund issued: amount 12"
    )
    assert sentence({"kind": None}) == "Event"


@pytest.mark.parametrize(
    "entry",
    [
        ev("option_chosen", {"confidence": "lots", "mode": 5}),
        ev("agent_connected", {"hold_time": "x"}),
        ev("queued", {"queue": ["a"], "priority": {"x": 1}}),
        ev("slot_prefilled", {"age_s": None}),
        {"kind": "queue_announced", "data": "not a dict"},
        {},
    ],
)
def test_bad_fields_never_raise(entry: dict[str, Any]) -> None:
    assert isinstance(sentence(entry), str) and sentence(entry)
    assert isinstance(worded([entry]), list)


def test_a_link_texted_then_opened_is_one_line_with_both_times_in_the_deployments_zone() -> None:
    newest_first = [
        ev("link_opened", {"to": "chat"}, at="2026-12-03T10:42:30.000Z", channel="chat"),
        ev("handed_off", {"to": "chat", "via": "sms"}, at="2026-12-03T10:41:05.000Z"),
        ev("step_entered", {"kind": "handoff"}, at="2026-12-03T10:41:00.000Z"),
    ]
    lines = worded(newest_first, tz=ZoneInfo("Europe/Paris"))
    assert [line["words"] for line in lines] == ["Texted a link at 11:41; continued in chat at 11:42"]
    assert lines[0]["kinds"] == ["step_entered", "handed_off", "link_opened"]
    assert lines[0]["raw"].count("\n") == 2 and "link_opened" in lines[0]["raw"]
    assert lines[0]["time"] == "11:41"


def test_a_recognition_and_the_option_it_chose_are_one_line_and_steps_fold_into_what_was_done() -> None:
    newest_first = [
        ev("step_entered", {"kind": "queue"}, step="to_queue"),
        ev("slot_filled", {"slot": "account_number", "mode": "dtmf", "length": 8}, step="account"),
        ev("step_entered", {"kind": "ask"}, step="account"),
        ev(
            "option_chosen",
            {"option": "pay_bill", "label": "paying your bill", "mode": "speech", "confidence": 0.99},
            step="main",
        ),
        ev("intent_recognised", {"option": "pay_bill", "intent": "billing", "confidence": 0.99}, step="main"),
        ev("step_entered", {"kind": "menu"}, step="main"),
    ]
    assert [line["words"] for line in worded(newest_first)] == [
        "Reached 'to queue' (queue)",
        "Gave account number, keyed",
        "Chose 'paying your bill' by speech, 99%",
    ]


def test_events_of_different_journeys_never_fold() -> None:
    lines = worded([ev("link_opened", {"to": "chat"}, journey="j2"), ev("handed_off", {"to": "chat"}, journey="j1")])
    assert len(lines) == 2


def test_an_outbound_call_and_its_answer_fold() -> None:
    lines = worded(
        [
            ev("outbound_answered"),
            ev("outbound_call", {"agent": "Ann", "to_number": "+15551230005"}),
            ev("journey_started", {"flow": "outbound"}),
        ]
    )
    assert [line["words"] for line in lines] == ["Ann called the customer at +15551230005; they answered"]


def test_the_supervisor_sees_no_utterance_and_a_masked_number() -> None:
    said = ev(
        "intent_recognised", {"utterance": "my name is Dana", "intent": "billing", "option": "x", "status": "match"}
    )
    assert "Dana" not in sentence(said, "supervisor") and "Dana" not in raw(said, "supervisor")
    assert "Dana" in sentence(said, "agent")
    called = ev("outbound_call", {"agent": "Ann", "to_number": "+15551230005"})
    assert sentence(called, "supervisor") == "Ann called the customer at …0005"
    assert "+1555" not in raw(called, "supervisor")


def test_what_people_typed_never_reaches_the_words_or_the_hover() -> None:
    for entry in (
        ev("chat_message", {"from": "customer", "text": "4111 1111"}),
        ev("agent_disposition", {"notes": "4111 1111", "disposition": "resolved"}),
    ):
        line = worded([entry])[0]
        assert "4111" not in line["words"] and "4111" not in line["raw"]


def test_lines_are_newest_first_and_limited() -> None:
    entries = [ev("sms_sent", at=f"2026-12-03T10:{m:02d}:00.000Z", step=None) for m in range(30, 10, -1)]
    lines = worded(entries, limit=5)
    assert len(lines) == 5 and lines[0]["time"] == "10:30"


def test_durations_and_zones() -> None:
    assert [duration(x) for x in (0, 59.6, 80, 3600, 3725, -1, "x")] == [
        "0 s",
        "1 min",
        "1 min 20 s",
        "1 h 0 min",
        "1 h 2 min",
        "",
        "",
    ]
    assert zone("Nowhere/Atlantis").utcoffset(None) is not None and str(zone("")) == "UTC"
