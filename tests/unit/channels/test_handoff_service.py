"""Handoffs.send's decisions with fakes for the row store and the SMS sender (pure logic)."""

from __future__ import annotations

import asyncio
import logging
import re
import time

import pytest

from ivr.channels.handoff import Handoffs, TokenCodec
from ivr.flow.model import Handoff, Journey, Prompt

SECRET = "test-secret-0123456789"
COMMAND = Handoff("text_me", "chat", "pay_menu", Prompt("Continue here"))


class Rows:
    def __init__(self) -> None:
        self.rows: list[dict[str, object]] = []

    async def create(self, **row: object) -> None:
        self.rows.append(row)


class Sms:
    def __init__(self, fail: bool = False) -> None:
        self.sent: list[tuple[str, str]] = []
        self.fail = fail

    async def send(self, to: str, text: str, *, journey_id: str | None = None, customer_id: str | None = None) -> str:
        if self.fail:
            raise OSError("gateway down")
        self.sent.append((to, text))
        return "ref"


def journey(caller: str | None = "+15551230001") -> Journey:
    return Journey("j" * 32, "payments", "v1", "voice", step="text_me", caller=caller, customer_id="cust-1")


def test_no_secret_means_off_with_one_clear_log_line(caplog: pytest.LogCaptureFixture) -> None:
    handoffs = Handoffs(None, Rows(), Sms(), base_url="https://x", ttl=60)
    with caplog.at_level(logging.WARNING):
        assert asyncio.run(handoffs.send(journey(), COMMAND)) == (False, "disabled")
        assert asyncio.run(handoffs.send(journey(), COMMAND)) == (False, "disabled")
    lines = [r.getMessage() for r in caplog.records if "IVR_HANDOFF_SECRET" in r.getMessage()]
    assert len(lines) == 1


def test_a_link_is_sent_and_its_token_verifies() -> None:
    rows, sms = Rows(), Sms()
    codec = TokenCodec(SECRET)
    assert asyncio.run(Handoffs(codec, rows, sms, base_url="https://x", ttl=60).send(journey(), COMMAND)) == (
        True,
        "link",
    )
    (to, text), (row,) = sms.sent[0], rows.rows
    assert to == "+15551230001" and row["step"] == "pay_menu" and row["customer_id"] == "cust-1"
    token = re.fullmatch(r"Continue here: https://x/c/([A-Za-z0-9_-]+)", text)
    assert token
    claim = codec.verify(token[1], time.time())
    assert claim.continuation_id == row["id"] and codec.bound_to(claim, "cust-1")


def test_failures_are_answers_not_exceptions() -> None:
    codec = TokenCodec(SECRET)
    assert asyncio.run(Handoffs(codec, Rows(), Sms(), base_url="", ttl=60).send(journey(None), COMMAND)) == (
        False,
        "no-number",
    )
    assert asyncio.run(Handoffs(codec, Rows(), Sms(fail=True), base_url="", ttl=60).send(journey(), COMMAND)) == (
        False,
        "error",
    )
    assert asyncio.run(Handoffs(codec, Rows(), None, base_url="", ttl=60).send(journey(), COMMAND)) == (False, "no-sms")
