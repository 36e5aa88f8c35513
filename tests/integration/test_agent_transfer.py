"""Agent transfers with the context, all real: SIPp callers through the IVR (flow ``xfer``) into
"billing", where Ann's SIPp phone answers; Ann's and Bob's desktops are their websockets on
``ivr serve`` (as the browser holds them); the transfers go through AMI on real Asterisk 22.

* blind to the queue "support": Bob's phone rings through app_queue and his desktop gets the same
  card (same journey, same customer) with Ann's name and note;
* refused: an unknown agent, queue and a malformed number are refused with a clear message and the
  caller stays with Ann; Bob cannot transfer Ann's call;
* consult to Bob: the caller hears music on hold (Asterisk keeps sending RTP to the caller, the
  packet count goes up) while Ann talks to Bob, then Ann completes and the caller is in Bob's bridge;
  Bob passes the caller on again (blind, back to Ann's phone) and no channel is left at the end;
* the caller hangs up during a consult: no channel is left (AMI CoreShowChannels);
* blind to an external number: a SIPp UAS behind the trunk gets the call with the configured
  caller id.

Every transfer is an ``agent_transfer`` entry on the journey's timeline with its outcome.
One ``ivr serve`` and one pair of phones for the module.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from ivr.ami import events as ev
from ivr.ami.client import AmiClient, AmiError
from lab.agents import add_agent
from lab.asterisk import AsteriskLab
from lab.browser import chromium
from lab.controller import ControllerProcess
from lab.desktop import desktop_login
from lab.sipp import CallerScript, SippResult, run_caller_async
from lab.softphone import Softphone

pytestmark = pytest.mark.asyncio(loop_scope="module")

NUMBER = "5550177"
TRUNK_CALLER_ID = "+15550009999"
OUTSIDE = "+15551230999"
NOTE = "Router reset did not help; wants a technician."
FLOW = f"""\
flow: xfer
numbers: ["{NUMBER}"]
start: to_billing
steps:
  to_billing:
    queue: {{name: billing, skill: billing, priority: 5}}
"""


async def until(predicate: Callable[[], Any], what: str, timeout: float = 20) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = predicate()
        if found:
            return found
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


@dataclass
class Desktop:
    """An agent's desktop websocket, read for the whole module as the browser reads it."""

    ws: aiohttp.ClientWebSocketResponse
    seen: list[dict[str, Any]] = field(default_factory=list)
    reader: asyncio.Task[None] | None = None

    async def read(self) -> None:
        async for msg in self.ws:
            if msg.type == aiohttp.WSMsgType.TEXT:
                self.seen.append(msg.json())

    async def send(self, **message: Any) -> None:
        await self.ws.send_json(message)

    async def next(self, kind: str, since: int, what: str = "", timeout: float = 20) -> dict[str, Any]:
        found: dict[str, Any] = await until(
            lambda: next((m for m in self.seen[since:] if m.get("type") == kind), None), what or kind, timeout
        )
        return found

    def status(self) -> str:
        states = [m for m in self.seen if m.get("type") == "state"]
        return str(states[-1]["agent"]["status"]) if states else ""


async def open_desktop(web: aiohttp.ClientSession, base: str, user: str, password: str) -> Desktop:
    page = await (await web.get(f"{base}/desktop/login")).text()
    csrf_form = re.search(r'name="csrf" value="([^"]+)"', page)
    assert csrf_form
    await web.post(f"{base}/desktop/login", data={"username": user, "password": password, "csrf": csrf_form.group(1)})
    csrf = (await (await web.get(f"{base}/desktop/api/me")).json())["csrf"]
    desktop = Desktop(await web.ws_connect(f"{base}/desktop/ws?csrf={csrf}", headers={"Origin": base}))
    desktop.reader = asyncio.create_task(desktop.read(), name=f"desktop-{user}")
    return desktop


