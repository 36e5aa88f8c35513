"""The machine with a caller profile: personalized menus (order, keys spoken = keys matched, the
reason on the journey and in the log, resume on saved keys) and prefill (accept, override)."""

from __future__ import annotations

import textwrap
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from ivr.flow.library import FlowLibrary
from ivr.flow.loader import parse_flow
from ivr.flow.machine import FlowMachine
from ivr.flow.model import Ask, Continue, Flow, InputResult, Journey, Menu, Play, Prompt
from ivr.flow.personalize import DAY, in_holdout
from ivr.flow.profile import CallerProfile, KnownSlot, OptionStat

DIALPLANS = Path(__file__).resolve().parents[3] / "dialplans"
NOON = datetime(2026, 11, 23, 17, 0, tzinfo=UTC)
NOW = NOON.timestamp()


class Flows:
    def __init__(self, *flows: Flow) -> None:
        self.flows = {f.name: f for f in flows}

    def get(self, name: str, version: str | None = None) -> Flow:
        return self.flows[name]


def dtmf(keys: str) -> InputResult:
    return InputResult("match", "dtmf", keys)


def profile(
    *, contacts: int = 4, options: tuple[OptionStat, ...] = (), slots: tuple[KnownSlot, ...] = ()
) -> CallerProfile:
    return CallerProfile("cust-1", {"name": "Alice"}, contacts, options, slots)


def chose(option: str, count: int, days_ago: float = 2, step: str = "main_menu", flow: str = "support") -> OptionStat:
    return OptionStat(flow, step, option, count, float(count), NOW - days_ago * DAY)


def events(m: FlowMachine) -> list[tuple[str, dict[str, Any]]]:
    return [(e.kind, e.data) for e in m.take_events()]


def keys_of(menu: Any) -> list[tuple[str, str]]:
    assert isinstance(menu, Menu)
    return [(c.key, c.option) for c in menu.choices]


@pytest.fixture
def library() -> FlowLibrary:
    lib = FlowLibrary(DIALPLANS)
    assert not lib.reload().problems
    return lib


def at_main_menu(flows: Any, prof: CallerProfile | None, flow: str = "support") -> tuple[FlowMachine, list[Any]]:
    journey = Journey.new(flows.get(flow), "voice", caller="+15551230001")
    m = FlowMachine(flows, journey, clock=lambda: NOON, profile=prof)
    m.start()
    return m, m.receive(Continue())  # after the greeting: the main menu


# ------------------------------------------------------------------------------------- menus
def test_history_puts_outage_first_on_key_1(library: FlowLibrary) -> None:
    m, cmds = at_main_menu(library, profile(options=(chose("outage", 3),)))
    assert keys_of(cmds[0]) == [("1", "outage"), ("2", "pay_bill"), ("0", "agent")]
    assert m.journey.menu_keys["main_menu"] == {"1": "outage", "2": "pay_bill", "0": "agent"}
    record = m.journey.personalization["main_menu"]
    assert record["reason"] == "outage chosen 3 times, last 2 days ago" and record["reordered"] is True
    assert record["order"] == ["outage", "pay_bill", "agent"] and record["flow"] == "support"
    logged = dict(events(m))
    assert logged["menu_personalized"]["keys"] == {"outage": "1", "pay_bill": "2", "agent": "0"}

    m.receive(dtmf("1"))  # key 1 is what the caller heard for outage
    assert m.journey.step == "outage_info" and m.journey.intent == "outage"
    chosen = dict(events(m))["option_chosen"]
    assert chosen | {} == {
        "flow": "support",
        "option": "outage",
        "label": "reporting an outage",
        "key": "1",
        "position": 1,
        "mode": "dtmf",
        "utterance": "1",
        "confidence": 1.0,
    }


def test_the_old_key_of_a_moved_option_means_what_was_spoken(library: FlowLibrary) -> None:
    m, _ = at_main_menu(library, profile(options=(chose("outage", 3),)))
    m.receive(dtmf("2"))  # "2" was spoken for pay_bill in this caller's menu
    assert m.journey.step == "account"


