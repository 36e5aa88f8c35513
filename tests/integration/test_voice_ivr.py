"""The voice IVR end to end: SIPp caller -> SIP trunk -> Asterisk 22 -> FastAGI controller -> flow.

Each test checks what the controller recorded (the journey and its interaction log), not only
SIPp's verdict: a SIP-level success does not prove the IVR ran. The tests that only place calls
share one controller (each has its own caller id); the fallback tests kill theirs or have none.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

from ivr.ami.client import AmiClient, AmiError
from lab.asterisk import AsteriskLab
from lab.controller import ControllerProcess
from lab.prompts import prompt_ms as ms
from lab.sipp import CallerScript, Dtmf, run_caller, run_caller_async

GREETING = "Welcome to Example Power."
OUTAGE = "We are aware of outages in some areas and crews are working on them."


def by_caller(controller: ControllerProcess, caller: str, timeout: float = 30, **expect: str) -> dict[str, Any]:
    return controller.wait_for_journey(
        lambda j: j["caller"] == caller and all(j.get(k) == v for k, v in expect.items()), timeout
    )


async def wait_queue_entry(lab: AsteriskLab, queue: str, timeout: float = 30) -> tuple[AmiClient, dict[str, Any]]:
    ami = AmiClient(username="ivr", secret=lab.ami_secret)
    await ami.connect()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        entries = await ami.queue_entries(queue)
        if entries:
            return ami, entries[0]
        await asyncio.sleep(0.3)
    ami.close()
    raise AssertionError(f"nobody joined queue {queue} within {timeout}s")


async def end_call(ami: AmiClient, entry: dict[str, Any]) -> None:
    """Hang up the caller waiting in the queue once the test has checked what it came for: the
    caller's own hang-up timer is only the ceiling of the call ("No such channel": it came first)."""
    with contextlib.suppress(AmiError):
        await ami.action({"Action": "Hangup", "Channel": entry["Channel"]})


def test_menu_keys_reach_the_right_step(shared_controller: ControllerProcess, prompt_ms: dict[str, int]) -> None:
    first = ms(prompt_ms, GREETING) + 800  # during the menu prompt: barge-in
    second = first + ms(prompt_ms, OUTAGE) + 1200  # during the "anything else?" menu
    result = run_caller(
        CallerScript(caller_id="+15551230002", dtmf=(Dtmf("2", first), Dtmf("2", second)), max_call_ms=40000)
    )
    result.raise_for_failure()
    journey = by_caller(shared_controller, "+15551230002", status="completed")
    assert journey["path"] == ["greeting", "check_hours", "main_menu", "outage_info", "outage_menu", "goodbye"]
    assert result.who_hung_up == "ivr"
    kinds = [e["kind"] for e in shared_controller.interactions(journey["id"])]
    assert kinds.count("option_chosen") == 2 and kinds[-1] == "journey_completed"


def test_digits_fill_a_slot_and_the_queue_sees_the_journey(
    lab: AsteriskLab, shared_controller: ControllerProcess, prompt_ms: dict[str, int]
) -> None:
    press_1 = ms(prompt_ms, GREETING) + 800
    account = press_1 + 1000  # type-ahead during the account prompt
    pin = account + 8 * 250 + 1200  # during the PIN prompt, which starts at the 8th digit

    async def scenario() -> None:
        call = asyncio.create_task(
            run_caller_async(
                CallerScript(
                    caller_id="+15551230001",
                    dtmf=(Dtmf("1", press_1), Dtmf("12345678", account), Dtmf("4321", pin)),
                    hangup_after_ms=pin + 15000,
                )
            )
        )
        ami, entry = await wait_queue_entry(lab, "billing", timeout=pin / 1000 + 12)
        try:
            channel = entry["Channel"]
            journey = by_caller(shared_controller, "+15551230001", status="queued")
            assert await ami.getvar(channel, "IVR_JOURNEY_ID") == journey["id"]
            assert await ami.getvar(channel, "IVR_SLOT_ACCOUNT_NUMBER") == "12345678"
            assert await ami.getvar(channel, "IVR_INTENT") == "billing"
            assert (await ami.getvar(channel, "IVR_PATH") or "").endswith(
                "verify>verify_identity.ask_pin>verify_identity.verified>verify_identity.done>to_billing"
            )
            assert await ami.getvar(channel, "QUEUE_PRIO") == "5"
        finally:
            await end_call(ami, entry)
            ami.close()
        (await call).raise_for_failure()

    asyncio.run(scenario())
    journey = by_caller(shared_controller, "+15551230001")
    assert journey["slots"] == {"account_number": "12345678", "pin": "[redacted]"}  # a PIN is never stored
    assert journey["outcome"]["queue"] == "billing"


