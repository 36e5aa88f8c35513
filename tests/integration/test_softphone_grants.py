"""Browser softphone credentials between two controller nodes, all real: a Redis bus between a
follower (the node serving the agent's page) and the ACD leader, whose AMI puts the credentials
into the lab Asterisk's astdb. No message Redis keeps holds the password, yet the password the
follower hands its page registers over WSS; a password a dead controller left in astdb stops
working when a leader takes the lead, and an open page's password is put back as it was.

The nodes are two :class:`ivr.acd.desk.AcdDesk` in this process (the bus and AMI are the real
ones; ``ivr serve`` adds nothing to this path). Then one ``ivr serve`` and Chromium for what only
they show: a controller that starts removes the password a dead one left, a reload keeps the
page's phone working past the grace, a page whose websocket came back registers with new
credentials, and a closed tab's password is gone after the grace.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from playwright.async_api import Page

from ivr.acd import sipcreds
from ivr.acd.desk import AcdDesk
from ivr.acd.service import Acd
from ivr.acd.sipcreds import SoftphoneKeys
from ivr.ami.client import AmiClient, AmiError
from ivr.bus.pubsub import RedisBus
from ivr.store.customers import CustomerStore
from ivr.store.journeys import JourneyStore, make_engine
from lab import sipws
from lab.agents import add_agent
from lab.asterisk import WSS_PORT, AsteriskLab
from lab.browser import WEBRTC_ARGS, chromium
from lab.controller import ControllerProcess
from lab.flows import write_flows
from lab.redis import RedisServer, throwaway_redis
from lab.require import require

WSS_URL = f"wss://127.0.0.1:{WSS_PORT}/ws"
#: desktop.softphone_revoke_grace of the module's controller (seconds)
GRACE = 1.0
#: what a controller that died left in astdb for ann, before the module's controller starts
DEAD_CONTROLLERS = "DeadControllerPassword0123456789"


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    require("redis-server")
    with throwaway_redis() as server:
        yield server


@pytest.fixture(scope="module")
def fresh_lab(lab: AsteriskLab) -> AsteriskLab:
    # sorcery.conf (auth objects from astdb) and pjsip.conf (the -webrtc endpoints) of a checkout
    # that has browser softphones: an Asterisk started with older files is restarted with these
    if "agent1001-webrtc" not in lab.cli("pjsip show endpoints"):
        lab.restart()
    return lab


class Nodes:
    """A leader (AMI) and a follower (no AMI), each with its own Redis connection."""

    def __init__(self, lab: AsteriskLab, url: str, journeys: JourneyStore) -> None:
        self.ami = AmiClient(username=lab.ami_username, secret=lab.ami_secret, events=True)
        self.leader_bus, self.follower_bus = RedisBus(url), RedisBus(url)
        customers = CustomerStore(journeys.engine)
        self.leader_acd = Acd(ami=self.ami, journeys=journeys, customers=customers, bus=self.leader_bus)
        self.follower_acd = Acd(ami=None, journeys=journeys, customers=customers, bus=self.follower_bus)
        # two nodes configured alike: the same ami.secret, so the same softphone keys
        self.leader = AcdDesk(
            self.leader_acd,
            self.leader_bus,
            node="leader",
            is_leader=lambda: True,
            keys=SoftphoneKeys.from_secret(lab.ami_secret),
        )
        self.follower = AcdDesk(
            self.follower_acd,
            self.follower_bus,
            node="follower",
            is_leader=lambda: False,
            keys=SoftphoneKeys.from_secret(lab.ami_secret),
        )

    async def start(self) -> None:
        for bus in (self.leader_bus, self.follower_bus):
            await bus.start()
        await self.leader.start()
        await self.follower.start()
        await self.ami.start(wait=10)
        assert self.ami.is_connected

    async def stop(self) -> None:
        for desk in (self.leader, self.follower):
            await desk.stop()
        await self.ami.stop()
        for acd in (self.leader_acd, self.follower_acd):
            await acd.stop()
        for bus in (self.leader_bus, self.follower_bus):
            await bus.stop()


@pytest.fixture
async def nodes(fresh_lab: AsteriskLab, redis_server: RedisServer, tmp_path: Path) -> AsyncIterator[Nodes]:
    journeys = JourneyStore(make_engine(f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite3'}"))
    await journeys.start()
    parts = Nodes(fresh_lab, redis_server.url, journeys)
    await parts.start()
    try:
        yield parts
    finally:
        await parts.stop()
        await journeys.stop()


async def astdb(ami: AmiClient, endpoint: str) -> str | None:
    """The auth object's password in astdb, through AMI (None: no such entry)."""
    try:
        await ami.action({"Action": "DBGet", "Family": sipcreds.FAMILY, "Key": sipcreds.auth_id(endpoint)})
    except AmiError as exc:
        assert "not found" in str(exc).lower(), exc
        return None
    # DBGet's value comes in a DBGetResponse event; the CLI reads the same entry
    return "present"