def test_new_caller_hears_the_file_order(library: FlowLibrary) -> None:
    m, cmds = at_main_menu(library, None)
    assert keys_of(cmds[0]) == [("1", "pay_bill"), ("2", "outage"), ("0", "agent")]
    assert m.journey.personalization["main_menu"]["reason"] == "unknown caller: no history"
    assert m.journey.customer_id is None
    m.receive(dtmf("1"))
    assert m.journey.step == "account"


def test_profile_sets_the_customer_on_the_journey(library: FlowLibrary) -> None:
    m, _ = at_main_menu(library, profile())
    assert m.journey.customer_id == "cust-1" and m.journey.customer == {"name": "Alice"}


def test_speech_and_intents_are_unaffected_by_renumbering(library: FlowLibrary) -> None:
    m, _ = at_main_menu(library, profile(options=(chose("outage", 3),)))
    m.receive(InputResult("match", "speech", "pay my bill", interpretation="billing", confidence=0.9))
    assert m.journey.step == "account"


def test_retry_repeats_the_same_keys(library: FlowLibrary) -> None:
    m, first = at_main_menu(library, profile(options=(chose("outage", 3),)))
    cmds = m.receive(dtmf("7"))
    assert isinstance(cmds[0], Play) and keys_of(cmds[1]) == keys_of(first[0])


def test_resume_matches_the_keys_saved_on_the_journey(library: FlowLibrary) -> None:
    """Another channel or node picks the journey up with a different (or no) profile: the caller
    was told "1 for outage", so 1 must still mean outage."""
    m, _ = at_main_menu(library, profile(options=(chose("outage", 3),)))
    saved = Journey.from_dict(m.journey.persisted())
    for other in (None, profile(options=(chose("pay_bill", 9, days_ago=0),))):
        journey = Journey.from_dict(saved.to_dict())
        resumed = FlowMachine(library, journey, clock=lambda: NOON, profile=other)
        cmds = resumed.start()
        assert keys_of(cmds[0]) == [("1", "outage"), ("2", "pay_bill"), ("0", "agent")]
        resumed.receive(dtmf("1"))
        assert journey.step == "outage_info"


def test_entering_the_menu_again_ranks_again() -> None:
    flow = parse_flow(
        textwrap.dedent(
            """
            flow: loop
            start: menu
            steps:
              menu:
                menu:
                  prompt: Choose.
                  personalize: true
                  options:
                    a: {dtmf: "1", say: "a", next: again}
                    b: {dtmf: "2", say: "b", next: again}
              again:
                goto: menu
            """
        ),
        "loop.yaml",
    )
    flows = Flows(flow)
    journey = Journey.new(flow, "chat")
    m = FlowMachine(
        flows, journey, clock=lambda: NOON, profile=profile(options=(chose("b", 2, flow="loop", step="menu"),))
    )
    assert keys_of(m.start()[0]) == [("1", "b"), ("2", "a")]
    m.profile = profile(options=(chose("a", 5, flow="loop", step="menu"),))  # as if history changed
    assert keys_of(m.receive(dtmf("1"))[0]) == [("1", "a"), ("2", "b")]  # not the keys saved last time


def test_flow_switch_turns_personalization_off(library: FlowLibrary, tmp_path: Path) -> None:
    text = (
        (DIALPLANS / "support.yaml")
        .read_text()
        .replace("on_failure: to_agent\n", "on_failure: to_agent\npersonalize: false\n", 1)
    )
    flow = parse_flow(text, "support.yaml")
    assert flow.personalize is False
    flows = Flows(flow, library.get("verify_identity"))
    m, cmds = at_main_menu(flows, profile(options=(chose("outage", 3),)))
    assert keys_of(cmds[0]) == [("1", "pay_bill"), ("2", "outage"), ("0", "agent")]
    assert m.journey.personalization["main_menu"]["reason"] == "personalization is off for flow support"


