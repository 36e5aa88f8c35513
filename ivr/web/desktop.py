"""The agent desktop: login, a websocket of screen pops and call state, notes and dispositions.

Routes (all under ``/desktop``; nothing here is reachable with the API's bearer token, and the
API is not reachable with a desktop session)::

    GET  /desktop/login            the login form (sets a double-submit CSRF cookie)
    POST /desktop/login            username + password + csrf -> session cookie, 303 to /desktop/
    GET  /desktop/                 the desktop page (303 to the login form without a session)
    GET  /desktop/api/me           {"agent", "csrf"}: who is logged in and the session's CSRF token
    POST /desktop/api/logout       (X-CSRF-Token) leaves the queues, ends the session
    POST /desktop/api/softphone    (X-CSRF-Token) the browser softphone's SIP account for this login:
                                   {"phone": "sip"}, or {"phone": "browser", "ws_url", "uri",
                                   "username", "password"} with a password made now (ivr.acd.sipcreds)
    GET  /desktop/ws?csrf=...      the websocket (session cookie + CSRF token + same Origin)
    GET  /desktop/static/...       page assets (plain HTML/JS/CSS, no build step)

Websocket, server -> browser: ``state``, ``pop``, ``pop.cancel``, ``call.connected``,
``call.ended``, ``chat.offer``, ``chat.message``, ``chat.closed``, ``error`` (each ``{"type": ...}``).
Browser -> server: ``{"type": "ready"}``, ``{"type": "pause", "reason"}``, ``{"type": "finish",
"journey_id", "disposition", "notes", "ready": bool}``, ``{"type": "painted", "called_at", "at"}``,
``{"type": "chat.send", "contact_id", "text"}``, ``{"type": "chat.end", "contact_id"}``,
``{"type": "transfer", "journey_id", "kind": "agent"|"queue"|"number", "target", "mode":
"blind"|"consult", "note"}``, ``{"type": "transfer.complete"}``, ``{"type": "transfer.cancel"}``
(``ivr.acd.transfers``; answered with ``transfer.started`` / ``transfer.consulting`` /
``transfer.ended``, or an ``error`` saying why it was refused; the agent a consult was completed to
gets ``transfer.received``).
``{"type": "call", "number", "journey_id"}`` (click-to-call, ``ivr.acd.outbound``: a refusal comes back
as an ``error`` the page shows; the call itself pops a card like an inbound one).

Every command goes to the ACD through :class:`ivr.acd.desk.AcdDesk`: on this node when it is the
ACD leader, else over the bus to the leader (an ``error`` if no leader answers in time). Pops and
states come back over the bus, whichever node published them.

Only messages published on ``agent.<this agent's id>`` reach this socket: another agent's browser
gets nothing of this agent's calls. What a browser sends is checked the other way round: a journey
or chat it names must be the agent's own (``Acd.authorize``), else an ``error`` and an audit line.

A socket lives only as long as its session: a logout closes that session's sockets at once, and
every socket re-reads its session each ``session_check`` seconds, so a password change or a
disabled agent (``ivr agents passwd|disable``, another process: only the database changes) closes
it within that time, with code 4001; the agent's queues then follow the last-tab-closed rule.

A browser softphone's SIP password lives only in Asterisk (put there through the ACD leader) and
in the reply to the page that asked: a new one at each request, deleted at logout, when the
socket's session check finds the session gone, and ``softphone_revoke_grace`` seconds after the
agent's last desktop socket on this node closed unless one opens again first (a reload keeps the
phone; a page whose socket comes back later asks for new credentials). It never crosses the bus
(``ivr.acd.sipcreds``). The desktop page's Content-Security-Policy lets it connect to that one
WebSocket address besides its own origin.

Failed logins are limited per user name and per client address (``ivr.web.login_limits``); user
names longer than ``MAX_USERNAME`` are refused before anything is looked up or remembered.
The desktop is for accounts with the ``agent`` role; supervisors sign in at ``/supervisor/login``
through the same ``sign_in`` (``ivr.web.supervisor``), and their sessions open nothing here.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import logging
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from aiohttp import WSMsgType, web

from ivr.acd import sipcreds
from ivr.acd.desk import AcdDesk, LeaderUnavailable
from ivr.acd.permissions import loggable
from ivr.acd.service import Acd, agent_topic
from ivr.aio import run_to_end, wait_cancelled
from ivr.bus.pubsub import Bus
from ivr.config import DesktopSettings
from ivr.errors import ConfigError
from ivr.store.agents import SESSION_TTL, AgentStore
from ivr.web.agents_auth import (
    DUMMY_HASH,
    MAX_PASSWORD,
    MAX_USERNAME,
    new_token,
    same_token,
    token_hash,
    verify_password,
)
from ivr.web.login_limits import Limit, LoginLimiter

log = logging.getLogger(__name__)
STATIC = Path(__file__).resolve().parent / "static" / "desktop"
SESSION_COOKIE = "ivr_session"
LOGIN_CSRF_COOKIE = "ivr_login_csrf"
SESSION_CHECK_S = 5.0
#: seconds after an agent's last tab closed before their softphone's password is deleted
SOFTPHONE_REVOKE_GRACE_S = 30.0
#: close code of a socket whose session ended: the page goes back to the login form
SESSION_ENDED = 4001
#: a desktop message is a command with notes of at most 4,000 characters
MAX_MESSAGE = 64 * 1024
PER_NAME = Limit(max_failures=5, window=300.0, lockout=60.0)
PER_ADDRESS = Limit(max_failures=20, window=300.0, lockout=60.0)

ACD = web.AppKey("acd", Acd)
DESK = web.AppKey("acd_desk", AcdDesk)
AGENTS = web.AppKey("agents", AgentStore)
BUS = web.AppKey("bus", Bus)
SECURE = web.AppKey("secure_cookies", bool)
LIMITER = web.AppKey("login_limiter", LoginLimiter)
SESSION_CHECK = web.AppKey("session_check", float)
SOFTPHONE_URL = web.AppKey("softphone_url", str)

#: The pages load only their own script and style and talk only to this origin (websocket included).
PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": "default-src 'self'; connect-src 'self'; frame-ancestors 'none'; form-action 'self'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}

routes = web.RouteTableDef()


class OpenDesktops:
    """The desktop websockets this process holds, by agent (the last-tab-closed rule) and by
    session (a logout closes that session's other tabs at once)."""

    def __init__(self) -> None:
        self._by_session: dict[str, set[web.WebSocketResponse]] = {}
        self._by_agent: dict[str, int] = {}

    def opened(self, agent_id: str, session: str, ws: web.WebSocketResponse) -> None:
        self._by_session.setdefault(session, set()).add(ws)
        self._by_agent[agent_id] = self._by_agent.get(agent_id, 0) + 1

    def closed(self, agent_id: str, session: str, ws: web.WebSocketResponse) -> int:
        """How many of this agent's sockets remain open here."""
        sockets = self._by_session.get(session, set())
        sockets.discard(ws)
        if not sockets:
            self._by_session.pop(session, None)
        left = self._by_agent.get(agent_id, 1) - 1
        if left:
            self._by_agent[agent_id] = left
        else:
            self._by_agent.pop(agent_id, None)
        return left

    async def end_session(self, session: str) -> None:
        for ws in list(self._by_session.get(session, ())):
            await ws.close(code=SESSION_ENDED, message=b"session ended: log in again")


SOCKETS = web.AppKey("open_desktops", OpenDesktops)


class RevokeLater:
    """The last-tab-closed rule for browser softphones: the SIP password this node granted an
    agent is deleted ``grace`` seconds after their last desktop socket here closed, unless a
    socket opened again (a reload) or the page asked for new credentials first. Why a grace and
    not at once: a reload closes the old socket before the new page asks, and the page's phone
    must not lose its registration to a network blip. Owns its timers: ``stop`` cancels and
    awaits them, and refuses new ones after (a socket handler that outlived the server's shutdown
    grace ends after ``stop``: its timer would have had no owner, and run against a stopped desk)."""

    def __init__(self, desk: AcdDesk, grace: float) -> None:
        self.desk = desk
        self.grace = grace
        self._timers: dict[str, asyncio.Task[None]] = {}
        self._running: set[asyncio.Task[None]] = set()
        self._stopped = False

    def schedule(self, agent: dict[str, Any]) -> None:
        if self._stopped:
            return  # stopping: nobody would own the timer (the next leader clears grants no node holds)
        if agent.get("phone") != "browser" or agent["id"] not in self.desk.grants:
            return  # nothing this node granted: nothing to take back
        self.cancel(agent["id"])
        task = asyncio.create_task(self._later(agent), name=f"softphone-revoke-{agent['id']}")
        self._timers[agent["id"]] = task
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    def cancel(self, agent_id: str) -> None:
        task = self._timers.pop(agent_id, None)
        if task is not None:
            task.cancel()

    async def _later(self, agent: dict[str, Any]) -> None:
        await asyncio.sleep(self.grace)
        self._timers.pop(agent["id"], None)
        if agent["id"] in self.desk.grants:
            log.info(
                "agent %s: no desktop open for %.0f s; revoking the browser softphone", agent["username"], self.grace
            )
            await revoke_softphone(self.desk, agent)

    async def stop(self) -> None:
        self._stopped = True
        self._timers.clear()
        running = list(self._running)
        for task in running:
            task.cancel()
        for task in running:
            await wait_cancelled(task)


REVOKE_LATER = web.AppKey("softphone_revoke_later", RevokeLater)


def _cookie(
    response: web.StreamResponse, request: web.Request, name: str, value: str, max_age: int, path: str = "/desktop"
) -> None:
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path=path,
        httponly=True,
        samesite="Strict",
        secure=request.app[SECURE],
    )


