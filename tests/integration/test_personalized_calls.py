"""On real calls: history made by earlier REAL calls reorders the menu and prefills the
account number; a new caller hears the file's order. SIPp -> Asterisk 22 -> ``ivr serve``, on
SQLite and on PostgreSQL.

The test flow lists "reporting an outage" (key 1) BEFORE "paying your bill" (key 2), so a caller
who hears the bill option first on key 1 can only have been personalized. ``min_contacts: 3``
keeps the first three calls on the file's order. What the caller heard is read back from what the
controller wrote: the journey's ``personalization`` / ``menu_keys`` / ``path`` and the
interaction log (``menu_personalized``, ``option_chosen`` with the key pressed, ``prefill_offered``,
``slot_prefilled``), through the product's own store API so both databases are read the same way.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ivr.flow.model import SYSTEM_PROMPTS, Journey
from ivr.store.journeys import JourneyStore, make_engine
from lab.asterisk import AsteriskLab
from lab.controller import ControllerProcess
from lab.flows import HISTORY_MENU as MENU_PROMPT
from lab.flows import HISTORY_NUMBER as NUMBER
from lab.flows import write_flows
from lab.prompts import build_flow_prompts, digits_ms
from lab.prompts import prompt_ms as ms
from lab.sipp import CallerScript, Dtmf, SippResult, run_caller_async

RETURNING = "+15551239001"
NEWCOMER = "+15551239002"
ACCOUNT = "12345678"
NEW_ACCOUNT = "87654321"

OFFER_PROMPT = "We have your account number ending in"


def has(data: dict[str, Any], **expect: Any) -> bool:
    return {k: data.get(k) for k in expect} == expect


@pytest.fixture
def flows_dir(lab: AsteriskLab, tmp_path: Path) -> Path:
    flows = write_flows(tmp_path / "flows", only=("history.yaml",))
    build_flow_prompts(flows, lab.sounds_dir)  # the flows' own prompts are already there: a no-op
    return flows


@pytest.fixture
def serving(flows_dir: Path, tmp_path: Path, database_url: str) -> Iterator[ControllerProcess]:
    proc = ControllerProcess(flows_dir=flows_dir, data_dir=tmp_path / "ivr", env={"IVR_DATABASE_URL": database_url})
    proc.start()
    yield proc
    proc.stop()


class Reader:
    """Reads journeys and interactions the controller wrote, on either database."""

    def __init__(self, url: str) -> None:
        self.store = JourneyStore(make_engine(url))  # never started: reads only

    async def journey(self, caller: str, seen: set[str], timeout: float = 30) -> Journey:
        """The next journey of ``caller`` (not in ``seen``) once it has ended."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for j in await self.store.recent(100):
                if j.caller == caller and j.id not in seen and j.status != "active":
                    seen.add(j.id)
                    return j
            await asyncio.sleep(0.2)
        raise AssertionError(f"no finished journey of {caller} within {timeout}s")

    async def log(self, journey: Journey) -> dict[str, list[dict[str, Any]]]:
        out: dict[str, list[dict[str, Any]]] = {}
        for entry in await self.store.interactions(journey.id):
            out.setdefault(entry["kind"], []).append(entry["data"])
        return out

    async def close(self) -> None:
        await self.store.engine.dispose()


async def call(*dtmf: Dtmf, caller: str = RETURNING) -> SippResult:
    result = await run_caller_async(
        CallerScript(caller_id=caller, dialled=NUMBER, dtmf=dtmf, max_call_ms=45000), timeout=60
    )
    result.raise_for_failure()
    assert result.who_hung_up == "ivr"  # the flow ran to its goodbye
    return result


