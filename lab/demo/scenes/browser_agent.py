"""An agent whose phone is the browser: the desktop rings, answers, and transfers with a note.

Ann's phone is switched to ``browser`` with ``ivr agents set`` (as an admin would), so signing in
to the desktop in headless Chromium (fake microphone playing a tone) gets her page a SIP password
and its JsSIP phone registers over WSS to Asterisk. A caller keys through the lab's ``desk`` line
into the billing queue: the browser's phone rings and the card pops together (the gap is read
from the page: ``window.__ivrRings`` and ``window.__ivrPops``), she answers in the page and the
browser's getStats counts RTP both ways. She then transfers the caller with a note to the
``support`` queue from the card's transfer control; Bob (a SIPp phone, his desktop a second page)
gets the same card headed "Transferred by Ann ..." and answers. The caller hangs up; no channel is
left. Ann's phone goes back to ``sip`` and both agents sign out, so the scenes after this one find
the queues as they were.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from ivr.ami.client import AmiClient, AmiError
from lab.agents import add_agent
from lab.asterisk import WSS_PORT
from lab.browser import WEBRTC_ARGS, chromium
from lab.demo.registry import Tell, check, scene
from lab.demo.scenes.desktop import card_fields
from lab.demo.stack import AGENT, AGENT_NAME, DemoStack
from lab.desktop import desktop_login
from lab.flows import DESK_MENU, DESK_NUMBER
from lab.sipp import CallerScript, Dtmf, SippResult, run_caller_async
from lab.softphone import Softphone
from lab.tone import write_tone_wav

CALLER = "+15551240006"
ACCOUNT = "13572468"
BOB = "bob"
BOB_ENDPOINT = "agent1002"
BOB_RING_MS = 1500
NOTE = "Card payment declined twice; please check the account's card on file."
#: Packets each way in the browser's getStats that count as two-way audio (half a second of 20 ms
#: frames): a single stray packet would not be a conversation.
TWO_WAY_PACKETS = 25
SHOT_SIZE = {"width": 1280, "height": 720}


def channel_names(listed: Sequence[dict[str, Any]]) -> list[str]:
    """The channels in a CoreShowChannels reply (its list events, not the Complete). Pure."""
    return [str(c["Channel"]) for c in listed if c.get("Event") == "CoreShowChannel"]


def channel_of(listed: Sequence[dict[str, Any]], uniqueid: str) -> str | None:
    """The name of the channel with ``uniqueid`` in a CoreShowChannels reply, if it is still up. Pure."""
    for c in listed:
        if c.get("Event") == "CoreShowChannel" and c.get("Uniqueid") == uniqueid:
            return str(c["Channel"])
    return None


def ring_pop_gap_ms(rings: Sequence[dict[str, Any]], pops: Sequence[dict[str, Any]]) -> float:
    """The browser phone's INVITE minus the card's paint, in ms (positive: the card was first).
    Both are the page's own clock (``Date.now()``), so the gap is not skewed by the controller's."""
    return (float(rings[0]["at"]) - float(pops[0]["painted_at"])) * 1000


async def until(probe: Callable[[], Awaitable[bool]], timeout: float, what: str) -> float:
    """Wait for ``probe``; the seconds it took. A LabError-free failure: the scene's check says what."""
    started = time.monotonic()
    while not await probe():
        check(time.monotonic() - started < timeout, f"not within {timeout:.0f} s: {what}")
        await asyncio.sleep(0.1)
    return time.monotonic() - started


async def sign_in_with_softphone(browser: Any, base: str, username: str, password: str) -> Any:
    """The login form in a 1280x720 page that trusts the lab's self-signed WSS certificate; returns
    the page once its softphone is registered and the agent pressed Ready."""
    context = await browser.new_context(ignore_https_errors=True, viewport=SHOT_SIZE)
    page = await context.new_page()
    await page.goto(f"{base}/desktop/login")
    await page.fill("#username", username)
    await page.fill("#password", password)
    await page.click("#signin")
    await page.wait_for_url(f"{base}/desktop/")
    await page.wait_for_selector("#softphone[data-reg=registered]", timeout=20000)
    await page.click("#btn-ready")
    await page.wait_for_selector("#status[data-status=ready]")
    return page


