"""The KPI arithmetic on literal contacts: each figure with a value worked out by hand."""

from __future__ import annotations

from typing import Any

import pytest

from ivr.kpis import (
    COLUMNS,
    ContactFacts,
    GroupSums,
    ReportRequest,
    contact_delta,
    facts,
    figures,
    histogram_percentile,
    mark_place_kept,
    mark_repeats,
    merge,
    report,
    sums_of,
)

T0 = 1_764_748_800.0  # 2025-12-03T08:00:00Z


def contact(jid: str, **facts: object) -> ContactFacts:
    base: dict[str, object] = {"journey_id": jid, "started_at": T0, "channel": "voice", "flow": "support"}
    return ContactFacts(**{**base, **facts})  # type: ignore[arg-type]


# Five contacts: two answered (waits 10 s and 30 s), one abandoned in the queue after 45 s, one
# finished in the IVR, one transferred out; one chat answered after 5 s.
SCENARIO = [
    contact("a", ended="queued", queued_at=T0 + 20, queue="billing", answered_at=T0 + 30, agent_id="ag1",
            agent_ended_at=T0 + 150),
    contact("b", ended="queued", queued_at=T0 + 20, queue="billing", answered_at=T0 + 50, agent_id="ag1",
            agent_ended_at=T0 + 110),
    contact("c", ended="queued", queued_at=T0 + 20, queue="billing", abandoned_at=T0 + 65),
    contact("d", ended="completed", holdout=True, menu_at=T0 + 1, chosen_at=T0 + 5, choices=1, first_choices=1,
            no_match=1),
    contact("e", ended="completed", transfers=1, no_input=2),
    contact("f", channel="chat", ended="queued", queued_at=T0 + 100, queue="support", answered_at=T0 + 105,
            agent_id="ag2", agent_ended_at=T0 + 405),
]  # fmt: skip


def test_every_figure_of_a_known_scenario() -> None:
    f = figures(sums_of(SCENARIO, service_level_s=20))
    assert (f.contacts, f.offered, f.handled, f.abandoned) == (6, 4, 3, 1)
    assert f.avg_abandon_s == 45
    assert f.avg_wait_s == pytest.approx((10 + 30 + 5) / 3)
    assert f.p90_wait_s == 30
    assert f.avg_handle_s == pytest.approx((120 + 60 + 300) / 3)
    assert f.service_level == 2 / 4  # a (10 s) and f (5 s) within 20 s, of 4 offered
    assert (f.contained, f.containment, f.contained_by_outcome) == (1, 1 / 6, {"completed": 1})
    assert (f.choices, f.first_option_share, f.avg_time_to_choice_s) == (1, 1.0, 4)
    assert (f.no_match, f.no_input, f.bad_input_per_contact) == (1, 2, 3 / 6)


def test_no_contacts_give_no_ratios_not_zero() -> None:
    f = figures(GroupSums())
    assert f.contacts == 0 and f.service_level is None and f.avg_wait_s is None and f.containment is None
    assert f.p90_wait_s is None and f.bad_input_per_contact is None


def test_p90_is_the_nearest_rank_of_whole_seconds() -> None:
    assert histogram_percentile({s: 1 for s in range(1, 11)}, 0.9) == 9
    assert histogram_percentile({7: 1}, 0.9) == 7
    assert histogram_percentile({5: 89, 60: 11}, 0.9) == 60  # the 90th of 100 waited a minute
    assert histogram_percentile({5: 90, 60: 10}, 0.9) == 5
    assert histogram_percentile({}, 0.9) is None
    waits = sums_of([contact("x", queued_at=T0, answered_at=T0 + 12.7)]).waits
    assert waits == {12: 1}


