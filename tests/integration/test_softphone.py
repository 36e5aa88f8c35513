"""The desktop's browser softphone, all real: Chromium (fake microphone playing a 1 kHz tone)
signs in as an agent whose phone is ``browser``, gets a SIP password made for this login, and
registers over WSS (JsSIP) to the lab's Asterisk 22; a SIPp caller goes through the IVR into the
billing queue; the browser rings with the screen pop, answers, and audio flows both ways (the
browser's getStats counts inbound RTP; Asterisk's MixMonitor records the tone the caller hears);
hold gives the caller music and no tone, resume brings the tone back; the browser hangs up and no
channel is left. A consult from Ann's browser to Bob's (his phone is his browser too): his page
rings with the caller's card, he answers, Ann completes, and the caller talks with Bob both ways.
Then the credentials: another agent's are refused, logout and a disabled agent
revoke them (a REGISTER with the old password fails).

One ``ivr serve`` for the module; each test its own Chromium.
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ivr.ami import events as ev
from ivr.ami.client import AmiClient
from lab import sipws
from lab.agents import add_agent
from lab.asterisk import WSS_PORT, AsteriskLab
from lab.browser import WEBRTC_ARGS, chromium
from lab.controller import ControllerProcess
from lab.flows import DESK_MENU as MENU
from lab.flows import DESK_NUMBER as NUMBER
from lab.flows import write_flows
from lab.prompts import prompt_ms as ms
from lab.sipp import CallerScript, Dtmf, run_caller_async
from lab.tone import read_wav, rms, tone_share, write_tone_wav

pytestmark = pytest.mark.requires("chromium", "sipp")

CALLER = "+15551239001"
ACCOUNT = "12345678"
TONE_HZ = 1000.0
CALLER_HZ = 440.0
WSS_URL = f"wss://127.0.0.1:{WSS_PORT}/ws"


def web_port(controller: ControllerProcess) -> int:
    controller.wait_for_log("HTTP API listening on")
    match = re.search(r"HTTP API listening on http://127\.0\.0\.1:(\d+)/", controller.log_path.read_text())
    assert match
    return int(match.group(1))


@pytest.fixture(scope="module")
def softdesk(lab: AsteriskLab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControllerProcess]:
    # A fresh Asterisk with this checkout's config (http.conf, sorcery.conf): the session's may
    # have been started before, and no queue member left by an earlier test may decide who rings.
    lab.restart()
    tmp = tmp_path_factory.mktemp("softphone")
    flows = write_flows(tmp / "flows", shipped=False, only=("desk.yaml",))
    data = tmp / "ivr"
    data.mkdir()
    add_agent(data, "ann", "agent1001", ["billing"], "ann-password-1", name="Ann Agent", phone="browser")
    add_agent(data, "bob", "agent1002", ["support"], "bob-password-1", name="Bob Agent", phone="browser")
    proc = ControllerProcess(
        flows_dir=flows,
        data_dir=data,
        env={
            "IVR_FLOWS_DEFAULT": "desk",
            "IVR_AMI_SECRET": lab.ami_secret,
            "IVR_SPEECH_ENGINE": "off",
            "IVR_SPEECH_SOUNDS_DIR": str(lab.sounds_dir),
            "IVR_DESKTOP_SESSION_CHECK": "0.5",
            "IVR_DESKTOP_SOFTPHONE_WSS_URL": WSS_URL,
        },
    )
    proc.start(timeout=60)
    proc.wait_for_log("AMI connected")
    yield proc
    proc.stop()
    lab.restart()  # the agents' queue memberships must not outlive the module


async def sign_in(browser: Any, base: str, username: str, password: str) -> tuple[Any, dict[str, Any]]:
    """The login form, as an agent does it; returns the page and the SIP account the page was
    given (read from the network, as the page received it) once the phone is registered."""
    # ignore_https_errors: the lab's self-signed certificate on Asterisk's WSS port
    context = await browser.new_context(ignore_https_errors=True, viewport={"width": 1280, "height": 900})
    page = await context.new_page()
    await page.goto(f"{base}/desktop/login")
    await page.fill("#username", username)
    await page.fill("#password", password)
    async with page.expect_response(lambda r: r.url.endswith("/desktop/api/softphone")) as reply:
        await page.click("#signin")
    account = await (await reply.value).json()
    await page.wait_for_selector("#softphone[data-reg=registered]", timeout=20000)
    return page, account


async def wait_until(check: Callable[[], Awaitable[bool]], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout}s: {what}")
        await asyncio.sleep(0.1)


class Recorder:
    """What the caller's channel is sent, recorded by Asterisk (MixMonitor's t() file)."""

    def __init__(self, lab: AsteriskLab, ami: AmiClient, channel: str) -> None:
        self.lab, self.ami, self.channel = lab, ami, channel

    async def heard(self, name: str, seconds: float = 1.5) -> list[int]:
        inside = f"/tmp/ivr-softphone-{name}-{time.time_ns()}"
        await self.ami.action(
            {"Action": "MixMonitor", "Channel": self.channel, "File": f"{inside}.wav", "Options": f"t({inside}-t.wav)"}
        )
        await asyncio.sleep(seconds)  # a stretch of audio, however long it takes to arrive
        await self.ami.action({"Action": "StopMixMonitor", "Channel": self.channel})
        path = self.lab.root / f"{inside.lstrip('/')}-t.wav"

        async def closed() -> bool:  # MixMonitor writes the header's sizes when it closes the file
            try:
                samples, _ = read_wav(path)
            except (OSError, EOFError, ValueError):
                return False
            return len(samples) > 0

        await wait_until(closed, 5, f"MixMonitor wrote {path}")
        samples, rate = read_wav(path)
        assert rate == 8000
        for leftover in path.parent.glob(f"{Path(inside).name}*"):
            leftover.unlink()
        return samples


async def test_browser_answers_with_the_pop_two_way_audio_hold_music_and_hang_up_leaves_no_channel(
    lab: AsteriskLab, softdesk: ControllerProcess, prompt_ms: dict[str, int], tmp_path: Path
) -> None:
    base = f"http://127.0.0.1:{web_port(softdesk)}"
    tone = write_tone_wav(tmp_path / "tone.wav", freq=TONE_HZ)
    menu_key = ms(prompt_ms, MENU) // 2  # into the menu prompt: DTMF barges in
    ami = AmiClient(username=lab.ami_username, secret=lab.ami_secret, events=True)
    connects: list[ev.AgentConnect] = []

    async def keep(event: ev.AmiEvent) -> None:
        if isinstance(event, ev.AgentConnect):
            connects.append(event)

    ami.on_event(keep)
    await ami.connect()
    flags = (*WEBRTC_ARGS, f"--use-file-for-fake-audio-capture={tone}")
    try:
        async with chromium(extra_args=flags) as browser:
            ann, account = await sign_in(browser, base, "ann", "ann-password-1")
            assert account["username"] == "agent1001-webrtc" and len(account["password"]) >= 32
            assert account["password"] not in softdesk.log_path.read_text()  # never logged
            assert "agent1001-webrtc" in lab.cli("pjsip show contacts")
            await ann.click("#btn-ready")
            await ann.wait_for_selector("#status[data-status=ready]")

            call = asyncio.create_task(
                run_caller_async(
                    CallerScript(
                        caller_id=CALLER,
                        dialled=NUMBER,
                        dtmf=(Dtmf("1", menu_key), Dtmf(ACCOUNT, menu_key + 2500)),
                        max_call_ms=90000,
                    ),
                    timeout=120,
                )
            )
            await ann.wait_for_selector("#softphone[data-call=ringing]", timeout=60000)
            await ann.wait_for_selector("#call.ringing", timeout=5000)
            rings, pops = await ann.evaluate("[window.__ivrRings, window.__ivrPops]")
            assert len(rings) == 1 and len(pops) == 1
            print(f"\nINVITE in the page - pop painted: {(rings[0]['at'] - pops[0]['painted_at']) * 1000:+.0f} ms")
            assert abs(rings[0]["at"] - pops[0]["painted_at"]) < 2.0  # together (bench/softphone.py: p99)

            await ann.click("#sp-answer")
            await ann.wait_for_selector("#softphone[data-call=active]", timeout=10000)
            await ann.wait_for_selector("#call.active", timeout=10000)

            async def connected() -> bool:
                return bool(connects)

            await wait_until(connected, 10, "AgentConnect")
            assert connects[0].interface == "PJSIP/agent1001-webrtc"

            async def flowing() -> bool:
                stats = await ann.evaluate("IvrSoftphone.stats()")
                return bool(stats["inbound"] > 25 and stats["outbound"] > 25)

            await wait_until(flowing, 10, "RTP both ways in the browser's getStats")
            recorder = Recorder(lab, ami, connects[0].caller.name)
            talk = await recorder.heard("talk")
            print(f"caller hears the agent's tone: share {tone_share(talk, 8000, TONE_HZ):.2f}, rms {rms(talk):.0f}")
            assert tone_share(talk, 8000, TONE_HZ) > 0.5

            await ann.click("#sp-hold")
            await ann.wait_for_selector("#softphone[data-call=held]", timeout=5000)
            # 4 s, not 1.5: the music's files are shuffled, and two of them fade in from near silence
            # (macroform-robot_dity: rms 8, 66, 393 over its first three half seconds)
            held = await recorder.heard("hold", seconds=4.0)
            print(f"on hold: share {tone_share(held, 8000, TONE_HZ):.2f}, rms {rms(held):.0f}")
            assert tone_share(held, 8000, TONE_HZ) < 0.1 and rms(held) > 100  # music, not silence

            await ann.click("#sp-hold")
            await ann.wait_for_selector("#softphone[data-call=active]", timeout=5000)
            resumed = await recorder.heard("resumed")
            assert tone_share(resumed, 8000, TONE_HZ) > 0.5

            await ann.click("#sp-hangup")
            await ann.wait_for_selector("#softphone[data-call=idle]", timeout=5000)
            result = await call
            assert result.ok and result.who_hung_up == "ivr", result

            async def no_channels() -> bool:
                return lab.cli("core show channels count").startswith("0 active channels")

            await wait_until(no_channels, 10, "no channel left after the browser hung up")
    finally:
        await ami.stop()


async def test_consult_to_a_second_agents_browser_pops_the_card_and_the_caller_ends_up_talking_to_them(
    lab: AsteriskLab, softdesk: ControllerProcess, prompt_ms: dict[str, int], tmp_path: Path
) -> None:
    """Ann answers in her browser and consults Bob, whose phone is his browser too: his page rings
    with the caller's card (the journey Ann sees, who consulted and the note); he answers in the
    page, Ann completes, and the caller hears Bob (his tone in the caller's ear); Bob hangs up and no
    channel is left. The caller's audio to Bob is measured too: RTP packets counted in his page."""
    base = f"http://127.0.0.1:{web_port(softdesk)}"
    tone = write_tone_wav(tmp_path / "tone.wav", freq=TONE_HZ)
    # the caller speaks (a tone) the whole call, so RTP toward Bob's page flows all along
    voice = write_tone_wav(tmp_path / "caller.wav", freq=CALLER_HZ, seconds=90, rate=8000)
    menu_key = ms(prompt_ms, MENU) // 2
    ami = AmiClient(username=lab.ami_username, secret=lab.ami_secret, events=True)
    await ami.connect()
    flags = (*WEBRTC_ARGS, f"--use-file-for-fake-audio-capture={tone}")
    try:
        async with chromium(extra_args=flags) as browser:
            ann, _ = await sign_in(browser, base, "ann", "ann-password-1")
            bob, _ = await sign_in(browser, base, "bob", "bob-password-1")
            for page in (ann, bob):
                await page.click("#btn-ready")
                await page.wait_for_selector("#status[data-status=ready]")
            call = asyncio.create_task(
                run_caller_async(
                    CallerScript(
                        caller_id=CALLER,
                        dialled=NUMBER,
                        dtmf=(Dtmf("1", menu_key), Dtmf(ACCOUNT, menu_key + 2500)),
                        audio=voice,
                        max_call_ms=90000,
                    ),
                    timeout=120,
                )
            )
            await ann.wait_for_selector("#softphone[data-call=ringing]", timeout=60000)
            await ann.click("#sp-answer")
            await ann.wait_for_selector("#call.active", timeout=10000)
            caller_uid, journey = await ann.evaluate(
                "[window.desk.state.pop.uniqueid, window.desk.state.pop.journey_id]"
            )
            ann_path = await ann.locator('#call [data-f="path"]').inner_text()

            form = '#call [data-f="transfer"]'
            await ann.wait_for_selector(f"{form}:not([hidden])")
            await ann.select_option(f"{form} select[name=kind]", "agent")
            await ann.fill(f"{form} input[name=target]", "bob")
            await ann.fill(f"{form} input[name=note]", "Wants the annual plan; already verified.")
            clicked = time.time()
            await ann.click(f"{form} button[name=consult]")
            banner = await bob.wait_for_selector('#call [data-f="transfer-from"]', timeout=10000)
            painted = time.time()
            assert banner is not None
            said = await banner.text_content() or ""
            assert "by Ann Agent" in said and "Wants the annual plan; already verified." in said, said
            assert await bob.evaluate("window.desk.state.pop.journey_id") == journey
            assert await bob.locator('#call [data-f="path"]').inner_text() == ann_path  # the caller's journey
            assert ACCOUNT in await bob.locator('#call [data-f="slots"]').inner_text()
            await bob.wait_for_selector("#softphone[data-call=ringing]", timeout=10000)
            print(f"\nclick on Consult -> card painted on Bob's page: {(painted - clicked) * 1000:.0f} ms")
            await ann.wait_for_selector(f"{form} button[name=complete]:not([hidden])", timeout=5000)

            await bob.click("#sp-answer")
            await bob.wait_for_selector("#call.active", timeout=10000)
            completed = time.time()
            await ann.click(f"{form} button[name=complete]")
            await ann.wait_for_selector("#softphone[data-call=idle]", timeout=10000)  # Ann's leg is gone
            await ann.wait_for_selector("#status[data-status=wrap_up]", timeout=10000)
            print(f"Complete -> Ann's leg hung up in her page: {(time.time() - completed) * 1000:.0f} ms")
            # after the complete the card says the call is Bob's now, by Ann's transfer
            await bob.wait_for_function(
                "document.querySelector('#call [data-f=transfer-from] h3').textContent === 'Transferred by Ann Agent'",
                timeout=10000,
            )

            channels = await ami.action_list({"Action": "CoreShowChannels"})
            caller = next(str(c["Channel"]) for c in channels if c.get("Uniqueid") == caller_uid)
            bobs = [c for c in channels if str(c.get("Channel", "")).startswith("PJSIP/agent1002-webrtc-")]
            assert len(bobs) == 1 and bobs[0].get("BridgeId"), channels
            mine = next(c for c in channels if c.get("Uniqueid") == caller_uid)
            assert mine.get("BridgeId") == bobs[0]["BridgeId"], "the caller is not in Bob's bridge"
            assert not [c for c in channels if str(c.get("Channel", "")).startswith("PJSIP/agent1001-webrtc-")]

            before = await bob.evaluate("IvrSoftphone.stats()")
            talk = await Recorder(lab, ami, caller).heard("bob")
            after = await bob.evaluate("IvrSoftphone.stats()")
            print(f"caller hears Bob's tone: share {tone_share(talk, 8000, TONE_HZ):.2f}, rms {rms(talk):.0f}")
            assert tone_share(talk, 8000, TONE_HZ) > 0.5  # Ann's leg is gone: the tone is Bob's
            heard, sent = after["inbound"] - before["inbound"], after["outbound"] - before["outbound"]
            print(f"Bob's page over that time: {heard} RTP packets from the caller, {sent} to them")
            assert sent > 25
            if heard <= 25:
                print(lab.cli("pjsip show channelstats"))
            assert heard > 25, f"the caller's audio does not reach the consulted browser agent: {heard} packets"

            await bob.click("#sp-hangup")
            await bob.wait_for_selector("#softphone[data-call=idle]", timeout=5000)
            result = await call
            assert result.ok and result.who_hung_up == "ivr", result

            async def no_channels() -> bool:
                return lab.cli("core show channels count").startswith("0 active channels")

            await wait_until(no_channels, 10, "no channel left after Bob hung up")
            await bob.wait_for_selector("#status[data-status=wrap_up]", timeout=10000)
    finally:
        await ami.stop()


async def test_credentials_are_per_agent_and_revoked_at_logout_and_when_the_agent_is_disabled(
    lab: AsteriskLab, softdesk: ControllerProcess
) -> None:
    base = f"http://127.0.0.1:{web_port(softdesk)}"
    cert = str(lab.tls_certificate()[0])
    async with chromium(extra_args=WEBRTC_ARGS) as browser:
        ann, ann_account = await sign_in(browser, base, "ann", "ann-password-1")
        _bob, bob_account = await sign_in(browser, base, "bob", "bob-password-1")
        assert ann_account["password"] != bob_account["password"]
        password = ann_account["password"]

        # what ann's page was given registers ann's endpoint...
        assert await sipws.register(WSS_URL, "agent1001-webrtc", password, cafile=cert) == 200
        # ...and nobody else's, whether it says it is ann or bob
        assert await sipws.register(WSS_URL, "agent1002-webrtc", password, cafile=cert) == 401
        refused = await sipws.register(WSS_URL, "agent1002-webrtc", password, username="agent1001-webrtc", cafile=cert)
        assert refused in (401, 403)
        assert await sipws.register(WSS_URL, "agent1002-webrtc", bob_account["password"], cafile=cert) == 200

        await ann.click("#btn-logout")
        await ann.wait_for_url(f"{base}/desktop/login")
        assert await sipws.register(WSS_URL, "agent1001-webrtc", password, cafile=cert) != 200

        # ivr agents disable: another process, only the database changes; the desktop's session
        # check notices and revokes bob's SIP password too
        await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "ivr.cli", "agents", "disable", "bob"],
            check=True,
            capture_output=True,
            env={**os.environ, "IVR_DATA_DIR": str(softdesk.data_dir)},
        )

        async def bob_refused() -> bool:
            status = await sipws.register(WSS_URL, "agent1002-webrtc", bob_account["password"], cafile=cert)
            return status != 200

        await wait_until(bob_refused, 10, "bob's SIP password revoked after ivr agents disable")
