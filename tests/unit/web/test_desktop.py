"""The desktop's HTTP and websocket surface on a real aiohttp server and SQLite, without Asterisk:
login with CSRF, sessions, the websocket's checks, pops reaching only their agent, chats."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from ivr.acd.chat import ChatContact
from ivr.acd.service import Acd, agent_topic
from ivr.bus.pubsub import MemoryBus
from ivr.flow.model import Journey
from ivr.store.customers import CustomerStore
from ivr.store.journeys import JourneyStore
from ivr.web.desktop import setup_desktop
from tests.unit.web.desk_parts import stores_with_two_agents


class Desk:
    def __init__(self, server: TestServer, acd: Acd, journeys: JourneyStore) -> None:
        self.server = server
        self.acd = acd
        self.journeys = journeys
        self.base = str(server.make_url("")).rstrip("/")

    async def login(self, username: str, password: str) -> tuple[aiohttp.ClientSession, str]:
        session = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
        page = await (await session.get(f"{self.base}/desktop/login")).text()
        match = re.search(r'name="csrf" value="([^"]+)"', page)
        assert match
        reply = await session.post(
            f"{self.base}/desktop/login",
            data={"username": username, "password": password, "csrf": match.group(1)},
            allow_redirects=False,
        )
        assert reply.status == 303
        if reply.headers["Location"] != "/desktop/":
            await session.close()
            raise PermissionError(reply.headers["Location"])
        me = await (await session.get(f"{self.base}/desktop/api/me")).json()
        return session, str(me["csrf"])


@pytest.fixture
async def desk(tmp_path: Path) -> AsyncIterator[Desk]:
    journeys, agents = await stores_with_two_agents(tmp_path / "db.sqlite3")
    bus = MemoryBus()
    acd = Acd(ami=None, journeys=journeys, customers=CustomerStore(journeys.engine), bus=bus)
    app = web.Application()
    setup_desktop(app, acd=acd, agents=agents, bus=bus)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    yield Desk(server, acd, journeys)
    await server.close()
    await acd.stop()
    await journeys.stop()


async def next_of(ws: aiohttp.ClientWebSocketResponse, kind: str) -> dict[str, Any]:
    while True:
        message = await ws.receive_json(timeout=5)
        if message["type"] == kind:
            return dict(message)


async def test_login_needs_the_form_csrf_and_the_right_password(desk: Desk) -> None:
    async with aiohttp.ClientSession() as anon:
        page = await anon.get(f"{desk.base}/desktop/", allow_redirects=False)
        assert page.status == 303 and page.headers["Location"] == "/desktop/login"
        forged = await anon.post(
            f"{desk.base}/desktop/login",
            data={"username": "ann", "password": "ann-password", "csrf": "guess"},
            allow_redirects=False,
        )
        assert forged.status == 403
        assert (await anon.get(f"{desk.base}/desktop/api/me")).status == 401
    with pytest.raises(PermissionError, match="error=1"):
        await desk.login("ann", "wrong-password")
    with pytest.raises(PermissionError, match="error=1"):
        await desk.login("nobody", "whatever-pass")
    session, csrf = await desk.login("ann", "ann-password")
    async with session:
        cookie = next(c for c in session.cookie_jar if c.key == "ivr_session")
        assert cookie["httponly"] and cookie["samesite"] == "Strict" and cookie["path"] == "/desktop"
        assert len(csrf) > 30
        refused = await session.post(f"{desk.base}/desktop/api/logout")
        assert refused.status == 403  # no CSRF header
        assert (await session.post(f"{desk.base}/desktop/api/logout", headers={"X-CSRF-Token": csrf})).status == 200
        assert (await session.get(f"{desk.base}/desktop/api/me")).status == 401


async def test_repeated_failures_lock_the_user_name(desk: Desk) -> None:
    for _ in range(5):
        with pytest.raises(PermissionError, match="error=1"):
            await desk.login("bob", "wrong-password")
    with pytest.raises(PermissionError, match="locked"):
        await desk.login("bob", "bob-password")


async def test_websocket_needs_session_csrf_and_same_origin(desk: Desk) -> None:
    session, csrf = await desk.login("ann", "ann-password")
    async with session:
        for url, headers in (
            (f"{desk.base}/desktop/ws", {}),
            (f"{desk.base}/desktop/ws?csrf=wrong", {}),
            (f"{desk.base}/desktop/ws?csrf={csrf}", {"Origin": "http://evil.example"}),
        ):
            with pytest.raises(aiohttp.WSServerHandshakeError):
                await session.ws_connect(url, headers=headers)
        async with aiohttp.ClientSession() as anon:
            with pytest.raises(aiohttp.WSServerHandshakeError):
                await anon.ws_connect(f"{desk.base}/desktop/ws?csrf={csrf}")


async def test_pops_reach_only_their_agent_and_commands_change_state(desk: Desk) -> None:
    ann, ann_csrf = await desk.login("ann", "ann-password")
    bob, bob_csrf = await desk.login("bob", "bob-password")
    async with ann, bob:
        ws_ann = await ann.ws_connect(f"{desk.base}/desktop/ws?csrf={ann_csrf}", headers={"Origin": desk.base})
        ws_bob = await bob.ws_connect(f"{desk.base}/desktop/ws?csrf={bob_csrf}", headers={"Origin": desk.base})
        assert (await next_of(ws_ann, "state"))["agent"]["status"] == "paused"  # login: paused("login")
        await next_of(ws_bob, "state")
        await ws_ann.send_json({"type": "ready"})
        assert (await next_of(ws_ann, "state"))["agent"]["status"] == "ready"
        await ws_ann.send_json({"type": "pause", "reason": "lunch"})
        state = (await next_of(ws_ann, "state"))["agent"]
        assert (state["status"], state["reason"]) == ("paused", "lunch")
        await desk.acd.bus.publish(agent_topic("ann"), {"type": "pop", "pop": {"pop_id": "x"}})
        assert (await next_of(ws_ann, "pop"))["pop"]["pop_id"] == "x"
        with pytest.raises(TimeoutError):
            await ws_bob.receive_json(timeout=0.3)
        await ws_ann.send_json({"type": "bogus"})
        assert "unknown" in (await next_of(ws_ann, "error"))["message"]
        await ws_ann.send_json({"type": "ready"})
        await next_of(ws_ann, "state")
        await ws_ann.close()
        await ws_bob.close()
        for _ in range(50):
            if desk.acd.states["ann"].status == "paused":
                break
            await asyncio.sleep(0.02)
        assert (desk.acd.states["ann"].status, desk.acd.states["ann"].reason) == ("paused", "desktop closed")


async def test_a_chat_is_offered_to_an_agent_with_the_skill_and_messages_flow_both_ways(desk: Desk) -> None:
    journey = Journey(id="j-chat", flow="support", version="v1", channel="chat", path=["main_menu"], intent="billing")
    desk.journeys.save(journey)
    await desk.journeys.flush()
    ann, csrf = await desk.login("ann", "ann-password")
    async with ann, desk.acd.bus.subscribe("chat.c1") as customer_side:
        ws = await ann.ws_connect(f"{desk.base}/desktop/ws?csrf={csrf}", headers={"Origin": desk.base})
        await next_of(ws, "state")
        await ws.send_json({"type": "ready"})
        await next_of(ws, "state")
        assert await desk.acd.chats.offer(ChatContact("c0", "j-chat", skill="outage")) is None  # nobody has it
        assert await desk.acd.chats.offer(ChatContact("c1", "j-chat", skill="billing")) == "ann"
        offer = await next_of(ws, "chat.offer")
        assert offer["contact"]["contact_id"] == "c1" and offer["pop"]["path"] == ["main_menu"]
        assert offer["pop"]["recognition"]["intent"] == "billing"
        assert await desk.acd.chats.customer_message("c1", "hello?")
        assert (await next_of(ws, "chat.message"))["text"] == "hello?"
        await ws.send_json({"type": "chat.send", "contact_id": "c1", "text": "Hi, Ann here."})
        reply = await customer_side.get(timeout=5)
        assert reply == {**reply, "type": "agent.message", "agent_id": "ann", "text": "Hi, Ann here."}
        await ws.send_json({"type": "chat.end", "contact_id": "c1"})
        assert (await customer_side.get(timeout=5))["type"] == "agent.closed"
        assert (await next_of(ws, "chat.closed"))["by"] == "agent"
        await ws.close()
    await desk.journeys.flush()
    kinds = [e["kind"] for e in await desk.journeys.interactions("j-chat")]
    assert kinds == ["chat_offered", "chat_message", "chat_closed"]


async def test_a_call_a_controller_cannot_place_is_an_error_the_page_shows(desk: Desk) -> None:
    """Click-to-call without AMI here (``outbound`` absent), or with a number that is not text:
    a clear error on the socket, the agent's state untouched."""
    ann, csrf = await desk.login("ann", "ann-password")
    async with ann:
        ws = await ann.ws_connect(f"{desk.base}/desktop/ws?csrf={csrf}", headers={"Origin": desk.base})
        await next_of(ws, "state")
        await ws.send_json({"type": "call", "number": "+15551230005", "journey_id": None})
        assert (await next_of(ws, "error"))["message"] == "calling out is not available on this controller"
        await ws.send_json({"type": "call", "number": 15551230005})
        assert (await next_of(ws, "error"))["message"] == "number must be a string"
        assert desk.acd.states["ann"].status == "paused"
        await ws.close()