def stored_password(lab: AsteriskLab, endpoint: str) -> str | None:
    out = lab.cli(f"database get {sipcreds.FAMILY} {sipcreds.auth_id(endpoint)}")
    if "Value:" not in out:
        return None
    return str(json.loads(out.split("Value:", 1)[1].strip())["password"])


async def wait_until(check: Callable[[], Awaitable[bool]], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout}s: {what}")
        await asyncio.sleep(0.05)


async def everything_redis_keeps(url: str) -> list[dict[Any, Any]]:
    """Every entry of every stream in Redis (the bus's topics: what a reader of Redis sees)."""
    client = aioredis.Redis.from_url(url)
    try:
        entries: list[dict[Any, Any]] = []
        async for key in client.scan_iter():
            if await client.type(key) == b"stream":
                entries += [dict(fields or {}) for _id, fields in (await client.xrange(key)) or []]
        return entries
    finally:
        await client.aclose()


async def test_a_followers_grant_crosses_redis_without_the_password_and_a_new_leader_removes_a_dead_controllers(
    fresh_lab: AsteriskLab, redis_server: RedisServer, nodes: Nodes
) -> None:
    lab = fresh_lab
    cert = str(lab.tls_certificate()[0])
    # a controller that died left bob's last password in astdb, and it works
    left = "DeadControllerPassword0123456789"
    await nodes.ami.action(sipcreds.grant_action("agent1002", left))
    assert await sipws.register(WSS_URL, "agent1002-webrtc", left, cafile=cert) == 200

    # the leader takes the lead: astdb's softphone family is cleared
    await nodes.leader.serve(1)
    assert await astdb(nodes.ami, "agent1002") is None
    assert await sipws.register(WSS_URL, "agent1002-webrtc", left, cafile=cert) != 200  # no auth object: 500

    # ann's page is served by the follower: the password it hands her page registers...
    password = await nodes.follower.grant_softphone("a1", "agent1001")
    assert stored_password(lab, "agent1001") == password
    assert await sipws.register(WSS_URL, "agent1001-webrtc", password, cafile=cert) == 200
    # ...and nothing Redis keeps holds it, though the grant went through Redis
    entries = await everything_redis_keeps(redis_server.url)
    wire = repr(entries)
    assert nodes.follower.grants["a1"].nonce in wire  # the grant itself is there
    assert password not in wire

    # the lead changes hands (here: given up and taken again): astdb is cleared once more, and the
    # follower's open page gets its same password back, so its phone goes on without a reload
    await nodes.leader.unserve()
    await nodes.leader.serve(2)

    async def put_back() -> bool:
        return stored_password(lab, "agent1001") == password

    await wait_until(put_back, 5, "the follower's live grant put back by the new leader")
    assert await sipws.register(WSS_URL, "agent1001-webrtc", password, cafile=cert) == 200

    # her tab closed past the grace: revoked, and the old password refused
    await nodes.follower.revoke_softphone("a1", "agent1001")
    assert await astdb(nodes.ami, "agent1001") is None
    assert await sipws.register(WSS_URL, "agent1001-webrtc", password, cafile=cert) != 200
    assert password not in repr(await everything_redis_keeps(redis_server.url))


