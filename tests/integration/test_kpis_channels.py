"""KPIs from real text contacts: Kannel + fakesmsc -> ``ivr serve`` (SMS), and the web chat over
its own HTTP API, on SQLite and on PostgreSQL, read back over the controller's ``GET /api/kpis``.

No Asterisk: the customers only text and chat. The payments flow answers SMS. Three customers:

- SELF_SERVICE texts, gives the account number, chooses card (1) and an amount: the journey
  completes in self-service (contained).
- QUEUED texts, gives the account number, asks for an agent (0): the journey ends queued in
  billing, where nobody takes it (offered; neither handled nor abandoned: still waiting).
- TO_CHAT texts, gives the account number, chooses "continue by text message" (8): the handoff
  texts a one-time link, which the test claims as the customer's browser would (``POST /c/<token>``);
  the web chat continues at the payment menu, the customer asks for an agent there (queued in
  billing, no agent logged in), waits a little and closes the chat (abandoned).

A contact is counted on the channel its journey started on (``ivr.kpis``), so all three are
contacts of the ``sms`` row; the chat part of TO_CHAT is the abandon on that same contact.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from lab.controller import ControllerProcess
from lab.kannel import KannelLab, free_port

REPO = Path(__file__).resolve().parents[2]
SENDER = "5550200"
ACCOUNT = "12345678"
SELF_SERVICE, QUEUED, TO_CHAT = "+15551238001", "+15551238002", "+15551238003"
WAIT_S = 1.5  # how long TO_CHAT waits in the chat queue before closing the chat

pytestmark = pytest.mark.requires("kannel")


class Stack:
    def __init__(self, controller: ControllerProcess, kannel: KannelLab, web_port: int, api: str) -> None:
        self.controller = controller
        self.kannel = kannel
        self.web = f"http://127.0.0.1:{web_port}"
        self.api = api

    def text(self, phone: str, text: str, expect: str) -> str:
        """The customer texts; returns the controller's answer, the texts to that phone since,
        once they say ``expect`` (a multi-line reply reaches fakesmsc's log line by line)."""
        since = len(self.kannel.received())
        self.kannel.send_mo(phone.lstrip("+"), SENDER, text)
        deadline = time.monotonic() + 15
        while True:
            answer = "\n".join(
                m.text for m in self.kannel.received()[since:] if m.receiver.lstrip("+") == phone.lstrip("+")
            )
            if expect in answer:
                return answer
            assert time.monotonic() < deadline, f"{phone} was not told {expect!r}: {answer!r}"
            time.sleep(0.05)


@pytest.fixture
def stack(database_url: str, tmp_path: Path) -> Iterator[Stack]:
    web_port = free_port()
    inbound = secrets.token_urlsafe(16)
    api = secrets.token_urlsafe(16)
    get_url = f"http://127.0.0.1:{web_port}/sms/kannel/mo?key={inbound}&from=%p&to=%P&text=%a"
    kannel = KannelLab(get_url=get_url)
    kannel.start()
    controller = ControllerProcess(
        flows_dir=REPO / "dialplans",
        data_dir=tmp_path / "ivr",
        agi_port=free_port(),  # never the lab's 4573: another session's calls must not reach us
        env={
            "IVR_DATABASE_URL": database_url,
            "IVR_SPEECH_ENGINE": "off",
            "IVR_WEB_PORT": str(web_port),
            "IVR_API_TOKEN": api,
            "IVR_HANDOFF_SECRET": secrets.token_urlsafe(24),
            "IVR_HANDOFF_TTL": "600",
            "IVR_SMS_PROVIDER": "kannel",
            "IVR_SMS_KANNEL_URL": kannel.sendsms_url,
            "IVR_SMS_KANNEL_USERNAME": kannel.username,
            "IVR_SMS_KANNEL_PASSWORD": kannel.password,
            "IVR_SMS_INBOUND_TOKEN": inbound,
            "IVR_SMS_SENDER": SENDER,
            "IVR_SMS_FLOW": "payments",
            "IVR_CALLBACKS_OFFER_AFTER": "-1",
        },
    )
    try:
        controller.start(timeout=30)
        yield Stack(controller, kannel, web_port, api)
    finally:
        controller.stop()
        kannel.cleanup()


def _iso(at: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(at))


async def chat_abandoned_after_handoff(stack: Stack, link: str) -> None:
    """The customer's browser: open the link's page, claim it, ask for an agent, wait, close the chat."""
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        async with http.get(link) as reply:  # the page that claims the link (an open, not a claim)
            assert reply.status == 200 and "Continue" in await reply.text()
        async with http.post(link, headers={"Origin": stack.web}) as reply:
            assert reply.status == 200, await reply.text()  # redirected to the chat page
        async with http.get(f"{stack.web}/chat/api/state") as reply:
            state = await reply.json()
        assert state["step"] == "pay_menu", state
        async with http.post(f"{stack.web}/chat/api/input", json={"option": "agent"}) as reply:
            view = await reply.json()
        assert (view["status"], view["queue"], view["agent"]) == ("queued", "billing", False), view
        await asyncio.sleep(WAIT_S)
        async with http.post(f"{stack.web}/chat/api/leave", json={}) as reply:
            assert (await reply.json()) == {"left": "abandoned"}


async def kpis(
    stack: Stack, window: dict[str, str], by: str, settled: Callable[[dict[str, Any]], bool]
) -> dict[str, Any]:
    """The report's rows along ``by``, once ``settled`` says the controller's write-behind has
    stored every contact's events (or after 15 s: then the exact asserts say what is missing)."""
    auth = {"Authorization": f"Bearer {stack.api}"}
    deadline = time.monotonic() + 15
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
        while True:
            async with http.get(f"{stack.web}/api/kpis", params={**window, "by": by}, headers=auth) as r:
                assert r.status == 200, await r.text()
                rows = {x[by]: x for x in (await r.json())["rows"]}
            if settled(rows) or time.monotonic() > deadline:
                return rows
            await asyncio.sleep(0.3)


def test_real_sms_and_chat_contacts_give_the_expected_kpis(stack: Stack) -> None:
    began = time.time()
    # SELF_SERVICE: pays by card in self-service
    stack.text(SELF_SERVICE, "hello", "account number")
    stack.text(SELF_SERVICE, ACCOUNT, "How would you like to pay?")
    stack.text(SELF_SERVICE, "1", "amount")
    stack.text(SELF_SERVICE, "42", "payment is scheduled")
    # QUEUED: asks for an agent; nobody takes text contacts here, so the journey stays queued
    stack.text(QUEUED, "hello", "account number")
    stack.text(QUEUED, ACCOUNT, "How would you like to pay?")
    stack.text(QUEUED, "0", "billing")
    # TO_CHAT: continues in the web chat by the link texted to her, and leaves its queue there
    stack.text(TO_CHAT, "hello", "account number")
    stack.text(TO_CHAT, ACCOUNT, "How would you like to pay?")
    handoff = stack.text(TO_CHAT, "8", "/c/")
    link = re.search(r"(http://\S+/c/[A-Za-z0-9_-]+)", handoff)
    assert link, handoff
    asyncio.run(chat_abandoned_after_handoff(stack, link[1]))

    window = {"from": _iso(began - 60), "to": _iso(time.time() + 60)}
    rows = asyncio.run(kpis(stack, window, "channel", lambda r: "sms" in r and r["sms"]["abandoned"] == 1))
    # a chat is always a continuation of a journey begun on another channel (no journey starts in
    # the chat), so the chat's figures are on the contact's own row: sms
    assert set(rows) == {"sms"}, rows
    sms = rows["sms"]
    assert {k: sms[k] for k in ("contacts", "offered", "handled", "abandoned", "contained", "known_contacts")} == {
        "contacts": 3,
        "offered": 2,  # QUEUED by SMS, TO_CHAT in the chat
        "handled": 0,  # no agent took either
        "abandoned": 1,  # TO_CHAT closed the chat while waiting
        "contained": 1,  # SELF_SERVICE
        "known_contacts": 3,  # each phone number is a customer
    }
    assert sms["contained_by_outcome"] == {"completed": 1}
    assert abs(sms["containment"] - 1 / 3) < 1e-9 and sms["service_level"] == 0.0
    assert (sms["avg_wait_s"], sms["avg_handle_s"], sms["left_in_flow"]) == (None, None, 0)
    # from the chat's queue step to the customer's leave: the wait the test made, and little more
    assert WAIT_S <= sms["avg_abandon_s"] <= WAIT_S + 2.0, sms["avg_abandon_s"]
    # four menu choices: card (SMS), agent (SMS), text message (SMS), agent (chat); card is the
    # only first option; every answer matched
    assert (sms["choices"], sms["first_option_share"], sms["no_match"], sms["no_input"]) == (4, 0.25, 0, 0)
    # the continuation funnel: one link texted, its page opened, claimed; the chat did not
    # finish the flow (it ended queued)
    links = {k: sms[k] for k in ("links_sent", "links_opened", "links_claimed", "links_completed")}
    assert links == {"links_sent": 1, "links_opened": 1, "links_claimed": 1, "links_completed": 0}

    by_queue = asyncio.run(kpis(stack, window, "queue", lambda r: "billing" in r))
    billing = by_queue["billing"]
    assert (billing["contacts"], billing["offered"], billing["abandoned"]) == (2, 2, 1)
    assert by_queue["-"]["contacts"] == 1  # SELF_SERVICE never queued

    # the chat on its own: the contacts handed from SMS to the chat (the report's handoff pair)
    by_handoff = asyncio.run(kpis(stack, window, "handoff", lambda r: "sms>chat" in r))
    chat = by_handoff["sms>chat"]
    assert {k: chat[k] for k in ("contacts", "offered", "handled", "abandoned", "contained")} == {
        "contacts": 1,
        "offered": 1,
        "handled": 0,
        "abandoned": 1,
        "contained": 0,
    }
    assert WAIT_S <= chat["avg_abandon_s"] <= WAIT_S + 2.0
    rest = by_handoff["-"]
    assert (rest["contacts"], rest["offered"], rest["abandoned"], rest["contained"]) == (2, 1, 0, 1)
    assert set(by_handoff) == {"sms>chat", "-"}