def test_hangup_mid_prompt_saves_abandoned_journey(
    shared_controller: ControllerProcess, prompt_ms: dict[str, int]
) -> None:
    hangup = ms(prompt_ms, GREETING) + 1200  # in the middle of the menu prompt
    run_caller(CallerScript(caller_id="+15551230004", hangup_after_ms=hangup)).raise_for_failure()
    journey = by_caller(shared_controller, "+15551230004", status="abandoned")
    assert journey["step"] == "main_menu"
    assert shared_controller.interactions(journey["id"])[-1]["kind"] == "caller_left"
    assert "caller left at step main_menu" in shared_controller.log_tail()


def test_wrong_keys_exhaust_tries_and_reach_main_queue(
    lab: AsteriskLab, shared_controller: ControllerProcess, prompt_ms: dict[str, int]
) -> None:
    t = ms(prompt_ms, GREETING) + 800
    sorry = ms(prompt_ms, "Sorry, that is not a valid choice.")

    async def scenario() -> None:
        call = asyncio.create_task(
            run_caller_async(
                CallerScript(
                    caller_id="+15551230003",
                    dtmf=(Dtmf("7", t), Dtmf("9", t + sorry + 1500), Dtmf("8", t + 2 * sorry + 3000)),
                    hangup_after_ms=t + 2 * sorry + 12000,
                )
            )
        )
        ami, entry = await wait_queue_entry(lab, "main", timeout=(t + 2 * sorry) / 1000 + 10)
        await end_call(ami, entry)
        ami.close()
        assert entry["CallerIDNum"] == "+15551230003"
        (await call).raise_for_failure()

    asyncio.run(scenario())
    journey = by_caller(shared_controller, "+15551230003", status="queued")
    assert journey["path"][-2:] == ["main_menu", "to_agent"] and journey["outcome"]["queue"] == "main"


def test_controller_killed_mid_call_dialplan_fallback_queues_the_caller(
    lab: AsteriskLab, controller: ControllerProcess
) -> None:
    async def scenario() -> None:
        call = asyncio.create_task(run_caller_async(CallerScript(caller_id="+15551230005", hangup_after_ms=15000)))
        await asyncio.to_thread(by_caller, controller, "+15551230005", 10, step="main_menu")
        controller.kill()  # SIGKILL: no goodbye from the controller at all
        ami, entry = await wait_queue_entry(lab, "main", timeout=10)
        try:
            assert entry["CallerIDNum"] == "+15551230005"
            assert await ami.getvar(entry["Channel"], "IVR_FALLBACK")  # the fallback path was taken
        finally:
            await end_call(ami, entry)
            ami.close()
        (await call).raise_for_failure()

    asyncio.run(scenario())


def test_controller_down_dialplan_fallback_queues_the_caller(lab: AsteriskLab, no_controller: None) -> None:
    async def scenario() -> None:
        call = asyncio.create_task(run_caller_async(CallerScript(caller_id="+15551230006", hangup_after_ms=6000)))
        ami, entry = await wait_queue_entry(lab, "main", timeout=5)
        try:
            assert entry["CallerIDNum"] == "+15551230006"
            assert await ami.getvar(entry["Channel"], "IVR_FALLBACK") == "FAILURE"  # AGISTATUS
        finally:
            await end_call(ami, entry)
            ami.close()
        (await call).raise_for_failure()

    asyncio.run(scenario())