async def current_agent(request: web.Request) -> tuple[dict[str, Any], str] | None:
    """The agent of this request's desktop session and its CSRF token; None without one, and for
    a session whose account is not (or is no longer) an agent's."""
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        return None
    found = await request.app[AGENTS].session(token_hash(token))
    if found is None or found[0]["role"] != "agent":
        return None
    return found


async def _require(request: web.Request, *, csrf: str | None = None, check_csrf: bool = False) -> dict[str, Any]:
    found = await current_agent(request)
    if found is None:
        raise web.HTTPUnauthorized(text="log in first")
    agent, expected = found
    if check_csrf and not same_token(csrf or request.headers.get("X-CSRF-Token"), expected):
        raise web.HTTPForbidden(text="missing or wrong CSRF token")
    return agent


def same_origin(request: web.Request) -> bool:
    origin = request.headers.get("Origin")
    return origin is None or origin == f"{request.scheme}://{request.host}"


#: What the login form says for each ``?error=`` its handler redirects with.
LOGIN_ERRORS = {
    None: "",
    "locked": "Too many attempts. Wait a minute and try again.",
    "long": f"User names have at most {MAX_USERNAME} characters.",
    "role": "This account cannot sign in here.",
}


def login_page(request: web.Request, template: Path, cookie_path: str) -> web.Response:
    """A login form with a fresh double-submit CSRF token (cookie + hidden field)."""
    csrf = new_token()
    error = LOGIN_ERRORS.get(request.query.get("error"), "Wrong user name or password.")
    page = template.read_text().replace("{{csrf}}", html.escape(csrf)).replace("{{error}}", html.escape(error))
    response = web.Response(text=page, content_type="text/html", headers=PAGE_HEADERS)
    _cookie(response, request, LOGIN_CSRF_COOKIE, csrf, 3600, cookie_path)
    return response


