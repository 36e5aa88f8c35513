"""A returning customer: three calls choose the bill by key; the fourth hears the bill first.

On the lab's ``history`` line the file lists "reporting an outage" (key 1) before "paying your
bill" (key 2), and ``min_contacts: 3`` keeps the file's order for the first three calls. So when
the fourth call hears the bill option on key 1 and key 1 reaches the account step, only the
caller's own history can have put it there. A new caller dialling at the same moment presses the
same key 1 and reaches the outage message: the file's order.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from ivr.flow.model import SYSTEM_PROMPTS
from lab.demo.registry import Tell, check, scene
from lab.demo.stack import DemoStack, JourneyRow
from lab.flows import HISTORY_MENU, HISTORY_NUMBER
from lab.prompts import digits_ms
from lab.sipp import CallerScript, Dtmf, run_caller_async

RETURNING = "+15551240001"
NEWCOMER = "+15551240002"
ACCOUNT = "12345678"
OFFER = "We have your account number ending in"
FILE_ORDER = ["outage", "pay_bill", "agent"]


def spoken(order: list[str], keys: dict[str, str]) -> str:
    return ", ".join(f"{option} (key {keys.get(option, '?')})" for option in order)


@scene(
    "returning",
    "A returning customer hears their usual choice first",
    "4th call: bill first; new caller: file order",
    order=10,
)
async def returning(stack: DemoStack, tell: Tell) -> str:
    menu_key = stack.ms(HISTORY_MENU) + 700  # while the options are being read
    type_account = menu_key + 1200  # type-ahead into the account prompt (or over the offer)
    # after the offer ("...ending in" 5 6 7 8 "Press 1 to use it, or enter another."): accept with 1
    accept = (
        menu_key + stack.ms(OFFER) + digits_ms(stack.lab.sounds_dir, ACCOUNT[-4:]) + stack.ms(SYSTEM_PROMPTS[2].text)
    ) + 1500
    tell(f"{RETURNING} dials {HISTORY_NUMBER}; the menu's file order is {', '.join(FILE_ORDER)}")
    seen: set[str] = set()

    async def call(caller: str, who: str, *dtmf: Dtmf) -> bool:
        script = CallerScript(caller_id=caller, dialled=HISTORY_NUMBER, dtmf=dtmf, max_call_ms=45000)
        return tell.call_result(await run_caller_async(script, timeout=60), who).ok

    def report(n: int, row: JourneyRow, journey: dict[str, Any]) -> None:
        heard = journey["personalization"]["main_menu"]
        tell(f"  heard: {spoken(heard['order'], heard.get('keys') or {})}")
        tell(f"  journey {row.id[:8]} {row.status}: {' > '.join(row.path)}  (reason saved: {heard['reason']})")
        check(row.path[:2] == ["main_menu", "account"], f"call {n} did not reach the account step: {row.path}")

    # Each call starts once the one before is saved (its past contacts are what the next call is
    # personalized by); reading that journey in full (``ivr journeys ID``: seconds of start-up)
    # runs beside the next call instead of before it.
    previous: tuple[int, JourneyRow, asyncio.Task[tuple[dict[str, Any], list[dict[str, Any]]]]] | None = None
    for n in (1, 2, 3):
        placing = asyncio.create_task(call(RETURNING, f"call {n}", Dtmf("2", menu_key), Dtmf(ACCOUNT, type_account)))
        try:
            if previous is not None:
                before, row, detail = previous
                report(before, row, (await detail)[0])
            tell(f"call {n}: presses 2 (paying your bill) and types the account number")
            ok = await placing
        finally:
            if not placing.done():  # a failed check above: no caller outlives the scene
                placing.cancel()
                with contextlib.suppress(BaseException):
                    await placing
        check(ok, f"call {n}: the SIP call failed")
        row = await stack.wait_journey(lambda r: r.caller == RETURNING and r.status != "active", seen=seen)
        previous = (n, row, asyncio.create_task(stack.journey(row.id)))
    assert previous is not None
    before, row, detail = previous
    report(before, row, (await detail)[0])

    tell("call 4 and a new caller, at the same time: both press 1 while the options are read")
    both = await asyncio.gather(  # both calls end before either verdict is judged
        call(RETURNING, "call 4", Dtmf("1", menu_key), Dtmf("1", accept)),
        call(NEWCOMER, f"new caller {NEWCOMER}", Dtmf("1", menu_key)),
    )
    check(all(both), "call 4 or the new caller's call failed in SIP")

    async def saved(caller: str) -> tuple[JourneyRow, dict[str, Any], list[dict[str, Any]]]:
        row = await stack.wait_journey(lambda r: r.caller == caller and r.status != "active", seen=seen)
        journey, log = await stack.journey(row.id)
        return row, journey, log

    # both journeys are read at once: each read is a CLI start-up of its own
    (fourth_row, fourth, fourth_log), (new_row, newcomer, _) = await asyncio.gather(saved(RETURNING), saved(NEWCOMER))
    heard = fourth["personalization"]["main_menu"]
    fresh = newcomer["personalization"]["main_menu"]
    tell(f"  call 4 heard:     {spoken(heard['order'], heard.get('keys') or {})}")
    tell(f"  reason saved on journey {fourth_row.id[:8]}: {heard['reason']}")
    tell(f"  key 1 led to:     {' > '.join(fourth_row.path)}")
    tell(
        f"  new caller heard: {spoken(fresh['order'], fresh.get('keys') or {})}; key 1 led to: {' > '.join(new_row.path)}"
    )
    prefilled = [e for e in fourth_log if e["kind"] == "slot_prefilled"]
    if prefilled:
        tell("  call 4 accepted the account number offered from its history (not typed again)")
    check(heard["order"][0] == "pay_bill" and heard.get("reordered") is True, f"call 4 heard {heard['order']}")
    check(fourth_row.path[:2] == ["main_menu", "account"], f"call 4's key 1 led to {fourth_row.path}")
    check(fresh["order"] == FILE_ORDER, f"the new caller heard {fresh['order']}")
    check(new_row.path[:2] == ["main_menu", "outage_info"], f"the new caller's key 1 led to {new_row.path}")
    return f"call 4: {heard['order'][0]} first; new caller: {fresh['order'][0]} first"
