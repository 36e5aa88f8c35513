"""A supervisor watches the wallboard: a caller joins the billing queue and shows up live.

The supervisor account is created the way an admin does it (``ivr agents add --role
supervisor``) and signs in at /supervisor/ in a headless Chromium. A caller on the lab's ``desk``
line keys option 1 and an account number and joins the billing queue; agent ann is signed in and
ready, but her softphone rings on without answering, so the caller waits. The board shows them with what the IVR learned (the intent) and only the last four
digits of their number. The caller gives up as soon as the board has shown them (their channel
hung up through AMI, not after a fixed wait): they leave the board, and today's figures (read
from the database every few seconds by the controller, not by the page) count the abandoned
call. The scene prints what the board showed and saves a screenshot.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import time

from playwright.async_api import expect

from lab.agents import add_agent
from lab.browser import chromium
from lab.demo.registry import Tell, check, scene
from lab.demo.stack import AGENT, AGENT_ENDPOINT, DemoStack
from lab.desktop import desktop_login
from lab.flows import DESK_MENU, DESK_NUMBER
from lab.sipp import CallerScript, Dtmf, run_caller_async
from lab.softphone import Softphone

SUPERVISOR = "sue"
CALLER = "+15551247788"
#: how long the caller would wait at most; they give up as soon as the board has shown them
IN_QUEUE_MS = 8000


@scene(
    "supervisor",
    "A supervisor watches the wallboard",
    "the waiting caller appears with their intent, masked, and leaves",
    order=50,
)
async def supervisor(stack: DemoStack, tell: Tell) -> str:
    password = secrets.token_urlsafe(12)
    tell(f"`ivr agents add {SUPERVISOR} --role supervisor` creates the supervisor's account")
    add_agent(stack.data_dir, SUPERVISOR, "", [], password, name="Sue Supervisor", role="supervisor")
    menu_key = stack.ms(DESK_MENU) // 2
    account_at = menu_key + 2500
    # the latest the caller gives up; they do sooner, once the board has shown them (below)
    hangup = account_at + 8 * 250 + 2000 + IN_QUEUE_MS
    shot = stack.artifacts / "wallboard.png"
    # rings longer than the caller waits: the caller stays in the queue until they give up
    phone = Softphone(AGENT_ENDPOINT, stack.lab.agent_passwords[AGENT_ENDPOINT], ring_ms=hangup + 30000)
    async with phone, chromium() as browser:
        tell(f"agent {AGENT!r} signs in and is ready; her softphone rings without answering")
        await desktop_login(browser, stack.web, AGENT, stack.secrets.agent_password)
        context = await browser.new_context(viewport={"width": 1280, "height": 1000})  # type: ignore[attr-defined]
        page = await context.new_page()
        tell(f"{SUPERVISOR!r} signs in at {stack.web}/supervisor/ in headless Chromium")
        await page.goto(f"{stack.web}/supervisor/login")
        await page.fill("#username", SUPERVISOR)
        await page.fill("#password", password)
        await page.click("#signin")
        await expect(page.locator("#status")).to_have_text("live", timeout=10000)
        await expect(page.locator("#abandoned")).to_have_text(re.compile(r"^\d+$"), timeout=10000)  # today read
        before = int(await page.inner_text("#abandoned"))
        tell(f"{CALLER} dials {DESK_NUMBER}, keys 1 and an account number, waits in billing, hangs up")
        script = CallerScript(
            caller_id=CALLER,
            dialled=DESK_NUMBER,
            dtmf=(Dtmf("1", menu_key), Dtmf("13572468", account_at)),
            max_call_ms=hangup,
        )
        call = asyncio.create_task(run_caller_async(script, timeout=hangup / 1000 + 30))
        row = page.locator("#callers tbody tr")
        try:
            await row.wait_for(timeout=account_at + 20000)
            await expect(row.locator("td").nth(3)).not_to_have_text("", timeout=3000)
        except Exception as exc:
            result = tell.call_result(await call, "caller")
            check(False, f"the caller never showed on the board ({type(exc).__name__}); caller SIP ok={result.ok}")
        seen = time.time()
        cells = await row.locator("td").all_inner_texts()
        billing = await page.locator("#queues tbody tr", has_text="billing").locator("td").all_inner_texts()
        await page.screenshot(path=str(shot), full_page=True)
        tell("  the board shows the caller waiting:")
        for name, value in zip(("caller", "queue", "waiting", "intent", "verified", "why"), cells, strict=False):
            tell(f"    {name:9} {value}")
        tell(f"    queue billing: waiting {billing[1]}, ready {billing[4]}, busy {billing[5]}, paused {billing[6]}")
        tell(f"  screenshot: {shot}")
        gave_up = await asyncio.to_thread(stack.lab.hang_up_caller, CALLER)
        await expect(page.locator("#callers tbody tr")).to_have_count(0, timeout=hangup + 10000)
        left = time.time() - seen
        tell(f"  the caller hung up after waiting: gone from the board ({left:.1f} s after they appeared)")
        result = tell.call_result(await call, "caller")
        await expect(page.locator("#abandoned")).to_have_text(str(before + 1), timeout=15000)
        totals = {k: await page.inner_text(f"#{k}") for k in ("offered", "handled", "abandoned", "service-level")}
        tell("  today: " + ", ".join(f"{k} {v}" for k, v in totals.items()))
    check(gave_up > 0, "the caller was no longer waiting in the queue when they were to give up")
    check(result.ok, "the caller's SIP call failed")
    check(cells[0] == "…" + CALLER[-4:], f"the board showed the number as {cells[0]!r}")
    check("5551247" not in " ".join(cells), "the full number reached the board")
    check(cells[1] == "billing", f"queue {cells[1]}")
    return f"caller shown as {cells[0]} in billing, intent {cells[3]!r}; abandoned today {totals['abandoned']}"