@routes.get("/desktop/login")
async def login_form(request: web.Request) -> web.Response:
    return login_page(request, STATIC / "login.html", "/desktop")


async def sign_in(request: web.Request, *, role: str, prefix: str, session_cookie: str) -> web.Response:
    """The one login rule for every role's pages: the form's CSRF pair and Origin, the name's
    length, the shared failure limits, scrypt off the event loop, disabled accounts refused; then a
    session whose cookie is scoped to ``prefix``. Raises the redirect (to ``prefix + "/"`` on success).

    A right password for an account of another role is not a failure (it is no guess, so it is
    neither counted nor locked) but is refused all the same, and logged."""
    login_path = f"{prefix}/login"
    try:
        form = await request.post()
    except ValueError:  # a multipart part without a name, and other malformed forms
        raise web.HTTPBadRequest(text="send the login form") from None
    if not same_origin(request) or not same_token(str(form.get("csrf", "")), request.cookies.get(LOGIN_CSRF_COOKIE)):
        raise web.HTTPForbidden(text="login form expired: reload the page")
    username = str(form.get("username", "")).strip()
    password = str(form.get("password", ""))
    address = request.remote or "-"
    if len(username) > MAX_USERNAME:
        # refused before anything is looked up or remembered: a flood of huge names costs nothing
        log.warning("%s login refused from %s: user name %s too long", role, address, loggable(username))
        raise web.HTTPSeeOther(f"{login_path}?error=long")
    limiter = request.app[LIMITER]
    wait = limiter.locked_for(username, address, time.monotonic())
    if wait > 0:
        log.debug("%s login for %s from %s refused: locked for %.0f s", role, loggable(username), address, wait)
        raise web.HTTPSeeOther(f"{login_path}?error=locked")
    found = await request.app[AGENTS].by_username(username)
    # scrypt runs in a thread: ~50 ms of CPU must not stall every call's events; no password is
    # longer than MAX_PASSWORD, so a longer one is wrong without hashing megabytes
    ok = len(password) <= MAX_PASSWORD and await asyncio.to_thread(
        verify_password, password, found[1] if found else DUMMY_HASH
    )
    if not found or not ok or found[0]["disabled"]:
        locked = limiter.failed(username, address, time.monotonic())
        log.warning(
            "%s login refused for %s from %s%s",
            role,
            loggable(username),
            address,
            f" (too many failures: {' and '.join(locked)} locked)" if locked else "",
        )
        raise web.HTTPSeeOther(f"{login_path}?error=1")
    limiter.succeeded(username)
    agent = found[0]
    if agent["role"] != role:
        log.warning(
            "%s login refused for %s from %s: the account is a %s", role, agent["username"], address, agent["role"]
        )
        raise web.HTTPSeeOther(f"{login_path}?error=role")
    token, csrf = new_token(), new_token()
    await request.app[AGENTS].create_session(agent["id"], token_hash(token), csrf)
    log.info("%s %s logged in from %s", role, agent["username"], request.remote)
    response = web.HTTPSeeOther(f"{prefix}/")
    _cookie(response, request, session_cookie, token, int(SESSION_TTL), prefix)
    response.del_cookie(LOGIN_CSRF_COOKIE, path=prefix)
    raise response


