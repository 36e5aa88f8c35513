"""The agent desktop end to end, all real: SIPp caller -> Asterisk 22 -> IVR (spoken intent, keyed
account number) -> skill queue "billing" -> app_queue rings agent1001's SIPp softphone -> AMI
AgentCalled -> ``ivr serve``'s ACD -> Redis pub/sub -> websocket -> a real Chromium logged in as
that agent, which paints the screen pop BEFORE the softphone answers. Another agent's browser gets
nothing. Then Asterisk is restarted: the controller reconnects to AMI, rebuilds from QueueStatus,
puts the agent back in their queues, the desktop says it recovered, and a second call pops again.

A screenshot of the pop is saved under ``$IVR_ARTIFACTS`` (default tests/artifacts/).
"""

from __future__ import annotations

import asyncio
import os
import re
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from ivr.ami import events as ev
from ivr.ami.client import AmiClient
from ivr.store.customers import CustomerStore
from ivr.store.journeys import JourneyStore, make_engine
from lab.agents import add_agent
from lab.asterisk import AsteriskLab
from lab.browser import chromium
from lab.controller import ControllerProcess
from lab.desktop import desktop_login
from lab.flows import DESK_MENU as MENU
from lab.flows import DESK_NUMBER as NUMBER
from lab.flows import write_flows
from lab.prompts import prompt_ms as ms
from lab.redis import RedisServer, throwaway_redis
from lab.require import require
from lab.sipp import CallerScript, Dtmf, run_caller_async
from lab.softphone import Softphone
from lab.speech_audio import padded_speech

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(os.environ.get("IVR_ARTIFACTS") or REPO / "tests" / "artifacts")
CALLER = "+15551238001"
ACCOUNT = "12345678"
RING_MS = 4000


async def seed_customer(data_dir: Path) -> None:
    store = JourneyStore(make_engine(f"sqlite+aiosqlite:///{data_dir / 'ivr.sqlite3'}"))
    await store.start()
    try:
        await CustomerStore(store.engine).create(name="Dana Example", tier="gold", phones=[CALLER], verified=True)
    finally:
        await store.stop()


def web_port(controller: ControllerProcess) -> int:
    controller.wait_for_log("HTTP API listening on")
    match = re.search(r"HTTP API listening on http://127\.0\.0\.1:(\d+)/", controller.log_path.read_text())
    assert match
    return int(match.group(1))


@pytest.fixture(scope="module")
def redis() -> Iterator[RedisServer]:
    require("redis-server")
    with throwaway_redis() as server:
        yield server


@pytest.fixture
def desk(lab: AsteriskLab, tmp_path: Path, redis: RedisServer) -> Iterator[ControllerProcess]:
    # A fresh Asterisk (we hold the lab lock): queue members and device states left by an earlier
    # session's load must not decide who rings. The test restarts it once more mid-call anyway.
    lab.restart()
    flows = write_flows(tmp_path / "flows", shipped=False, only=("desk.yaml",))
    data = tmp_path / "ivr"
    data.mkdir()
    add_agent(data, "ann", "agent1001", ["billing"], "ann-password-1", name="Ann Agent")
    add_agent(data, "bob", "agent1002", ["support"], "bob-password-1", name="Bob Agent")
    asyncio.run(seed_customer(data))
    proc = ControllerProcess(
        flows_dir=flows,
        data_dir=data,
        env={
            "IVR_FLOWS_DEFAULT": "desk",
            "IVR_AMI_SECRET": lab.ami_secret,
            "IVR_PUBSUB_URL": redis.url,
            "IVR_SPEECH_ENGINE": "whisper",
            "IVR_SPEECH_SOUNDS_DIR": str(lab.sounds_dir),
        },
    )
    proc.start(timeout=60)
    proc.wait_for_log("AMI connected")
    yield proc
    proc.stop()
    lab.restart()  # the agents' queue memberships must not outlive the test


async def member_of(ami: AmiClient, queue: str, interface: str) -> ev.QueueMember | None:
    for item in await ami.queue_status(queue):
        if isinstance(item, ev.QueueMember) and item.interface == interface:
            return item
    return None


class AmiWatch:
    """The test's own AMI listener: when did Asterisk ring and connect the agent?"""

    def __init__(self, lab: AsteriskLab) -> None:
        self.ami = AmiClient(username=lab.ami_username, secret=lab.ami_secret, events=True)
        self.seen: list[ev.AmiEvent] = []

        async def keep(event: ev.AmiEvent) -> None:
            self.seen.append(event)

        self.ami.on_event(keep)

    async def first(self, kind: type[ev.AmiEvent], timeout: float = 60) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for event in self.seen:
                if isinstance(event, kind):
                    return event
            await asyncio.sleep(0.05)
        raise AssertionError(f"no {kind.__name__} within {timeout}s")


@pytest.fixture
async def phone(lab: AsteriskLab) -> AsyncIterator[Softphone]:
    async with Softphone("agent1001", lab.agent_passwords["agent1001"], ring_ms=RING_MS) as softphone:
        yield softphone


