"""The supervisor role's pages: login, session, CSRF and access rules (the wallboard comes later).

Routes (all under ``/supervisor``)::

    GET  /supervisor/login         the login form (sets a double-submit CSRF cookie)
    POST /supervisor/login         username + password + csrf -> session cookie, 303 to /supervisor/
    GET  /supervisor/              the page (303 to the login form without a supervisor session)
    GET  /supervisor/api/me        {"supervisor", "csrf"}: who is signed in and the session's CSRF token
    POST /supervisor/api/logout    (X-CSRF-Token) ends the session
    GET  /supervisor/static/...    page assets

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

import logging
from pathlib import Path
from typing import Any

from aiohttp import web

from ivr.web.agents_auth import same_token, token_hash
from ivr.web.desktop import AGENTS, PAGE_HEADERS, login_page, sign_in

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


async def require_supervisor(request: web.Request, *, check_csrf: bool = False) -> tuple[dict[str, Any], str]:
    """The signed-in supervisor and the session's CSRF token, else 401 (no session) or 403 (a
    session of another role, or a change without the session's CSRF token)."""
    found = await _session(request)
    if found is None:
        raise web.HTTPUnauthorized(text="log in first")
    account, csrf = found
    if account["role"] != ROLE:
        log.warning("%s %s refused at %s: supervisors only", account["role"], account["username"], request.path)
        raise web.HTTPForbidden(text="supervisors only")
    if check_csrf and not same_token(request.headers.get("X-CSRF-Token"), csrf):
        raise web.HTTPForbidden(text="missing or wrong CSRF token")
    return account, csrf


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


def setup_supervisor(app: web.Application) -> None:
    """Register the supervisor pages on ``app``, after ``setup_desktop`` (whose account store and
    login limits they share)."""
    app.add_routes(routes)
    app.router.add_static("/supervisor/static/", STATIC, show_index=False)