@routes.post("/desktop/login")
async def login(request: web.Request) -> web.Response:
    return await sign_in(request, role="agent", prefix="/desktop", session_cookie=SESSION_COOKIE)


@routes.get("/desktop")
async def desktop_redirect(request: web.Request) -> web.Response:
    raise web.HTTPSeeOther("/desktop/")


def desktop_headers(softphone_url: str) -> dict[str, str]:
    """The page headers, with the softphone's WebSocket origin added to ``connect-src``."""
    origin = urlsplit(softphone_url)
    csp = PAGE_HEADERS["Content-Security-Policy"].replace(
        "connect-src 'self'", f"connect-src 'self' {origin.scheme}://{origin.netloc}"
    )
    return {**PAGE_HEADERS, "Content-Security-Policy": csp}


@routes.get("/desktop/")
async def desktop_page(request: web.Request) -> web.Response:
    if await current_agent(request) is None:
        raise web.HTTPSeeOther("/desktop/login")
    headers = desktop_headers(request.app[SOFTPHONE_URL])
    return web.Response(text=(STATIC / "index.html").read_text(), content_type="text/html", headers=headers)


@routes.post("/desktop/api/softphone")
async def softphone(request: web.Request) -> web.Response:
    """A fresh SIP password for this agent's browser endpoint, pushed to Asterisk, then given to
    this page only (no-store; never logged, never in the database)."""
    agent = await _require(request, check_csrf=True)
    if agent.get("phone") != "browser":
        return web.json_response({"phone": "sip"}, headers={"Cache-Control": "no-store"})
    endpoint = sipcreds.browser_endpoint(agent["endpoint"])
    request.app[REVOKE_LATER].cancel(agent["id"])  # these replace the ones a closed tab held
    try:
        password = await request.app[DESK].grant_softphone(agent["id"], agent["endpoint"])
    except (LeaderUnavailable, ValueError) as exc:
        log.warning("agent %s: no browser softphone credentials: %s", agent["username"], exc)
        raise web.HTTPServiceUnavailable(text=str(exc)) from None
    url = request.app[SOFTPHONE_URL]
    host = urlsplit(url).hostname or "127.0.0.1"
    body = {
        "phone": "browser",
        "ws_url": url,
        "uri": f"sip:{endpoint}@{host}",
        "username": endpoint,
        "password": password,
    }
    return web.json_response(body, headers={"Cache-Control": "no-store"})


