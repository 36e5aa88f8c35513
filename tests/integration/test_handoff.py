"""Switching channels end to end with real parts: Asterisk + SIPp (voice), Kannel + fakesmsc (SMS), Chromium (chat).

A caller enters an account number, presses 8 at the payment menu; the fake SMSC receives the text
with the link; a real Chromium opens it, sees the same menu with the account number already there,
pays, and the timeline shows the voice part, then the chat part, of one journey. The same link is
then refused (single use), and forged / tampered / expired links get the refusal page.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import secrets
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ivr.ami.client import AmiClient, AmiError
from ivr.channels.handoff import TokenCodec, new_continuation_id
from lab.agents import add_agent
from lab.asterisk import AsteriskLab
from lab.browser import chromium
from lab.controller import ControllerProcess
from lab.desktop import desktop_login
from lab.kannel import KannelLab, free_port
from lab.prompts import prompt_ms as ms
from lab.sipp import CallerScript, Dtmf, run_caller_async
from lab.softphone import Softphone

REPO = Path(__file__).resolve().parents[2]
CALLER = "+15551236001"
ACCOUNT = "12345678"

pytestmark = pytest.mark.requires("kannel")


class Stack:
    def __init__(
        self,
        controller: ControllerProcess,
        kannel: KannelLab,
        web_port: int,
        secret: str,
        api: str,
        phone: Softphone,
        lab: AsteriskLab,
    ):
        self.phone = phone  # the customer's phone that "call me now" rings
        self.lab = lab
        self.controller = controller
        self.kannel = kannel
        self.web = f"http://127.0.0.1:{web_port}"
        self.secret = secret
        self.api = api

    def timeline(self, phone: str) -> list[dict[str, Any]]:
        request = urllib.request.Request(
            f"{self.web}/api/customers/by-phone/{phone}/timeline?limit=200",
            headers={"Authorization": f"Bearer {self.api}"},
        )
        with urllib.request.urlopen(request, timeout=5) as reply:
            return list(json.load(reply)["entries"])


@pytest.fixture(scope="module")
def stack(lab: AsteriskLab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    web_port = free_port()
    inbound = secrets.token_urlsafe(16)
    secret = secrets.token_urlsafe(24)
    api = secrets.token_urlsafe(16)
    get_url = f"http://127.0.0.1:{web_port}/sms/kannel/mo?key={inbound}&from=%p&to=%P&text=%a"
    kannel = KannelLab(get_url=get_url)
    kannel.start()
    phone = Softphone("customer", register=False, ring_ms=300)
    controller = ControllerProcess(
        flows_dir=REPO / "dialplans",
        data_dir=tmp_path_factory.mktemp("handoff"),
        env={
            "IVR_SPEECH_SOUNDS_DIR": str(lab.sounds_dir),
            "IVR_SPEECH_ENGINE": "off",
            "IVR_WEB_PORT": str(web_port),
            "IVR_API_TOKEN": api,
            "IVR_HANDOFF_SECRET": secret,
            "IVR_HANDOFF_TTL": "600",
            "IVR_SMS_PROVIDER": "kannel",
            "IVR_SMS_KANNEL_URL": kannel.sendsms_url,
            "IVR_SMS_KANNEL_USERNAME": kannel.username,
            "IVR_SMS_KANNEL_PASSWORD": kannel.password,
            "IVR_SMS_INBOUND_TOKEN": inbound,
            "IVR_SMS_SENDER": "5550200",
            "IVR_AMI_SECRET": lab.ami_secret,
            "IVR_CALLBACKS_DIAL": f"PJSIP/lab/sip:{{number}}@127.0.0.1:{phone.port}",
        },
    )
    controller.start()
    try:
        yield Stack(controller, kannel, web_port, secret, api, phone, lab)
    finally:
        controller.stop()
        kannel.cleanup()
        phone.close()
        lab.restart()  # the agents' queue memberships from the desktop must not outlive this module


def tamper(token: str, at: int = 20) -> str:
    """One character changed in the middle of the signed payload."""
    return token[:at] + ("B" if token[at] != "B" else "C") + token[at + 1 :]


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as reply:
            return reply.status, reply.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


@pytest.mark.requires("chromium")
def test_call_hands_off_to_chat_by_sms_and_chat_finishes_the_flow(stack: Stack, prompt_ms: dict[str, int]) -> None:
    account_at = ms(prompt_ms, "Example Power payments.") + 400  # type-ahead into the account prompt
    press_8 = account_at + 8 * 250 + 1500  # during "How would you like to pay?"
    sent_before = len(stack.kannel.received())

    async def scenario() -> str:
        call = asyncio.create_task(
            run_caller_async(
                CallerScript(
                    caller_id=CALLER,
                    dialled="5550200",
                    dtmf=(Dtmf(ACCOUNT, account_at), Dtmf("8", press_8)),
                    max_call_ms=press_8 + 20000,
                )
            )
        )
        sms = await asyncio.to_thread(stack.kannel.wait_for_sms, CALLER, since=sent_before, timeout=press_8 / 1000 + 15)
        result = await call
        result.raise_for_failure()
        assert result.who_hung_up == "ivr"
        return sms.text

    text = asyncio.run(scenario())
    assert ACCOUNT not in text and CALLER not in text  # no personal data in the message or link
    link = re.search(r"(http://\S+/c/[A-Za-z0-9_-]+)", text)
    assert link, text
    journey = stack.controller.wait_for_journey(lambda j: j["caller"] == CALLER and j["status"] == "handed_off")
    assert journey["step"] == "pay_menu" and journey["slots"] == {"account_number": ACCOUNT}

    async def browse() -> None:
        async with chromium() as browser:
            page = await browser.new_page()  # type: ignore[attr-defined]
            await page.goto(link[1])
            await page.wait_for_selector("body[data-ready='1']", state="attached", timeout=10000)
            # the same step, the same options (8 is not offered again in chat), the slot kept
            assert await page.get_attribute("#question", "data-step") == "pay_menu"
            labels = await page.locator(".choice").all_inner_texts()
            assert labels == ["1. paying by card", "0. talking to an agent"]
            assert (await page.inner_text("dd[data-slot='account_number']")).endswith("5678")
            await page.click(".choice[data-option='card']")
            await page.wait_for_selector("#question[data-step='amount']", state="attached", timeout=10000)
            await page.fill("#text", "42")
            await page.click("#free button")
            await page.wait_for_selector("#question[data-status='completed']", state="attached", timeout=10000)
            log = await page.locator("#log li").all_inner_texts()
            assert "Thank you. Your payment is scheduled." in log
            # the link is used: the same link again is refused, with no data on the page
            refused = await browser.new_page()  # type: ignore[attr-defined]
            reply = await refused.goto(link[1])
            assert reply.status == 410
            body = await refused.inner_text("body")
            assert "already been used" in body and "5678" not in body and "pay" not in body.lower()

    asyncio.run(browse())
    done = stack.controller.wait_for_journey(lambda j: j["id"] == journey["id"] and j["status"] == "completed")
    assert done["channel"] == "chat" and done["slots"]["amount"] == "42"
    entries = list(reversed(stack.timeline(CALLER)))  # oldest first
    channels = [e["channel"] for e in entries if e["journey_id"] == journey["id"]]
    first_chat = channels.index("chat")
    # voice, the text message with the link (sent, delivery reports), then chat
    assert set(channels[:first_chat]) == {"voice", "sms"} and set(channels[first_chat:]) == {"chat"}
    assert channels[0] == "voice"
    sms = [e["kind"] for e in entries if e["journey_id"] == journey["id"] and e["channel"] == "sms"]
    assert sms[0] == "sms_sent" and "sms_delivery" in sms  # Kannel's delivery report reached us
    kinds = [e["kind"] for e in entries if e["journey_id"] == journey["id"]]
    assert "handed_off" in kinds and "channel_changed" in kinds and kinds[-1] == "journey_completed"
    assert kinds.count("slot_filled") == 2  # the account number was never asked again


def test_bad_links_are_refused_with_no_data(stack: Stack) -> None:
    codec = TokenCodec(stack.secret)
    other = TokenCodec("another-secret-of-enough-length")
    cases = {
        "forged": other.issue(new_continuation_id(), None, time.time() + 600),
        "tampered": tamper(codec.issue(new_continuation_id(), None, time.time() + 600)),
        "expired": codec.issue(new_continuation_id(), None, time.time() - 1),
        "unknown": codec.issue(new_continuation_id(), None, time.time() + 600),  # well signed, no such row
        "garbage": "not-a-token",
    }
    for name, token in cases.items():
        status, body = _get(f"{stack.web}/c/{token}")
        assert status in (403, 410), (name, status)
        assert "not valid" in body or "expired" in body, (name, body)
        assert "journey" not in body.lower() and "step" not in body.lower()
        # a POST (the claim) is refused the same way
        request = urllib.request.Request(f"{stack.web}/c/{token}", data=b"", method="POST")
        try:
            urllib.request.urlopen(request, timeout=5)
            raise AssertionError(f"{name}: claim accepted")
        except urllib.error.HTTPError as exc:
            assert exc.code in (403, 410), (name, exc.code)
    status, _ = _get(f"{stack.web}/chat/api/state")
    assert status == 401  # no session cookie: no data


def test_an_sms_only_journey_is_advanced_by_replies_through_kannel(stack: Stack) -> None:
    phone = "+15551237001"
    since = len(stack.kannel.received())
    stack.kannel.send_mo(phone, "5550100", "hello")
    first = stack.kannel.wait_for_sms(phone, since=since, timeout=15)
    assert "Welcome to Example Power." in first.text and "2 - reporting an outage" in first.text
    since = len(stack.kannel.received())
    stack.kannel.send_mo(phone, "5550100", "my power is out")  # words, matched like speech
    second = stack.kannel.wait_for_sms(phone, since=since, timeout=15)
    assert "crews are working on them" in second.text and "2 - ending this call" in second.text
    since = len(stack.kannel.received())
    stack.kannel.send_mo(phone, "5550100", "2")
    third = stack.kannel.wait_for_sms(phone, since=since, timeout=15)
    assert "Goodbye" in third.text
    journey = stack.controller.wait_for_journey(lambda j: j["caller"] == phone and j["status"] == "completed")
    assert journey["channel"] == "sms"
    assert journey["path"] == ["greeting", "check_hours", "main_menu", "outage_info", "outage_menu", "goodbye"]
    chosen = [e["data"] for e in stack.controller.interactions(journey["id"]) if e["kind"] == "option_chosen"]
    assert [(c["option"], c["mode"]) for c in chosen] == [("outage", "text"), ("done", "text")]


def _hand_off_call(stack: Stack, prompt_ms: dict[str, int], phone: str) -> dict[str, Any]:
    """A caller types the account number and presses 8: the journey is handed off (link not opened)."""
    account_at = ms(prompt_ms, "Example Power payments.") + 400
    press_8 = account_at + 8 * 250 + 1500
    since = len(stack.kannel.received())

    async def call() -> None:
        script = CallerScript(
            caller_id=phone,
            dialled="5550200",
            dtmf=(Dtmf(ACCOUNT, account_at), Dtmf("8", press_8)),
            max_call_ms=press_8 + 20000,
        )
        (await run_caller_async(script)).raise_for_failure()

    asyncio.run(call())
    stack.kannel.wait_for_sms(phone, since=since, timeout=10)
    return stack.controller.wait_for_journey(lambda j: j["caller"] == phone and j["status"] == "handed_off")


async def hang_up_once_queued(lab: AsteriskLab, script: CallerScript, queue: str) -> None:
    """The call, ended from Asterisk (AMI Hangup) as soon as the caller waits in ``queue``: what
    the test came for has happened, and the caller's own hang-up timer is only the ceiling."""
    call = asyncio.create_task(run_caller_async(script))
    ami = AmiClient(username=lab.ami_username, secret=lab.ami_secret)
    await ami.connect()
    try:
        while not call.done():
            mine = [e for e in await ami.queue_entries(queue) if e.get("CallerIDNum") == script.caller_id]
            if mine:
                with contextlib.suppress(AmiError):  # "No such channel": the caller's timer was first
                    await ami.action({"Action": "Hangup", "Channel": mine[0]["Channel"]})
                break
            await asyncio.sleep(0.2)
    finally:
        ami.close()
    (await call).raise_for_failure()