@dataclass
class Rig:
    lab: AsteriskLab
    controller: ControllerProcess
    ami: AmiClient
    events: list[ev.AmiEvent]
    ann: Desktop
    bob: Desktop
    outside: Softphone
    base: str

    async def channels(self) -> list[dict[str, Any]]:
        listed = await self.ami.action_list({"Action": "CoreShowChannels"})
        return [c for c in listed if c.get("Event") == "CoreShowChannel"]

    async def ready(self, desktop: Desktop) -> None:
        mark = len(desktop.seen)
        await desktop.send(type="ready")
        await until(lambda: desktop.status() == "ready" and len(desktop.seen) > mark, "ready")

    async def call_to_ann(self, caller_id: str) -> tuple[asyncio.Task[SippResult], dict[str, Any]]:
        """A caller through the IVR to Ann (she is ready): returns the call and her active call."""
        mark = len(self.ann.seen)
        call = asyncio.create_task(
            run_caller_async(CallerScript(caller_id=caller_id, dialled=NUMBER, max_call_ms=90000), timeout=120)
        )
        connected = await self.ann.next("call.connected", mark, "Ann connected", timeout=40)
        return call, connected["call"]

    def interactions(self, journey_id: str, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.controller.interactions(journey_id) if e["kind"] == kind]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def rig(lab: AsteriskLab, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Rig]:
    await asyncio.to_thread(lab.restart)  # fresh queues and device states (we hold the lab lock)
    root = tmp_path_factory.mktemp("transfer")
    flows = root / "flows"
    flows.mkdir()
    (flows / "xfer.yaml").write_text(FLOW)
    data = root / "ivr"
    data.mkdir()
    add_agent(data, "ann", "agent1001", ["billing"], "ann-password-1", name="Ann Agent")
    add_agent(data, "bob", "agent1002", ["support"], "bob-password-1", name="Bob Agent")
    outside = Softphone("outside", ring_ms=500, register=False)
    ann_phone = Softphone("agent1001", lab.agent_passwords["agent1001"], ring_ms=500)
    bob_phone = Softphone("agent1002", lab.agent_passwords["agent1002"], ring_ms=500)
    controller = ControllerProcess(
        flows_dir=flows,
        data_dir=data,
        env={
            "IVR_FLOWS_DEFAULT": "xfer",
            "IVR_AMI_SECRET": lab.ami_secret,
            "IVR_SPEECH_ENGINE": "off",
            "IVR_CALLBACKS_OFFER_AFTER": "-1",
            # the lab has no carrier: the trunk endpoint dials the outside SIPp directly
            "IVR_TRANSFER_DIAL": f"PJSIP/trunk/sip:{{number}}@127.0.0.1:{outside.port}",
            "IVR_TRANSFER_CALLER_ID": TRUNK_CALLER_ID,
        },
    )
    ami = AmiClient(username=lab.ami_username, secret=lab.ami_secret, events=True)
    seen: list[ev.AmiEvent] = []

    async def keep(event: ev.AmiEvent) -> None:
        seen.append(event)

    ami.on_event(keep)
    async with outside, ann_phone, bob_phone:
        await asyncio.to_thread(controller.start, 30)
        await asyncio.to_thread(controller.wait_for_log, "AMI connected")
        await ami.connect()
        port = int(re.findall(r"listening on http://127\.0\.0\.1:(\d+)/", controller.log_path.read_text())[0])
        base = f"http://127.0.0.1:{port}"
        async with (
            aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as ann_web,
            aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as bob_web,
        ):
            ann = await open_desktop(ann_web, base, "ann", "ann-password-1")
            bob = await open_desktop(bob_web, base, "bob", "bob-password-1")
            rig = Rig(lab, controller, ami, seen, ann, bob, outside, base)
            try:
                yield rig
            finally:
                for desktop in (ann, bob):
                    await desktop.ws.close()
                    if desktop.reader is not None:
                        desktop.reader.cancel()
                        with contextlib.suppress(asyncio.CancelledError):
                            await desktop.reader
                await ami.stop()
                await asyncio.to_thread(controller.stop)
                await asyncio.to_thread(lab.restart)  # no agent membership outlives the module