def test_min_contacts_guardrail_from_the_flow_file(library: FlowLibrary) -> None:
    text = (DIALPLANS / "support.yaml").read_text().replace("personalize: true", "personalize: {min_contacts: 3}")
    flows = Flows(parse_flow(text, "support.yaml"), library.get("verify_identity"))
    m, cmds = at_main_menu(flows, profile(contacts=2, options=(chose("outage", 2),)))
    assert keys_of(cmds[0])[0] == ("1", "pay_bill")
    assert m.journey.personalization["main_menu"]["reason"] == "2 past contacts; reordering starts at 3"
    _, cmds = at_main_menu(flows, profile(contacts=3, options=(chose("outage", 2),)))
    assert keys_of(cmds[0])[0] == ("1", "outage")


def test_menus_without_personalize_keep_file_keys_and_record_nothing(library: FlowLibrary) -> None:
    prof = profile(options=(chose("done", 5, step="outage_menu"),))
    m, _ = at_main_menu(library, prof)
    m.receive(dtmf("2"))  # outage (file order: unknown history for main_menu)
    cmds = m.receive(Continue())  # outage_menu: not personalized
    assert keys_of(cmds[0]) == [("1", "report"), ("2", "done")]
    assert "outage_menu" not in m.journey.personalization and "outage_menu" not in m.journey.menu_keys


# ----------------------------------------------------------------------------------- prefill
ACCOUNT = KnownSlot("account_number", "12345678", "chat", NOW - 3 * DAY)


def at_account(library: Any, prof: CallerProfile | None) -> tuple[FlowMachine, Ask]:
    m, _ = at_main_menu(library, prof)
    cmds = m.receive(dtmf("1"))
    assert isinstance(cmds[0], Ask)
    return m, cmds[0]


def test_known_value_is_offered_by_its_last_digits(library: FlowLibrary) -> None:
    m, ask = at_account(library, profile(slots=(ACCOUNT,)))
    assert ask.offer == "5678"
    assert ask.offer_prompt == Prompt("We have your account number ending in")
    offered = dict(events(m))["prefill_offered"]
    assert offered == {"slot": "account_number", "offer": "5678", "source_channel": "chat"}
    assert "12345678" not in repr(offered)


def test_pressing_1_uses_the_known_value(library: FlowLibrary) -> None:
    m, _ = at_account(library, profile(slots=(ACCOUNT,)))
    cmds = m.receive(dtmf("1"))
    assert isinstance(cmds[0], Ask) and cmds[0].slot == "pin"  # on to verify_identity
    assert m.journey.slots["account_number"] == "12345678"
    logged = dict(events(m))
    assert logged["slot_prefilled"] == {
        "slot": "account_number",
        "mode": "dtmf",
        "source_channel": "chat",
        "age_s": 3 * 86400,
    }
    assert "slot_filled" not in logged


def test_typing_another_number_replaces_the_known_value(library: FlowLibrary) -> None:
    m, _ = at_account(library, profile(slots=(ACCOUNT,)))
    m.receive(dtmf("87654321"))
    assert m.journey.slots["account_number"] == "87654321"
    assert dict(events(m))["slot_filled"] == {
        "slot": "account_number",
        "mode": "dtmf",
        "length": 8,
        "offer_declined": True,
    }


def test_invalid_input_offers_again(library: FlowLibrary) -> None:
    m, _ = at_account(library, profile(slots=(ACCOUNT,)))
    cmds = m.receive(dtmf("12"))
    assert isinstance(cmds[0], Play) and isinstance(cmds[1], Ask) and cmds[1].offer == "5678"


def test_text_channel_accepts_with_1_too(library: FlowLibrary) -> None:
    m, _ = at_account(library, profile(slots=(ACCOUNT,)))
    m.receive(InputResult("match", "text", " 1 "))
    assert m.journey.slots["account_number"] == "12345678"


def test_without_a_known_value_1_is_just_a_wrong_number(library: FlowLibrary) -> None:
    m, ask = at_account(library, None)
    assert ask.offer is None and ask.offer_prompt is None
    cmds = m.receive(dtmf("1"))
    assert isinstance(cmds[1], Ask) and "account_number" not in m.journey.slots