async def test_history_from_real_calls_reorders_the_menu_and_prefills_the_account(
    lab: AsteriskLab, serving: ControllerProcess, database_url: str, prompt_ms: dict[str, int]
) -> None:
    menu_key = ms(prompt_ms, MENU_PROMPT) + 700  # while the options are being read
    type_account = menu_key + 1200  # type-ahead during the account prompt
    # After the offer ("...ending in" 5 6 7 8 "Press 1 to use it, or enter another."), in the
    # 6 s wait for a key that follows it: the caller heard the whole offer before pressing 1.
    accept = (
        menu_key
        + ms(prompt_ms, OFFER_PROMPT)
        + max(digits_ms(lab.sounds_dir, ACCOUNT[-4:]), digits_ms(lab.sounds_dir, NEW_ACCOUNT[-4:]))
        + ms(prompt_ms, SYSTEM_PROMPTS[2].text)
        + 1500
    )
    reader = Reader(database_url)
    seen: set[str] = set()
    try:
        # Call 1: unknown number -> new customer, file order; "2" is the bill; types the account.
        await call(Dtmf("2", menu_key), Dtmf(ACCOUNT, type_account))
        first = await reader.journey(RETURNING, seen)
        assert first.path == ["main_menu", "account", "goodbye"] and first.status == "completed"
        assert first.slots == {"account_number": ACCOUNT}
        assert first.personalization["main_menu"]["order"] == ["outage", "pay_bill", "agent"]
        assert first.personalization["main_menu"]["reason"] == "0 past contacts; reordering starts at 3"
        log = await reader.log(first)
        assert has(log["option_chosen"][0], option="pay_bill", key="2", position=2, flow="history")
        assert "prefill_offered" not in log and log["slot_filled"][0]["slot"] == "account_number"

        # Calls 2 and 3: still the file's order (guardrail), "2" for the bill. Call 2 hears the
        # stored account number offered and accepts it with 1; call 3 types a new one over the offer.
        for contacts, keys, expected in (
            (1, Dtmf("1", accept), ACCOUNT),
            (2, Dtmf(NEW_ACCOUNT, type_account), NEW_ACCOUNT),
        ):
            await call(Dtmf("2", menu_key), keys)
            j = await reader.journey(RETURNING, seen)
            assert j.path == ["main_menu", "account", "goodbye"] and j.status == "completed"
            assert j.customer_id == first.customer_id
            assert j.personalization["main_menu"]["reason"].startswith(f"{contacts} past contact")
            assert j.menu_keys["main_menu"] == {"1": "outage", "2": "pay_bill", "0": "agent"}
            assert j.slots == {"account_number": expected}
            log = await reader.log(j)
            assert log["prefill_offered"] == [{"slot": "account_number", "offer": "5678", "source_channel": "voice"}]
            if expected == ACCOUNT:
                assert log["slot_prefilled"][0]["slot"] == "account_number" and "slot_filled" not in log
            else:
                assert has(log["slot_filled"][0], slot="account_number", length=8, offer_declined=True)
                assert "slot_prefilled" not in log

        # Call 4 (three bill payments behind it) and a new caller, at the same time: both press 1.
        await asyncio.gather(
            call(Dtmf("1", menu_key), Dtmf("1", accept)),
            call(Dtmf("1", menu_key), caller=NEWCOMER),
        )
        fourth = await reader.journey(RETURNING, seen)
        newcomer = await reader.journey(NEWCOMER, seen)

        heard = fourth.personalization["main_menu"]
        assert heard["order"] == ["pay_bill", "outage", "agent"] and heard["reordered"] is True
        assert heard["keys"] == {"pay_bill": "1", "outage": "2", "agent": "0"}
        assert heard["reason"].startswith("pay_bill chosen 3 times, last ") and heard["reason"].endswith(" ago")
        assert fourth.menu_keys["main_menu"] == {"1": "pay_bill", "2": "outage", "0": "agent"}
        assert fourth.path == ["main_menu", "account", "goodbye"]  # key 1 reached the bill
        assert fourth.intent == "billing" and fourth.slots == {"account_number": NEW_ACCOUNT}
        log = await reader.log(fourth)
        assert log["prefill_offered"][0]["offer"] == "4321"  # the number given last time
        assert log["menu_personalized"][0]["order"] == ["pay_bill", "outage", "agent"]
        assert has(log["option_chosen"][0], option="pay_bill", key="1", position=1)
        assert log["slot_prefilled"][0]["slot"] == "account_number"

        assert newcomer.customer_id not in (None, first.customer_id)
        assert newcomer.personalization["main_menu"]["order"] == ["outage", "pay_bill", "agent"]
        assert newcomer.path == ["main_menu", "outage_info", "goodbye"]  # key 1 is the outage for them
        log = await reader.log(newcomer)
        assert has(log["option_chosen"][0], option="outage", key="1", position=1)

        # Every fragment was really played: a missing prompt would only be logged, not fail a call.
        controller_log = serving.log_tail(10_000)
        for trouble in ("cannot play sound file", "SAY DIGITS failed", "GET DATA", "Traceback"):
            assert trouble not in controller_log
    finally:
        await reader.close()
