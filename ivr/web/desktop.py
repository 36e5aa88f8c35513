"""The agent desktop: login, a websocket of screen pops and call state, notes and dispositions.

Routes (all under ``/desktop``; nothing here is reachable with the API's bearer token, and the
API is not reachable with a desktop session)::

    GET  /desktop/login            the login form (sets a double-submit CSRF cookie)
    POST /desktop/login            username + password + csrf -> session cookie, 303 to /desktop/
    GET  /desktop/                 the desktop page (303 to the login form without a session)
    GET  /desktop/api/me           {"agent", "csrf"}: who is logged in and the session's CSRF token
    POST /desktop/api/logout       (X-CSRF-Token) leaves the queues, ends the session
    GET  /desktop/ws?csrf=...      the websocket (session cookie + CSRF token + same Origin)
    GET  /desktop/static/...       page assets (plain HTML/JS/CSS, no build step)

Websocket, server -> browser: ``state``, ``pop``, ``pop.cancel``, ``call.connected``,
``call.ended``, ``chat.offer``, ``chat.message``, ``chat.closed``, ``error`` (each ``{"type": ...}``).
Browser -> server: ``{"type": "ready"}``, ``{"type": "pause", "reason"}``, ``{"type": "finish",
"journey_id", "disposition", "notes", "ready": bool}``, ``{"type": "painted", "called_at", "at"}``,
``{"type": "chat.send", "contact_id", "text"}``, ``{"type": "chat.end", "contact_id"}``.

Only messages published on ``agent.<this agent's id>`` reach this socket: another agent's browser
gets nothing of this agent's calls.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import logging
import time
from pathlib import Path
from typing import Any

from aiohttp import WSMsgType, web

from ivr.acd.service import Acd, agent_topic
from ivr.bus.pubsub import Bus
from ivr.store.agents import SESSION_TTL, AgentStore
from ivr.web.agents_auth import DUMMY_HASH, new_token, same_token, token_hash, verify_password

log = logging.getLogger(__name__)
STATIC = Path(__file__).resolve().parent / "static" / "desktop"
SESSION_COOKIE = "ivr_session"
LOGIN_CSRF_COOKIE = "ivr_login_csrf"
MAX_FAILURES = 5
LOCKOUT_S = 60.0

ACD = web.AppKey("acd", Acd)
AGENTS = web.AppKey("agents", AgentStore)
BUS = web.AppKey("bus", Bus)
SECURE = web.AppKey("secure_cookies", bool)
FAILURES = web.AppKey("login_failures", dict)
SOCKETS = web.AppKey("open_sockets", dict)

#: The pages load only their own script and style and talk only to this origin (websocket included).
PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": "default-src 'self'; connect-src 'self'; frame-ancestors 'none'; form-action 'self'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}

routes = web.RouteTableDef()


def _cookie(response: web.StreamResponse, request: web.Request, name: str, value: str, max_age: int) -> None:
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path="/desktop",
        httponly=True,
        samesite="Strict",
        secure=request.app[SECURE],
    )


async def current_agent(request: web.Request) -> tuple[dict[str, Any], str] | None:
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        return None
    return await request.app[AGENTS].session(token_hash(token))


async def _require(request: web.Request, *, csrf: str | None = None, check_csrf: bool = False) -> dict[str, Any]:
    found = await current_agent(request)
    if found is None:
        raise web.HTTPUnauthorized(text="log in first")
    agent, expected = found
    if check_csrf and not same_token(csrf or request.headers.get("X-CSRF-Token"), expected):
        raise web.HTTPForbidden(text="missing or wrong CSRF token")
    return agent


def _same_origin(request: web.Request) -> bool:
    origin = request.headers.get("Origin")
    return origin is None or origin == f"{request.scheme}://{request.host}"


@routes.get("/desktop/login")
async def login_form(request: web.Request) -> web.Response:
    csrf = new_token()
    page = (STATIC / "login.html").read_text()
    error = "Wrong user name or password." if request.query.get("error") else ""
    if request.query.get("error") == "locked":
        error = "Too many attempts. Wait a minute and try again."
    page = page.replace("{{csrf}}", html.escape(csrf)).replace("{{error}}", html.escape(error))
    response = web.Response(text=page, content_type="text/html", headers=PAGE_HEADERS)
    _cookie(response, request, LOGIN_CSRF_COOKIE, csrf, 3600)
    return response


@routes.post("/desktop/login")
async def login(request: web.Request) -> web.Response:
    try:
        form = await request.post()
    except ValueError:  # a multipart part without a name, and other malformed forms
        raise web.HTTPBadRequest(text="send the login form") from None
    if not _same_origin(request) or not same_token(str(form.get("csrf", "")), request.cookies.get(LOGIN_CSRF_COOKIE)):
        raise web.HTTPForbidden(text="login form expired: reload the page")
    username = str(form.get("username", "")).strip()
    password = str(form.get("password", ""))
    failures: dict[str, tuple[int, float]] = request.app[FAILURES]
    count, since = failures.get(username, (0, 0.0))
    if count >= MAX_FAILURES and time.monotonic() - since < LOCKOUT_S:
        raise web.HTTPSeeOther("/desktop/login?error=locked")
    found = await request.app[AGENTS].by_username(username)
    # scrypt runs in a thread: ~50 ms of CPU must not stall every call's events
    ok = await asyncio.to_thread(verify_password, password, found[1] if found else DUMMY_HASH)
    if not found or not ok or found[0]["disabled"]:
        failures[username] = (count + 1, time.monotonic())
        log.warning("desktop login refused for %r from %s", username, request.remote)
        raise web.HTTPSeeOther("/desktop/login?error=1")
    failures.pop(username, None)
    agent = found[0]
    token, csrf = new_token(), new_token()
    await request.app[AGENTS].create_session(agent["id"], token_hash(token), csrf)
    log.info("agent %s logged in to the desktop from %s", agent["username"], request.remote)
    response = web.HTTPSeeOther("/desktop/")
    _cookie(response, request, SESSION_COOKIE, token, int(SESSION_TTL))
    response.del_cookie(LOGIN_CSRF_COOKIE, path="/desktop")
    raise response


@routes.get("/desktop")
async def desktop_redirect(request: web.Request) -> web.Response:
    raise web.HTTPSeeOther("/desktop/")


@routes.get("/desktop/")
async def desktop_page(request: web.Request) -> web.Response:
    if await current_agent(request) is None:
        raise web.HTTPSeeOther("/desktop/login")
    return web.Response(text=(STATIC / "index.html").read_text(), content_type="text/html", headers=PAGE_HEADERS)


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
    await request.app[ACD].logout(agent["id"])
    token = request.cookies.get(SESSION_COOKIE, "")
    await request.app[AGENTS].end_session(token_hash(token))
    response = web.json_response({"ok": True})
    response.del_cookie(SESSION_COOKIE, path="/desktop")
    return response


@routes.get("/desktop/ws")
async def websocket(request: web.Request) -> web.WebSocketResponse:
    if not _same_origin(request):
        raise web.HTTPForbidden(text="cross-origin websocket refused")
    agent = await _require(request, csrf=request.query.get("csrf"), check_csrf=True)
    acd = request.app[ACD]
    ws = web.WebSocketResponse(heartbeat=20.0)
    await ws.prepare(request)
    async with request.app[BUS].subscribe(agent_topic(agent["id"])) as sub:

        async def forward() -> None:
            async for message in sub:
                if ws.closed:
                    break
                await ws.send_json(message)
            if sub.overflowed and not ws.closed:
                await ws.close(code=4000, message=b"too slow: reconnect")

        forwarder = asyncio.create_task(forward(), name=f"desktop-ws-{agent['id']}")
        sockets: dict[str, int] = request.app[SOCKETS]
        sockets[agent["id"]] = sockets.get(agent["id"], 0) + 1
        try:
            state = await acd.login(agent)  # publishes the state through the bus
            if state.call and state.status in ("ringing", "on_call"):
                pop = await acd.pop_for(state.call)
                await ws.send_json({"type": "pop", "pop": pop, "agent": state.to_dict(), "replay": True})
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    continue
                try:
                    await _command(acd, agent, msg.json())
                except (ValueError, KeyError, PermissionError, TypeError) as exc:
                    await ws.send_json({"type": "error", "message": str(exc)})
        finally:
            forwarder.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await forwarder
            sockets[agent["id"]] -= 1
            current = acd.states.get(agent["id"])
            if not sockets[agent["id"]] and current is not None and current.status == "ready":
                # nobody sees this agent's screen any more: no call may ring there unannounced
                await acd.pause(agent["id"], "desktop closed")
    return ws


async def _command(acd: Acd, agent: dict[str, Any], data: Any) -> None:
    if not isinstance(data, dict):
        raise ValueError("messages are JSON objects")
    kind = data.get("type")
    agent_id = agent["id"]
    if kind == "ready":
        await acd.ready(agent_id)
    elif kind == "pause":
        await acd.pause(agent_id, str(data.get("reason", "")))
    elif kind == "finish":
        await acd.finish(
            agent_id,
            journey_id=str(data["journey_id"]),
            disposition=str(data.get("disposition", "")),
            notes=str(data.get("notes", "")),
        )
        if data.get("ready"):
            await acd.ready(agent_id)
    elif kind == "painted":
        await acd.painted(agent_id, float(data["called_at"]), float(data["at"]))
    elif kind == "chat.send":
        await acd.chats.agent_message(agent_id, str(data["contact_id"]), str(data["text"])[:4000])
    elif kind == "chat.end":
        await acd.chats.close(str(data["contact_id"]), by="agent", agent_id=agent_id)
    else:
        raise ValueError(f"unknown message type {kind!r}")


def setup_desktop(
    app: web.Application, *, acd: Acd, agents: AgentStore, bus: Bus, secure_cookies: bool = False
) -> None:
    """Register the desktop on ``app`` (called by ``ivr.web.app.create_app``)."""
    app[ACD] = acd
    app[AGENTS] = agents
    app[BUS] = bus
    app[SECURE] = secure_cookies
    app[FAILURES] = {}
    app[SOCKETS] = {}
    app.add_routes(routes)
    app.router.add_static("/desktop/static/", STATIC, show_index=False)