@pytest.fixture(scope="module")
def controller(fresh_lab: AsteriskLab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControllerProcess]:
    lab = fresh_lab
    tmp = tmp_path_factory.mktemp("softphone-grants")
    data = tmp / "ivr"
    data.mkdir()
    add_agent(data, "ann", "agent1001", ["billing"], "ann-password-1", name="Ann Agent", phone="browser")

    async def dead_controllers_leftover() -> None:
        ami = AmiClient(username=lab.ami_username, secret=lab.ami_secret)
        await ami.connect()
        try:
            await ami.action(sipcreds.grant_action("agent1001", DEAD_CONTROLLERS))
        finally:
            ami.close()

    asyncio.run(dead_controllers_leftover())
    proc = ControllerProcess(
        flows_dir=write_flows(tmp / "flows", shipped=False, only=("desk.yaml",)),
        data_dir=data,
        env={
            "IVR_FLOWS_DEFAULT": "desk",
            "IVR_AMI_SECRET": lab.ami_secret,
            "IVR_SPEECH_ENGINE": "off",
            "IVR_SPEECH_SOUNDS_DIR": str(lab.sounds_dir),
            "IVR_DESKTOP_SOFTPHONE_WSS_URL": WSS_URL,
            "IVR_DESKTOP_SOFTPHONE_REVOKE_GRACE": str(GRACE),
        },
    )
    proc.start(timeout=60)
    proc.wait_for_log("softphone credentials in astdb cleared")
    yield proc
    proc.stop()


def web_base(controller: ControllerProcess) -> str:
    controller.wait_for_log("HTTP API listening on")
    match = re.search(r"HTTP API listening on http://127\.0\.0\.1:(\d+)/", controller.log_path.read_text())
    assert match, "no HTTP address in the controller's log"
    return f"http://127.0.0.1:{match.group(1)}"


async def signed_in(browser: Any, base: str) -> tuple[Page, str]:
    """Ann signs in; returns her page and the SIP password it was given, once it registered."""
    context = await browser.new_context(ignore_https_errors=True)
    page = await context.new_page()
    await page.goto(f"{base}/desktop/login")
    await page.fill("#username", "ann")
    await page.fill("#password", "ann-password-1")
    async with page.expect_response(lambda r: r.url.endswith("/desktop/api/softphone")) as reply:
        await page.click("#signin")
    account = await (await reply.value).json()
    await page.wait_for_selector("#softphone[data-reg=registered]", timeout=20000)
    return page, str(account["password"])


@pytest.mark.requires("chromium")
async def test_a_started_controller_removes_a_dead_ones_password_a_reload_keeps_the_phone_a_closed_tab_loses_it(
    fresh_lab: AsteriskLab, controller: ControllerProcess
) -> None:
    lab = fresh_lab
    cert = str(lab.tls_certificate()[0])
    base = web_base(controller)
    # the controller took the lead and cleared what the dead one left
    assert stored_password(lab, "agent1001") is None
    assert await sipws.register(WSS_URL, "agent1001-webrtc", DEAD_CONTROLLERS, cafile=cert) != 200
    async with chromium(extra_args=WEBRTC_ARGS) as browser:
        page, first = await signed_in(browser, base)
        assert stored_password(lab, "agent1001") == first
        # a reload: the old socket closes, the new page asks again and registers
        async with page.expect_response(lambda r: r.url.endswith("/desktop/api/softphone")) as reply:
            await page.reload()
        password = str((await (await reply.value).json())["password"])
        await page.wait_for_selector("#softphone[data-reg=registered]", timeout=20000)
        await page.wait_for_selector("#link.up", timeout=10000)
        await asyncio.sleep(GRACE * 2)  # past the grace the closed socket of the old page started
        assert stored_password(lab, "agent1001") == password
        assert await sipws.register(WSS_URL, "agent1001-webrtc", password, cafile=cert) == 200
        # the desktop's websocket drops and comes back (desktop.js): the page asks for new
        # credentials, since they may have been revoked meanwhile, and its phone registers with them
        await page.evaluate("document.querySelector('#softphone').dataset.reg = 'before-the-drop'")
        async with page.expect_response(lambda r: r.url.endswith("/desktop/api/softphone")) as reply:
            await page.evaluate("state.ws.close()")
        renewed = str((await (await reply.value).json())["password"])
        assert renewed != password and stored_password(lab, "agent1001") == renewed
        await page.wait_for_selector("#softphone[data-reg=registered]", timeout=20000)  # the new phone's
        password = renewed
        # the tab closes: after the grace the password is gone from astdb and refused
        await page.context.close()

        async def revoked() -> bool:
            return stored_password(lab, "agent1001") is None

        await wait_until(revoked, GRACE + 5, "the closed tab's SIP password deleted after the grace")
        assert await sipws.register(WSS_URL, "agent1001-webrtc", password, cafile=cert) != 200
    assert password not in controller.log_path.read_text()
