"""The flow studio end to end, all real: an admin signs in to /studio/ in Chromium, edits a flow,
sees the problem reported at its line, fixes it and publishes; a SIPp call to the lab Asterisk 22
runs the new version in ``ivr serve`` (its journey's path has the new step); one click rolls back,
and the next call runs the old version again.

Bad input against the same live controller (a path in a flow name, a 10 MB body, an alias bomb,
two publishes from one base) gets a clear 4xx, never a 500, and the next call is unaffected.

A screenshot of the studio (diagram and editor) is saved under ``$IVR_ARTIFACTS``.
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
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


@pytest.fixture(scope="module")
def studio(lab: AsteriskLab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControllerProcess]:
    tmp_path = tmp_path_factory.mktemp("studio")
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
        # the live funnel counts that call at each step it ran: on the node and in the table
        await page.select_option("#funnel-window", "7d")
        badge = page.locator('#diagram g.step[data-step="news"] .funnel-badge text')
        await expect(badge).to_have_text("1 in", timeout=10000)
        await expect(page.locator('#funnel tr[data-step="news"] td').nth(1)).to_have_text("1")
        await page.screenshot(path=str(ARTIFACTS / "studio-funnel.png"), full_page=True)

        await page.locator('#history tr[data-number="1"] button.rollback').click()
        await expect(page.locator("#status")).to_have_text("rolled back to 1: version 3", timeout=10000)
        assert (studio.flows_dir / "hotline.yaml").read_text() == V1
        await expect(page.locator("#audit li").first).to_contain_text("ada rollback v3")

        journey = await call(studio, "+15551237002")
        assert journey["version"] == v1 and journey["path"] == ["welcome", "bye"]


async def admin_session(base: str) -> tuple[aiohttp.ClientSession, str]:
    client = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
    form = await (await client.get(f"{base}/studio/login")).text()
    match = re.search(r'name="csrf" value="([^"]+)"', form)
    assert match
    await client.post(
        f"{base}/studio/login", data={"username": "ada", "password": "ada-password-1", "csrf": match.group(1)}
    )
    me = await (await client.get(f"{base}/studio/api/me")).json()
    return client, str(me["csrf"])


async def test_bad_input_is_a_clear_4xx_and_calls_go_on(lab: AsteriskLab, studio: ControllerProcess) -> None:
    base = f"http://127.0.0.1:{web_port(studio)}"
    client, csrf = await admin_session(base)
    headers = {"X-CSRF-Token": csrf}
    url = f"{base}/studio/api/flows/hotline"
    async with client:
        current = await (await client.get(url)).json()
        for path in ("..%2F..%2Fetc%2Fpasswd", "%2E%2E", "Hotline", ".hotline"):
            async with client.get(f"{base}/studio/api/flows/{path}") as reply:
                assert reply.status in (400, 404), path
        for name in ("../hotline", "/tmp/x", "a/b"):
            async with client.post(
                f"{base}/studio/api/check", json={"name": name, "text": V1}, headers=headers
            ) as reply:
                assert reply.status == 400
        huge = b'{"text": "' + b"x" * 10_000_000 + b'", "base": ""}'
        async with client.post(
            f"{url}/publish", data=huge, headers={**headers, "Content-Type": "application/json"}
        ) as reply:
            assert reply.status == 413
        anchors = ["&a [x, x, x, x, x, x, x, x, x]"] + [
            f"&{chr(98 + i)} [{', '.join([f'*{chr(97 + i)}'] * 9)}]" for i in range(7)
        ]
        bomb = "flow: hotline\nstart: s\ndescription: [" + ", ".join(anchors) + "]\nsteps:\n  s: {say: Hi.}\n"
        async with client.post(
            f"{base}/studio/api/check", json={"name": "hotline", "text": bomb}, headers=headers
        ) as reply:
            assert reply.status == 200
            assert "expand to more than" in (await reply.json())["problems"][0]["message"]

        async def publish(text: str) -> tuple[int, dict[str, Any]]:
            body = {"text": text, "base": current["version"]}
            async with client.post(f"{url}/publish", json=body, headers=headers) as reply:
                return reply.status, await reply.json()

        first, second = await asyncio.gather(publish(V2), publish(V2 + "# another admin's edit\n"))
        assert sorted([first[0], second[0]]) == [200, 409]
        won = first if first[0] == 200 else second
    journey = await call(studio, "+15551237003")
    assert journey["version"] == won[1]["version"]
    log = studio.log_tail(2000)
    assert "Error handling request" not in log and "Traceback" not in log
