"""Journey stages on real calls: SIPp -> Asterisk 22 -> ``ivr serve`` with the shipped flows.

A caller presses 1 (paying the bill) and hangs up at the account number; calling again a minute
later they hear "You called about paying your bill a moment ago", press 1 to continue with that
and are at the account number at once. A caller with an open callback ticket hears that we will
call them back and keeps it. What each caller heard is read back from what the controller wrote:
the journey's path and the ``journey_stage`` entry of its interaction log.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ivr.store.agents import CallbackStore
from ivr.store.customers import CustomerStore
from ivr.store.journeys import make_engine
from lab.asterisk import AsteriskLab
from lab.controller import ControllerProcess
from lab.prompts import prompt_ms as ms
from lab.sipp import CallerScript, Dtmf, run_caller

REPO = Path(__file__).resolve().parents[2]
GREETING = "Welcome to Example Power."
ACCOUNT = "Please enter your eight digit account number, then press pound."
CONTINUE_PROMPT = "Would you like to continue with that?"
RETURNING = "+15551238801"
WAITING = "+15551238802"


@pytest.fixture(scope="module")
def serving(lab: AsteriskLab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControllerProcess]:
    """One ``ivr serve`` (SQLite store) for the module's calls."""
    proc = ControllerProcess(
        flows_dir=REPO / "dialplans",
        data_dir=tmp_path_factory.mktemp("stages") / "ivr",
        env={"IVR_SPEECH_SOUNDS_DIR": str(lab.sounds_dir)},
    )
    try:
        proc.start(timeout=60)  # loading the speech models takes a while on a busy machine
        yield proc
    finally:
        proc.stop()  # also when it never became ready: no stray server holding the AGI port


def finished(proc: ControllerProcess, caller: str, after: float = 0.0) -> dict[str, Any]:
    return proc.wait_for_journey(
        lambda j: j["caller"] == caller and j["status"] != "active" and j["started_at"] > after, 30
    )


def stage_of(proc: ControllerProcess, journey: dict[str, Any]) -> dict[str, Any] | None:
    return next((e["data"] for e in proc.interactions(journey["id"]) if e["kind"] == "journey_stage"), None)


def test_a_call_left_unfinished_is_offered_again_and_continues(
    serving: ControllerProcess, prompt_ms: dict[str, int]
) -> None:
    press_1 = ms(prompt_ms, GREETING) + 800  # barge-in during the main menu
    run_caller(
        CallerScript(caller_id=RETURNING, dtmf=(Dtmf("1", press_1),), hangup_after_ms=press_1 + 2500)
    ).raise_for_failure()
    first = finished(serving, RETURNING)
    assert (first["status"], first["step"], first["intent"]) == ("abandoned", "account", "billing")
    assert stage_of(serving, first) is None  # a first call: nothing to greet

    # "You called about" + "paying your bill" + "a moment ago", then the continue menu
    said = sum(ms(prompt_ms, t) for t in (GREETING, "You called about", "paying your bill", "a moment ago"))
    press_again = said + 1500
    run_caller(
        CallerScript(caller_id=RETURNING, dtmf=(Dtmf("1", press_again),), hangup_after_ms=press_again + 2500)
    ).raise_for_failure()
    second = finished(serving, RETURNING, after=first["started_at"])
    assert second["path"] == [
        "greeting",
        "check_hours",
        "called_earlier",
        "continue_earlier",
        "resume_earlier",
        "account",
    ]
    assert (second["status"], second["step"]) == ("abandoned", "account")
    stage = stage_of(serving, second)
    assert stage == {"stage": "unfinished", "why": "left support at step account about pay_bill a moment ago"}
    chosen = [e["data"]["option"] for e in serving.interactions(second["id"]) if e["kind"] == "option_chosen"]
    assert chosen == ["continue"]


def test_a_caller_waiting_for_a_callback_hears_it_and_keeps_it(
    serving: ControllerProcess, prompt_ms: dict[str, int]
) -> None:
    async def book() -> str:
        engine = make_engine(f"sqlite+aiosqlite:///{serving.db_path}")
        try:
            customer = await CustomerStore(engine).create(phones=[WAITING])
            now = time.time()
            ticket = await CallbackStore(engine).open(
                customer_id=customer,
                journey_id="earlier",
                phone=WAITING,
                queue="billing",
                skill="billing",
                priority=5,
                ticket_at=now - 600,
                not_before=now + 3600,  # the ACD must not dial it during the test
                context={},
            )
            assert ticket is not None
            return ticket
        finally:
            await engine.dispose()

    ticket = asyncio.run(book())
    said = sum(
        ms(prompt_ms, t)
        for t in (
            GREETING,
            "We will call you back as you asked",
            "ten minutes ago",
            ", and you keep your place in line.",
        )
    )
    press_1 = said + 1500  # during "Is there anything else?"
    result = run_caller(CallerScript(caller_id=WAITING, dtmf=(Dtmf("1", press_1),), max_call_ms=press_1 + 15000))
    result.raise_for_failure()
    journey = finished(serving, WAITING)
    assert journey["path"] == ["greeting", "check_hours", "callback_reminder", "callback_menu", "callback_goodbye"]
    assert journey["status"] == "completed" and result.who_hung_up == "ivr"
    stage = stage_of(serving, journey)
    assert stage is not None and stage["stage"] == "open_callback"
    assert stage["why"] == f"callback ticket {ticket} open in queue billing since ten minutes ago"