@pytest.mark.requires("chromium")
async def test_the_cards_transfer_control_paints_the_card_with_who_and_the_note_on_the_next_agents_screen(
    rig: Rig,
) -> None:
    """First in the module: both agents are still paused from their sign-in, as desktop_login expects."""
    async with chromium() as browser:
        ann = await desktop_login(browser, rig.base, "ann", "ann-password-1")
        bob = await desktop_login(browser, rig.base, "bob", "bob-password-1")
        call, active = await rig.call_to_ann("+15551237000")
        try:
            form = '#call [data-f="transfer"]'
            await ann.wait_for_selector(f"{form}:not([hidden])")
            name = await ann.locator('#call [data-f="name"]').inner_text()
            await ann.select_option(f"{form} select[name=kind]", "queue")
            await ann.fill(f"{form} input[name=target]", "support")
            await ann.fill(f"{form} input[name=note]", NOTE)
            clicked = time.time()
            await ann.click(f"{form} button[name=blind]")
            banner = await bob.wait_for_selector('#call [data-f="transfer-from"]', timeout=20000)
            painted = time.time()
            assert banner is not None
            said = await banner.text_content() or ""  # the text, not as the style capitalises it
            assert "Transferred by Ann Agent" in said and NOTE in said, said
            assert await bob.locator('#call [data-f="name"]').inner_text() == name  # the same card
            await ann.wait_for_function(
                "document.querySelector('#call [data-f=transfer-status]').textContent"
                ".includes('Transferred to queue support')"
            )
            print(f"click on Transfer -> card painted on the next agent's screen: {(painted - clicked) * 1000:.0f} ms")
            await bob.wait_for_selector("#call.active")
            await rig.ami.action({"Action": "Hangup", "Channel": active["channel"]})
            (await call).raise_for_failure()
        finally:  # a failure above must not leave the caller with Bob for the next tests
            with contextlib.suppress(AmiError):
                await rig.ami.action({"Action": "Hangup", "Channel": active["channel"]})
        await bob.wait_for_selector("#status[data-status=wrap_up]")


async def test_blind_to_a_queue_pops_the_same_card_on_the_next_agent_with_who_and_the_note(rig: Rig) -> None:
    await rig.ready(rig.ann)
    await rig.ready(rig.bob)
    call, active = await rig.call_to_ann("+15551237001")
    journey_id = active["journey_id"]
    bob_mark, ann_mark = len(rig.bob.seen), len(rig.ann.seen)
    await rig.ann.send(type="transfer", journey_id=journey_id, kind="queue", target="support", mode="blind", note=NOTE)
    started = await rig.ann.next("transfer.started", ann_mark)
    assert started["transfer"]["target"] == {"kind": "queue", "value": "support"}
    pop = (await rig.bob.next("pop", bob_mark, "Bob's card"))["pop"]
    assert pop["journey_id"] == journey_id and pop["queue"] == "support"
    assert pop["transfer"]["by"]["name"] == "Ann Agent" and pop["transfer"]["note"] == NOTE
    assert pop["transfer"]["mode"] == "blind"
    await rig.bob.next("call.connected", bob_mark, "Bob connected")
    await until(lambda: rig.ann.status() == "wrap_up", "Ann in wrap-up after the transfer")
    (entry,) = await until(lambda: rig.interactions(journey_id, "agent_transfer"), "the timeline entry")
    assert entry["data"]["outcome"] == "transferred" and entry["data"]["target"] == "support"
    await rig.ami.action({"Action": "Hangup", "Channel": active["channel"]})
    (await call).raise_for_failure()
    await until(lambda: rig.bob.status() == "wrap_up", "Bob in wrap-up")


async def test_bad_targets_are_refused_and_the_caller_stays_with_the_agent(rig: Rig) -> None:
    await rig.ready(rig.ann)
    call, active = await rig.call_to_ann("+15551237002")
    journey_id = active["journey_id"]
    bad = [
        ("agent", "nobody", "no agent nobody is signed in"),
        ("queue", "nosuch", "there is no queue nosuch"),
        ("number", "12ab", "is not a phone number"),
        ("agent", "ann", "yourself"),
    ]
    for kind, target, message in bad:
        mark = len(rig.ann.seen)
        await rig.ann.send(type="transfer", journey_id=journey_id, kind=kind, target=target, mode="blind", note="")
        error = await rig.ann.next("error", mark, f"refusal of {kind} {target}")
        assert message in error["message"], error
    mark = len(rig.bob.seen)  # Bob names Ann's call: not his
    await rig.bob.send(type="transfer", journey_id=journey_id, kind="queue", target="support", mode="blind")
    assert "refused" in (await rig.bob.next("error", mark, "Bob refused"))["message"]
    live = {c["Channel"] for c in await rig.channels()}
    assert active["channel"] in live and active["agent_channel"] in live  # still talking
    assert rig.ann.status() == "on_call" and not rig.interactions(journey_id, "agent_transfer")
    await rig.ami.action({"Action": "Hangup", "Channel": active["channel"]})
    (await call).raise_for_failure()


async def tx_packets(rig: Rig, channel: str) -> int:
    value = await rig.ami.getvar(channel, "CHANNEL(rtcp,txcount)")
    return int(value or 0)


