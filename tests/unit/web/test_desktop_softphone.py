"""The browser softphone's credentials through the desktop's HTTP surface (aiohttp + SQLite, the
ACD's AMI replaced by one that keeps what it is sent): a SIP password per request for browser
agents only, pushed to Asterisk as DBPut, handed to that page only, never logged, deleted at
logout and when the socket's session check finds the session gone. The same path on the real
Asterisk: tests/integration/test_softphone.py."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from ivr.acd.service import Acd
from ivr.bus.pubsub import MemoryBus
from ivr.store.agents import AgentStore
from ivr.store.customers import CustomerStore
from ivr.web.desktop import RevokeLater, setup_desktop
from tests.unit.web.desk_parts import stores_with_two_agents
from tests.unit.web.test_desktop import Desk

#: the last-tab-closed grace of these tests (seconds)
GRACE = 0.3


class RecordingAmi:
    """Connected, accepts every action, keeps what it was sent."""

    def __init__(self) -> None:
        self.sent: list[dict[str, str]] = []
        self.connected = asyncio.Event()
        self.connected.set()

    def on_event(self, handler: Any) -> None: ...
    def on_connected(self, handler: Any) -> None: ...

    async def action(self, action: dict[str, str]) -> dict[str, str]:
        self.sent.append(action)
        return {"Response": "Success"}

    def db(self) -> list[tuple[str, str, str]]:
        return [(a["Action"], a["Key"], a.get("Val", "")) for a in self.sent if a["Action"] in ("DBPut", "DBDel")]

    @property
    def is_connected(self) -> bool:
        return True


@pytest.fixture
async def parts(tmp_path: Path) -> AsyncIterator[tuple[Desk, RecordingAmi, AgentStore]]:
    journeys, agents = await stores_with_two_agents(tmp_path / "db.sqlite3")
    await agents.set_phone("ann", "browser")
    bus = MemoryBus()
    ami = RecordingAmi()
    acd = Acd(ami=ami, journeys=journeys, customers=CustomerStore(journeys.engine), bus=bus)  # type: ignore[arg-type]
    app = web.Application()
    setup_desktop(
        app,
        acd=acd,
        agents=agents,
        bus=bus,
        session_check=0.05,
        softphone_url="wss://pbx.example:8089/ws",
        softphone_revoke_grace=GRACE,
    )
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    yield Desk(server, acd, journeys), ami, agents
    await server.close()
    await acd.stop()
    await journeys.stop()


async def account(desk: Desk, session: aiohttp.ClientSession, csrf: str) -> tuple[int, dict[str, Any]]:
    reply = await session.post(f"{desk.base}/desktop/api/softphone", headers={"X-CSRF-Token": csrf})
    body = await reply.json() if reply.status == 200 else {}
    assert reply.status != 200 or reply.headers["Cache-Control"] == "no-store"
    return reply.status, body


async def test_a_browser_agent_gets_a_fresh_password_that_asterisk_gets_too_and_logout_revokes_it(
    parts: tuple[Desk, RecordingAmi, AgentStore], caplog: pytest.LogCaptureFixture
) -> None:
    desk, ami, _agents = parts
    caplog.set_level(logging.DEBUG)
    session, csrf = await desk.login("ann", "ann-password")
    try:
        assert (await account(desk, session, "wrong"))[0] == 403  # CSRF like every change
        status, first = await account(desk, session, csrf)
        assert status == 200
        assert first["phone"] == "browser" and first["username"] == "agent1001-webrtc"
        assert first["uri"] == "sip:agent1001-webrtc@pbx.example" and first["ws_url"] == "wss://pbx.example:8089/ws"
        _, second = await account(desk, session, csrf)
        assert second["password"] != first["password"]  # one per request: the latest page registers
        puts = ami.db()
        assert [(action, key) for action, key, _ in puts] == [("DBPut", "agent1001-webrtc-auth")] * 2
        assert json.loads(puts[-1][2])["password"] == second["password"]
        page = await session.get(f"{desk.base}/desktop/")
        assert "connect-src 'self' wss://pbx.example:8089;" in page.headers["Content-Security-Policy"]
        await session.post(f"{desk.base}/desktop/api/logout", headers={"X-CSRF-Token": csrf})
        assert ami.db()[-1][:2] == ("DBDel", "agent1001-webrtc-auth")
    finally:
        await session.close()
    assert first["password"] not in caplog.text and second["password"] not in caplog.text


async def test_a_sip_phone_agent_gets_no_credentials(parts: tuple[Desk, RecordingAmi, AgentStore]) -> None:
    desk, ami, _agents = parts
    session, csrf = await desk.login("bob", "bob-password")
    try:
        assert await account(desk, session, csrf) == (200, {"phone": "sip"})
        await session.post(f"{desk.base}/desktop/api/logout", headers={"X-CSRF-Token": csrf})
    finally:
        await session.close()
    assert ami.db() == []


async def test_a_session_revoked_elsewhere_revokes_the_sip_password(
    parts: tuple[Desk, RecordingAmi, AgentStore],
) -> None:
    desk, ami, agents = parts
    session, csrf = await desk.login("ann", "ann-password")
    try:
        await account(desk, session, csrf)
        async with session.ws_connect(f"{desk.base}/desktop/ws?csrf={csrf}", origin=desk.base) as ws:
            await agents.set_disabled("ann", True)  # ivr agents disable: only the database changes
            message = await ws.receive(timeout=5)
            while message.type == aiohttp.WSMsgType.TEXT:  # the state on connecting
                message = await ws.receive(timeout=5)
            assert message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
    finally:
        await session.close()
    assert ami.db()[-1][:2] == ("DBDel", "agent1001-webrtc-auth")


async def test_the_queues_ring_the_browser_endpoint_of_a_browser_agent(
    parts: tuple[Desk, RecordingAmi, AgentStore],
) -> None:
    desk, ami, _agents = parts
    session, csrf = await desk.login("ann", "ann-password")
    try:
        async with session.ws_connect(f"{desk.base}/desktop/ws?csrf={csrf}", origin=desk.base) as ws:
            while (await ws.receive_json(timeout=5))["type"] != "state":
                pass
    finally:
        await session.close()
    interfaces = {a["Interface"] for a in ami.sent if a["Action"] == "QueueAdd"}
    assert interfaces == {"PJSIP/agent1001-webrtc"}


async def test_a_closed_tab_revokes_after_the_grace_and_a_reload_within_it_keeps_the_phone(
    parts: tuple[Desk, RecordingAmi, AgentStore],
) -> None:
    desk, ami, _agents = parts
    session, csrf = await desk.login("ann", "ann-password")
    ws_url = f"{desk.base}/desktop/ws?csrf={csrf}"
    try:
        _, given = await account(desk, session, csrf)
        ws = await session.ws_connect(ws_url, origin=desk.base)
        await ws.close()
        await asyncio.sleep(GRACE / 3)
        ws = await session.ws_connect(ws_url, origin=desk.base)  # the reload's new socket, in time
        await asyncio.sleep(GRACE * 2)
        assert ami.db()[-1][0] == "DBPut"  # still the page's password: nothing deleted
        assert json.loads(ami.db()[-1][2])["password"] == given["password"]
        await ws.close()  # the tab closed for good
        deadline = asyncio.get_running_loop().time() + GRACE + 2
        while ami.db()[-1][0] != "DBDel":
            assert asyncio.get_running_loop().time() < deadline, "not revoked after the grace"
            await asyncio.sleep(0.02)
        assert ami.db()[-1][:2] == ("DBDel", "agent1001-webrtc-auth")
        # a page that comes back later asks again and gets a password that works
        status, again = await account(desk, session, csrf)
        assert status == 200 and json.loads(ami.db()[-1][2])["password"] == again["password"]
    finally:
        await session.close()


async def test_no_revoke_timer_is_started_after_the_desktop_stopped() -> None:
    """A socket handler that outlived the server's shutdown grace closes after ``stop``: its
    timer would belong to nobody and fire against a stopped desk."""

    class Granted:  # the one thing RevokeLater reads of the desk: this node's grants
        grants = {"7": object()}

    revoke = RevokeLater(Granted(), 0.01)  # type: ignore[arg-type]
    agent = {"id": "7", "phone": "browser", "username": "ann"}
    revoke.schedule(agent)
    assert [t for t in asyncio.all_tasks() if t.get_name() == "softphone-revoke-7"]  # before: one
    await revoke.stop()
    revoke.schedule(agent)
    assert not [t for t in asyncio.all_tasks() if t.get_name() == "softphone-revoke-7" and not t.done()]