def test_a_returning_caller_continues_the_open_journey_and_skips_the_menus(
    stack: Stack, prompt_ms: dict[str, int]
) -> None:
    phone = "+15551238001"
    first = _hand_off_call(stack, prompt_ms, phone)
    press_1 = 600  # "Welcome back. You can continue where you left off." - 1 continues
    press_0 = press_1 + 1500  # during "How would you like to pay?": an agent
    script = CallerScript(
        caller_id=phone,
        dialled="5550200",
        dtmf=(Dtmf("1", press_1), Dtmf("0", press_0)),
        # no agent is free: the queue step says the position and wait, then offers a callback
        # (5 s, no key: keep holding); the caller is queued only after that
        hangup_after_ms=press_0 + 30000,
    )
    asyncio.run(hang_up_once_queued(stack.lab, script, "billing"))
    journey = stack.controller.wait_for_journey(lambda j: j["id"] == first["id"] and j["status"] == "queued")
    assert journey["channel"] == "voice" and journey["outcome"]["queue"] == "billing"
    # the welcome-back offer is a step of the journey like any other (the engine's system flow)
    assert journey["path"][-5:] == [
        "text_me",
        "system.continue_offer",
        "pay_menu",
        "to_billing",
        "to_billing/callback_offer",
    ]
    assert journey["path"].count("account") == 1 and journey["path"].count("greeting") == 1  # not asked again
    assert journey["slots"] == {"account_number": ACCOUNT}
    logged = stack.controller.interactions(first["id"])
    changed = [e["data"] for e in logged if e["kind"] == "channel_changed"]
    assert changed == [{"from": "voice", "to": "voice", "via": "caller id"}]
    answered = [e["data"]["choice"] for e in logged if e["kind"] == "continue_offer_answered"]
    assert answered == ["continue"]
    calls = [j for j in stack.controller.journeys() if j["caller"] == phone]
    assert len(calls) == 1  # the second call made no journey of its own