async def test_consult_plays_music_to_the_caller_then_completes_to_the_other_agent(rig: Rig) -> None:
    await rig.ready(rig.ann)
    await rig.ready(rig.bob)
    call, active = await rig.call_to_ann("+15551237003")
    journey_id, caller = active["journey_id"], active["channel"]
    bob_mark, ann_mark = len(rig.bob.seen), len(rig.ann.seen)
    await rig.ann.send(type="transfer", journey_id=journey_id, kind="agent", target="bob", mode="consult", note=NOTE)
    await rig.ann.next("transfer.consulting", ann_mark)
    pop = (await rig.bob.next("pop", bob_mark, "Bob's card"))["pop"]
    assert pop["transfer"]["by"]["name"] == "Ann Agent" and pop["transfer"]["mode"] == "consult"
    assert pop["journey_id"] == journey_id
    await rig.bob.next("call.connected", bob_mark, "Bob answered the consult")
    # the caller is on hold: Asterisk keeps sending them RTP (music), never silence
    before = await tx_packets(rig, caller)
    await asyncio.sleep(1.0)
    sent = await tx_packets(rig, caller) - before
    assert sent >= 30, f"{sent} RTP packets to the held caller in 1 s"
    await rig.ann.send(type="transfer.complete")
    ended = await rig.ann.next("transfer.ended", ann_mark)
    assert ended["outcome"] == "completed"
    # the caller is now bridged with Bob's phone, Ann's leg is gone
    bob_channel = str((await rig.bob.next("call.connected", bob_mark))["call"]["agent_channel"])

    async def together(agent_channel: str, who: str) -> None:
        deadline = time.monotonic() + 10
        while True:
            channels = {c["Channel"]: c for c in await rig.channels()}
            mine, theirs = channels.get(caller), channels.get(agent_channel)
            if mine and theirs and mine.get("BridgeId") and mine.get("BridgeId") == theirs.get("BridgeId"):
                return
            assert time.monotonic() < deadline, f"the caller never reached {who}'s bridge"
            await asyncio.sleep(0.1)

    await together(bob_channel, "Bob")
    assert active["agent_channel"] not in {c["Channel"] for c in await rig.channels()}
    entries = await until(lambda: rig.interactions(journey_id, "agent_transfer"), "the timeline entry")
    assert [(e["data"]["mode"], e["data"]["outcome"]) for e in entries] == [("consult", "completed")]
    # Bob, who received the caller, passes them on again: blind, back to Ann's phone
    await rig.ready(rig.ann)
    bob_mark, ann_mark = len(rig.bob.seen), len(rig.ann.seen)
    await rig.bob.send(type="transfer", journey_id=journey_id, kind="agent", target="ann", mode="blind", note="back")
    await rig.bob.next("transfer.started", bob_mark)
    pop = (await rig.ann.next("pop", ann_mark, "Ann's card from Bob"))["pop"]
    assert pop["journey_id"] == journey_id and pop["transfer"]["by"]["name"] == "Bob Agent"
    ann_channel = str((await rig.ann.next("call.connected", ann_mark, "Ann answered"))["call"]["agent_channel"])
    await together(ann_channel, "Ann")
    await until(lambda: rig.bob.status() == "wrap_up", "Bob in wrap-up after his transfer")
    assert bob_channel not in {c["Channel"] for c in await rig.channels()}

    def transfers() -> list[tuple[str, str]]:
        return [(e["data"]["agent"], e["data"]["outcome"]) for e in rig.interactions(journey_id, "agent_transfer")]

    await until(lambda: len(transfers()) == 2, "Bob's timeline entry")
    assert transfers() == [("Ann Agent", "completed"), ("Bob Agent", "transferred")]
    await rig.ami.action({"Action": "Hangup", "Channel": caller})
    (await call).raise_for_failure()
    await until(lambda: rig.ann.status() == "wrap_up", "Ann in wrap-up")
    deadline = time.monotonic() + 10
    while remaining := [str(c["Channel"]) for c in await rig.channels()]:
        assert time.monotonic() < deadline, f"channels left behind: {remaining}"
        await asyncio.sleep(0.1)


