"""The supervisor role's pages: login, session, CSRF, access rules, and the live wallboard.

Routes (all under ``/supervisor``)::

    GET  /supervisor/login         the login form (sets a double-submit CSRF cookie)
    POST /supervisor/login         username + password + csrf -> session cookie, 303 to /supervisor/
    GET  /supervisor/              the page (303 to the login form without a supervisor session)
    GET  /supervisor/api/me        {"supervisor", "csrf"}: who is signed in and the session's CSRF token
    POST /supervisor/api/logout    (X-CSRF-Token) ends the session
    GET  /supervisor/ws?csrf=...   the wallboard websocket (session cookie + CSRF token + same Origin)
    GET  /supervisor/static/...    page assets

The websocket forwards what the ACD publishes on ``WALLBOARD`` (``ivr.acd.wallboard``: queues
with callers waiting, the longest wait and agents ready/busy/paused; agents with their state,
since when, and their open contacts' channels), server -> browser only. Like the desktop's, it
lives only as long as its session: it re-reads the session every ``session_check`` seconds and
closes with 4001 once a logout, password change or disabled account ended it.

Why the same rules as the desktop, by construction rather than by copy: the login is the
desktop's ``sign_in`` (same form CSRF pair and Origin check, same failure limits shared with the
desktop's form, so guesses at either count together, same scrypt check and disabled-account
refusal), and sessions live in the same table (``ivr.store.agents``), so ``ivr agents passwd``
and ``ivr agents disable`` end a supervisor's sessions as they end an agent's.

Why a cookie of its own (``ivr_supervisor``, path ``/supervisor``): the browser never sends the
desktop's cookie here nor this one to the desktop, so a page of one role cannot act with the
other's session. And the role is checked on every request, from the account the session belongs
to (re-read with the session), never from the cookie's name: an agent's session token presented
here is refused (403) and a supervisor's opens nothing on the desktop.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

from aiohttp import web

from ivr.acd.topics import WALLBOARD
from ivr.aio import run_to_end, wait_cancelled
from ivr.web.agents_auth import same_token, token_hash
from ivr.web.desktop import (
    AGENTS,
    BUS,
    PAGE_HEADERS,
    SESSION_CHECK,
    SESSION_ENDED,
    login_page,
    same_origin,
    sign_in,
)

log = logging.getLogger(__name__)
STATIC = Path(__file__).resolve().parent / "static" / "supervisor"
PREFIX = "/supervisor"
SESSION_COOKIE = "ivr_supervisor"
ROLE = "supervisor"

routes = web.RouteTableDef()


async def _session(request: web.Request) -> tuple[dict[str, Any], str] | None:
    """(account, CSRF token) of this request's supervisor cookie, whatever the account's role."""
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        return None
    return await request.app[AGENTS].session(token_hash(token))


async def require_supervisor(
    request: web.Request, *, check_csrf: bool = False, csrf: str | None = None
) -> tuple[dict[str, Any], str]:
    """The signed-in supervisor and the session's CSRF token, else 401 (no session) or 403 (a
    session of another role, or a change without the session's CSRF token: ``csrf``, else the
    ``X-CSRF-Token`` header)."""
    found = await _session(request)
    if found is None:
        raise web.HTTPUnauthorized(text="log in first")
    account, expected = found
    given = csrf
    if account["role"] != ROLE:
        log.warning("%s %s refused at %s: supervisors only", account["role"], account["username"], request.path)
        raise web.HTTPForbidden(text="supervisors only")
    if check_csrf and not same_token(given or request.headers.get("X-CSRF-Token"), expected):
        raise web.HTTPForbidden(text="missing or wrong CSRF token")
    return account, expected


@routes.get("/supervisor/login")
async def login_form(request: web.Request) -> web.Response:
    return login_page(request, STATIC / "login.html", PREFIX)


@routes.post("/supervisor/login")
async def login(request: web.Request) -> web.Response:
    return await sign_in(request, role=ROLE, prefix=PREFIX, session_cookie=SESSION_COOKIE)


@routes.get("/supervisor")
async def redirect(request: web.Request) -> web.Response:
    raise web.HTTPSeeOther("/supervisor/")


@routes.get("/supervisor/")
async def page(request: web.Request) -> web.Response:
    found = await _session(request)
    if found is None:
        raise web.HTTPSeeOther("/supervisor/login")
    await require_supervisor(request)  # an agent's session: 403, not a login form to retry
    return web.Response(text=(STATIC / "index.html").read_text(), content_type="text/html", headers=PAGE_HEADERS)


@routes.get("/supervisor/api/me")
async def me(request: web.Request) -> web.Response:
    account, csrf = await require_supervisor(request)
    return web.json_response({"supervisor": account, "csrf": csrf})


@routes.post("/supervisor/api/logout")
async def logout(request: web.Request) -> web.Response:
    account, _ = await require_supervisor(request, check_csrf=True)
    await request.app[AGENTS].end_session(token_hash(request.cookies.get(SESSION_COOKIE, "")))
    log.info("supervisor %s logged out", account["username"])
    response = web.json_response({"ok": True})
    response.del_cookie(SESSION_COOKIE, path=PREFIX)
    return response


@routes.get("/supervisor/ws")
async def websocket(request: web.Request) -> web.WebSocketResponse:
    if not same_origin(request):
        raise web.HTTPForbidden(text="cross-origin websocket refused")
    account, _ = await require_supervisor(request, check_csrf=True, csrf=request.query.get("csrf"))
    session = token_hash(request.cookies.get(SESSION_COOKIE, ""))
    ws = web.WebSocketResponse(heartbeat=20.0, max_msg_size=4096)
    await ws.prepare(request)
    async with request.app[BUS].subscribe(WALLBOARD) as sub:

        async def forward() -> None:
            async for message in sub:
                if ws.closed:
                    break
                await ws.send_json(message)
            if sub.overflowed and not ws.closed:
                await ws.close(code=4000, message=b"too slow: reconnect")

        async def watch_session() -> None:
            while not ws.closed:
                await asyncio.sleep(request.app[SESSION_CHECK])
                try:
                    live = await request.app[AGENTS].session(session)
                except Exception as exc:  # a database blip is not a revocation: look again later
                    log.warning("supervisor session of %s not re-checked: %s", account["username"], exc)
                    continue
                if live is None or live[0]["id"] != account["id"] or live[0]["role"] != ROLE:
                    log.info("supervisor %s: session ended; closing the wallboard", account["username"])
                    await ws.close(code=SESSION_ENDED, message=b"session ended: log in again")

        tasks = [
            asyncio.create_task(forward(), name=f"wallboard-ws-{account['id']}"),
            asyncio.create_task(watch_session(), name=f"wallboard-session-{account['id']}"),
        ]
        try:
            async for _ in ws:  # the browser sends nothing; this waits for the close
                pass
        finally:

            async def gone() -> None:
                for task in tasks:
                    task.cancel()
                for task in tasks:
                    await wait_cancelled(task)

            await run_to_end(gone())  # also when aiohttp cancels this handler as the client leaves
    return ws


def setup_supervisor(app: web.Application) -> None:
    """Register the supervisor pages on ``app``, after ``setup_desktop`` (whose account store,
    login limits, bus and session re-check interval they share)."""
    app.add_routes(routes)
    app.router.add_static("/supervisor/static/", STATIC, show_index=False)
