"""The flow studio end to end, all real: an admin signs in to /studio/ in Chromium, edits a flow,
sees the problem reported at its line, fixes it and publishes; a SIPp call to the lab Asterisk 22
runs the new version in ``ivr serve`` (its journey's path has the new step); one click rolls back,
and the next call runs the old version again.

A screenshot of the studio (diagram and editor) is saved under ``$IVR_ARTIFACTS``.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import expect

from lab.agents import add_agent
from lab.asterisk import AsteriskLab
from lab.browser import chromium
from lab.controller import ControllerProcess
from lab.sipp import CallerScript, run_caller_async
from tests.integration.test_wallboard import web_port

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(os.environ.get("IVR_ARTIFACTS") or REPO / "tests" / "artifacts")
NUMBER = "5550177"
# prompts the shipped flows have, so the lab has them rendered already
V1 = """\
flow: hotline
start: welcome
numbers: ["5550177"]
steps:
  welcome:
    say: Welcome to Example Power.
    next: bye
  bye:
    hangup: Thank you for calling Example Power. Goodbye.
"""
NEWS = "  news:\n    say: We are aware of outages in some areas and crews are working on them.\n    next: {target}\n"
BROKEN = V1.replace("next: bye", "next: news") + NEWS.format(target="nowhere")  # line 12
V2 = V1.replace("next: bye", "next: news") + NEWS.format(target="bye")


@pytest.fixture
def studio(lab: AsteriskLab, tmp_path: Path) -> Iterator[ControllerProcess]:
    flows = tmp_path / "flows"
    flows.mkdir()
    (flows / "hotline.yaml").write_text(V1)
    data = tmp_path / "ivr"
    data.mkdir()
    add_agent(data, "ada", "", [], "ada-password-1", name="Ada Admin", role="admin")
    proc = ControllerProcess(
        flows_dir=flows,
        data_dir=data,
        env={
            "IVR_FLOWS_DEFAULT": "hotline",
            "IVR_FLOWS_WATCH_INTERVAL": "3600",  # the studio's publish reloads, not the watcher
            "IVR_SPEECH_ENGINE": "off",
            "IVR_SPEECH_SOUNDS_DIR": str(lab.sounds_dir),
        },
    )
    proc.start(timeout=60)
    yield proc
    proc.stop()


async def call(controller: ControllerProcess, caller: str) -> dict[str, Any]:
    result = await run_caller_async(CallerScript(caller_id=caller, dialled=NUMBER, max_call_ms=30000), timeout=60)
    result.raise_for_failure()
    return await asyncio.to_thread(
        controller.wait_for_journey, lambda j: j["caller"] == caller and j["status"] != "active"
    )


@pytest.mark.requires("chromium")
async def test_an_admin_edits_publishes_and_rolls_back_and_calls_follow(
    lab: AsteriskLab, studio: ControllerProcess
) -> None:
    base = f"http://127.0.0.1:{web_port(studio)}"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240
    async with chromium() as browser:
        context = await browser.new_context(viewport={"width": 1400, "height": 1100})  # type: ignore[attr-defined]
        page = await context.new_page()
        await page.goto(f"{base}/studio/login")
        await page.fill("#username", "ada")
        await page.fill("#password", "ada-password-1")
        await page.click("#signin")
        await expect(page.locator("#flow-name")).to_have_text("hotline", timeout=10000)
        await expect(page.locator("#flows li[data-flow=hotline] .changed")).to_contain_text("changed on disk")
        v1 = (await page.locator("#version").inner_text()).split("(")[1].rstrip(")")

        await page.locator('#diagram g.step[data-step="bye"]').click()  # a step jumps to its YAML
        await expect(page.locator('#gutter div.current[data-line="8"]')).to_have_count(1)

        await page.fill("#yaml", BROKEN)
        bad = page.locator('#gutter div.bad[data-line="12"]')
        await expect(bad).to_have_count(1, timeout=5000)
        await expect(page.locator("#problems li")).to_have_text(
            ["hotline.yaml:12: news: next step 'nowhere' does not exist"]
        )
        await page.click("#publish")  # refused: nothing is written
        await expect(page.locator("#status")).to_contain_text("not published")
        assert (studio.flows_dir / "hotline.yaml").read_text() == V1

        await page.fill("#yaml", V2)
        await expect(page.locator("#problems li")).to_have_count(0, timeout=5000)
        await expect(page.locator('#diagram g.step[data-step="news"]')).to_have_count(1)
        await page.click("#publish")
        await expect(page.locator("#status")).to_have_text("published: version 2", timeout=10000)
        v2 = (await page.locator("#version").inner_text()).split("(")[1].rstrip(")")
        await page.screenshot(path=str(ARTIFACTS / "studio-published.png"), full_page=True)

        journey = await call(studio, "+15551237001")
        assert journey["version"] == v2 and journey["path"] == ["welcome", "news", "bye"]

        await page.locator('#history tr[data-number="1"] button.rollback').click()
        await expect(page.locator("#status")).to_have_text("rolled back to 1: version 3", timeout=10000)
        assert (studio.flows_dir / "hotline.yaml").read_text() == V1
        await expect(page.locator("#audit li").first).to_contain_text("ada rollback v3")

        journey = await call(studio, "+15551237002")
        assert journey["version"] == v1 and journey["path"] == ["welcome", "bye"]
