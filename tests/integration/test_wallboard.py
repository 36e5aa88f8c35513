"""The wallboard end to end, all real: a supervisor signs in to /supervisor/ in Chromium; a SIPp
caller dials the lab Asterisk 22, keys option 1 and an account number in ``ivr serve``'s IVR and
joins the billing queue; the board shows them waiting (last four digits of the number, the
intent of the option they chose, the queue); agent1001's SIPp softphone answers after a few
seconds of ringing; the caller leaves the board and the billing queue's service level today turns
from a dash to 100% (answered within the 20 s target), read from the controller's KPI cache.

A screenshot of the board with the caller waiting is saved under ``$IVR_ARTIFACTS``.
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from playwright.async_api import expect

from lab.agents import add_agent
from lab.asterisk import AsteriskLab
from lab.browser import chromium
from lab.controller import ControllerProcess
from lab.desktop import desktop_login
from lab.flows import DESK_MENU as MENU
from lab.flows import DESK_NUMBER as NUMBER
from lab.flows import write_flows
from lab.prompts import prompt_ms as ms
from lab.sipp import CallerScript, Dtmf, run_caller_async
from lab.softphone import Softphone

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(os.environ.get("IVR_ARTIFACTS") or REPO / "tests" / "artifacts")
CALLER = "+15551234321"
RING_MS = 5000


def web_port(controller: ControllerProcess) -> int:
    controller.wait_for_log("HTTP API listening on")
    match = re.search(r"HTTP API listening on http://127\.0\.0\.1:(\d+)/", controller.log_path.read_text())
    assert match
    return int(match.group(1))


@pytest.fixture
def board(lab: AsteriskLab, tmp_path: Path) -> Iterator[ControllerProcess]:
    lab.restart()  # no queue members left by an earlier session decide who rings
    flows = write_flows(tmp_path / "flows", shipped=False, only=("desk.yaml",))
    data = tmp_path / "ivr"
    data.mkdir()
    add_agent(data, "ann", "agent1001", ["billing"], "ann-password-1", name="Ann Agent")
    add_agent(data, "sue", "", [], "sue-password-1", name="Sue Supervisor", role="supervisor")
    proc = ControllerProcess(
        flows_dir=flows,
        data_dir=data,
        env={
            "IVR_FLOWS_DEFAULT": "desk",
            "IVR_AMI_SECRET": lab.ami_secret,
            "IVR_SPEECH_ENGINE": "off",
            "IVR_SPEECH_SOUNDS_DIR": str(lab.sounds_dir),
        },
    )
    proc.start(timeout=60)
    proc.wait_for_log("AMI connected")
    yield proc
    proc.stop()
    lab.restart()  # the agent's queue membership must not outlive the test


@pytest.fixture
async def phone(lab: AsteriskLab) -> AsyncIterator[Softphone]:
    async with Softphone("agent1001", lab.agent_passwords["agent1001"], ring_ms=RING_MS) as softphone:
        yield softphone


@pytest.mark.requires("chromium")
async def test_a_supervisor_watches_a_real_caller_queue_and_leave_and_the_service_level_change(
    lab: AsteriskLab, board: ControllerProcess, phone: Softphone, prompt_ms: dict[str, int]
) -> None:
    base = f"http://127.0.0.1:{web_port(board)}"
    menu_key = ms(prompt_ms, MENU) // 2  # into the menu prompt: DTMF barges in
    account_at = menu_key + 2500  # during the account prompt
    hangup = account_at + 8 * 250 + 3000 + RING_MS + 4000
    ARTIFACTS.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240
    async with chromium() as browser:
        await desktop_login(browser, base, "ann", "ann-password-1")
        viewport = {"width": 1280, "height": 1000}
        context = await browser.new_context(viewport=viewport)  # type: ignore[attr-defined]
        page = await context.new_page()
        await page.goto(f"{base}/supervisor/login")
        await page.fill("#username", "sue")
        await page.fill("#password", "sue-password-1")
        await page.click("#signin")
        await expect(page.locator("#status")).to_have_text("live", timeout=10000)
        billing = page.locator("#queues tbody tr", has_text="billing")
        await expect(billing.locator("td").nth(3)).to_have_text("\N{EN DASH}", timeout=10000)  # nothing answered today
        await expect(page.locator("#offered")).to_have_text("0", timeout=10000)

        call = asyncio.create_task(
            run_caller_async(
                CallerScript(
                    caller_id=CALLER,
                    dialled=NUMBER,
                    dtmf=(Dtmf("1", menu_key), Dtmf("12345678", account_at)),
                    hangup_after_ms=hangup,
                    max_call_ms=hangup + 1000,
                ),
                timeout=hangup / 1000 + 30,
            )
        )
        waiting = page.locator("#callers tbody tr")
        await waiting.wait_for(timeout=30000)
        cells = await waiting.locator("td").all_inner_texts()
        assert cells[0] == "…4321" and cells[1] == "billing"
        await expect(billing.locator("td").nth(1)).to_have_text("1")
        # the IVR context arrives with the pop the ACD prepares on join: option 1's intent
        await expect(waiting.locator("td").nth(3)).to_have_text("billing", timeout=3000)
        # why they are here: the option they keyed, as the menu words it (not its intent again)
        await expect(waiting.locator("td").nth(5)).to_have_text("paying your bill")
        await page.screenshot(path=str(ARTIFACTS / "wallboard-caller-waiting.png"), full_page=True)
        assert "1234321" not in await page.content()

        await expect(page.locator("#callers tbody tr")).to_have_count(0, timeout=RING_MS + 10000)
        await expect(billing.locator("td").nth(1)).to_have_text("0")
        ann = page.locator("#agents tbody tr", has_text="Ann Agent")
        await expect(ann.locator("td").nth(3)).to_contain_text("call (billing)")
        # the KPI cache refreshes every few seconds: the answered call counts as within 20 s
        await expect(billing.locator("td").nth(3)).to_have_text("100%", timeout=20000)
        await expect(page.locator("#handled")).to_have_text("1", timeout=5000)
        await expect(page.locator("#service-level")).to_have_text("100%")
        (await call).raise_for_failure()
        await page.screenshot(path=str(ARTIFACTS / "wallboard-after-call.png"), full_page=True)
