"""The decayed option score: each choice adds 1, the total halves every half-life."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ivr.store.aggregates import DAY, OptionTally, decay, tally

HL = 30 * DAY
times = st.lists(st.floats(min_value=0, max_value=3650 * DAY, allow_nan=False), min_size=1, max_size=30)


def test_one_half_life_halves_the_score() -> None:
    assert decay(8.0, 0.0, HL, HL) == pytest.approx(4.0)
    assert decay(8.0, 0.0, 3 * HL, HL) == pytest.approx(1.0)
    assert decay(8.0, 10.0, 5.0, HL) == 8.0  # a clock that stepped back never inflates a score


def test_the_formula_of_the_issue() -> None:
    """score_new = score_old * 2**(-(t - last_at)/half_life) + 1"""
    old = OptionTally(count=2, score=1.5, last_at=100 * DAY)
    new = old.chosen(130 * DAY, HL)
    assert new.count == 3 and new.score == pytest.approx(1.5 * 0.5 + 1) and new.last_at == 130 * DAY


def test_three_recent_choices_outweigh_five_old_ones() -> None:
    now = 400 * DAY
    recent = tally([now - 3 * DAY, now - 2 * DAY, now - DAY], HL)
    old = tally([i * DAY for i in range(5)], HL)
    assert recent is not None and old is not None
    assert decay(recent.score, recent.last_at, now, HL) > decay(old.score, old.last_at, now, HL)
    assert old.count > recent.count


def test_no_choice_no_tally() -> None:
    assert tally([], HL) is None


@given(times, st.randoms(use_true_random=False))
def test_order_and_batching_do_not_matter(ts: list[float], rnd: random.Random) -> None:
    """The writer merges batches in whatever order they commit; the result must be the same."""
    whole = tally(ts, HL)
    shuffled = ts[:]
    rnd.shuffle(shuffled)
    cut = rnd.randint(0, len(shuffled))
    parts = [p for p in (tally(shuffled[:cut], HL), tally(shuffled[cut:], HL)) if p is not None]
    merged = parts[0] if len(parts) == 1 else parts[1].merge(parts[0], HL)
    assert whole is not None
    assert merged.count == whole.count == len(ts)
    assert merged.last_at == whole.last_at == max(ts)
    assert merged.score == pytest.approx(whole.score, rel=1e-9)
    assert 1.0 <= whole.score <= len(ts)
