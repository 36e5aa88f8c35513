"""An agent at the desktop: the caller queues, the agent's browser paints the screen pop.

The agent signs in on the desktop's login page in a headless Chromium and presses Ready; their
softphone is the SIPp agent endpoint the tests use (REGISTERed to Asterisk, answering after a few
seconds of ringing). A caller on the lab's ``desk`` line says what they want, types the account
number and joins the billing queue; app_queue rings the agent (AMI AgentCalled) and the browser
paints the card before the phone is answered. The time from AgentCalled to painted is read from
the page (``window.__ivrPops``), the card's fields from the page itself.
"""

from __future__ import annotations

import asyncio
from typing import Any

from lab.browser import chromium
from lab.demo.registry import Tell, check, scene
from lab.demo.stack import AGENT, AGENT_ENDPOINT, DemoStack
from lab.desktop import desktop_login
from lab.flows import DESK_NUMBER
from lab.sipp import CallerScript, Dtmf, run_caller_async
from lab.softphone import Softphone
from lab.speech_audio import padded_speech

CALLER = "+15551240005"
ACCOUNT = "24681357"
RING_MS = 4000
WORDS = "I want to pay my bill."
FIELDS = ("name", "caller", "intent", "confidence", "transcript", "queue", "waited")


async def card_fields(page: Any) -> dict[str, str]:
    card = page.locator("#call")
    fields = {f: " ".join((await card.locator(f'[data-f="{f}"]').inner_text()).split()) for f in FIELDS}
    fields["path"] = " > ".join(await card.locator('[data-f="path"] li').all_inner_texts())
    rows = await card.locator('[data-f="slots"] tr').evaluate_all(
        "rows => rows.map(r => Array.from(r.cells, c => c.textContent).join(' '))"
    )
    fields["slots"] = "; ".join(rows)
    return fields


@scene(
    "desktop",
    "An agent gets the screen pop",
    "the card is painted before the agent answers",
    order=30,
)
async def desktop(stack: DemoStack, tell: Tell) -> str:
    lead = 1500  # into the menu prompt: the caller barges in by voice
    audio, speech_ms = padded_speech(WORDS, lead, stack.work_dir / "desk-caller.wav")
    key_at = lead + speech_ms + 4500  # after the decode, during the account prompt
    # the latest the call may last; it ends sooner, once the agent has noted it (hung up below)
    hangup = key_at + 8 * 250 + 1500 + RING_MS + 6000
    shot = stack.artifacts / "desktop-screen-pop.png"
    phone = Softphone(AGENT_ENDPOINT, stack.lab.agent_passwords[AGENT_ENDPOINT], ring_ms=RING_MS)
    tell(f"softphone {AGENT_ENDPOINT} (SIPp) registers with Asterisk; answers after {RING_MS} ms of ringing")
    async with phone, chromium() as browser:
        tell(f"agent {AGENT!r} signs in at {stack.web}/desktop/ in headless Chromium and presses Ready")
        page = await desktop_login(browser, stack.web, AGENT, stack.secrets.agent_password)
        tell(f'{CALLER} dials {DESK_NUMBER}, says "{WORDS}", types the account number, joins the billing queue')
        script = CallerScript(
            caller_id=CALLER,
            dialled=DESK_NUMBER,
            audio=audio,
            dtmf=(Dtmf(ACCOUNT, key_at),),
            max_call_ms=hangup,
        )
        call = asyncio.create_task(run_caller_async(script, timeout=hangup / 1000 + 30))
        try:
            await page.wait_for_selector("#call.ringing", timeout=key_at + 30000)
        except Exception as exc:
            result = tell.call_result(await call, "caller")
            check(False, f"no screen pop in the agent's browser ({type(exc).__name__}); caller SIP ok={result.ok}")
        await page.screenshot(path=str(shot), full_page=True)
        pops = await page.evaluate("window.__ivrPops")
        fields = await card_fields(page)
        tell(f"  screen pop painted; screenshot: {shot}")
        for name, value in fields.items():
            tell(f"    {name:11} {value}")
        took = (pops[0]["painted_at"] - pops[0]["called_at"]) * 1000
        tell(f"  AgentCalled -> painted: {took:.0f} ms (while the softphone was still ringing)")
        await page.wait_for_selector("#call.active", timeout=RING_MS + 15000)
        tell("  the softphone answered: the card is the active call; the agent notes a disposition")
        await page.fill("#call textarea[name=notes]", "Explained the bill; customer will pay online.")
        await page.select_option("#call select[name=disposition]", "resolved")
        hung_up = await asyncio.to_thread(stack.lab.hang_up_caller, CALLER)
        tell("  the caller hangs up")
        result = tell.call_result(await call, "caller")
        await page.wait_for_selector("#status[data-status=wrap_up]", timeout=15000)
        await page.click("#call button[name=save]")
        await page.wait_for_selector("#status[data-status=ready]", timeout=15000)
        tell("  wrap-up saved; the agent is ready again")
    check(hung_up > 0, "the caller's channel was gone before the hang-up")
    check(result.ok, "the caller's SIP call failed")
    check(len(pops) == 1, f"{len(pops)} pops painted")
    check(fields["path"] == "main_menu > account > to_billing", f"card path {fields['path']}")
    check(ACCOUNT in fields["slots"], f"card slots {fields['slots']}")
    check(fields["intent"] in ("billing", "pay"), f"card intent {fields['intent']}")
    check(0 <= took < RING_MS, f"painted {took:.0f} ms after AgentCalled, not within the ring")
    return f"painted {took:.0f} ms after AgentCalled, intent {fields['intent']}"
