"""A caller who presses the hand-off key: voice -> SMS link -> web chat, one journey.

On the shipped payments line the caller types the account number and presses 8; Kannel's fake
SMSC receives the text with the link; Chromium opens it; the chat shows the same menu with the
account number already there; the customer pays in the chat; the timeline (HTTP API, bearer
token) reads voice, then SMS, then chat.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

from lab.browser import chromium
from lab.demo.registry import Tell, check, scene
from lab.demo.stack import SMS_SENDER, DemoStack
from lab.sipp import CallerScript, Dtmf, run_caller_async

CALLER = "+15551240004"
ACCOUNT = "13572468"


@scene(
    "handoff",
    "A caller continues in the web chat",
    "SMS link, chat at pay_menu, account kept, paid",
    order=40,
)
async def handoff(stack: DemoStack, tell: Tell) -> str:
    kannel = stack.kannel
    assert kannel is not None
    account_at = stack.ms("Example Power payments.") + 400  # type-ahead into the account prompt
    press_8 = account_at + 8 * 250 + 1500  # during "How would you like to pay?"
    since = len(kannel.received())
    tell(f"{CALLER} dials {SMS_SENDER}, types the account number, presses 8 (continue by text message)")
    script = CallerScript(
        caller_id=CALLER,
        dialled=SMS_SENDER,
        dtmf=(Dtmf(ACCOUNT, account_at), Dtmf("8", press_8)),
        max_call_ms=press_8 + 20000,
    )
    call = asyncio.create_task(run_caller_async(script, timeout=press_8 / 1000 + 40))
    try:
        sms = await asyncio.to_thread(kannel.wait_for_sms, CALLER, since=since, timeout=press_8 / 1000 + 20)
    finally:
        result = tell.call_result(await call, "caller")
    tell(f"  the fake SMSC received, for {sms.receiver}: {sms.text!r}")
    link = re.search(r"(https?://\S+/c/[A-Za-z0-9_-]+)", sms.text)
    check(link is not None, f"no link in the text message {sms.text!r}")
    assert link is not None
    async with chromium() as browser:
        page: Any = await browser.new_page()  # type: ignore[attr-defined]
        tell("  Chromium opens the link")
        await page.goto(link[1])
        await page.wait_for_selector("body[data-ready='1']", state="attached", timeout=15000)
        step = await page.get_attribute("#question", "data-step")
        choices = await page.locator(".choice").all_inner_texts()
        account = (await page.inner_text("dd[data-slot='account_number']")).strip()
        tell(f"  chat at step {step}; choices {choices}; account number shown: {account}")
        check(step == "pay_menu", f"the chat opened at {step}")
        check(account.endswith(ACCOUNT[-4:]), f"the account shown is {account!r}")
        await page.click(".choice[data-option='card']")
        await page.wait_for_selector("#question[data-step='amount']", state="attached", timeout=10000)
        tell("  customer chooses card and types 42")
        await page.fill("#text", "42")
        await page.click("#free button")
        await page.wait_for_selector("#question[data-status='completed']", state="attached", timeout=10000)
        said = await page.locator("#log li").all_inner_texts()
        tell(f"  chat says: {said[-1] if said else '-'}")
    entries = await asyncio.to_thread(stack.timeline, CALLER)
    tell(f"  the customer's timeline (GET /api/customers/by-phone/{CALLER}/timeline):")
    for e in entries:
        tell(f"    {str(e['at'])[11:23]}  {e['channel']:5} {e['kind']:22} {e['step'] or ''}")
    channels = [e["channel"] for e in entries]
    order = list(dict.fromkeys(channels))  # each channel where it first appears
    check(result.ok, "the SIP call failed")
    check("chat" in channels and "sms" in channels and channels[0] == "voice", f"timeline channels {order}")
    check(set(channels[channels.index("chat") :]) == {"chat"}, f"timeline channels {order}")
    check(entries[-1]["kind"] == "journey_completed", f"the timeline ends with {entries[-1]['kind']}")
    return f"chat at {step}, …{ACCOUNT[-4:]} kept; {' > '.join(order)}"
