"""The journey as plain data: what the writer stores and what resumes it on another channel."""

from __future__ import annotations

import dataclasses
import json
import re

from ivr.flow.journey import new_journey_id
from ivr.flow.model import REDACTED, Frame, Journey, Waiting


def full_journey() -> Journey:
    """Every field set to a non-default value, nested where the field allows it."""
    return Journey(
        id="j1",
        flow="support",
        version="v1",
        channel="voice",
        step="account",
        status="queued",
        caller="+15551230001",
        customer_id="c1",
        customer={"name": "Ada", "verified": True, "contacts": 3, "tags": ["gold"]},
        slots={"account_number": "12345678", "pin": "1234"},
        secret_slots=["pin"],
        path=["greeting", "main_menu", "account"],
        stack=[Frame("support", "v1", "after_verify")],
        attempts=2,
        intent="billing",
        outcome={"queue": "billing", "routing": {"reasons": ["intent billing"], "priority": 5}},
        refs={"uniqueid": "1700000000.1"},
        menu_keys={"main_menu": {"1": "pay_bill", "2": "outage"}},
        personalization={"main_menu": {"order": ["pay_bill"], "keys": {"1": "pay_bill"}, "scores": {"pay_bill": 1.5}}},
        recognition={"step": "main_menu", "utterance": "my bill", "confidence": 0.91},
        chosen={"step": "main_menu", "option": "pay_bill", "label": "paying your bill", "mode": "dtmf"},
        confirming={"step": "main_menu", "option": "pay_bill", "confidence": 0.4},
        queue_wait={"step": "to_billing", "position": 3, "eta_s": 360.0},
        waiting=Waiting("account", "input"),
        started_at=1700000000.0,
        updated_at=1700000001.0,
    )


def test_every_field_is_set_by_the_fixture() -> None:
    journey = full_journey()
    defaults = Journey(id="j1", flow="support", version="v1", channel="voice")
    same = [f.name for f in dataclasses.fields(Journey) if getattr(journey, f.name) == getattr(defaults, f.name)]
    assert same == ["id", "flow", "version", "channel"]


def test_to_dict_equals_asdict() -> None:
    """The hand-written copy (fast) says exactly what dataclasses.asdict says, for every field."""
    journey = full_journey()
    assert journey.to_dict() == dataclasses.asdict(journey)
    assert list(journey.to_dict()) == [f.name for f in dataclasses.fields(Journey)]


def test_to_dict_is_an_independent_copy() -> None:
    """The writer serialises the snapshot later, while the call goes on changing the journey."""
    journey = full_journey()
    data = journey.to_dict()
    frozen = json.dumps(data, sort_keys=True)
    journey.customer["tags"].append("new")
    journey.outcome["routing"]["reasons"].append("more")
    journey.menu_keys["main_menu"]["3"] = "agent"
    journey.personalization["main_menu"]["order"].append("outage")
    journey.slots["account_number"] = "87654321"
    journey.path.append("verify")
    journey.stack[0].return_to = "elsewhere"
    assert json.dumps(data, sort_keys=True) == frozen


def test_persisted_redacts_secret_slots_and_round_trips() -> None:
    journey = full_journey()
    data = journey.persisted()
    assert data["slots"] == {"account_number": "12345678", "pin": REDACTED}
    assert journey.slots["pin"] == "1234"  # the live journey keeps it for the call
    back = Journey.from_dict(json.loads(json.dumps(data)))
    assert back.stack == journey.stack
    assert back.waiting == Waiting("account", "input")
    assert back.to_dict() == {**journey.to_dict(), "slots": data["slots"]}


def test_the_waiting_state_round_trips() -> None:
    journey = Journey(id="j1", flow="payments", version="v1", channel="chat", step="pay_menu")
    journey.waiting = Waiting("pay_menu", "input")
    data = journey.to_dict()
    assert data["waiting"] == {"step": "pay_menu", "expect": "input"}
    assert Journey.from_dict(json.loads(json.dumps(data))).waiting == Waiting("pay_menu", "input")
    journey.waiting = None
    assert Journey.from_dict(journey.to_dict()).waiting is None


def test_a_journey_saved_before_the_waiting_state_still_loads() -> None:
    """Saved by an older controller: an active journey at a step was waiting there for an answer."""
    old = {
        "id": "j1",
        "flow": "payments",
        "version": "v1",
        "channel": "chat",
        "step": "pay_menu",
        "status": "active",
        "path": ["greeting", "account", "pay_menu"],
        "stack": [],
    }
    assert Journey.from_dict(old).waiting == Waiting("pay_menu", "input")
    assert Journey.from_dict({**old, "status": "handed_off"}).waiting is None
    assert Journey.from_dict({**old, "status": "abandoned"}).waiting is None
    assert Journey.from_dict({**old, "step": None}).waiting is None


def test_journey_ids_are_32_hex_digits_in_the_order_they_were_made_and_never_the_same() -> None:
    """A journey id starts with its millisecond, so the ids of a batch sit side by side in every
    index keyed by them; 80 random bits after it keep two made in the same millisecond apart."""
    ids = [new_journey_id(now=1_764_748_800.0 + i / 1000) for i in range(0, 3000, 3)]
    assert all(re.fullmatch(r"[0-9a-f]{32}", j) for j in ids)
    assert ids == sorted(ids)
    assert ids[0].startswith(f"{1_764_748_800_000:012x}")
    same_moment = {new_journey_id(now=1_764_748_800.0) for _ in range(10_000)}
    assert len(same_moment) == 10_000
    assert len({j[12:] for j in same_moment}) == 10_000  # the random part, not the time, tells them apart