@pytest.mark.parametrize(
    "known",
    [
        KnownSlot("account_number", "1234567", "voice", NOW),  # this step takes 8 digits
        KnownSlot("account_number", "[redacted]", "voice", NOW),
        KnownSlot("account_number", "12345678", "voice", NOW - 91 * DAY),  # older than reuse_for
    ],
)
def test_values_that_cannot_be_reused_are_not_offered(library: FlowLibrary, known: KnownSlot) -> None:
    text = (
        (DIALPLANS / "support.yaml")
        .read_text()
        .replace("      prefill: true", "      prefill: true\n      reuse_for: 90d")
    )
    flows = Flows(parse_flow(text, "support.yaml"), library.get("verify_identity"))
    _, ask = at_account(flows, profile(slots=(known,)))
    assert ask.offer is None


def test_a_secret_slot_is_never_offered(library: FlowLibrary) -> None:
    """verify_identity's PIN is secret: a PIN in a profile (which the store never keeps) is ignored."""
    prof = profile(slots=(ACCOUNT, KnownSlot("pin", "4321", "voice", NOW)))
    m, _ = at_account(library, prof)
    cmds = m.receive(dtmf("1"))
    assert isinstance(cmds[0], Ask) and cmds[0].slot == "pin" and cmds[0].offer is None


def test_short_values_show_at_most_half() -> None:
    flow = parse_flow(
        textwrap.dedent(
            """
            flow: z
            start: zip
            steps:
              zip:
                ask: {prompt: Your zip code., slot: zip_code, digits: 5, prefill: true, prefill_prompt: Is your zip code}
            """
        ),
        "z.yaml",
    )
    journey = Journey.new(flow, "sms")
    m = FlowMachine(
        Flows(flow), journey, clock=lambda: NOON, profile=profile(slots=(KnownSlot("zip_code", "90210", "sms", NOW),))
    )
    ask = m.start()[0]
    assert isinstance(ask, Ask) and ask.offer == "10" and ask.offer_prompt == Prompt("Is your zip code")


# ------------------------------------------------------------------------------------- holdout
def test_in_holdout_is_a_stable_share_per_flow() -> None:
    customers = [f"cust-{n}" for n in range(4000)]
    held = [c for c in customers if in_holdout(c, "support", 0.25)]
    assert 0.22 < len(held) / len(customers) < 0.28
    assert held == [c for c in customers if in_holdout(c, "support", 0.25)]  # the same callers every time
    assert set(held) != {c for c in customers if in_holdout(c, "billing", 0.25)}  # drawn per flow
    assert not any(in_holdout(c, "support", 0.0) for c in customers)
    assert all(in_holdout(c, "support", 1.0) for c in customers)


def held_out_at_main_menu(library: FlowLibrary, holdout: float) -> tuple[FlowMachine, list[Any]]:
    journey = Journey.new(library.get("support"), "voice", caller="+15551230001")
    prof = profile(options=(chose("outage", 3),))
    m = FlowMachine(library, journey, clock=lambda: NOON, profile=prof, holdout=holdout)
    m.start()
    return m, m.receive(Continue())


def test_a_caller_in_the_holdout_hears_the_file_order_and_the_journey_says_so(library: FlowLibrary) -> None:
    assert in_holdout("cust-1", "support", 1.0)
    m, cmds = held_out_at_main_menu(library, 1.0)
    assert keys_of(cmds[0]) == [("1", "pay_bill"), ("2", "outage"), ("0", "agent")]  # history ignored
    record = m.journey.personalization["main_menu"]
    assert record["holdout"] is True and record["reordered"] is False
    assert record["reason"] == "holdout: this caller hears flow support in the file's order"
    assert dict(events(m))["menu_personalized"]["holdout"] is True


def test_a_caller_outside_the_holdout_is_personalized_and_recorded_as_such(library: FlowLibrary) -> None:
    m, cmds = held_out_at_main_menu(library, 0.0)
    assert keys_of(cmds[0])[0] == ("1", "outage")
    assert m.journey.personalization["main_menu"]["holdout"] is False


def test_an_unknown_caller_is_in_neither_group(library: FlowLibrary) -> None:
    m, _ = at_main_menu(library, None)
    assert m.journey.personalization["main_menu"]["holdout"] is None


def test_a_holdout_share_outside_0_to_1_is_refused(library: FlowLibrary) -> None:
    with pytest.raises(ValueError, match="holdout"):
        held_out_at_main_menu(library, 1.5)