@pytest.mark.requires("chromium")
def test_call_me_now_from_chat_rings_the_customer_into_the_same_step(stack: Stack, prompt_ms: dict[str, int]) -> None:
    phone = "+15551239001"
    first = _hand_off_call(stack, prompt_ms, phone)
    link = re.search(r"(http://\S+/c/[A-Za-z0-9_-]+)", stack.kannel.received()[-1].text)
    assert link

    async def scenario() -> None:
        await stack.phone.start()
        try:
            async with chromium() as browser:
                page = await browser.new_page()  # type: ignore[attr-defined]
                await page.goto(link[1])
                await page.wait_for_selector("#question[data-step='pay_menu']", state="attached", timeout=10000)
                await page.click("#call-me")
                await page.wait_for_selector("#status:has-text('calling you')", timeout=10000)
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                kinds = [(e["kind"], e["step"], e["data"]) for e in stack.controller.interactions(first["id"])]
                via = [i for i, k in enumerate(kinds) if k[0] == "channel_changed" and k[2].get("via") == "call me"]
                if via and any(k[0] == "step_entered" and k[1] == "pay_menu" for k in kinds[via[0] :]):
                    break
                await asyncio.sleep(0.2)
            else:
                raise AssertionError(f"the call did not enter pay_menu: {kinds}\n{stack.controller.log_tail()}")
            assert stack.phone.invites() == 1  # SIPp answered the originated call
            journey = stack.controller.wait_for_journey(lambda j: j["id"] == first["id"] and j["channel"] == "voice")
            assert journey["slots"] == {"account_number": ACCOUNT} and journey["step"] == "pay_menu"
            ami = AmiClient(username="ivr", secret=stack.lab.ami_secret)
            await ami.connect()
            try:  # hang the call up: it must not linger into other tests
                await ami.action({"Action": "Hangup", "Channel": journey["refs"]["channel"]})
            finally:
                ami.close()
        finally:
            await stack.phone.stop()

    asyncio.run(scenario())
    kinds = [e["kind"] for e in stack.controller.interactions(first["id"])]
    assert kinds.count("channel_changed") == 2 and "call_requested" in kinds  # voice -> chat -> voice


