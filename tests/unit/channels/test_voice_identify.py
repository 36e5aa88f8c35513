"""The inbound route asks for the caller's profile before the first prompt, and never dies of it."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from ivr.channels.voice import InboundCalls
from ivr.flow.model import Journey
from ivr.flow.profile import CallerProfile


class Profiles:
    def __init__(self, result: CallerProfile | None = None, error: Exception | None = None) -> None:
        self.result, self.error = result, error
        self.asked: list[str | None] = []

    async def load(self, phone: str | None) -> CallerProfile | None:
        self.asked.append(phone)
        if self.error:
            raise self.error
        return self.result


def inbound(profiles: Any) -> InboundCalls:
    def no_flow(_requested: str | None, _dialled: str) -> Any:
        raise AssertionError("not used")

    return InboundCalls(flows=None, pick_flow=no_flow, store=None, profiles=profiles)  # type: ignore[arg-type]


def journey(caller: str | None = "+15551230001") -> Journey:
    return Journey(id="j1", flow="support", version="v1", channel="voice", caller=caller)


async def test_a_known_caller_is_attached_to_the_journey() -> None:
    profile = CallerProfile("c1", fields={"name": "Ann", "tier": "gold"}, contacts=3, verified=True)
    j = journey()
    assert await inbound(Profiles(profile)).identify(j) is profile
    assert j.customer_id == "c1"
    assert j.customer == {"name": "Ann", "tier": "gold", "verified": True, "contacts": 3}


async def test_withheld_numbers_and_no_profile_source_ask_nothing() -> None:
    profiles = Profiles(CallerProfile("c1"))
    assert await inbound(profiles).identify(journey(caller=None)) is None
    assert profiles.asked == []
    assert await inbound(None).identify(journey()) is None


async def test_a_failing_lookup_leaves_an_unknown_caller(caplog: pytest.LogCaptureFixture) -> None:
    j = journey()
    with caplog.at_level(logging.ERROR):
        assert await inbound(Profiles(error=ConnectionError("db down"))).identify(j) is None
    assert j.customer_id is None and j.customer == {}
    assert "continuing as an unknown caller" in caplog.text
