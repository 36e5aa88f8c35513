"""An admin changes a flow in the studio, and the next call follows; then rolls it back.

The admin account is created the way an admin does it (``ivr agents add --role admin``) and
signs in at /studio/ in a headless Chromium. On the lab's ``history`` line the admin puts a news
announcement before the menu, first with a typo in the step it goes to (the studio reports it at
its line, and refuses to publish), then fixed; publishes; a caller dials and the journey runs the
new version, news first. One click on the first version rolls back, and the next caller goes
straight to the menu again. The scene saves a screenshot of the diagram and the editor.
"""

from __future__ import annotations

import secrets

from playwright.async_api import expect

from lab.agents import add_agent
from lab.browser import chromium
from lab.demo.registry import Tell, check, scene
from lab.demo.stack import DemoStack
from lab.flows import HISTORY_NUMBER
from lab.sipp import CallerScript, run_caller_async

ADMIN = "ada"
NEWS = "  news:\n    say: We are aware of outages in some areas and crews are working on them.\n    next: {target}\n"


async def _call(stack: DemoStack, tell: Tell, caller: str) -> tuple[str, list[str]]:
    """(version, path) of the journey of one call that hangs up after a few seconds: the version
    and the first step are fixed when the flow starts, within the first second; three seconds
    leave room on a busy machine (test_containers' hang-up calls show the same)."""
    script = CallerScript(caller_id=caller, dialled=HISTORY_NUMBER, hangup_after_ms=3000, max_call_ms=4000)
    tell.call_result(await run_caller_async(script, timeout=40), "caller")
    row = await stack.wait_journey(lambda j: j.caller == caller and j.status != "active")
    journey, _ = await stack.journey(row.id)
    return str(journey["version"]), row.path


@scene(
    "studio",
    "An admin edits, publishes and rolls back a flow in the studio",
    "a problem shown at its line; the fix published and taken by the next call; rolled back in one click",
    order=60,
)
async def studio(stack: DemoStack, tell: Tell) -> str:
    password = secrets.token_urlsafe(12)
    tell(f"`ivr agents add {ADMIN} --role admin` creates the admin's account")
    add_agent(stack.data_dir, ADMIN, "", [], password, name="Ada Admin", role="admin")
    shot = stack.artifacts / "studio.png"
    async with chromium() as browser:
        context = await browser.new_context(viewport={"width": 1400, "height": 1100})  # type: ignore[attr-defined]
        page = await context.new_page()
        tell(f"{ADMIN!r} signs in at {stack.web}/studio/ and opens the history line's flow")
        await page.goto(f"{stack.web}/studio/login")
        await page.fill("#username", ADMIN)
        await page.fill("#password", password)
        await page.click("#signin")
        await expect(page.locator("#flow-name")).not_to_have_text("", timeout=10000)
        await page.locator("#flows li[data-flow=history]").click()
        await expect(page.locator("#flow-name")).to_have_text("history", timeout=10000)
        steps = await page.locator("#diagram g.step").count()
        tell(f"the diagram is drawn on the server: {steps} steps, each clickable to its YAML")
        original = await page.input_value("#yaml")
        v1 = (await page.inner_text("#version")).split("(")[1].rstrip(")")

        with_news = original.replace("start: main_menu", "start: news")
        await page.fill("#yaml", with_news + NEWS.format(target="main_mneu"))
        problem = page.locator("#problems li")
        await expect(problem).to_have_count(1, timeout=5000)
        text = await problem.inner_text()
        line = await page.locator("#gutter div.bad").get_attribute("data-line")
        tell(f"a typo is reported as the admin types, at line {line}: {text}")
        check("main_mneu" in text, f"the typo was not reported: {text!r}")

        await page.fill("#yaml", with_news + NEWS.format(target="main_menu"))
        await expect(problem).to_have_count(0, timeout=5000)
        await page.click("#publish")
        await expect(page.locator("#status")).to_contain_text("published: version", timeout=10000)
        v2 = (await page.inner_text("#version")).split("(")[1].rstrip(")")
        tell(f"published {v2} (was {v1}); the controller reloaded it")
        await page.screenshot(path=str(shot), full_page=True)

        version, path = await _call(stack, tell, "+15551250001")
        tell(f"the next call runs {version}: {' > '.join(path)}")
        check(version == v2 and path[:1] == ["news"], f"the call did not take the new version: {version} {path}")

        first = page.locator("#history tbody tr").last
        await first.locator("button.rollback").click()
        await expect(page.locator("#status")).to_contain_text("rolled back to", timeout=10000)
        audit = await page.locator("#audit li").first.inner_text()
        tell(f"rolled back in one click; audit: {audit}")
        version, path = await _call(stack, tell, "+15551250002")
        tell(f"the next call runs {version}: {' > '.join(path)}")
        check(version == v1 and path[:1] == ["main_menu"], f"the call did not take the old version: {version} {path}")
    return f"published, called, rolled back; screenshot {shot}"
