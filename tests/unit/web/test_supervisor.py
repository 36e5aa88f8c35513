"""The supervisor role on a real aiohttp server and SQLite: its login, session and CSRF follow the
desktop's rules, its sessions are revoked and locked out like an agent's, and neither role's
session opens the other's pages or APIs (whatever cookie name it is presented under)."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from ivr.acd.service import Acd
from ivr.acd.topics import WALLBOARD
from ivr.bus.pubsub import MemoryBus
from ivr.errors import StoreError
from ivr.store.agents import AgentStore
from ivr.store.customers import CustomerStore
from ivr.web.agents_auth import hash_password
from ivr.web.desktop import SESSION_ENDED, setup_desktop
from ivr.web.supervisor import setup_supervisor
from tests.unit.web.conftest import Live
from tests.unit.web.desk_parts import stores_with_two_agents


class Site:
    def __init__(self, base: str, agents: AgentStore, bus: MemoryBus | None = None) -> None:
        self.base = base
        self.agents = agents
        self.bus = bus or MemoryBus()

    async def login(self, where: str, username: str, password: str) -> tuple[aiohttp.ClientSession, str, str]:
        """(client, CSRF token, session token) after a login at ``/<where>/login``; PermissionError
        with the redirect when it is refused."""
        client = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
        page = await (await client.get(f"{self.base}/{where}/login")).text()
        match = re.search(r'name="csrf" value="([^"]+)"', page)
        assert match
        reply = await client.post(
            f"{self.base}/{where}/login",
            data={"username": username, "password": password, "csrf": match.group(1)},
            allow_redirects=False,
        )
        assert reply.status == 303
        if reply.headers["Location"] != f"/{where}/":
            await client.close()
            raise PermissionError(reply.headers["Location"])
        me = await (await client.get(f"{self.base}/{where}/api/me")).json()
        cookie = "ivr_supervisor" if where == "supervisor" else "ivr_session"
        token = next(c.value for c in client.cookie_jar if c.key == cookie)
        return client, str(me["csrf"]), token


@pytest.fixture
async def site(tmp_path: Path) -> AsyncIterator[Site]:
    journeys, agents = await stores_with_two_agents(tmp_path / "db.sqlite3")
    await agents.add(
        username="sue",
        display_name="Sue Supervisor",
        password_hash=hash_password("sue-password"),
        endpoint="",
        skills={},
        agent_id="sue",
        role="supervisor",
    )
    bus = MemoryBus()
    acd = Acd(ami=None, journeys=journeys, customers=CustomerStore(journeys.engine), bus=bus)
    app = web.Application()
    setup_desktop(app, acd=acd, agents=agents, bus=bus, session_check=0.1)
    setup_supervisor(app)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    yield Site(str(server.make_url("")).rstrip("/"), agents, bus)
    await server.close()
    await acd.stop()
    await journeys.stop()


async def get_status(site: Site, path: str, cookies: dict[str, str] | None = None) -> int:
    async with (
        aiohttp.ClientSession(cookies=cookies) as client,
        client.get(site.base + path, allow_redirects=False) as reply,
    ):
        return reply.status


async def test_a_supervisor_signs_in_with_the_desktops_rules(site: Site) -> None:
    assert await get_status(site, "/supervisor/") == 303  # to the login form
    assert await get_status(site, "/supervisor/api/me") == 401
    async with aiohttp.ClientSession() as anon:
        forged = await anon.post(
            f"{site.base}/supervisor/login",
            data={"username": "sue", "password": "sue-password", "csrf": "guess"},
            allow_redirects=False,
        )
        assert forged.status == 403
    with pytest.raises(PermissionError, match="error=1"):
        await site.login("supervisor", "sue", "wrong-password")
    client, csrf, _ = await site.login("supervisor", "sue", "sue-password")
    async with client:
        cookie = next(c for c in client.cookie_jar if c.key == "ivr_supervisor")
        assert cookie["httponly"] and cookie["samesite"] == "Strict" and cookie["path"] == "/supervisor"
        page = await client.get(f"{site.base}/supervisor/")
        assert page.status == 200 and "Content-Security-Policy" in page.headers
        me = await (await client.get(f"{site.base}/supervisor/api/me")).json()
        assert me["supervisor"]["username"] == "sue" and me["supervisor"]["role"] == "supervisor"
        assert (await client.post(f"{site.base}/supervisor/api/logout")).status == 403  # no CSRF header
        bad = await client.post(f"{site.base}/supervisor/api/logout", headers={"X-CSRF-Token": "wrong"})
        assert bad.status == 403
        ok = await client.post(f"{site.base}/supervisor/api/logout", headers={"X-CSRF-Token": csrf})
        assert ok.status == 200
        assert (await client.get(f"{site.base}/supervisor/api/me")).status == 401


async def test_an_agent_opens_no_supervisor_page_or_api(site: Site) -> None:
    with pytest.raises(PermissionError, match="error=role"):
        await site.login("supervisor", "ann", "ann-password")
    client, csrf, token = await site.login("desktop", "ann", "ann-password")
    async with client:
        # the desktop cookie is scoped to /desktop: the browser does not send it here
        assert (await client.get(f"{site.base}/supervisor/api/me")).status == 401
        # and an agent's session token is refused under the supervisor cookie's name too
        as_supervisor = {"ivr_supervisor": token}
        assert await get_status(site, "/supervisor/", as_supervisor) == 403
        assert await get_status(site, "/supervisor/api/me", as_supervisor) == 403
        async with aiohttp.ClientSession(cookies=as_supervisor) as forged:
            logout = await forged.post(f"{site.base}/supervisor/api/logout", headers={"X-CSRF-Token": csrf})
            assert logout.status == 403
        assert (await client.get(f"{site.base}/desktop/api/me")).status == 200  # ann's own session lives on


async def test_a_supervisor_session_opens_nothing_on_the_desktop(site: Site) -> None:
    with pytest.raises(PermissionError, match="error=role"):
        await site.login("desktop", "sue", "sue-password")
    client, _, token = await site.login("supervisor", "sue", "sue-password")
    async with client:
        as_agent = {"ivr_session": token}
        assert await get_status(site, "/desktop/api/me", as_agent) == 401
        assert await get_status(site, "/desktop/", as_agent) == 303  # to the desktop's login form


@pytest.mark.parametrize("revoke", ["passwd", "disable"])
async def test_a_password_change_or_disabling_ends_a_supervisors_session(site: Site, revoke: str) -> None:
    client, _, _ = await site.login("supervisor", "sue", "sue-password")
    async with client:
        assert (await client.get(f"{site.base}/supervisor/api/me")).status == 200
        if revoke == "passwd":
            assert await site.agents.set_password("sue", hash_password("sue-new-password"))
        else:
            assert await site.agents.set_disabled("sue", True)
        assert (await client.get(f"{site.base}/supervisor/api/me")).status == 401
    if revoke == "disable":
        with pytest.raises(PermissionError, match="error=1"):
            await site.login("supervisor", "sue", "sue-password")


async def test_failures_lock_the_name_at_both_forms(site: Site) -> None:
    for _ in range(5):
        with pytest.raises(PermissionError, match="error=1"):
            await site.login("supervisor", "sue", "wrong-password")
    with pytest.raises(PermissionError, match="locked"):
        await site.login("supervisor", "sue", "sue-password")
    with pytest.raises(PermissionError, match="locked"):  # guesses at one form count at the other
        await site.login("desktop", "sue", "sue-password")


async def test_roles_are_a_closed_set(site: Site) -> None:
    with pytest.raises(StoreError, match="role must be one of agent, supervisor, admin"):
        await site.agents.add(
            username="eve", display_name="Eve", password_hash="x", endpoint="", skills={}, role="root"
        )


# -- the wallboard websocket -------------------------------------------------------------------------


BOARD = {"type": "wallboard", "queues": [{"queue": "billing", "waiting": 2}], "agents": [], "at": 1.0}


async def test_the_wallboard_reaches_a_supervisors_socket_and_closes_with_the_session(site: Site) -> None:
    client, csrf, _ = await site.login("supervisor", "sue", "sue-password")
    async with client:
        ws = await client.ws_connect(f"{site.base}/supervisor/ws?csrf={csrf}")
        for _ in range(50):  # the socket subscribes once its handshake is done
            await site.bus.publish(WALLBOARD, BOARD)
            try:
                message = await ws.receive_json(timeout=0.1)
                break
            except TimeoutError:
                continue
        else:
            raise AssertionError("no wallboard on the socket")
        assert message == BOARD
        assert await site.agents.set_disabled("sue", True)
        closed = await ws.receive(timeout=5)
        while closed.type == aiohttp.WSMsgType.TEXT:  # snapshots still in flight
            closed = await ws.receive(timeout=5)
        assert closed.type == aiohttp.WSMsgType.CLOSE and closed.data == SESSION_ENDED


async def test_the_wallboard_socket_needs_a_supervisor_its_csrf_and_our_origin(site: Site) -> None:
    supervisor, csrf, _ = await site.login("supervisor", "sue", "sue-password")
    agent, agent_csrf, agent_token = await site.login("desktop", "ann", "ann-password")
    async with supervisor, agent:
        for url, headers in (
            (f"{site.base}/supervisor/ws", {}),
            (f"{site.base}/supervisor/ws?csrf=wrong", {}),
            (f"{site.base}/supervisor/ws?csrf={csrf}", {"Origin": "http://evil.example"}),
        ):
            with pytest.raises(aiohttp.WSServerHandshakeError):
                await supervisor.ws_connect(url, headers=headers)
        async with aiohttp.ClientSession(cookies={"ivr_supervisor": agent_token}) as forged:
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                await forged.ws_connect(f"{site.base}/supervisor/ws?csrf={agent_csrf}")
            assert refused.value.status == 403


async def test_the_controller_publishes_its_agents_to_the_wallboard(live: Live) -> None:
    """The whole controller: an agent opens the desktop (logged in, paused), and the supervisor's
    wallboard, fed by the ACD's publisher over the bus, shows them and their queues."""
    agents = live.app.agents
    for username, role, endpoint in (("sue", "supervisor", ""), ("ann", "agent", "agent1001")):
        await agents.add(
            username=username,
            display_name=username.title(),
            password_hash=hash_password(f"{username}-password"),
            endpoint=endpoint,
            skills={"billing": 0} if role == "agent" else {},
            role=role,
        )
    site = Site(live.base, agents)
    supervisor, csrf, _ = await site.login("supervisor", "sue", "sue-password")
    agent, agent_csrf, _ = await site.login("desktop", "ann", "ann-password")
    async with supervisor, agent:
        board_ws = await supervisor.ws_connect(f"{live.base}/supervisor/ws?csrf={csrf}")
        desk_ws = await agent.ws_connect(f"{live.base}/desktop/ws?csrf={agent_csrf}")
        async with asyncio.timeout(10):
            while True:
                board = await board_ws.receive_json()
                if board["agents"]:
                    break
        (ann,) = board["agents"]
        assert (ann["display_name"], ann["status"], ann["contacts"]) == ("Ann", "paused", [])
        queues = {q["queue"]: q for q in board["queues"]}
        assert queues["billing"]["paused"] == 1 and queues["main"]["paused"] == 1
        assert set(live.app.config.routing.queues) <= set(queues)
        await desk_ws.close()
        await board_ws.close()