async def revoke_softphone(desk: AcdDesk, agent: dict[str, Any]) -> None:
    """Delete the agent's browser softphone credentials (a session ended); a leader that does not
    answer is logged: the credentials then last until the next sign-in replaces them."""
    if agent.get("phone") != "browser":
        return
    try:
        await desk.revoke_softphone(agent["id"], agent["endpoint"])
    except (LeaderUnavailable, ValueError) as exc:
        log.warning("agent %s: browser softphone credentials not revoked: %s", agent["username"], exc)


@routes.get("/desktop/api/me")
async def me(request: web.Request) -> web.Response:
    found = await current_agent(request)
    if found is None:
        raise web.HTTPUnauthorized(text="log in first")
    agent, csrf = found
    state = request.app[ACD].states.get(agent["id"])
    return web.json_response({"agent": agent, "csrf": csrf, "state": state.to_dict() if state else None})


@routes.post("/desktop/api/logout")
async def logout(request: web.Request) -> web.Response:
    agent = await _require(request, check_csrf=True)
    with contextlib.suppress(LeaderUnavailable):  # the session ends anyway; a new leader has no state of it
        await request.app[DESK].run("logout", agent["id"])
    request.app[REVOKE_LATER].cancel(agent["id"])
    await revoke_softphone(request.app[DESK], agent)
    request.app[DESK].closed(agent["id"])
    session = token_hash(request.cookies.get(SESSION_COOKIE, ""))
    await request.app[AGENTS].end_session(session)
    await request.app[SOCKETS].end_session(session)  # its other tabs; other nodes notice by polling
    response = web.json_response({"ok": True})
    response.del_cookie(SESSION_COOKIE, path="/desktop")
    return response