async def sign_out(page: Any, base: str) -> None:
    """The desktop's logout button: the agent's queue memberships go with the session."""
    with contextlib.suppress(Exception):  # a page already gone has nothing left to sign out
        await page.click("#btn-logout", timeout=5000)
        await page.wait_for_url(f"{base}/desktop/login", timeout=5000)


@scene(
    "browser_agent",
    "An agent answers in the browser and transfers with a note",
    "the browser rings with the card, talks both ways, and the next agent gets the card with the note",
    order=35,
)
async def browser_agent(stack: DemoStack, tell: Tell) -> str:
    tone = write_tone_wav(stack.work_dir / "agent-microphone.wav")
    shot = stack.artifacts / "browser-agent-transfer.png"
    menu_key = stack.ms(DESK_MENU) // 2  # into the menu prompt: the key barges in
    tell(f"`ivr agents set {AGENT} --phone browser`: the desktop is her phone (PJSIP/agent1001-webrtc)")
    await stack.ivr("agents", "set", AGENT, "--phone", "browser")
    bob_password = stack.secrets.agent_password + "-bob"
    tell(
        f"`ivr agents add {BOB} --endpoint {BOB_ENDPOINT} --skill support`: his SIPp phone answers after {BOB_RING_MS} ms"
    )
    await asyncio.to_thread(add_agent, stack.data_dir, BOB, BOB_ENDPOINT, ["support"], bob_password, name="Bob Agent")
    ami = AmiClient(username=stack.lab.ami_username, secret=stack.secrets.ami)
    await ami.connect()
    bob_phone = Softphone(BOB_ENDPOINT, stack.lab.agent_passwords[BOB_ENDPOINT], ring_ms=BOB_RING_MS)
    flags = (*WEBRTC_ARGS, f"--use-file-for-fake-audio-capture={tone}")
    ann: Any = None
    bob: Any = None
    call: asyncio.Task[SippResult] | None = None
    try:
        async with bob_phone, chromium(extra_args=flags) as browser:
            tell(f"{AGENT!r} signs in at {stack.web}/desktop/; her page's phone registers over WSS :{WSS_PORT}")
            ann = await sign_in_with_softphone(browser, stack.web, AGENT, stack.secrets.agent_password)
            bob = await desktop_login(browser, stack.web, BOB, bob_password)
            tell(f"  registered: {'agent1001-webrtc' in stack.lab.cli('pjsip show contacts')}; both agents ready")
            tell(f"{CALLER} dials {DESK_NUMBER}, keys 1 and the account number, joins the billing queue")
            script = CallerScript(
                caller_id=CALLER,
                dialled=DESK_NUMBER,
                dtmf=(Dtmf("1", menu_key), Dtmf(ACCOUNT, menu_key + 2500)),
                max_call_ms=90000,
            )
            call = asyncio.create_task(run_caller_async(script, timeout=120))
            await ann.wait_for_selector("#softphone[data-call=ringing]", timeout=menu_key + 40000)
            await ann.wait_for_selector("#call.ringing", timeout=5000)
            rings, pops = await ann.evaluate("[window.__ivrRings, window.__ivrPops]")
            gap = ring_pop_gap_ms(rings, pops)
            when = "before" if gap >= 0 else "after"
            tell(
                f"  the browser rings and the card pops together: painted {abs(gap):.0f} ms {when} the INVITE reached the page"
            )
            answered = time.monotonic()
            await ann.click("#sp-answer")
            await ann.wait_for_selector("#call.active", timeout=10000)
            stats: dict[str, Any] = {}

            async def two_way() -> bool:
                stats.update(await ann.evaluate("IvrSoftphone.stats()"))
                return bool(stats["inbound"] > TWO_WAY_PACKETS and stats["outbound"] > TWO_WAY_PACKETS)

            await until(two_way, 10, "RTP both ways in the browser's getStats")
            talk_ms = (time.monotonic() - answered) * 1000
            tell(
                f"  Ann answers in the browser: two-way audio {talk_ms:.0f} ms later "
                f"(getStats: {stats['inbound']} packets in, {stats['outbound']} out)"
            )
            ann_card = await card_fields(ann)
            caller_id, ann_journey = await ann.evaluate(
                "[window.desk.state.pop.uniqueid, window.desk.state.pop.journey_id]"
            )
            form = '#call [data-f="transfer"]'
            await ann.wait_for_selector(f"{form}:not([hidden])")
            await ann.select_option(f"{form} select[name=kind]", "queue")
            await ann.fill(f"{form} input[name=target]", "support")
            await ann.fill(f"{form} input[name=note]", NOTE)
            tell(f'Ann transfers the caller to the support queue with the note "{NOTE}"')
            clicked = time.monotonic()
            await ann.click(f"{form} button[name=blind]")
            banner = await bob.wait_for_selector('#call [data-f="transfer-from"]', timeout=20000)
            painted_ms = (time.monotonic() - clicked) * 1000
            # each line's text (heading, then note), as written, not as the style capitalises it
            said = " ".join(
                (await banner.evaluate("b => Array.from(b.children, c => c.textContent).join(' ')")).split()
            )
            bob_card = await card_fields(bob)
            bob_journey = await bob.evaluate("window.desk.state.pop.journey_id")
            tell(f"  Bob's card, {painted_ms:.0f} ms after the click: {said}")
            tell(f"    journey     {bob_journey} {bob_card['path']} (Ann's: {ann_journey} {ann_card['path']})")
            await ann.wait_for_function(
                "document.querySelector('#call [data-f=transfer-status]').textContent.includes('support')"
            )
            await ann.evaluate("window.scrollTo(0, 0)")  # the form's focus scrolled the card's head away
            await ann.screenshot(path=str(shot))
            tell(f"  Ann's desktop after the transfer; screenshot: {shot}")
            await bob.wait_for_selector("#call.active", timeout=BOB_RING_MS + 15000)
            tell("  Bob's phone answered: the caller talks to Bob; the caller hangs up")
            channel = channel_of(await ami.action_list({"Action": "CoreShowChannels"}), str(caller_id))
            check(channel is not None, f"the caller's channel {caller_id} was gone before the hang-up")
            await ami.action({"Action": "Hangup", "Channel": str(channel)})
            result = tell.call_result(await call, "caller")
            await bob.wait_for_selector("#status[data-status=wrap_up]", timeout=15000)

            async def no_channels() -> bool:
                return not channel_names(await ami.action_list({"Action": "CoreShowChannels"}))

            await until(no_channels, 10, "no channel left (AMI CoreShowChannels)")
            tell("  AMI CoreShowChannels: 0 channels")
            await sign_out(ann, stack.web)
            await sign_out(bob, stack.web)
    finally:
        if call is not None and not call.done():  # a failed check above: end the caller's call too
            with contextlib.suppress(AmiError):
                for name in channel_names(await ami.action_list({"Action": "CoreShowChannels"})):
                    await ami.action({"Action": "Hangup", "Channel": name})
            with contextlib.suppress(Exception):
                tell.call_result(await call, "caller")
        await ami.stop()
        await stack.ivr("agents", "set", AGENT, "--phone", "sip")
        await stack.ivr("agents", "disable", BOB)
    check(result.ok, "the caller's SIP call failed")
    check(len(rings) == 1 and len(pops) == 1, f"{len(rings)} rings and {len(pops)} pops in Ann's page")
    check(abs(gap) < 2000, f"the ring and the card {gap:+.0f} ms apart, not together")
    check(f"Transferred by {AGENT_NAME}" in said and NOTE in said, f"Bob's banner says {said!r}")
    check(bob_journey == ann_journey, f"Bob's card is journey {bob_journey}, Ann's {ann_journey}")
    check(
        bob_card["path"] == ann_card["path"] == "main_menu > account > to_billing", f"Bob's journey {bob_card['path']}"
    )
    check(
        bob_card["caller"] == ann_card["caller"], f"Bob's card is for {bob_card['caller']}, Ann's {ann_card['caller']}"
    )
    check(ACCOUNT in bob_card["slots"], f"Bob's card slots {bob_card['slots']}")
    return f"ring and card {gap:+.0f} ms apart, two-way audio {talk_ms:.0f} ms after answer, Bob got the note"
