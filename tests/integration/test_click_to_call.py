"""Click-to-call and the keyboard on the agent desktop, all real: ``ivr serve`` with AMI to the lab
Asterisk 22, a Chromium desktop at 1280x720, the agent's SIPp softphone (lab/softphone.py) and a
SIPp UAS behind the trunk as the customer's phone.

The agent types the number of a known customer (allowed by ``outbound.typed_prefixes``): the card
pops with the customer's history in words and the call on it; the agent's phone rings first and
answers, then the customer's phone receives the call showing ``outbound.caller_id``. After it, the
agent calls again from a line of that card's timeline. A number that is neither the card's nor
allowed is refused with the reason on the page, and nothing rings. Keys pressed in the page act
(``r`` makes the agent ready) and do nothing while the agent types in a field.

One ``ivr serve`` for the module (speech off: no call here goes through the IVR).
"""

from __future__ import annotations

import asyncio
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ivr.ami import events as ev
from ivr.ami.client import AmiClient
from ivr.flow.model import Interaction, Journey
from ivr.store.customers import CustomerStore
from ivr.store.journeys import JourneyStore, make_engine
from lab.agents import add_agent
from lab.asterisk import AsteriskLab
from lab.browser import chromium
from lab.controller import ControllerProcess
from lab.flows import write_flows
from lab.softphone import Softphone

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(os.environ.get("IVR_ARTIFACTS") or REPO / "tests" / "artifacts")
DANA = "+15551238101"
CENTRE = "+15550108000"
#: 10:41:05 and 10:42:30 UTC on 3 December 2026: 11:41 and 11:42 in Paris, the deployment's zone
EARLIER = 1796294465.0


async def seed(data_dir: Path) -> None:
    """Dana, and an earlier contact of hers: a spoken menu choice, a link texted and opened."""
    store = JourneyStore(make_engine(f"sqlite+aiosqlite:///{data_dir / 'ivr.sqlite3'}"))
    await store.start()
    try:
        customer = await CustomerStore(store.engine).create(name="Dana Example", phones=[DANA], verified=True)
        journey = Journey(id="j-earlier", flow="desk", version="1", channel="voice", caller=DANA)
        journey.customer_id = customer
        chosen = {"option": "pay_bill", "label": "paying your bill", "mode": "speech", "confidence": 0.99}
        store.save(
            journey,
            [
                Interaction("step_entered", "main_menu", {"kind": "menu"}, EARLIER),
                Interaction("option_chosen", "main_menu", chosen, EARLIER + 1),
                Interaction("handed_off", "text_me", {"to": "chat", "via": "sms"}, EARLIER + 2),
                Interaction("link_opened", "text_me", {"to": "chat"}, EARLIER + 85),
            ],
        )
        await store.flush()
    finally:
        await store.stop()


LOG: list[Path] = []


def controller_log() -> str:
    return LOG[0].read_text(errors="replace")[-4000:] if LOG and LOG[0].exists() else ""


def web_port(controller: ControllerProcess) -> int:
    controller.wait_for_log("HTTP API listening on")
    match = re.search(r"HTTP API listening on http://127\.0\.0\.1:(\d+)/", controller.log_path.read_text())
    assert match
    return int(match.group(1))


@pytest.fixture(scope="module")
def customer_phone() -> Iterator[Softphone]:
    phone = Softphone("customer", ring_ms=300, register=False)
    yield phone
    phone.close()


@pytest.fixture(scope="module")
def desk(lab: AsteriskLab, tmp_path_factory: pytest.TempPathFactory, customer_phone: Softphone) -> Iterator[str]:
    # A fresh Asterisk on this checkout's config (we hold the lab lock): one left running by an
    # earlier session may have another dialplan, without [ivr-outbound]
    lab.restart()
    data = tmp_path_factory.mktemp("ivr")
    flows = write_flows(tmp_path_factory.mktemp("flows") / "flows", shipped=False, only=("desk.yaml",))
    add_agent(data, "ann", "agent1001", ["billing"], "ann-password-1", name="Ann Agent")
    asyncio.run(seed(data))
    proc = ControllerProcess(
        flows_dir=flows,
        data_dir=data,
        env={
            "IVR_FLOWS_DEFAULT": "desk",
            "IVR_AMI_SECRET": lab.ami_secret,
            "IVR_SPEECH_ENGINE": "off",
            "IVR_DESKTOP_TIMEZONE": "Europe/Paris",
            "IVR_OUTBOUND_CALLER_ID": CENTRE,
            "IVR_OUTBOUND_TYPED_PREFIXES": "1555123",
            # the lab has no carrier: the trunk endpoint dials the customer's SIPp directly
            "IVR_OUTBOUND_DIAL": f"PJSIP/trunk/sip:{{number}}@127.0.0.1:{customer_phone.port}",
        },
    )
    LOG[:] = [proc.log_path]
    proc.start(timeout=30)
    proc.wait_for_log("AMI connected")
    try:
        yield f"http://127.0.0.1:{web_port(proc)}"
    finally:
        proc.stop()
        lab.restart()  # the agent's queue memberships must not outlive the module


async def sign_in(browser: Any, base: str) -> Any:
    context = await browser.new_context(viewport={"width": 1280, "height": 720})
    page = await context.new_page()
    await page.goto(f"{base}/desktop/login")
    await page.fill("#username", "ann")
    await page.fill("#password", "ann-password-1")
    await page.click("#signin")
    await page.wait_for_url(f"{base}/desktop/")
    await page.wait_for_selector("#status[data-status=paused]")
    return page


