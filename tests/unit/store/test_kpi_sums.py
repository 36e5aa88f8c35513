"""The pure arithmetic of the KPI sums: slots, a contact's contribution, adding and taking away,
the service level from whole-second waits, repeat flags from start times."""

from __future__ import annotations

import random
from dataclasses import fields, replace
from typing import Any

import pytest

from ivr.kpis import COLUMNS, ContactFacts, GroupSums, facts, figures, sums_of
from ivr.store.kpi_sums import (
    MEASURES,
    NOT_SUMMED,
    Contributions,
    Deltas,
    add,
    flatten,
    group_keys,
    measures,
    repeat_flags,
    slot_of,
    unflatten,
)

T0 = 1_764_748_800.0  # 2025-12-03T08:00:00Z


def row(**values: Any) -> dict[str, Any]:
    out: dict[str, Any] = dict.fromkeys(COLUMNS)
    out.update(dict.fromkeys(("transfers", "choices", "first_choices", "no_match", "no_input"), 0))
    out.update({"repeat_24h": 0, "repeat_7d": 0, "callback_dials": 0})
    for name in ("speech_heard", "speech_recognised", "speech_no_input", "confirmations", "confirmed"):
        out[name] = 0
    out.update(speech_choices=0, key_choices=0, channel="voice", flow="support")
    out.update(values)
    return out


def random_row(rng: random.Random) -> dict[str, Any]:
    """A started contact row with each fact there or not, at times that tie, precede or follow
    each other (a wait of exactly 0, an end before a claim), every text a label or None."""
    times = [T0 + rng.choice([0.0, 0.5, 1.0, 20.0, 20.25, 300.0]) for _ in range(3)]
    out = row(started_at=T0, customer_id=rng.choice([None, "c1"]))
    for name in COLUMNS:
        if name.endswith("_at") and name != "started_at" and rng.random() < 0.4:
            out[name] = rng.choice(times)
    for name in ("callback_dials", "transfers", "choices", "first_choices", "no_match", "no_input", "speech_heard"):
        out[name] = rng.choice([0, 0, 1, 3])
    for name in ("speech_recognised", "speech_no_input", "confirmations", "confirmed", "speech_choices", "key_choices"):
        out[name] = rng.choice([0, 0, 1, 2])
    for name in ("agent_transfers_blind", "agent_transfers_consult", "repeat_24h", "repeat_7d"):
        out[name] = rng.choice([0, 0, 1])
    out["ended"] = rng.choice([None, "completed", "abandoned", "failed", "queued", "handed_off"])
    out["queue_reason"] = rng.choice([None, "asked_for_agent", "flow"])
    out["exhausted_by"] = rng.choice([None, "no_input", "no_match"])
    out["holdout"] = rng.choice([None, 0, 1])
    return out


def test_one_contacts_measures_are_the_sums_of_a_group_of_it_alone() -> None:
    """``measures`` computes one contact's columns directly; ``sums_of`` is their definition."""
    rng = random.Random(20261204)
    seen: set[str] = set()
    for n in range(5000):
        one = random_row(rng)
        contact = replace(facts(f"j{n}", one), repeat_24h=bool(one["repeat_24h"]), repeat_7d=bool(one["repeat_7d"]))
        want = {name: value for name, value in flatten(sums_of([contact])).items() if value}
        assert measures(f"j{n}", one) == want, one
        seen.update(want)
    assert seen == set(MEASURES)  # every column was non-zero for some contact: none went untested


def test_a_slot_is_the_quarter_hour_a_time_falls_in_exactly_at_the_boundaries() -> None:
    assert slot_of(T0) == T0
    assert slot_of(T0 + 899.999) == T0
    assert slot_of(T0 + 900) == T0 + 900
    assert slot_of(T0 - 1e-6) == T0 - 900
    assert slot_of(-1.0) == -900.0


def test_every_sum_of_a_group_has_a_column() -> None:
    names = {f.name for f in fields(GroupSums)} - set(NOT_SUMMED) - {"contained", "offered_by_reason"}
    assert names <= set(MEASURES)
    assert set(flatten(GroupSums())) == set(MEASURES)