@pytest.mark.requires("chromium")
def test_a_chat_reaching_a_queue_goes_to_a_blended_agent_in_real_time(stack: Stack, prompt_ms: dict[str, int]) -> None:
    add_agent(stack.controller.data_dir, "cara", "agent1003", ["billing"], "cara-password-1")
    phone = "+15551239501"
    first = _hand_off_call(stack, prompt_ms, phone)
    link = re.search(r"(http://\S+/c/[A-Za-z0-9_-]+)", stack.kannel.received()[-1].text)
    assert link

    async def scenario() -> None:
        async with chromium() as browser:
            agent = await desktop_login(browser, stack.web, "cara", "cara-password-1", viewport=None)
            customer = await (await browser.new_context()).new_page()  # type: ignore[attr-defined]
            await customer.goto(link[1])
            await customer.wait_for_selector("#question[data-step='pay_menu']", state="attached", timeout=10000)
            await customer.click(".choice[data-option='agent']")
            await customer.wait_for_selector("#status:has-text('An agent has joined')", timeout=10000)
            box = agent.locator(f".chat[data-contact='chat-{first['id']}']")
            await box.wait_for(timeout=10000)  # the offer reached the agent's desktop, with the context
            await box.locator("input").fill("Hello, this is Cara. I see your account.")
            await box.locator("button", has_text="Send").click()
            await customer.wait_for_selector("#log li.agent:has-text('this is Cara')", timeout=10000)
            await customer.fill("#text", "Thanks, I want to pay 42 dollars.")
            await customer.click("#free button")
            await box.locator(".log .them", has_text="42 dollars").wait_for(timeout=10000)

    asyncio.run(scenario())
    kinds = [e["kind"] for e in stack.controller.interactions(first["id"])]
    assert "chat_offered" in kinds and kinds.count("chat_message") >= 2
    journey = stack.controller.wait_for_journey(lambda j: j["id"] == first["id"])
    assert journey["status"] == "queued" and journey["channel"] == "chat"