class Watch:
    def __init__(self, lab: AsteriskLab) -> None:
        self.ami = AmiClient(username=lab.ami_username, secret=lab.ami_secret, events=True)
        self.seen: list[ev.AmiEvent] = []

        async def keep(event: ev.AmiEvent) -> None:
            self.seen.append(event)

        self.ami.on_event(keep)

    async def answered_dial(self, after: int, timeout: float = 20) -> ev.DialEnd:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for event in self.seen[after:]:
                if isinstance(event, ev.DialEnd) and event.channel.name.startswith("PJSIP/agent1001-"):
                    return event
            await asyncio.sleep(0.05)
        raise AssertionError("the agent's leg never dialled the customer")


def invites_from(phone: Softphone) -> list[str]:
    """The From header of every INVITE the customer's phone received."""
    log = (
        (phone.workdir / "messages.log").read_text(errors="replace")
        if (phone.workdir / "messages.log").exists()
        else ""
    )
    return re.findall(r"^INVITE sip:.*?^From:\s*(.*?)$", log, re.MULTILINE | re.DOTALL)


@pytest.mark.requires("chromium")
async def test_keys_act_but_not_while_typing_and_a_number_not_allowed_is_refused(
    lab: AsteriskLab, desk: str, customer_phone: Softphone
) -> None:
    async with chromium() as browser:
        page = await sign_in(browser, desk)
        await page.keyboard.press("?")
        assert await page.locator("#help").is_visible()
        assert "Ready" in await page.locator("#help-keys").inner_text()
        await page.keyboard.press("Escape")
        await page.keyboard.press("r")  # Ready by keyboard
        await page.wait_for_selector("#status[data-status=ready]")
        await page.keyboard.press("p")
        await page.wait_for_selector("#status[data-status=paused]")
        await page.click("#dial-number")
        await page.keyboard.type("+44 20 7946 0018")  # an "r" typed here would be text, not Ready
        await page.keyboard.press("r")
        await page.keyboard.press("Backspace")
        await page.keyboard.press("Enter")
        await page.wait_for_selector("#notice:not(:empty)")
        notice = await page.locator("#notice").inner_text()
        assert notice == "+442079460018 is not this customer's number, nor one you may dial (+1555123…)", notice
        assert await page.locator("#status").get_attribute("data-status") == "paused"
        assert await page.locator("#status").get_attribute("role") == "status"
        assert await page.locator("#announce").get_attribute("aria-live") == "assertive"
        # usable at 1280x720: nothing wider than the window
        assert await page.evaluate("document.documentElement.scrollWidth") <= 1280
    assert customer_phone.invites() == 0


@pytest.mark.requires("chromium")
async def test_click_to_call_rings_the_agent_then_the_customer_with_the_centres_caller_id(
    lab: AsteriskLab, desk: str, customer_phone: Softphone
) -> None:
    watch = Watch(lab)
    await watch.ami.connect()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240
    agent_phone = Softphone("agent1001", lab.agent_passwords["agent1001"], ring_ms=300)
    try:
        async with customer_phone, agent_phone, chromium() as browser:
            page = await sign_in(browser, desk)
            await page.fill("#dial-number", DANA)
            mark = len(watch.seen)
            await page.click("#dial button[type=submit]")
            card = page.locator("#call")
            try:
                await page.wait_for_selector("#call[data-direction=outbound]")
            except Exception as exc:  # say what the page and the controller said
                notice = await page.locator("#notice").inner_text()
                raise AssertionError(f"no outbound card; page says {notice!r}\n{controller_log()}") from exc
            assert await card.locator('[data-f="name"]').inner_text() == "Dana Example"
            lines = await card.locator('[data-f="timeline"] li .words').all_inner_texts()
            assert lines == [
                f"Ann Agent called the customer at {DANA}",
                "Texted a link at 11:41; continued in chat at 11:42",
                "Chose 'paying your bill' by speech, 99%",
            ], lines
            hover = await card.locator('[data-f="timeline"] li').nth(1).get_attribute("title")
            assert hover is not None and "handed_off" in hover and "link_opened" in hover
            assert await page.locator("#announce").inner_text() == "Calling Dana Example"

            dialled = await watch.answered_dial(mark)  # the agent answered; their leg dialled the customer
            assert dialled.status == "ANSWER"
            await page.wait_for_selector("#call.active")
            assert await page.locator("#status").get_attribute("data-status") == "on_call"
            assert len(invites_from(customer_phone)) == 1 and CENTRE in invites_from(customer_phone)[0]
            await page.screenshot(path=str(ARTIFACTS / "desktop-click-to-call-1280x720.png"))
            await watch.ami.action({"Action": "Hangup", "Channel": dialled.channel.name})
            await page.wait_for_selector("#status[data-status=wrap_up]")

            # again, from a line of the card's timeline: the card's customer, the card's journey
            mark = len(watch.seen)
            await card.locator('[data-f="timeline"] li .call-from-line').first.click()
            await page.wait_for_selector("#status[data-status=on_call]", timeout=20000)
            second = await watch.answered_dial(mark)
            assert len(invites_from(customer_phone)) == 2
            await watch.ami.action({"Action": "Hangup", "Channel": second.channel.name})
            await page.wait_for_selector("#status[data-status=wrap_up]")
    finally:
        await watch.ami.stop()
        agent_phone.close()
