from __future__ import annotations

from datetime import UTC, datetime

import pytest

from ivr.flow.conditions import ConditionError, ConditionScope, parse_condition
from ivr.flow.hours import HoursError, parse_hours


def scope(**kw: object) -> ConditionScope:
    base: dict[str, object] = dict(
        slots={"account_number": "12345678"},
        customer={"tier": "gold"},
        caller="+15551230001",
        channel="voice",
        intent=None,
        now=datetime(2026, 11, 23, 9, 30, tzinfo=UTC),
        is_open=lambda name, now: name == "support",
    )
    base.update(kw)
    return ConditionScope(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("slots.account_number", True),
        ("slots.missing", False),
        ('customer.tier in ["gold", "platinum"]', True),
        ("not customer.tier == 'gold'", False),
        ("now.hour >= 9 and now.weekday == 'mon'", True),
        ("now.time < '09:00'", False),
        ("slots.missing > 3", False),
        ('open("support") or open("sales")', True),
        ("len(slots.account_number) == 8 and digits(slots.account_number)", True),
        ("intent == none", True),
        ("caller != '+1' and channel == 'voice'", True),
    ],
)
def test_evaluate(source: str, expected: bool) -> None:
    assert parse_condition(source.replace("none", "None")).evaluate(scope()) is expected


@pytest.mark.parametrize(
    "source",
    [
        "__import__('os')",
        "slots.__class__.__bases__",
        "(lambda: 1)()",
        "x + 1",
        "[i for i in slots]",
        "slots['a']",
        "open(name)",
        "len(1, 2)",
        "",
        "f'{slots}'",
        "slots.a if 1 else 2",
    ],
)
def test_rejects_unsafe_or_unknown(source: str) -> None:
    with pytest.raises(ConditionError):
        parse_condition(source)


def test_hours_across_timezones_and_holidays() -> None:
    hours = parse_hours("x", {"timezone": "America/New_York", "mon-fri": "08:00-12:00, 13:00-17:00"})
    assert hours.is_open(datetime(2026, 11, 23, 13, 30, tzinfo=UTC))  # 08:30 NY
    assert not hours.is_open(datetime(2026, 11, 23, 17, 30, tzinfo=UTC))  # 12:30 NY lunch
    assert not hours.is_open(datetime(2026, 11, 28, 15, 0, tzinfo=UTC))  # Saturday
    with pytest.raises(HoursError):
        parse_hours("x", {"mon-fri": "17:00-08:00"})
    with pytest.raises(HoursError):
        parse_hours("x", {"timezone": "Mars/Base"})
    with pytest.raises(HoursError):
        parse_hours("x", {"fri-mon": "08:00-09:00"})
