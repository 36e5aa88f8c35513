"""Caller ids to E.164: the same person matches however the carrier wrote the number."""

from __future__ import annotations

import pytest

from ivr.store.phones import to_e164


@pytest.mark.parametrize(
    ("raw", "country_code", "expected"),
    [
        ("+15551230001", "", "+15551230001"),
        ("+1 (555) 123-0001", "", "+15551230001"),
        ("+44 20 7946 0000", "", "+442079460000"),
        ("00442079460000", "", "+442079460000"),
        ("020 7946 0000", "44", "+442079460000"),
        ("2079460000", "44", "+442079460000"),
        ("5551230001", "1", "+15551230001"),
        ("15551230001", "1", "+15551230001"),
        ("011442079460000", "1", "+442079460000"),
        ("+442079460000", "1", "+442079460000"),
        ("5551230001", "", "5551230001"),  # no country code configured: digits as given
        ("6001", "", "6001"),  # an internal extension
    ],
)
def test_numbers(raw: str, country_code: str, expected: str) -> None:
    assert to_e164(raw, country_code) == expected


@pytest.mark.parametrize(
    "raw",
    [None, "", "  ", "anonymous", "Unknown", "restricted", "+", "lab", "sip:lab@host", "+1555abc", "+1" + "2" * 15],
)
def test_not_phone_numbers(raw: str | None) -> None:
    assert to_e164(raw, "1") is None