def test_a_journeys_events_make_its_contact_row() -> None:
    events: list[tuple[str, float, dict[str, Any]]] = [
        ("journey_started", T0, {"flow": "support"}),
        ("step_entered", T0, {"kind": "menu"}),  # not a KPI event
        ("menu_personalized", T0 + 1, {"holdout": True, "order": ["a", "b"]}),
        ("input_rejected", T0 + 2, {"status": "match", "mode": "dtmf"}),  # a wrong key: no option took it
        ("input_rejected", T0 + 3, {"status": "noinput", "mode": "dtmf"}),
        ("option_chosen", T0 + 4, {"position": 1, "option": "a"}),
        ("option_chosen", T0 + 5, {"position": 2, "option": "b"}),
        ("queued", T0 + 6, {"queue": "billing", "skill": "billing"}),
        ("journey_queued", T0 + 6, {}),
        ("agent_connected", T0 + 16, {"agent_id": "ag1"}),
        ("agent_completed", T0 + 76, {"agent_id": "ag1", "talk_time": 60}),
    ]
    row = contact_delta("voice", events)
    assert row is not None and set(row) == set(COLUMNS)
    c = facts("j", row)
    assert (c.started_at, c.channel, c.flow, c.ended) == (T0, "voice", "support", "queued")
    assert (c.queue, c.skill, c.agent_id, c.wait, c.handle_time) == ("billing", "billing", "ag1", 10, 60)
    assert (c.holdout, c.time_to_choice, c.choices, c.first_choices, c.no_match, c.no_input) == (True, 3, 2, 1, 1, 1)
    assert contact_delta("voice", [("step_entered", T0, {}), ("chat_message", T0, {"text": "hi"})]) is None


def test_batches_merge_into_the_same_row_in_any_order() -> None:
    first = contact_delta("voice", [("journey_started", T0, {"flow": "support"}), ("journey_abandoned", T0 + 9, {})])
    later = contact_delta(
        "chat",
        [
            ("journey_completed", T0 + 90, {}),
            ("option_chosen", T0 + 80, {"position": 1}),
            ("menu_personalized", T0 + 70, {"holdout": False}),
        ],
    )
    again = contact_delta("chat", [("menu_personalized", T0 + 95, {"holdout": True})])
    assert first is not None and later is not None and again is not None
    one = merge(merge(first, later), again)
    assert one == merge(again, merge(later, first))
    c = facts("j", one)
    assert (c.channel, c.ended, c.choices, c.holdout) == ("voice", "abandoned", 1, True)


def test_report_groups_by_queue_channel_agent_and_interval() -> None:
    by_queue = {r.key: r.figures for r in report(SCENARIO, by="queue")}
    assert set(by_queue) == {"-", "billing", "support"}
    assert (by_queue["billing"].offered, by_queue["billing"].handled, by_queue["billing"].abandoned) == (3, 2, 1)
    by_channel = {r.key: r.figures.handled for r in report(SCENARIO, by="channel")}
    assert by_channel == {"chat": 1, "voice": 2}
    by_agent = {r.key: r.figures.handled for r in report(SCENARIO, by="agent")}
    assert by_agent == {"-": 0, "ag1": 2, "ag2": 1}
    late = contact("g", started_at=T0 + 900)
    quarters = [(r.key, r.figures.contacts) for r in report([*SCENARIO, late], by="interval", interval="15min")]
    assert quarters == [("2025-12-03T08:00:00Z", 6), ("2025-12-03T08:15:00Z", 1)]


def test_report_splits_by_holdout() -> None:
    rows = report([*SCENARIO, contact("h", holdout=False, ended="completed")], by="flow", split_holdout=True)
    assert [(r.key, r.holdout, r.figures.contacts) for r in rows] == [
        ("support", "-", 5),
        ("support", "holdout", 1),
        ("support", "personalized", 1),
    ]
    assert rows[1].to_dict()["holdout"] == "holdout" and rows[1].to_dict()["flow"] == "support"


