"""The KPI arithmetic on literal contacts: each figure with a value worked out by hand."""

from __future__ import annotations

import pytest

from ivr.kpis import ContactFacts, ReportRequest, figures, first_end, percentile, report

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
    contact("e", ended="completed", transferred=True, no_input=2),
    contact("f", channel="chat", ended="queued", queued_at=T0 + 100, queue="support", answered_at=T0 + 105,
            agent_id="ag2", agent_ended_at=T0 + 405),
]  # fmt: skip


def test_every_figure_of_a_known_scenario() -> None:
    f = figures(SCENARIO, service_level_s=20)
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
    f = figures([])
    assert f.contacts == 0 and f.service_level is None and f.avg_wait_s is None and f.containment is None


def test_percentile_is_nearest_rank() -> None:
    assert percentile([5, 1, 4, 2, 3, 6, 7, 8, 9, 10], 0.9) == 9
    assert percentile([7], 0.9) == 7
    assert percentile([], 0.9) is None


def test_first_end_is_the_earliest_status() -> None:
    assert first_end({"completed": 30.0, "abandoned": 10.0, "queued": None}) == "abandoned"
    assert first_end({"completed": None}) is None


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