async def test_a_caller_hanging_up_during_a_consult_leaves_no_channel(rig: Rig) -> None:
    await rig.ready(rig.ann)
    await rig.ready(rig.bob)
    call, active = await rig.call_to_ann("+15551237004")
    journey_id, caller = active["journey_id"], active["channel"]
    bob_mark, ann_mark = len(rig.bob.seen), len(rig.ann.seen)
    await rig.ann.send(type="transfer", journey_id=journey_id, kind="agent", target="bob", mode="consult", note="")
    await rig.ann.next("transfer.consulting", ann_mark)
    await rig.bob.next("call.connected", bob_mark, "Bob answered the consult")
    await rig.ami.action({"Action": "Hangup", "Channel": caller})  # the caller's side ends the call
    ended = await rig.ann.next("transfer.ended", ann_mark)
    assert ended["outcome"] == "caller_hung_up"
    (await call).raise_for_failure()

    async def left() -> list[str]:
        return [str(c["Channel"]) for c in await rig.channels()]

    deadline = time.monotonic() + 10
    while remaining := await left():
        assert time.monotonic() < deadline, f"channels left behind: {remaining}"
        await asyncio.sleep(0.1)
    entries = await until(lambda: rig.interactions(journey_id, "agent_transfer"), "the timeline entry")
    assert entries[-1]["data"]["outcome"] == "caller_hung_up"


async def test_blind_to_an_external_number_rings_it_through_the_trunk_with_the_configured_caller_id(
    rig: Rig,
) -> None:
    await rig.ready(rig.ann)
    call, active = await rig.call_to_ann("+15551237005")
    journey_id = active["journey_id"]
    mark = len(rig.ann.seen)
    await rig.ann.send(
        type="transfer", journey_id=journey_id, kind="number", target="+1 555 123 0999", mode="blind", note="x"
    )
    await rig.ann.next("transfer.started", mark)
    await until(lambda: rig.outside.invites() == 1, "the outside number rang")
    sip = (rig.outside.workdir / "messages.log").read_text(errors="replace")
    invite = sip[sip.index("INVITE sip:") :]
    assert re.search(r"^From:.*" + re.escape(TRUNK_CALLER_ID), invite, re.MULTILINE), invite[:800]
    assert f"INVITE sip:{OUTSIDE}@" in invite
    (entry,) = await until(lambda: rig.interactions(journey_id, "agent_transfer"), "the timeline entry")
    assert entry["data"]["target_kind"] == "number" and entry["data"]["target"] == OUTSIDE
    await until(lambda: "ACK" in (rig.outside.workdir / "messages.log").read_text(errors="replace"), "answered")
    await rig.ami.action({"Action": "Hangup", "Channel": active["channel"]})
    (await call).raise_for_failure()


async def test_a_cancelled_consult_gives_the_caller_back_to_the_agent(rig: Rig) -> None:
    await rig.ready(rig.ann)
    await rig.ready(rig.bob)
    call, active = await rig.call_to_ann("+15551237006")
    journey_id, caller = active["journey_id"], active["channel"]
    bob_mark, ann_mark = len(rig.bob.seen), len(rig.ann.seen)
    await rig.ann.send(type="transfer", journey_id=journey_id, kind="agent", target="bob", mode="consult", note="")
    await rig.ann.next("transfer.consulting", ann_mark)
    bob_channel = str((await rig.bob.next("call.connected", bob_mark, "Bob answered"))["call"]["agent_channel"])
    await rig.ann.send(type="transfer.cancel")
    assert (await rig.ann.next("transfer.ended", ann_mark))["outcome"] == "cancelled"

    async def back_with_ann() -> bool:
        channels = {c["Channel"]: c for c in await rig.channels()}
        mine, hers = channels.get(caller), channels.get(active["agent_channel"])
        together = mine and hers and mine.get("BridgeId") and mine.get("BridgeId") == hers.get("BridgeId")
        return bool(together and bob_channel not in channels)

    deadline = time.monotonic() + 10
    while not await back_with_ann():
        assert time.monotonic() < deadline, "the caller is not back with Ann (or Bob's leg is still up)"
        await asyncio.sleep(0.1)
    await until(lambda: rig.bob.status() == "wrap_up", "Bob's consult leg over")
    assert rig.ann.status() == "on_call"
    await rig.ami.action({"Action": "Hangup", "Channel": caller})
    (await call).raise_for_failure()
    await until(lambda: rig.ann.status() == "wrap_up", "Ann wraps up when the call she got back ends")
    entries = await until(lambda: rig.interactions(journey_id, "agent_transfer"), "the timeline entry")
    assert [e["data"]["outcome"] for e in entries] == ["cancelled"]