@routes.get("/desktop/ws")
async def websocket(request: web.Request) -> web.WebSocketResponse:
    if not same_origin(request):
        raise web.HTTPForbidden(text="cross-origin websocket refused")
    agent = await _require(request, csrf=request.query.get("csrf"), check_csrf=True)
    session = token_hash(request.cookies.get(SESSION_COOKIE, ""))
    desk = request.app[DESK]
    ws = web.WebSocketResponse(heartbeat=20.0, max_msg_size=MAX_MESSAGE)
    await ws.prepare(request)
    async with request.app[BUS].subscribe(agent_topic(agent["id"])) as sub:

        async def forward() -> None:
            async for message in sub:
                if ws.closed:
                    break
                await ws.send_json(message)
            if sub.overflowed and not ws.closed:
                await ws.close(code=4000, message=b"too slow: reconnect")

        async def watch_session() -> None:
            """Close the socket once its session is gone (logout, password change, agent disabled,
            expiry), wherever that happened: the database is the one place all of them reach."""
            while not ws.closed:
                await asyncio.sleep(request.app[SESSION_CHECK])
                try:
                    live = await request.app[AGENTS].session(session)
                except Exception as exc:  # a database blip is not a revocation: look again later
                    log.warning("desktop session of agent %s not re-checked: %s", agent["username"], exc)
                    continue
                if live is None or live[0]["id"] != agent["id"] or live[0]["role"] != "agent":
                    log.info("agent %s: desktop session ended; closing its websocket", agent["username"])
                    await revoke_softphone(desk, agent)
                    await ws.close(code=SESSION_ENDED, message=b"session ended: log in again")

        forwarder = asyncio.create_task(forward(), name=f"desktop-ws-{agent['id']}")
        watcher = asyncio.create_task(watch_session(), name=f"desktop-session-{agent['id']}")
        sockets = request.app[SOCKETS]
        sockets.opened(agent["id"], session, ws)
        request.app[REVOKE_LATER].cancel(agent["id"])  # a reload: the page's phone goes on
        try:
            try:  # the state (and a mid-call card again) come back through the bus
                await desk.run("login", agent["id"], agent=agent)
            except LeaderUnavailable as exc:  # the agent is logged in again when a leader announces itself
                await ws.send_json({"type": "error", "message": str(exc)})
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    continue
                try:
                    await _command(desk, agent, msg.json())
                except (
                    ValueError,
                    KeyError,
                    PermissionError,
                    TypeError,
                    ArithmeticError,
                    RecursionError,
                    LeaderUnavailable,
                ) as exc:
                    await ws.send_json({"type": "error", "message": str(exc)[:200]})
        finally:

            async def gone() -> None:
                for task in (forwarder, watcher):
                    task.cancel()
                for task in (forwarder, watcher):
                    await wait_cancelled(task)
                left = sockets.closed(agent["id"], session, ws)
                if not left:
                    # nobody sees this agent's screen any more: no call may ring there unannounced
                    desk.closed(agent["id"])
                    request.app[REVOKE_LATER].schedule(agent)
                    with contextlib.suppress(LeaderUnavailable):  # a new leader logs nobody in paused or not
                        await desk.run("closed", agent["id"])

            await run_to_end(gone())  # also when aiohttp cancels this handler as the client leaves
    return ws


async def _command(desk: AcdDesk, agent: dict[str, Any], data: Any) -> None:
    if not isinstance(data, dict):
        raise ValueError("messages are JSON objects")
    kind = data.get("type")
    agent_id = agent["id"]
    if kind == "ready":
        await desk.run("ready", agent_id)
    elif kind == "pause":
        await desk.run("pause", agent_id, reason=str(data.get("reason", "")))
    elif kind == "finish":
        journey_id = _id(data, "journey_id", optional=True)
        if journey_id:  # a call that came without a journey has no timeline to write into
            await desk.run(
                "finish",
                agent_id,
                journey_id=journey_id,
                disposition=str(data.get("disposition", "")),
                notes=str(data.get("notes", "")),
            )
        if data.get("ready"):
            await desk.run("ready", agent_id)
    elif kind == "painted":
        await desk.run("painted", agent_id, called_at=float(data["called_at"]), at=float(data["at"]))
    elif kind == "chat.send":
        await desk.run("chat.send", agent_id, contact_id=_id(data, "contact_id"), text=str(data["text"])[:4000])
    elif kind == "chat.end":
        await desk.run("chat.end", agent_id, contact_id=_id(data, "contact_id"))
    elif kind == "transfer":
        await desk.run(
            "transfer",
            agent_id,
            journey_id=_id(data, "journey_id"),
            kind=str(data.get("kind", "")),
            target=str(data.get("target", ""))[:200],
            mode=str(data.get("mode", "")),
            note=str(data.get("note", ""))[:4000],
        )
    elif kind in ("transfer.complete", "transfer.cancel"):
        await desk.run(kind, agent_id)
    elif kind == "call":  # click-to-call: the card's journey (whose customer's numbers may be called) or none
        number = data.get("number")
        if not isinstance(number, str):
            raise ValueError("number must be a string")
        await desk.run("call", agent_id, number=number[:64], journey_id=_id(data, "journey_id", optional=True))
    else:
        raise ValueError(f"unknown message type {loggable(kind)}")