def test_a_queued_contact_answered_later_moves_from_one_group_to_another() -> None:
    queued = row(started_at=T0 + 10, queued_at=T0 + 20, queue="billing", skill="billing")
    answered = {**queued, "answered_at": T0 + 40.0, "agent_id": "ag1"}
    deltas = Deltas()
    deltas.add("j1", queued, 1)
    deltas.add("j1", queued, -1)  # the next batch: old contribution out ...
    deltas.add("j1", answered, 1)  # ... new one in
    sums = {(r["dim"], r["key"]): r for r in deltas.sum_rows()}
    assert ("agent", "-") not in sums  # added and taken away: nothing to write
    assert sums[("agent", "ag1")]["handled"] == 1 and sums[("agent", "ag1")]["wait_s"] == 20.0
    assert sums[("queue", "billing")]["contacts"] == 1 and sums[("queue", "billing")]["offered"] == 1
    assert {(w["dim"], w["second"], w["n"], w["n_whole"]) for w in deltas.wait_rows() if w["dim"] == "all"} == {
        ("all", 20, 1, 1)
    }
    assert all(r["slot"] == T0 for r in deltas.sum_rows())


def test_moving_a_contact_gives_the_sums_of_taking_it_away_and_adding_it_again() -> None:
    """``Deltas.move`` (the difference per group, in one pass, when the groups are the same) adds
    up to ``add(old, -1)`` then ``add(new, 1)``: over contacts that change a measure or two, that
    change group (answered by an agent), whose wait moves to another second, that start, or that
    end up not started; several of them in the same groups of one batch."""
    rng = random.Random(7)
    pairs: list[tuple[dict[str, Any] | None, dict[str, Any] | None]] = []
    for i in range(400):
        old = random_row(rng)
        new = dict(old)
        for name in rng.sample(["ended", "choices", "no_match", "answered_at", "agent_id", "queue", "transfers"], 2):
            new[name] = random_row(rng)[name]
        if rng.random() < 0.3:  # answered by an agent: other groups
            new.update(agent_id=rng.choice(["ag1", "ag2"]), queue=rng.choice(["billing", "support"]))
        pairs.append((old, new))
        if i % 20 == 0:
            pairs.append((None, random_row(rng)))
            pairs.append((random_row(rng), None))
            pairs.append((random_row(rng), row(started_at=None)))
    moved, added = Deltas(known=Contributions()), Deltas()
    for i, (was, now) in enumerate(pairs):
        moved.move(f"j{i}", was, now)
        added.add(f"j{i}", was, -1)
        added.add(f"j{i}", now, 1)
    got, want = moved.sum_rows(), added.sum_rows()
    same_groups = sum(1 for was, now in pairs if was and now and group_keys(was) == group_keys(now))
    assert len(want) > 20 and 100 < same_groups < len(pairs) - 100  # both of move's ways, many times
    assert [{k: v for k, v in r.items() if v} for r in got] == [
        {k: pytest.approx(v, abs=1e-9) for k, v in r.items() if v} for r in want
    ]
    assert moved.wait_rows() == added.wait_rows()


def test_a_contact_that_has_not_started_counts_nowhere() -> None:
    deltas = Deltas()
    deltas.add("j1", row(queued_at=T0), 1)
    deltas.add("j1", None, -1)
    assert deltas.sum_rows() == [] and deltas.wait_rows() == []


