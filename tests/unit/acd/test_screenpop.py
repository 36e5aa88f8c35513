from __future__ import annotations

from ivr.acd.screenpop import build_pop


def test_the_pop_carries_what_the_ivr_learned_and_never_a_secret_slot() -> None:
    journey = {
        "id": "j1",
        "channel": "voice",
        "caller": "+15551230001",
        "customer_id": "c1",
        "customer": {"verified": True, "contacts": 4},
        "flow": "support",
        "path": ["greeting", "main_menu", "account", "verify", "to_billing"],
        "slots": {"account_number": "12345678", "pin": "[redacted]"},
        "secret_slots": ["pin"],
        "intent": "billing",
        "recognition": {
            "step": "main_menu",
            "utterance": "I want to pay my bill",
            "intent": "billing",
            "confidence": 0.83,
        },
        "personalization": {
            "main_menu": {"reordered": True, "reason": "chose pay_bill 3 times", "order": ["pay_bill"]}
        },
        "outcome": {"queue": "billing", "skill": "billing", "priority": 7},
    }
    pop = build_pop(
        journey,
        customer={"id": "c1", "name": "Dana", "tier": "gold", "language": "en", "verified": True},
        timeline=[{"at": "t", "channel": "sms", "kind": "message", "step": None, "data": {}}] * 12,
        call={"uniqueid": "1.5", "queue": "billing", "joined_at": 100.0, "called_at": 142.26},
    )
    assert pop["customer"]["name"] == "Dana" and pop["known_customer"]
    assert pop["recognition"] == {
        "intent": "billing",
        "confidence": 0.83,
        "transcript": "I want to pay my bill",
        "mode": "speech",
        "step": "main_menu",
    }
    assert pop["slots"] == [{"name": "account_number", "value": "12345678", "verified": True}]
    assert pop["menus"][0]["reordered"] and "3 times" in pop["menus"][0]["reason"]
    assert pop["waited_s"] == 42.3 and pop["priority"] == 7 and pop["skill"] == "billing"
    assert len(pop["timeline"]) == 10 and pop["pop_id"] == "1.5:142.260000"


def test_a_call_without_a_journey_still_pops_with_what_ami_said() -> None:
    pop = build_pop(None, call={"uniqueid": "9.9", "callerid": "+1555", "queue": "main", "called_at": 5.0})
    assert pop["caller"] == "+1555" and pop["queue"] == "main" and pop["recognition"] is None
    assert pop["slots"] == [] and pop["waited_s"] is None and not pop["known_customer"]


def test_the_menu_option_that_brought_the_caller_is_on_the_pop() -> None:
    journey = {"id": "j1", "recognition": {"step": "main_menu", "option": "pay_bill", "status": "match"}}
    assert build_pop(journey, call={"uniqueid": "1.1", "called_at": 5.0})["choice"] == "pay_bill"
    assert build_pop(None, call={"uniqueid": "1.1", "called_at": 5.0})["choice"] is None
