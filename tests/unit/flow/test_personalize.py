"""Menu ranking (ivr.flow.personalize) with literal options and stats: order, keys, pins, decay,
guardrails and the reason text an agent reads."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from ivr.flow.personalize import (
    DAY,
    FORGOTTEN,
    Ranking,
    decayed_score,
    describe_age,
    file_ranking,
    order_from_keys,
    rank_menu,
)
from ivr.flow.profile import OptionStat

NOW = 1_800_000_000.0
HALF_LIFE = 30 * DAY


@dataclass(frozen=True)
class Opt:
    id: str
    key: str
    pin: str | None = None


MENU = (Opt("pay_bill", "1"), Opt("outage", "2"), Opt("moving", "3"), Opt("agent", "0", "last"))


def stat(option: str, count: int, days_ago: float, score: float | None = None, step: str = "main_menu") -> OptionStat:
    """A stat as the store keeps it: ``score`` as of ``last_at`` (default: every choice that day)."""
    return OptionStat("support", step, option, count, float(count) if score is None else score, NOW - days_ago * DAY)


def rank(stats: list[OptionStat], contacts: int = 5, min_contacts: int = 1, menu: tuple[Opt, ...] = MENU) -> Ranking:
    return rank_menu(menu, stats, now=NOW, half_life=HALF_LIFE, contacts=contacts, min_contacts=min_contacts)


def test_no_history_is_the_file_order_and_keys() -> None:
    r = rank([])
    assert r.order == ("pay_bill", "outage", "moving", "agent")
    assert r.keys == {"pay_bill": "1", "outage": "2", "moving": "3", "agent": "0"}
    assert not r.reordered and r.reason == "no recent history for this menu"


def test_most_chosen_option_is_spoken_first_with_key_1() -> None:
    r = rank([stat("outage", 3, 2)])
    assert r.order == ("outage", "pay_bill", "moving", "agent")
    assert r.keys == {"outage": "1", "pay_bill": "2", "moving": "3", "agent": "0"}
    assert r.key_map() == {"1": "outage", "2": "pay_bill", "3": "moving", "0": "agent"}
    assert list(r.key_map()) == ["1", "2", "3", "0"]  # spoken order
    assert r.reordered
    assert r.reason == "outage chosen 3 times, last 2 days ago"


def test_pinned_last_keeps_its_place_and_key_even_when_most_chosen() -> None:
    r = rank([stat("agent", 10, 1), stat("moving", 1, 1)])
    assert r.order == ("moving", "pay_bill", "outage", "agent")
    assert r.keys == {"moving": "1", "pay_bill": "2", "outage": "3", "agent": "0"}
    assert r.reason == "moving chosen 1 time, last 1 day ago; agent chosen 10 times, last 1 day ago"


def test_pinned_first_stays_first_with_its_own_key() -> None:
    menu = (Opt("emergency", "9", "first"), Opt("pay_bill", "1"), Opt("outage", "2"), Opt("agent", "0", "last"))
    r = rank([stat("outage", 2, 1)], menu=menu)
    assert r.order == ("emergency", "outage", "pay_bill", "agent")
    assert r.keys == {"emergency": "9", "outage": "1", "pay_bill": "2", "agent": "0"}


def test_unpinned_keys_are_the_files_keys_in_file_order() -> None:
    """Keys in use never change: a file with keys 2, 5, 7 hands out 2, 5, 7 in ranked order."""
    menu = (Opt("a", "2"), Opt("b", "5"), Opt("c", "7"), Opt("agent", "0", "last"))
    r = rank([stat("c", 1, 1)], menu=menu)
    assert r.order == ("c", "a", "b", "agent")
    assert r.keys == {"c": "2", "a": "5", "b": "7", "agent": "0"}


def test_recency_beats_an_old_habit() -> None:
    """Decayed count: 4 choices 90 days ago (3 half-lives: 0.5) lose to 1 choice yesterday (~0.98)."""
    r = rank([stat("pay_bill", 4, 90), stat("moving", 1, 1)])
    assert r.order[:2] == ("moving", "pay_bill")
    assert r.scores["pay_bill"] == pytest.approx(0.5)
    assert r.scores["moving"] == pytest.approx(2 ** (-1 / 30))


def test_frequency_beats_a_single_recent_choice() -> None:
    r = rank([stat("outage", 1, 0), stat("moving", 3, 5)])
    assert r.order[:2] == ("moving", "outage")


def test_decay_uses_the_stored_score_as_of_last_at() -> None:
    s = OptionStat("f", "m", "o", count=5, score=2.5, last_at=NOW - 60 * DAY)
    assert decayed_score(s, NOW, HALF_LIFE) == pytest.approx(2.5 / 4)
    future = OptionStat("f", "m", "o", count=1, score=1.0, last_at=NOW + 100)  # clock skew: no growth
    assert decayed_score(future, NOW, HALF_LIFE) == 1.0


def test_forgotten_history_does_not_reorder() -> None:
    old = stat("moving", 1, 4 * 30 + 1)  # a bit over four half-lives: under 1/16
    assert decayed_score(old, NOW, HALF_LIFE) < FORGOTTEN
    r = rank([old])
    assert not r.reordered and r.order == ("pay_bill", "outage", "moving", "agent")


def test_ties_keep_the_file_order() -> None:
    r = rank([stat("moving", 2, 3), stat("outage", 2, 3)])
    assert r.order == ("outage", "moving", "pay_bill", "agent")
    assert r.keys == {"outage": "1", "moving": "2", "pay_bill": "3", "agent": "0"}


def test_history_that_agrees_with_the_file_is_not_a_reorder() -> None:
    r = rank([stat("pay_bill", 3, 2)])
    assert not r.reordered and r.order == ("pay_bill", "outage", "moving", "agent")
    assert r.reason == "history agrees with the file's order: pay_bill chosen 3 times, last 2 days ago"


def test_min_contacts_guardrail() -> None:
    stats = [stat("outage", 1, 1)]
    held = rank(stats, contacts=1, min_contacts=2)
    assert not held.reordered and held.keys["pay_bill"] == "1"
    assert held.reason == "1 past contact; reordering starts at 2"
    assert rank(stats, contacts=2, min_contacts=2).order[0] == "outage"


def test_removed_options_are_ignored() -> None:
    r = rank([stat("gone", 9, 1)])
    assert not r.reordered and r.scores == {}


def test_several_stats_for_one_option_add_up() -> None:
    """The same option in two stat rows (e.g. two channels) counts once with both histories."""
    r = rank([stat("moving", 1, 1), stat("moving", 1, 2), stat("outage", 1, 0)])
    assert r.order[0] == "moving"
    assert r.reason.startswith("moving chosen 2 times, last 1 day ago; outage chosen 1 time")


def test_order_is_independent_of_now() -> None:
    """Equal decay for all: a retry or another channel later on the same profile gets the same menu."""
    stats = [stat("outage", 3, 40), stat("moving", 1, 1)]
    for later in (0, DAY, 45 * DAY):
        r = rank_menu(MENU, stats, now=NOW + later, half_life=HALF_LIFE, contacts=3)
        assert r.order == ("outage", "moving", "pay_bill", "agent")


def test_record_is_plain_data() -> None:
    r = rank([stat("outage", 3, 2)])
    assert r.record() == {
        "order": ["outage", "pay_bill", "moving", "agent"],
        "keys": {"outage": "1", "pay_bill": "2", "moving": "3", "agent": "0"},
        "reason": "outage chosen 3 times, last 2 days ago",
        "reordered": True,
        "scores": {"outage": pytest.approx(3 * 2 ** (-2 / 30), abs=1e-4)},
    }


def test_file_ranking_says_why() -> None:
    r = file_ranking(MENU, "personalization is off for flow support")
    assert r.order == ("pay_bill", "outage", "moving", "agent") and r.keys["agent"] == "0"
    assert r.reason == "personalization is off for flow support" and not r.reordered


def test_order_from_keys_rebuilds_the_spoken_order() -> None:
    r = rank([stat("moving", 2, 1), stat("outage", 1, 1)])
    rebuilt = order_from_keys(MENU, r.key_map())
    assert tuple(o.id for o in rebuilt) == r.order
    assert order_from_keys(MENU, {"1": "pay_bill", "2": "outage", "3": "moving", "0": "agent"}) == list(MENU)


def test_bad_half_life() -> None:
    with pytest.raises(ValueError):
        rank_menu(MENU, [], now=NOW, half_life=0, contacts=1)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0 seconds"),
        (1, "1 second"),
        (40, "40 seconds"),
        (120, "2 minutes"),
        (3600, "60 minutes"),
        (3 * 3600, "3 hours"),
        (DAY, "1 day"),
        (23 * 3600, "23 hours"),
        (2 * DAY, "2 days"),
        (1.6 * DAY, "2 days"),
        (-5, "0 seconds"),
    ],
)
def test_describe_age(seconds: float, text: str) -> None:
    assert describe_age(seconds) == text
