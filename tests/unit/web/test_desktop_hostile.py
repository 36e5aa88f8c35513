"""The desktop against a hostile (or just wrong) client, on a real aiohttp server and SQLite:
agents act only on their own contacts; sockets end with their session (also when another process,
the ``ivr agents`` CLI, ends it); failed logins cost bounded memory and log, and their locks end."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from ivr.acd.chat import ChatContact
from ivr.acd.service import PAINT_SAMPLES, Acd
from ivr.ami import events as ev
from ivr.bus.pubsub import MemoryBus
from ivr.flow.model import Journey
from ivr.store.customers import CustomerStore
from ivr.store.journeys import JourneyStore
from ivr.web.agents_auth import MAX_USERNAME
from ivr.web.desktop import LIMITER, SESSION_ENDED, setup_desktop
from ivr.web.login_limits import Limit, LoginLimiter
from tests.unit.web.desk_parts import stores_with_two_agents

LOOSE = Limit(max_failures=10_000, window=300.0, lockout=60.0)


class Desk:
    def __init__(self, server: TestServer, app: web.Application, acd: Acd, journeys: JourneyStore, db: Path) -> None:
        self.server = server
        self.app = app
        self.acd = acd
        self.journeys = journeys
        self.db = db
        self.base = str(server.make_url("")).rstrip("/")

    async def try_login(self, username: str, password: str, session: aiohttp.ClientSession | None = None) -> str:
        """The Location the login form answers with."""
        own = session is None
        session = session or aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
        try:
            page = await (await session.get(f"{self.base}/desktop/login")).text()
            match = re.search(r'name="csrf" value="([^"]+)"', page)
            assert match
            reply = await session.post(
                f"{self.base}/desktop/login",
                data={"username": username, "password": password, "csrf": match.group(1)},
                allow_redirects=False,
            )
            assert reply.status == 303
            return reply.headers["Location"]
        finally:
            if own:
                await session.close()

    async def login(self, username: str, password: str) -> tuple[aiohttp.ClientSession, str]:
        session = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
        assert await self.try_login(username, password, session) == "/desktop/"
        me = await (await session.get(f"{self.base}/desktop/api/me")).json()
        return session, str(me["csrf"])

    async def socket(self, session: aiohttp.ClientSession, csrf: str) -> aiohttp.ClientWebSocketResponse:
        ws = await session.ws_connect(f"{self.base}/desktop/ws?csrf={csrf}", headers={"Origin": self.base})
        await next_of(ws, "state")
        return ws


MakeDesk = Callable[..., Awaitable[Desk]]


@pytest.fixture
async def make_desk(tmp_path: Path) -> AsyncIterator[MakeDesk]:
    cleanup: list[Callable[[], Awaitable[None]]] = []

    async def make(**options: Any) -> Desk:
        db = tmp_path / "db.sqlite3"
        journeys, agents = await stores_with_two_agents(db)
        bus = MemoryBus()
        acd = Acd(ami=None, journeys=journeys, customers=CustomerStore(journeys.engine), bus=bus)
        app = web.Application()
        setup_desktop(app, acd=acd, agents=agents, bus=bus, **options)
        server = TestServer(app, host="127.0.0.1")
        await server.start_server()

        async def close() -> None:
            await server.close()
            await acd.stop()
            await journeys.stop()

        cleanup.append(close)
        return Desk(server, app, acd, journeys, db)

    yield make
    for close in cleanup:
        await close()


async def next_of(ws: aiohttp.ClientWebSocketResponse, kind: str, timeout: float = 5) -> dict[str, Any]:
    while True:
        message = await ws.receive_json(timeout=timeout)
        if message["type"] == kind:
            return dict(message)


async def closed(ws: aiohttp.ClientWebSocketResponse, timeout: float) -> int | None:
    """Read until the server closes the socket: the code in its close frame (TimeoutError if it
    stays open)."""
    async with asyncio.timeout(timeout):
        while True:
            msg = await ws.receive()
            if msg.type is aiohttp.WSMsgType.CLOSE:
                return int(msg.data)
            if msg.type in (aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR):
                return ws.close_code


async def journey(desk: Desk, journey_id: str) -> None:
    desk.journeys.save(Journey(id=journey_id, flow="support", version="v1", channel="voice", path=["main_menu"]))
    await desk.journeys.flush()


async def kinds(desk: Desk, journey_id: str) -> list[str]:
    await desk.journeys.flush()
    return [e["kind"] for e in await desk.journeys.interactions(journey_id)]


# ---------------------------------------------------------------------- agents act on their own contacts


async def test_an_agent_writes_only_on_their_own_contacts(
    make_desk: MakeDesk, caplog: pytest.LogCaptureFixture
) -> None:
    desk = await make_desk()
    for j in ("j-ann", "j-bob", "j-nobody"):
        await journey(desk, j)
    ann, ann_csrf = await desk.login("ann", "ann-password")
    bob, bob_csrf = await desk.login("bob", "bob-password")
    async with ann, bob, desk.acd.bus.subscribe("chat.c-bob") as bobs_customer:
        ws_ann, ws_bob = await desk.socket(ann, ann_csrf), await desk.socket(bob, bob_csrf)
        await ws_bob.send_json({"type": "ready"})
        await next_of(ws_bob, "state")
        assert await desk.acd.chats.offer(ChatContact("c-bob", "j-bob", skill="support")) == "bob"
        # ann answers a call of journey j-ann (what AMI reports, as typed events)
        caller = ev.Channel("PJSIP/trunk-00000001", "1700000000.1", variables={"IVR_JOURNEY_ID": "j-ann"})
        phone = ev.Channel("PJSIP/agent1001-00000002", "1700000000.2")
        await desk.acd.handle(ev.AgentCalled(time.time(), "billing", "PJSIP/agent1001", "ann", caller, phone))
        await desk.acd.handle(ev.AgentConnect(time.time(), "billing", "PJSIP/agent1001", caller, phone, 3, 1))
        await next_of(ws_ann, "call.connected")

        caplog.set_level(logging.WARNING, logger="ivr.audit")
        huge = "j" * 60_000  # under the 64 KB message limit
        for journey_id in ("j-bob", "j-nobody", huge):
            await ws_ann.send_json(
                {"type": "finish", "journey_id": journey_id, "disposition": "resolved", "notes": "mine now"}
            )
            error = await next_of(ws_ann, "error")
            assert error["message"] == "finish refused: not one of your contacts"
        await ws_ann.send_json({"type": "finish", "journey_id": ["j-bob"], "disposition": "resolved"})
        assert (await next_of(ws_ann, "error"))["message"] == "journey_id must be a string"
        await ws_ann.send_json({"type": "chat.send", "contact_id": "c-bob", "text": "from ann"})
        assert (await next_of(ws_ann, "error"))["message"] == "chat.send refused: not one of your contacts"
        await ws_ann.send_json({"type": "chat.end", "contact_id": "c-bob"})
        assert (await next_of(ws_ann, "error"))["message"] == "chat.end refused: not one of your contacts"
        with pytest.raises(TimeoutError):
            await bobs_customer.get(timeout=0.3)  # bob's customer heard nothing from ann
        assert desk.acd.chats.agent_of("c-bob") == "bob"

        audit = [r.getMessage() for r in caplog.records if r.name == "ivr.audit"]
        assert len(audit) == 5
        assert (
            audit[0] == "refused finish by agent 'ann' on journey 'j-bob' contact <NoneType>: not one of your contacts"
        )
        assert "…(+59960 chars)" in audit[2] and max(len(line) for line in audit) < 200

        # her own call: the notes go to its timeline, also after it ended and she pressed Ready
        await desk.acd.handle(ev.AgentComplete(time.time(), "billing", "PJSIP/agent1001", caller, 3, 60, "caller"))
        await ws_ann.send_json({"type": "ready"})
        await ws_ann.send_json({"type": "finish", "journey_id": "j-ann", "disposition": "resolved", "notes": "ok"})
        await ws_ann.send_json({"type": "bogus"})  # answered after the finish: the finish was handled
        assert "unknown" in (await next_of(ws_ann, "error"))["message"]
        await ws_bob.send_json({"type": "chat.send", "contact_id": "c-bob", "text": "Bob here"})
        assert (await bobs_customer.get(timeout=5))["text"] == "Bob here"
        await ws_ann.close()
        await ws_bob.close()
    assert await kinds(desk, "j-bob") == ["chat_offered", "chat_message"]
    assert await kinds(desk, "j-nobody") == []
    # the end of the call is logged in the background as AMI reports it: before or after her notes
    logged = await kinds(desk, "j-ann")
    for _ in range(50):
        if len(logged) >= 3:
            break
        await asyncio.sleep(0.05)
        logged = await kinds(desk, "j-ann")
    assert logged[0] == "agent_connected" and sorted(logged[1:]) == ["agent_completed", "agent_disposition"]


# ---------------------------------------------------------------------- sockets end with their session


async def test_a_logout_closes_every_socket_of_that_session_at_once(make_desk: MakeDesk) -> None:
    desk = await make_desk(session_check=60.0)  # so only the logout itself can close them in time
    ann, csrf = await desk.login("ann", "ann-password")
    async with ann:
        tabs = [await desk.socket(ann, csrf), await desk.socket(ann, csrf)]
        reply = await ann.post(f"{desk.base}/desktop/api/logout", headers={"X-CSRF-Token": csrf})
        assert reply.status == 200
        for ws in tabs:
            assert await closed(ws, timeout=2) == SESSION_ENDED
        assert desk.acd.states["ann"].status == "logged_out"


def ivr_cli(desk: Desk, *args: str, stdin: str = "") -> str:
    """The real ``ivr`` command in another process, on the same database."""
    env = {**os.environ, "IVR_DATABASE_URL": f"sqlite+aiosqlite:///{desk.db}"}
    env.pop("IVR_CONFIG", None)
    done = subprocess.run(
        [sys.executable, "-m", "ivr.cli", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        cwd=desk.db.parent,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


async def test_a_password_change_or_disabling_in_another_process_closes_the_desktop(make_desk: MakeDesk) -> None:
    desk = await make_desk(session_check=0.2)
    ann, ann_csrf = await desk.login("ann", "ann-password")
    bob, bob_csrf = await desk.login("bob", "bob-password")
    async with ann, bob:
        ws_ann, ws_bob = await desk.socket(ann, ann_csrf), await desk.socket(bob, bob_csrf)
        await ws_ann.send_json({"type": "ready"})
        assert (await next_of(ws_ann, "state"))["agent"]["status"] == "ready"

        out = await asyncio.to_thread(
            ivr_cli, desk, "agents", "passwd", "ann", "--password-stdin", stdin="new-pass-123\n"
        )
        assert "sessions are closed" in out
        assert await closed(ws_ann, timeout=2) == SESSION_ENDED
        for _ in range(50):  # the last tab closed while ready: no call may ring there unannounced
            if desk.acd.states["ann"].status == "paused":
                break
            await asyncio.sleep(0.02)
        assert (desk.acd.states["ann"].status, desk.acd.states["ann"].reason) == ("paused", "desktop closed")
        assert (await ann.get(f"{desk.base}/desktop/api/me")).status == 401
        with pytest.raises(aiohttp.WSServerHandshakeError):
            await ann.ws_connect(f"{desk.base}/desktop/ws?csrf={ann_csrf}", headers={"Origin": desk.base})

        await asyncio.to_thread(ivr_cli, desk, "agents", "disable", "bob")
        assert await closed(ws_bob, timeout=2) == SESSION_ENDED
        assert await desk.try_login("bob", "bob-password") == "/desktop/login?error=1"
        assert "(disabled)" in await asyncio.to_thread(ivr_cli, desk, "agents", "list")
        await asyncio.to_thread(ivr_cli, desk, "agents", "enable", "bob")
        assert await desk.try_login("bob", "bob-password") == "/desktop/"


# ---------------------------------------------------------------------- failed logins: bounded, and locks end


async def test_failed_logins_with_huge_names_cost_bounded_memory_and_log(
    make_desk: MakeDesk, caplog: pytest.LogCaptureFixture
) -> None:
    limiter = LoginLimiter(per_name=LOOSE, per_address=LOOSE, max_keys=100)
    desk = await make_desk(login_limits=limiter)
    caplog.set_level(logging.DEBUG, logger="ivr.web.desktop")
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as client:
        for i in range(40):
            name = f"{i}" + "x" * 200_000
            assert await desk.try_login(name, "whatever-pass", client) == "/desktop/login?error=long"
        assert len(limiter) == 0  # refused before anything was remembered
        for i in range(300):  # names of the longest allowed length, all different
            name = f"{i:04}".ljust(MAX_USERNAME, "y")
            assert await desk.try_login(name, "p" * 5000, client) == "/desktop/login?error=1"
        assert len(limiter) <= 100
        page = await (await client.get(f"{desk.base}/desktop/login?error=long")).text()
        assert f"at most {MAX_USERNAME} characters" in page
    lines = [r.getMessage() for r in caplog.records if r.name == "ivr.web.desktop"]
    assert len(lines) == 340
    assert max(len(line) for line in lines) < 200
    assert all("\n" not in line for line in lines)
    assert await desk.try_login("ann", "ann-password") == "/desktop/"


async def test_a_lock_ends_after_the_lockout_even_when_wrong_tries_go_on(make_desk: MakeDesk) -> None:
    """Through HTTP with short real times: 3 wrong tries lock a name for 0.5 s; after that one wrong try
    per lockout period never locks it again (the old count never decayed: it did, for ever)."""
    lockout = 0.5
    desk = await make_desk(
        login_limits=LoginLimiter(
            per_name=Limit(max_failures=3, window=30.0, lockout=lockout),
            per_address=Limit(max_failures=10, window=30.0, lockout=lockout),
        )
    )
    for _ in range(3):
        assert await desk.try_login("bob", "wrong-password") == "/desktop/login?error=1"
    assert await desk.try_login("bob", "bob-password") == "/desktop/login?error=locked"
    assert await desk.try_login("bob", "wrong-password") == "/desktop/login?error=locked"  # not counted
    for _ in range(3):
        await asyncio.sleep(lockout + 0.1)
        assert await desk.try_login("bob", "wrong-password") == "/desktop/login?error=1"
        assert await desk.try_login("bob", "bob-password") == "/desktop/"
    # one address trying many names is limited as an address: its 10th failure in the window (six
    # above, four names here) locks it for every name
    await asyncio.sleep(lockout + 0.1)
    for i in range(4):
        assert await desk.try_login(f"guess{i}", "wrong-password") == "/desktop/login?error=1"
    assert await desk.try_login("ann", "ann-password") == "/desktop/login?error=locked"
    await asyncio.sleep(lockout + 0.1)
    assert await desk.try_login("ann", "ann-password") == "/desktop/"
    assert len(desk.app[LIMITER]) <= 10


# ---------------------------------------------------------------------- paint reports


async def test_paint_reports_are_bounded_logged_at_debug_and_checked(
    make_desk: MakeDesk, caplog: pytest.LogCaptureFixture
) -> None:
    desk = await make_desk()
    caplog.set_level(logging.INFO, logger="ivr.acd.service")
    ann, csrf = await desk.login("ann", "ann-password")
    async with ann:
        ws = await desk.socket(ann, csrf)
        for i in range(PAINT_SAMPLES + 500):
            await ws.send_json({"type": "painted", "called_at": 1000.0, "at": 1000.0 + i / 10_000})
        for bad in ('"1e400"', "1e400", "-1e400", "10" * 300, "NaN", "-5"):
            await ws.send_str(f'{{"type": "painted", "called_at": 1000.0, "at": {bad}}}')
            assert (await next_of(ws, "error"))["type"] == "error"
        await ws.send_str("[" * 30_000 + "]" * 30_000)  # deeper than the JSON parser goes
        assert (await next_of(ws, "error"))["type"] == "error"
        await ws.send_json({"type": "ready"})
        assert (await next_of(ws, "state"))["agent"]["status"] == "ready"  # the socket lived on
        await ws.close()
    assert len(desk.acd.paint_ms) == PAINT_SAMPLES
    assert desk.acd.paint_ms[-1] == pytest.approx((PAINT_SAMPLES + 499) / 10)
    assert not [r for r in caplog.records if r.name == "ivr.acd.service" and "painted" in r.getMessage()]
