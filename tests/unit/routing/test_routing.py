"""Routing decisions and the widening rule, from literal facts."""

from __future__ import annotations

from pathlib import Path

from ivr.routing.rules import RoutingFacts, RoutingRules, route
from ivr.routing.widening import WIDEN_STEPS, eligible, max_penalty, parse_rules

REPO = Path(__file__).resolve().parents[3]


def test_an_explicit_step_skill_wins_over_the_intent() -> None:
    d = route(RoutingFacts(queue="billing", skill="billing", priority=5, intent="outage"))
    assert (d.queue, d.skill, d.priority) == ("billing", "billing", 5)
    assert d.reasons == ("flow step asks for skill billing",)


def test_a_generic_queue_step_takes_the_skill_of_a_confident_intent() -> None:
    d = route(RoutingFacts(queue="main", intent="pay", confidence=0.9))
    assert (d.queue, d.skill) == ("billing", "billing")
    unsure = route(RoutingFacts(queue="main", intent="pay", confidence=0.3))
    assert (unsure.queue, unsure.skill) == ("main", "main") and "too uncertain" in unsure.reasons[0]
    assert route(RoutingFacts()).queue == "main"


def test_tier_boosts_priority_but_never_for_a_callback_and_is_capped() -> None:
    assert route(RoutingFacts(skill="billing", priority=5, tier="gold")).priority == 7
    assert route(RoutingFacts(skill="billing", priority=5, tier="Gold", callback=True)).priority == 5
    assert route(RoutingFacts(skill="billing", priority=9, tier="platinum")).priority == 10


def test_language_queue_when_it_exists() -> None:
    rules = RoutingRules(queues=frozenset({"main", "billing", "billing-es"}))
    assert route(RoutingFacts(skill="billing", language="es"), rules).queue == "billing-es"
    d = route(RoutingFacts(skill="billing", language="fr"), rules)
    assert d.queue == "billing" and "no billing-fr queue" in d.reasons[-1]


def test_closed_line_is_after_hours() -> None:
    d = route(RoutingFacts(skill="billing", is_open=False))
    assert d.after_hours and "callback" in d.reasons[-1]


def test_widening_steps() -> None:
    assert [max_penalty(t) for t in (0, 29.9, 30, 59, 60, 600)] == [0, 0, 1, 1, 2, 2]
    assert eligible(0, 0) and not eligible(1, 10) and eligible(1, 31) and not eligible(2, 45)


def test_the_mirror_equals_queuerules_conf_and_every_skill_queue_uses_it() -> None:
    conf = (REPO / "asterisk-config" / "queuerules.conf").read_text()
    assert parse_rules(conf) == WIDEN_STEPS
    queues = (REPO / "asterisk-config" / "queues.conf").read_text()
    template = queues.split("[skill-queue](!)", 1)[1].split("\n[", 1)[0]
    assert "defaultrule = widen" in template
