"""Turning the one-statement profile query's rows into a CallerProfile, and timeline cursors."""

from __future__ import annotations

from collections import namedtuple
from typing import Any

import pytest

from ivr.flow.profile import CallerProfile, KnownSlot, OptionStat
from ivr.store.customers import PROFILE_BY_ID_SQL, PROFILE_BY_PHONE_SQL, Cursor, profile_from_rows

R = namedtuple("R", "part customer_id a b c d e n x y flag")


def test_rows_become_a_profile() -> None:
    rows: list[Any] = [
        R("option", "c1", "support", "main", "outage", None, None, 1, 0.5, 20.0, None),
        R("slot", "c1", "account_number", "12345678", "chat", None, None, None, 30.0, None, None),
        R("customer", "c1", "Ann", None, "CRM-9", "gold", None, 4, None, None, 1),
        R("option", "c1", "support", "main", "pay_bill", None, None, 3, 2.5, 10.0, None),
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


def test_the_profile_is_one_statement_over_all_four_sources() -> None:
    for sql in (PROFILE_BY_PHONE_SQL, PROFILE_BY_ID_SQL):
        assert ";" not in sql
        assert sql.count("UNION ALL") == 2
        for table in ("customers", "option_stats", "customer_slots", "journeys"):
            assert f"FROM {table}" in sql


def test_cursor_round_trip_and_garbage() -> None:
    cursor = Cursor(1_700_000_000.123456, 42)
    assert Cursor.decode(cursor.encode()) == cursor
    assert "=" not in cursor.encode()
    for bad in ("", "garbage!", "e30", Cursor(1.0, 1).encode()[:-3]):
        with pytest.raises(ValueError):
            Cursor.decode(bad)