def _id(data: dict[str, Any], key: str, *, optional: bool = False) -> str:
    """A journey or contact id from the browser: a string (what it names is checked by the ACD)."""
    value = data.get(key)
    if value is None and optional:
        return ""
    if not isinstance(value, str):
        raise ValueError(f"{key} must be a string")
    return value


def login_limiter(settings: DesktopSettings) -> LoginLimiter:
    """The login limits the ``desktop.login_*`` settings describe."""
    window, lockout = settings.login_window, settings.login_lockout
    try:
        return LoginLimiter(
            per_name=Limit(settings.login_max_failures, window, lockout),
            per_address=Limit(settings.login_max_failures_per_address, window, lockout),
        )
    except ValueError as exc:
        raise ConfigError(f"desktop.login_*: {exc}") from None


def setup_desktop(
    app: web.Application,
    *,
    acd: Acd,
    agents: AgentStore,
    bus: Bus,
    desk: AcdDesk | None = None,
    secure_cookies: bool = False,
    session_check: float = SESSION_CHECK_S,
    login_limits: LoginLimiter | None = None,
    softphone_url: str = "wss://127.0.0.1:8089/ws",
    softphone_revoke_grace: float = SOFTPHONE_REVOKE_GRACE_S,
) -> None:
    """Register the desktop on ``app`` (called by the composition root, ``ivr.app.App``)."""
    if not 0 < session_check <= 60:
        raise ConfigError(f"desktop.session_check must be more than 0 and at most 60 seconds, not {session_check}")
    if not 0 <= softphone_revoke_grace <= 3600:
        raise ConfigError(f"desktop.softphone_revoke_grace must be 0 to 3600 seconds, not {softphone_revoke_grace}")
    app[ACD] = acd
    app[DESK] = desk or AcdDesk(acd, bus, node="local", is_leader=lambda: True)  # one node: always the leader
    app[AGENTS] = agents
    app[BUS] = bus
    app[SECURE] = secure_cookies
    app[SESSION_CHECK] = session_check
    if urlsplit(softphone_url).scheme not in ("wss", "ws") or not urlsplit(softphone_url).hostname:
        raise ConfigError(f"desktop.softphone_wss_url must be a wss:// URL, not {softphone_url!r}")
    app[SOFTPHONE_URL] = softphone_url
    # not ``or``: an empty limiter has len() 0
    app[LIMITER] = LoginLimiter(per_name=PER_NAME, per_address=PER_ADDRESS) if login_limits is None else login_limits
    app[SOCKETS] = OpenDesktops()
    revoke_later = RevokeLater(app[DESK], softphone_revoke_grace)
    app[REVOKE_LATER] = revoke_later

    async def stop_revoking(_app: web.Application) -> None:
        await revoke_later.stop()

    app.on_cleanup.append(stop_revoking)
    app.add_routes(routes)
    app.router.add_static("/desktop/static/", STATIC, show_index=False)
    app.router.add_static("/desktop/vendor/", STATIC.parent / "vendor", show_index=False)