@pytest.mark.parametrize(
    ("start", "end", "by", "interval", "message"),
    [
        ("2026-12-03", "2026-12-02", "flow", "hour", "after"),
        ("2026-01-01", "2026-03-01", "flow", "hour", "at most 31 days"),
        ("yesterday", "2026-12-02", "flow", "hour", "ISO 8601"),
        ("2026-12-01", "2026-12-02", "planet", "hour", "'by' must be one of"),
        ("2026-12-01", "2026-12-02", "flow", "week", "'interval' must be one of"),
        ("2026-12-01" * 10, "2026-12-02", "flow", "hour", "not a date"),
    ],
)
def test_bad_requests_say_what_is_wrong(start: str, end: str, by: str, interval: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ReportRequest.parse(start, end, by=by, interval=interval)


def test_a_request_in_utc_by_default() -> None:
    req = ReportRequest.parse("2025-12-03", "2025-12-03T12:00+04:00", by="queue")
    assert (req.start, req.end, req.by) == (T0 - 8 * 3600, T0, "queue")


def test_speech_events_make_the_speech_columns() -> None:
    """As the menu logs them: a phrase it could not place (also an input_rejected), a silence at a
    speech menu, a low-confidence answer read back and confirmed, chosen by voice; then a second
    menu answered by key."""
    events: list[tuple[str, float, dict[str, Any]]] = [
        ("journey_started", T0, {"flow": "support"}),
        ("intent_recognised", T0 + 1, {"utterance": "uh", "option": None, "status": "nomatch"}),
        ("input_rejected", T0 + 1, {"status": "nomatch", "mode": "speech"}),
        ("input_rejected", T0 + 2, {"status": "noinput", "mode": "speech"}),
        ("intent_recognised", T0 + 3, {"utterance": "my bill", "option": "pay_bill", "status": "match"}),
        ("confirmation_asked", T0 + 3, {"option": "pay_bill", "confidence": 0.4}),
        ("confirmation_answered", T0 + 4, {"option": "pay_bill", "confirmed": True, "mode": "speech"}),
        ("option_chosen", T0 + 4, {"position": 1, "option": "pay_bill", "mode": "speech"}),
        ("input_rejected", T0 + 5, {"status": "noinput", "mode": "dtmf"}),  # silence on keys: not speech
        ("option_chosen", T0 + 6, {"position": 2, "option": "card", "mode": "dtmf"}),
    ]
    row = contact_delta("voice", events)
    assert row is not None
    c = facts("j", row)
    assert (c.speech_heard, c.speech_recognised, c.speech_no_input) == (2, 1, 1)
    assert (c.confirmations, c.confirmed, c.speech_choices, c.key_choices) == (1, 1, 1, 1)
    assert (c.no_match, c.no_input) == (1, 2)
    assert c.spoke and c.fell_back_to_keys
    no = contact_delta("voice", [("confirmation_answered", T0, {"confirmed": False, "mode": "dtmf"})])
    assert no is not None and no["confirmed"] == 0


def test_speech_figures_of_a_known_scenario() -> None:
    """Three contacts heard by a speech menu and one on keys only: p recognised at once, q fell
    back to keys after two phrases nobody could place, r stayed silent and was read back nothing;
    k pressed keys at a keys-only menu (not a speech contact, not a fallback)."""
    group = [
        contact("p", speech_heard=1, speech_recognised=1, confirmations=1, confirmed=1, speech_choices=1),
        contact("q", speech_heard=2, key_choices=1),
        contact("r", speech_no_input=2, confirmations=1),
        contact("k", key_choices=3),
    ]
    f = figures(sums_of(group))
    assert (f.speech_contacts, f.speech_heard, f.speech_recognised, f.speech_no_match) == (3, 3, 1, 2)
    assert (f.speech_no_input, f.recognition_rate) == (2, 1 / 3)
    assert (f.confirmations, f.confirmed_share, f.speech_choices) == (2, 0.5, 1)
    assert (f.fell_back_to_keys, f.fell_back_share) == (1, 1 / 3)
    none = figures(sums_of([contact("k", key_choices=1)]))
    assert (none.speech_contacts, none.recognition_rate, none.confirmed_share, none.fell_back_share) == (
        0,
        None,
        None,
        None,
    )


def test_why_offered_contacts_went_to_the_agents() -> None:
    """Ran out of tries on silence, on a wrong key (an older log: the status only on the rejected
    input), asked for an agent, led there by the flow; a later exhaustion does not count."""

    def offered(*events: tuple[str, float, dict[str, Any]]) -> ContactFacts:
        row = contact_delta("voice", [("journey_started", T0, {"flow": "support"}), *events])
        assert row is not None
        return facts("j", row)

    silent = offered(
        ("input_rejected", T0 + 5, {"status": "noinput", "mode": "dtmf"}),
        ("tries_exhausted", T0 + 5, {"tries": 1, "status": "noinput"}),
        ("queued", T0 + 5, {"queue": "main", "intent": None}),
    )
    wrong = offered(
        ("input_rejected", T0 + 5, {"status": "match", "mode": "dtmf"}),
        ("tries_exhausted", T0 + 5, {"tries": 1}),
        ("queued", T0 + 5, {"queue": "main"}),
    )
    asked = offered(("option_chosen", T0 + 3, {"position": 3}), ("queued", T0 + 3, {"intent": "operator"}))
    led = offered(("queued", T0 + 3, {"intent": "billing"}), ("tries_exhausted", T0 + 9, {"status": "noinput"}))
    self_served = offered(("journey_completed", T0 + 9, {}))
    assert [c.offer_reason for c in (silent, wrong, asked, led, self_served)] == [
        "no_input",
        "no_match",
        "asked_for_agent",
        "flow",
        None,
    ]
    f = figures(sums_of([silent, wrong, asked, led, self_served, led]))
    assert f.offered_by_reason == {"asked_for_agent": 1, "flow": 2, "no_input": 1, "no_match": 1}
    assert figures(sums_of([self_served])).offered_by_reason == {}


def test_where_callers_leave_each_flow() -> None:
    """The step a journey ended at comes with its end event; ``by="step"`` with a flow says where
    that flow's callers hung up (two at the menu, one at the account question)."""
    row = contact_delta(
        "voice",
        [
            ("journey_started", T0, {"flow": "support"}, "main_menu"),
            ("step_entered", T0 + 1, {"kind": "ask"}, "account"),
            ("journey_abandoned", T0 + 9, {}, "account"),
            ("journey_completed", T0 + 12, {}, "goodbye"),  # after the first end: ignored
        ],
    )
    assert row is not None and (row["ended"], row["ended_step"]) == ("abandoned", "account")
    left = [
        facts("a", row),
        contact("b", ended="abandoned", ended_step="main_menu"),
        contact("c", ended="abandoned", ended_step="main_menu"),
        contact("d", ended="completed", ended_step="goodbye"),
        contact("e", flow="payments", ended="abandoned", ended_step="main_menu"),
        contact("f"),  # still going: no end step
    ]
    by_step = [(r.key, r.figures.contacts, r.figures.left_in_flow) for r in report(left, by="step", flow="support")]
    assert by_step == [
        ("support/-", 1, 0),
        ("support/account", 1, 1),
        ("support/goodbye", 1, 0),
        ("support/main_menu", 2, 2),
    ]
    assert figures(sums_of(left)).left_in_flow == 4
    with pytest.raises(ValueError, match="'flow' must be"):
        ReportRequest.parse("2026-12-01", "2026-12-02", by="step", flow="x" * 65)


def test_the_continuation_funnel_by_channel_pair() -> None:
    """A call sends a link by SMS; the page is opened twice, claimed in chat, completed there.
    Another call's link is opened but never claimed; a third is sent and forgotten; a chat that
    never handed off is in no funnel."""
    row = contact_delta(
        "voice",
        [
            ("journey_started", T0, {"flow": "support"}),
            ("handed_off", T0 + 10, {"to": "sms", "resume": True}),
            ("journey_handed_off", T0 + 11, {}),
        ],
    )
    later = contact_delta(
        "chat",
        [
            ("link_opened", T0 + 60, {"to": "chat"}),
            ("link_opened", T0 + 61, {"to": "chat"}),
            ("channel_changed", T0 + 61, {"from": "voice", "to": "voice", "via": "caller id"}),  # not a claim
            ("channel_changed", T0 + 62, {"from": "voice", "to": "chat", "via": "link"}),
            ("journey_resumed", T0 + 62, {"flow": "support"}),
            ("journey_completed", T0 + 90, {}),
        ],
    )
    assert row is not None and later is not None
    done = facts("a", merge(row, later))
    assert (done.sent_from, done.sent_to, done.opened_at, done.claimed_at) == ("voice", "sms", T0 + 60, T0 + 62)
    assert (done.ended, done.completed_at, done.completed_after_claim) == ("handed_off", T0 + 90, True)
    group = [
        done,
        contact("b", sent_at=T0, sent_from="voice", sent_to="sms", opened_at=T0 + 5),
        contact("c", sent_at=T0, sent_from="voice", sent_to="sms"),
        contact("d", channel="chat", ended="completed", completed_at=T0 + 5),
    ]
    rows = {r.key: r.figures for r in report(group, by="handoff")}
    assert set(rows) == {"-", "voice>sms"}
    f = rows["voice>sms"]
    assert (f.links_sent, f.links_opened, f.links_claimed, f.links_completed, f.claimed_share) == (3, 2, 1, 1, 1 / 3)
    assert (rows["-"].links_sent, rows["-"].claimed_share) == (0, None)


def test_callbacks_booked_dialled_answered_failed() -> None:
    """One callback reached an agent on the second dial 300 s after booking, one failed after
    three dials, one is still waiting; the events as the queue step and the dispatcher log them."""
    answered = contact_delta(
        "voice",
        [
            ("journey_started", T0, {"flow": "support"}),
            ("callback_requested", T0 + 30, {"ticket": "t1", "queue": "billing", "position": 4}),
            ("journey_queued", T0 + 31, {}),
            ("callback_dialled", T0 + 200, {"ticket": "t1", "attempt": 1}),
            ("callback_dialled", T0 + 320, {"ticket": "t1", "attempt": 2}),
            ("callback_connected", T0 + 330, {"ticket": "t1", "queue": "billing"}),
        ],
    )
    assert answered is not None
    a = facts("a", answered)
    assert (a.callback_at, a.callback_dials, a.callback_wait) == (T0 + 30, 2, 300)
    assert (a.callback_queue, a.callback_dialled_at) == ("billing", T0 + 200)  # the first dial
    group = [
        a,
        contact("f", callback_at=T0, callback_dials=3, callback_failed_at=T0 + 900),
        contact("w", callback_at=T0),
        contact("n"),
    ]
    f = figures(sums_of(group))
    assert (f.callbacks_booked, f.callbacks_dialled, f.callback_dials) == (3, 2, 5)
    assert (f.callbacks_answered, f.callbacks_failed, f.avg_callback_wait_s) == (1, 1, 300)
    assert figures(sums_of([contact("n")])).avg_callback_wait_s is None


def test_repeat_contacts_within_24_hours_and_7_days() -> None:
    """c1 called at 08:00 and again at 09:00 (a repeat within 24 h); c2 three days after a contact
    that is not in the report (a repeat within 7 days only); c3 once; an unknown caller is never a
    repeat and is not in the share's base."""
    row = contact_delta("voice", [("journey_started", T0, {"flow": "support"})], customer_id="c1")
    assert row is not None and facts("a", row).customer_id == "c1"
    old = contact("old", customer_id="c2", started_at=T0 - 3 * 86400)
    group = mark_repeats(
        [
            facts("a", row),
            contact("b", customer_id="c1", started_at=T0 + 3600),
            contact("c", customer_id="c2"),
            contact("d", customer_id="c3"),
            contact("e"),
            contact("f"),
        ],
        earlier=[old],
    )
    assert [(c.journey_id, c.repeat_24h, c.repeat_7d) for c in group if c.repeat_7d] == [
        ("b", True, True),
        ("c", False, True),
    ]
    f = figures(sums_of(group))
    assert (f.known_contacts, f.repeat_24h, f.repeat_7d, f.repeat_24h_share, f.repeat_7d_share) == (4, 1, 2, 0.25, 0.5)


def test_a_callback_kept_its_place_unless_a_later_caller_was_answered_before_its_first_dial() -> None:
    """Three tickets in billing, booked at 08:01, first dialled at 08:10. Only a caller who joined
    billing after a booking and reached an agent before that ticket's first dial overtakes it:
    not one who joined before the booking, not one answered after the dial, not one in another
    queue, not a caller still waiting. A ticket never dialled is not judged (nor in the share)."""
    booked, dialled = T0 + 60, T0 + 600

    def ticket(jid: str, queue: str = "billing", **more: object) -> ContactFacts:
        return contact(jid, callback_at=booked, callback_queue=queue, callback_dials=1, callback_dialled_at=dialled,
                       **more)  # fmt: skip

    before = contact("before", queue="billing", queued_at=booked - 10, answered_at=booked + 100)
    after_dial = contact("after_dial", queue="billing", queued_at=booked + 10, answered_at=dialled + 1)
    elsewhere = contact("elsewhere", queue="support", queued_at=booked + 10, answered_at=booked + 100)
    waiting = contact("waiting", queue="billing", queued_at=booked + 10)
    kept = ticket("kept")
    in_support = ticket("in_support", queue="support")  # "elsewhere" joined support after it
    never_dialled = contact("never", callback_at=booked, callback_queue="billing")
    group = [before, after_dial, elsewhere, waiting, kept, in_support, never_dialled]
    marked = {c.journey_id: c.callback_kept for c in mark_place_kept(group)}
    assert marked == {
        "before": False, "after_dial": False, "elsewhere": False, "waiting": False,
        "kept": True, "in_support": False, "never": False,
    }  # fmt: skip
    f = figures(sums_of(mark_place_kept(group)))
    assert (f.callbacks_booked, f.callbacks_dialled, f.callbacks_kept, f.callbacks_kept_share) == (3, 2, 1, 0.5)
    # the same caller answered one second earlier, before the first dial: it overtook the ticket
    overtaken = mark_place_kept([kept], others=[contact("x", queue="billing", queued_at=booked + 10,
                                                        answered_at=dialled - 1)])  # fmt: skip
    assert [c.callback_kept for c in overtaken] == [False]
    assert figures(sums_of([contact("n")])).callbacks_kept_share is None


def _transfer(mode: str, outcome: str, kind: str = "agent", target: str = "bob") -> dict[str, Any]:
    """An ``agent_transfer`` entry's data as ``ivr.acd.transfer.timeline_data`` writes it."""
    return {"transfer_id": f"x-{mode}-{outcome}", "mode": mode, "target_kind": kind, "target": target,
            "agent_id": "ag1", "agent": "Ann", "note": "", "outcome": outcome}  # fmt: skip


def _answered(jid: str, *after: tuple[str, float, dict[str, Any]]) -> ContactFacts:
    """A call queued in billing, answered by ag1, then what the agent did (``after``)."""
    row = contact_delta(
        "voice",
        [
            ("journey_started", T0, {"flow": "support"}),
            ("queued", T0 + 5, {"queue": "billing", "skill": "billing"}),
            ("journey_queued", T0 + 5, {}),
            ("agent_connected", T0 + 15, {"agent_id": "ag1", "queue": "billing"}),
            *after,
        ],
    )
    assert row is not None
    return facts(jid, row)


def test_agent_transfers_count_only_the_ones_that_took_by_mode() -> None:
    """A blind transfer handed over, a consult the agent completed: two transfers that took. A
    consult the agent cancelled, one whose target never answered, and one on which the caller hung
    up on hold: the caller stayed with the agent or left, so none of those counts."""
    blind = _answered("blind", ("agent_transfer", T0 + 60, _transfer("blind", "transferred", "queue", "sales")))
    completed = _answered(
        "completed",
        ("agent_transfer", T0 + 90, _transfer("consult", "completed")),
        ("agent_completed", T0 + 91, {"agent_id": "ag1"}),
    )
    cancelled = _answered("cancelled", ("agent_transfer", T0 + 70, _transfer("consult", "cancelled")))
    no_answer = _answered("no_answer", ("agent_transfer", T0 + 70, _transfer("consult", "target_failed", "number")))
    hung_up = _answered(
        "hung_up",
        ("agent_transfer", T0 + 80, _transfer("consult", "caller_hung_up")),
        ("agent_completed", T0 + 80, {"agent_id": "ag1"}),
    )
    assert (blind.agent_transfers_blind, blind.agent_transfers_consult) == (1, 0)
    assert (completed.agent_transfers_blind, completed.agent_transfers_consult) == (0, 1)
    assert [c.agent_transfers for c in (cancelled, no_answer, hung_up)] == [0, 0, 0]
    f = figures(sums_of([blind, completed, cancelled, no_answer, hung_up]))
    assert (f.agent_transfers, f.agent_transfers_blind, f.agent_transfers_consult) == (2, 1, 1)
    assert (f.handled, f.contained) == (5, 0)  # still five handled calls, none contained
    by_agent = {r.key: r.figures.agent_transfers for r in report([blind, completed, cancelled], by="agent")}
    assert by_agent == {"ag1": 2}
    # the same caller transferred twice (blind to a queue, then that agent consulted and completed)
    twice = _answered(
        "twice",
        ("agent_transfer", T0 + 60, _transfer("blind", "transferred", "queue", "sales")),
        ("agent_transfer", T0 + 200, _transfer("consult", "completed")),
    )
    assert (twice.agent_transfers_blind, twice.agent_transfers_consult) == (1, 1)
    # an entry without a mode it knows (or an outcome it knows) counts nowhere
    odd = _answered("odd", ("agent_transfer", T0 + 60, {**_transfer("blind", "transferred"), "mode": "magic"}))
    assert odd.agent_transfers == 0


def test_transfers_add_up_across_batches_in_any_order() -> None:
    first = contact_delta("voice", [("agent_transfer", T0 + 60, _transfer("blind", "transferred"))])
    later = contact_delta(
        "voice",
        [("journey_started", T0, {"flow": "support"}), ("agent_transfer", T0 + 90, _transfer("consult", "completed"))],
    )
    assert first is not None and later is not None
    assert merge(first, later) == merge(later, first)
    c = facts("j", merge(first, later))
    assert (c.agent_transfers_blind, c.agent_transfers_consult) == (1, 1)


def _outbound(jid: str, *, agent: str, answered: bool) -> ContactFacts:
    """A click-to-call as ``ivr.acd.outbound`` logs it: the journey and the call at once, then
    the customer's answer (or not), then the agent's leg hanging up."""
    now = T0 + 100
    events: list[tuple[str, float, dict[str, Any]]] = [
        ("journey_started", now, {"flow": "outbound", "direction": "outbound"}),
        ("outbound_call", now, {"agent_id": agent, "agent": "Ann", "to_number": "+15551230005", "from_journey": ""}),
    ]
    if answered:
        events.append(("outbound_answered", now + 12, {}))
    else:
        events.append(("outbound_failed", now + 30, {"why": "no answer"}))
    events.append(("agent_completed", now + 90, {"agent_id": agent, "by": "agent"}))
    row = contact_delta("voice", events)
    assert row is not None
    return facts(jid, row)


def test_outbound_calls_answered_and_not_by_agent_and_flow() -> None:
    """Two calls out by ag1 (one answered), one by ag2 not answered; an inbound call ag1 took.
    An outbound contact is never offered, handled or contained, and counts for the agent who
    placed it."""
    answered = _outbound("o1", agent="ag1", answered=True)
    unanswered = _outbound("o2", agent="ag1", answered=False)
    other = _outbound("o3", agent="ag2", answered=False)
    assert (answered.outbound, answered.outbound_answered, answered.agent) == (True, True, "ag1")
    assert (unanswered.outbound, unanswered.outbound_answered, unanswered.outbound_agent) == (True, False, "ag1")
    assert answered.agent_id is None  # not taken from a queue
    inbound = _answered("in")
    group = [answered, unanswered, other, inbound]
    f = figures(sums_of(group))
    assert (f.outbound_calls, f.outbound_answered, f.outbound_answered_share) == (3, 1, 1 / 3)
    assert (f.contacts, f.offered, f.handled, f.contained) == (4, 1, 1, 0)
    by_agent = {r.key: (r.figures.contacts, r.figures.outbound_calls, r.figures.outbound_answered, r.figures.handled)
                for r in report(group, by="agent")}  # fmt: skip
    assert by_agent == {"ag1": (3, 2, 1, 1), "ag2": (1, 1, 0, 0)}
    by_flow = {r.key: r.figures.outbound_calls for r in report(group, by="flow")}
    assert by_flow == {"outbound": 3, "support": 0}
    by_channel = {r.key: r.figures.outbound_answered for r in report(group, by="channel")}
    assert by_channel == {"voice": 1}
    assert figures(sums_of([inbound])).outbound_answered_share is None  # none placed: no share
    # the answer logged in a later batch than the call still makes it answered
    call = contact_delta("voice", [("outbound_call", T0, {"agent_id": "ag1"})])
    answer = contact_delta("voice", [("outbound_answered", T0 + 9, {})])
    assert call is not None and answer is not None
    assert facts("o", merge(answer, call)).outbound_answered
