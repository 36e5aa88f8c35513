"""Journey stages from literal profiles: which stage applies, why, and how "ago" is spoken."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from ivr.flow.conditions import ConditionError, ConditionScope, parse_condition
from ivr.flow.profile import CallerProfile, OpenCallback, OpenContinuation, PastContact
from ivr.flow.stages import AGO_PHRASES, UNKNOWN, JourneyStage, journey_stage, spoken_ago

NOW = datetime(2026, 3, 4, 15, 0, tzinfo=UTC)  # a Wednesday
T = NOW.timestamp()


def reasons(flow: str, intent: str) -> tuple[str, str] | None:
    return {"billing": ("pay_bill", "paying your bill"), "outage": ("outage", "reporting an outage")}.get(intent)


def past(minutes: float, status: str = "abandoned", intent: str | None = "billing", jid: str = "j1") -> PastContact:
    return PastContact(jid, "support", "voice", status, "account", intent, T - minutes * 60 - 60, T - minutes * 60)


def profile(*recent: PastContact, **kw: object) -> CallerProfile:
    return CallerProfile("c1", contacts=len(recent), recent=recent, **kw)  # type: ignore[arg-type]


def test_a_call_left_at_the_account_ten_minutes_ago_is_unfinished_with_its_reason() -> None:
    stage = journey_stage(profile(past(10), past(3000, "completed", jid="j0")), NOW, reasons)
    assert stage.stage == "unfinished"
    assert stage.why == "left support at step account about pay_bill ten minutes ago"
    u = stage.unfinished
    assert u is not None and u == stage.last_contact
    assert (u.minutes, u.hours, u.ago, u.reason, u.reason_label, u.outcome, u.resumable) == (
        10,
        0,
        "ten minutes ago",
        "pay_bill",
        "paying your bill",
        "abandoned",
        True,
    )


def test_a_finished_last_call_is_a_recent_contact_not_unfinished() -> None:
    stage = journey_stage(profile(past(10, "queued"), past(30)), NOW, reasons)
    assert stage.stage == "recent_contact"
    assert stage.unfinished is None  # the older abandoned call was followed by one that got through
    assert stage.last_contact is not None and stage.last_contact.outcome == "queued"
    assert stage.why == "last contact ten minutes ago on voice, queued"


def test_returning_new_and_unknown() -> None:
    old = journey_stage(profile(past(3 * 24 * 60, "completed")), NOW, reasons)
    assert (old.stage, old.last_contact and old.last_contact.ago) == ("returning", "on Sunday")
    assert journey_stage(profile(), NOW).stage == "new"
    assert journey_stage(None, NOW) is UNKNOWN


def test_an_open_callback_comes_first_and_knows_what_booked_it() -> None:
    ticket = OpenCallback("t1", "billing", "billing", "waiting", T - 25 * 60, "j1")
    stage = journey_stage(profile(past(25, "completed"), callback=ticket), NOW, reasons)
    assert stage.stage == "open_callback"
    cb = stage.open_callback
    assert cb is not None
    assert (cb.ticket, cb.queue, cb.minutes, cb.ago, cb.reason_label) == (
        "t1",
        "billing",
        25,
        "about twenty-five minutes ago",
        "paying your bill",
    )
    assert stage.why == "callback ticket t1 open in queue billing since about twenty-five minutes ago"


def test_an_unused_link_counts_until_it_expires() -> None:
    link = OpenContinuation("j1", "payments", "sms", "card", T - 300, T + 3600)
    stage = journey_stage(profile(past(5, "handed_off"), continuation=link), NOW, reasons)
    assert stage.stage == "open_continuation"
    assert stage.open_continuation is not None and stage.open_continuation.expires == 60
    expired = OpenContinuation("j1", "payments", "sms", "card", T - 7200, T - 1)
    assert journey_stage(profile(past(120, "handed_off"), continuation=expired), NOW).stage == "recent_contact"


def test_an_outage_report_among_the_recent_contacts() -> None:
    stage = journey_stage(profile(past(5, "completed"), past(60, "queued", "outage", "j0")), NOW, reasons)
    assert stage.outage_reported is not None and stage.outage_reported.minutes == 60
    assert journey_stage(profile(past(5, "completed")), NOW).outage_reported is None


@pytest.mark.parametrize(
    ("seconds", "said"),
    [
        (0, "a moment ago"),
        (80, "a moment ago"),
        (100, "two minutes ago"),
        (600, "ten minutes ago"),
        (11 * 60, "about ten minutes ago"),
        (22 * 60, "about twenty minutes ago"),
        (47 * 60, "about forty-five minutes ago"),
        (60 * 60, "about an hour ago"),
        (3 * 3600, "about three hours ago"),
        (8 * 3600, "earlier today"),
        (20 * 3600, "yesterday"),
        (2 * 86400, "on Monday"),
        (9 * 86400, "over a week ago"),
    ],
)
def test_ago_in_words_a_caller_hears(seconds: float, said: str) -> None:
    assert spoken_ago(seconds, NOW) == said
    assert said in AGO_PHRASES  # so it has audio


def test_every_minute_of_a_week_is_a_known_phrase() -> None:
    for minute in range(0, 8 * 24 * 60, 7):
        assert spoken_ago(minute * 60, NOW + timedelta(hours=minute % 24)) in AGO_PHRASES


def scope(stage: JourneyStage) -> ConditionScope:
    return ConditionScope({}, {}, "+1555", "voice", None, NOW, lambda name, now: True, stage)


@pytest.mark.parametrize(
    ("source", "unfinished", "first_time"),
    [
        ("journey.unfinished", True, False),
        ('journey.stage == "unfinished"', True, False),
        ("journey.last_contact.minutes < 120", True, False),
        ("within(journey.unfinished, hours=2)", True, False),
        ("within(journey.unfinished, minutes=5)", False, False),
        ('journey.unfinished.reason == "pay_bill"', True, False),
        ("journey.open_callback", False, False),
        ("not journey.last_contact", False, True),
        ('journey.stage == "new"', False, True),
    ],
)
def test_conditions_read_the_stage(source: str, unfinished: bool, first_time: bool) -> None:
    condition = parse_condition(source)
    assert condition.evaluate(scope(journey_stage(profile(past(10)), NOW, reasons))) is unfinished
    assert condition.evaluate(scope(journey_stage(profile(), NOW, reasons))) is first_time


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("journey.unfinshed", "journey.unfinshed does not exist (use one of last_contact, open_callback"),
        ("journey.last_contact.minuts < 5", "journey.last_contact.minuts does not exist (use one of ago, channel"),
        ("journey.stage.name", "journey.stage has no attributes"),
        ("journey.last_contact.flow.name", "only one level of attributes is allowed (two under journey)"),
        ("customer.tier.name", "only one level of attributes is allowed"),
        ("within(journey.last_contact)", "within() takes a contact and a time"),
        ("within(journey.last_contact, weeks=2)", "the time is minutes=, hours= or days="),
        ('within(journey.last_contact, hours="2")', "hours= is a positive number"),
        ("len(x=1)", "len() takes exactly one argument"),
    ],
)
def test_unknown_names_under_journey_are_refused_with_the_names_that_exist(source: str, message: str) -> None:
    with pytest.raises(ConditionError) as caught:
        parse_condition(source)
    assert message in str(caught.value)