@pytest.mark.requires("chromium")
async def test_screen_pop_before_answer_only_for_that_agent_and_recovery_after_asterisk_restart(
    lab: AsteriskLab, desk: ControllerProcess, phone: Softphone, prompt_ms: dict[str, int], tmp_path: Path
) -> None:
    base = f"http://127.0.0.1:{web_port(desk)}"
    lead = 1500  # into the menu prompt: the caller barges in
    audio, speech_ms = padded_speech("I want to pay my bill.", lead, tmp_path / "caller.wav")
    key_at = lead + speech_ms + 4500  # after the decode, during the account prompt
    hangup = key_at + 8 * 250 + 1500 + RING_MS + 15000  # a bound: the test hangs up once the notes are in
    watch = AmiWatch(lab)
    await watch.ami.connect()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240
    async with chromium() as browser:
        ann = await desktop_login(browser, base, "ann", "ann-password-1")
        bob = await desktop_login(browser, base, "bob", "bob-password-1")
        member = await member_of(watch.ami, "billing", "PJSIP/agent1001")
        assert member is not None and not member.paused and member.penalty == 0
        assert await member_of(watch.ami, "billing", "PJSIP/agent1002") is None  # bob has no billing skill

        call = asyncio.create_task(
            run_caller_async(
                CallerScript(
                    caller_id=CALLER,
                    dialled=NUMBER,
                    audio=audio,
                    dtmf=(Dtmf(ACCOUNT, key_at),),
                    hangup_after_ms=hangup,
                    max_call_ms=hangup + 1000,
                ),
                timeout=hangup / 1000 + 30,
            )
        )
        await ann.wait_for_selector("#call.ringing", timeout=key_at + 30000)
        await ann.screenshot(path=str(ARTIFACTS / "desktop-screen-pop.png"), full_page=True)
        called = await watch.first(ev.AgentCalled)
        painted = await ann.evaluate("window.__ivrPops")
        assert len(painted) == 1 and painted[0]["called_at"] == pytest.approx(called.timestamp, abs=0.001)
        card = ann.locator("#call")
        assert await card.locator('[data-f="name"]').inner_text() == "Dana Example"
        assert await card.locator('[data-f="intent"]').inner_text() in ("billing", "pay")  # the pay_bill option's
        assert "pay my bill" in (await card.locator('[data-f="transcript"]').inner_text()).lower()
        assert "%" in await card.locator('[data-f="confidence"]').inner_text()
        assert await card.locator('[data-f="path"] li').all_inner_texts() == ["main_menu", "account", "to_billing"]
        slots = await card.locator('[data-f="slots"] tr').evaluate_all(
            "rows => rows.map(r => Array.from(r.cells, c => c.textContent))"
        )
        # Dana's identity is verified: the slot's third cell says so (not "unverified")
        assert ["account_number", ACCOUNT, "✔ verified"] in slots, slots
        assert "main_menu" in await card.locator('[data-f="menus"]').inner_text()

        connected = await watch.first(ev.AgentConnect, timeout=RING_MS / 1000 + 10)
        assert painted[0]["painted_at"] < connected.timestamp  # on screen before the agent answered
        await ann.wait_for_selector("#call.active")
        await ann.fill("#call textarea[name=notes]", "Customer asked about the last bill; explained the fees.")
        await ann.select_option("#call select[name=disposition]", "resolved")
        # the customer hangs up now that she has written her notes (their channel ended as their
        # BYE would end it), not at the bound of the caller's script
        await watch.ami.action({"Action": "Hangup", "Channel": connected.caller.name})
        result = await call
        result.raise_for_failure()
        await ann.wait_for_selector("#status[data-status=wrap_up]")
        await ann.click("#call button[name=save]")
        await ann.wait_for_selector("#status[data-status=ready]")

        assert await bob.evaluate("window.__ivrPops.length") == 0
        assert await bob.locator("#call.empty").count() == 1
        # the context travelled as channel variables, never in SIP headers to the agent's phone
        sip = (phone.workdir / "messages.log").read_text(errors="replace")
        assert "INVITE sip:agent1001" in sip and ACCOUNT not in sip and called.caller.journey_id not in sip

        journey = desk.wait_for_journey(lambda j: j["caller"] == CALLER)
        deadline = time.monotonic() + 10
        kinds: list[str] = []
        while time.monotonic() < deadline and "agent_disposition" not in kinds:
            kinds = [e["kind"] for e in desk.interactions(journey["id"])]
            await asyncio.sleep(0.2)
        assert "agent_connected" in kinds and "agent_disposition" in kinds
        disposition = next(e for e in desk.interactions(journey["id"]) if e["kind"] == "agent_disposition")
        assert disposition["data"]["disposition"] == "resolved" and "fees" in disposition["data"]["notes"]

        # --- Asterisk restarts mid-shift: memberships are gone (persistentmembers = no) ------------
        await watch.ami.stop()
        await asyncio.to_thread(lab.restart)
        await phone.restart()
        await ann.wait_for_selector("body[data-recovered=yes]", timeout=40000)
        await ann.wait_for_selector("#status[data-status=ready]")
        watch = AmiWatch(lab)
        await watch.ami.connect()
        member = await member_of(watch.ami, "billing", "PJSIP/agent1001")
        assert member is not None and not member.paused
        desk.wait_for_log("ACD state rebuilt from QueueStatus")

        # --- and calls pop again (keys only this time) ---------------------------------------------
        second = await run_caller_async(
            CallerScript(
                caller_id="+15551238002",
                dialled=NUMBER,
                dtmf=(Dtmf("1", 1500), Dtmf(ACCOUNT, 1500 + ms(prompt_ms, MENU) // 2 + 2500)),
                hangup_after_ms=1500 + ms(prompt_ms, MENU) // 2 + 2500 + 2000 + 1500 + RING_MS + 2000,
            ),
            timeout=60,
        )
        second.raise_for_failure()
        pops = await ann.evaluate("window.__ivrPops")
        assert len(pops) == 2
        assert await bob.evaluate("window.__ivrPops.length") == 0
    await watch.ami.stop()
