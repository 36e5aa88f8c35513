"""Turning the one-statement profile query's rows into a CallerProfile, and timeline cursors."""

from __future__ import annotations

from collections import namedtuple
from typing import Any

import pytest

from ivr.flow.profile import CallerProfile, KnownSlot, OpenCallback, OpenContinuation, OptionStat, PastContact
from ivr.store.customers import PROFILE_BY_ID_SQL, PROFILE_BY_PHONE_SQL, Cursor, profile_from_rows

R = namedtuple("R", "part customer_id a b c d e f n x y flag")


def test_rows_become_a_profile() -> None:
    rows: list[Any] = [
        R("option", "c1", "support", "main", "outage", None, None, None, 1, 0.5, 20.0, None),
        R("slot", "c1", "account_number", "12345678", "chat", None, None, None, None, 30.0, None, None),
        R("customer", "c1", "Ann", None, "CRM-9", "gold", None, None, 4, None, None, 1),
        R("option", "c1", "support", "main", "pay_bill", None, None, None, 3, 2.5, 10.0, None),
    ]
    assert profile_from_rows(rows) == CallerProfile(
        customer_id="c1",
        fields={"name": "Ann", "crm_id": "CRM-9", "tier": "gold"},
        contacts=4,
        options=(
            OptionStat("support", "main", "pay_bill", 3, 2.5, 10.0),  # best score first
            OptionStat("support", "main", "outage", 1, 0.5, 20.0),
        ),
        slots=(KnownSlot("account_number", "12345678", "chat", 30.0),),
        verified=True,
    )


def test_no_customer_row_no_profile() -> None:
    assert profile_from_rows([]) is None


def test_the_profile_is_one_statement_over_all_its_sources() -> None:
    for sql in (PROFILE_BY_PHONE_SQL, PROFILE_BY_ID_SQL):
        assert ";" not in sql
        assert sql.count("UNION ALL") == 5
        for table in ("customers", "option_stats", "customer_slots", "journeys", "callbacks", "continuations"):
            assert f"FROM {table}" in sql


def test_the_latest_journeys_the_open_ticket_and_the_unused_link_become_the_profile() -> None:
    rows: list[Any] = [
        R("customer", "c1", None, None, None, None, None, None, 7, None, None, 0),
        R("journey", "c1", "support", "account", "abandoned", "voice", "j2", "billing", None, 100.0, 160.0, None),
        R("journey", "c1", "support", "to_billing", "queued", "chat", "j3", None, None, 200.0, 260.0, None),
        R("callback", "c1", "t1", "billing", "waiting", "billing", "j3", None, 0, 250.0, None, None),
        R("continuation", "c1", "sms", "card", "payments", None, "j4", None, None, 300.0, 900.0, None),
    ]
    profile = profile_from_rows(rows)
    assert profile is not None
    assert profile.recent == (  # newest first, whatever order the rows came in
        PastContact("j3", "support", "chat", "queued", "to_billing", None, 200.0, 260.0),
        PastContact("j2", "support", "voice", "abandoned", "account", "billing", 100.0, 160.0),
    )
    assert profile.callback == OpenCallback("t1", "billing", "billing", "waiting", 250.0, "j3")
    assert profile.continuation == OpenContinuation("j4", "payments", "sms", "card", 300.0, 900.0)


def test_cursor_round_trip_and_garbage() -> None:
    cursor = Cursor(1_700_000_000.123456, 42)
    assert Cursor.decode(cursor.encode()) == cursor
    assert "=" not in cursor.encode()
    for bad in ("", "garbage!", "e30", Cursor(1.0, 1).encode()[:-3]):
        with pytest.raises(ValueError):
            Cursor.decode(bad)