def test_the_service_level_from_whole_second_waits_is_exact_at_a_whole_threshold() -> None:
    waits = [19.5, 20.0, 20.25, 3.0, 40.0]
    contacts = [ContactFacts(f"j{i}", T0, "voice", "f", queued_at=T0, answered_at=T0 + w) for i, w in enumerate(waits)]
    histogram: dict[int, tuple[int, int]] = {}
    for w in waits:
        n, whole = histogram.get(int(w // 1), (0, 0))
        histogram[int(w // 1)] = (n + 1, whole + int(w == w // 1))
    columns = flatten(sums_of(contacts))
    for level in (3, 19, 20, 21, 40):
        want = sums_of(contacts, service_level_s=float(level))
        got = unflatten(columns, histogram, level)
        assert (got.within_sl, got.waits) == (want.within_sl, want.waits), level
        assert figures(got) == figures(want)


def test_two_groups_add_up() -> None:
    a = [ContactFacts("a", T0, "voice", "f", queued_at=T0, answered_at=T0 + 5, ended="queued")]
    b = [ContactFacts("b", T0, "chat", "f", ended="completed"), *a]
    assert add(sums_of(a), sums_of(b)) == sums_of([*a, *b])


def test_repeat_flags_look_back_24_hours_and_7_days_not_at_the_same_moment() -> None:
    starts = sorted([T0 - 3 * 86400, T0 - 3600, T0, T0])
    assert repeat_flags(starts, T0) == (1, 1)
    assert repeat_flags(starts, T0 - 3600) == (0, 1)
    assert repeat_flags(starts, T0 - 3 * 86400) == (0, 0)
    assert repeat_flags([T0, T0], T0) == (0, 0)  # two contacts at the same moment: neither before


def test_group_keys_are_the_labels_the_sql_gives() -> None:
    keys = group_keys(row(sent_at=T0, sent_from="voice", sent_to=None, ended_step="goodbye", queue=None))
    assert keys == {
        "all": "-",
        "queue": "-",
        "skill": "-",
        "agent": "-",
        "channel": "voice",
        "step": "support/goodbye",
        "handoff": "voice>-",
    }


def test_an_outbound_contact_counts_for_the_agent_who_placed_it_unless_one_took_it_from_a_queue() -> None:
    placed = row(started_at=T0, flow="outbound", outbound_at=T0, outbound_agent="ag2", outbound_answered_at=T0 + 9)
    assert group_keys(placed)["agent"] == "ag2"
    assert group_keys({**placed, "agent_id": "ag1", "answered_at": T0 + 5})["agent"] == "ag1"
    sums = {(r["dim"], r["key"]): r for r in _added(placed)}
    assert (sums[("agent", "ag2")]["outbound_calls"], sums[("agent", "ag2")]["outbound_answered"]) == (1, 1)
    moved = row(started_at=T0, agent_transfers_blind=1, agent_transfers_consult=2, agent_id="ag1", answered_at=T0)
    sums = {(r["dim"], r["key"]): r for r in _added(moved)}
    assert (sums[("agent", "ag1")]["agent_transfers_blind"], sums[("all", "-")]["agent_transfers_consult"]) == (1, 2)


def _added(contact: dict[str, Any]) -> list[dict[str, Any]]:
    deltas = Deltas()
    deltas.add("j", contact, 1)
    return deltas.sum_rows()


def test_a_known_contribution_is_reused_only_for_the_same_row() -> None:
    """The writer's cache of contributions: the row a batch reads back is the row the last batch
    wrote, so its contribution is not computed again; any column another writer changed (here the
    agent, which moves the contact to another group) makes it computed again, and the sums are
    those of no cache at all."""
    queued = row(started_at=T0 + 10, queued_at=T0 + 20, queue="billing", skill="billing")
    answered = {**queued, "answered_at": T0 + 40.0, "agent_id": "ag1"}
    elsewhere = {**answered, "agent_id": "ag2"}  # what another node wrote in between
    known = Contributions()
    cached, plain = Deltas(known=known), Deltas()
    for deltas in (cached, plain):
        deltas.add("j1", queued, 1)
        deltas.add("j1", dict(queued), -1)  # read back: an equal row, another dict
        deltas.add("j1", answered, 1)
        deltas.add("j1", elsewhere, -1)
        deltas.add("j1", elsewhere, 1)
    assert known.hits == 2  # queued read back, elsewhere again; answered and elsewhere computed
    assert cached.sum_rows() == plain.sum_rows() and cached.wait_rows() == plain.wait_rows()
    sums = {(r["dim"], r["key"]): r for r in cached.sum_rows()}
    assert sums[("agent", "ag1")]["handled"] == 1 and ("agent", "ag2") not in sums


def test_the_cache_of_contributions_keeps_the_latest_contacts() -> None:
    known = Contributions(size=2)
    for jid in ("j1", "j2", "j1", "j3"):  # j1 seen again: j2 is the oldest when j3 comes
        known.of(jid, row(started_at=T0))
    assert known.hits == 1
    known.of("j1", row(started_at=T0))
    known.of("j2", row(started_at=T0))
    assert known.hits == 2  # j1 kept, j2 had gone
