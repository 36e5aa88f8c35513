"""The flow studio: admins read, check, publish, roll back and try the flows in ``dialplans/``.

Routes (all under ``/studio``; every ``/studio/api/`` call needs an admin's session, and every
POST its CSRF token in ``X-CSRF-Token`` and a same-origin ``Origin``)::

    GET  /studio/login                           the login form (double-submit CSRF cookie)
    POST /studio/login                           username + password + csrf -> session, 303 to /studio/
    GET  /studio/                                the page (303 to the login form without a session)
    GET  /studio/api/me                          {"admin", "csrf"}
    POST /studio/api/logout                      ends the session
    GET  /studio/api/flows                       every flow file: version, number, last change (who, when)
    GET  /studio/api/flows/{name}                its text, version, problems, diagram (SVG), history, audit
    GET  /studio/api/flows/{name}/versions/{n}   one recorded version: text and diff to the one before
    POST /studio/api/check                       {"name", "text"} -> problems as ``ivr check`` prints them,
                                                 and the diagram of the text when it parses
    POST /studio/api/flows/{name}/publish        {"text", "base"}: 200, 422 (problems), 409 (conflict)
    POST /studio/api/flows/{name}/rollback       {"number", "base"}: republish version n, same rules
    POST /studio/api/simulate                    {"name", "text"?, "caller", "channel", "inputs"}
    GET  /studio/static/...                      page assets

Why the desktop's sign-in and sessions: the login is ``sign_in`` with role ``admin`` (same CSRF
pair, Origin check, shared failure limits, scrypt, disabled accounts refused) and sessions are
the agents' table, so ``ivr agents passwd|disable`` end an admin's session too. The cookie is the
studio's own (``ivr_studio``, path ``/studio``), and the role is re-read with the session on every
request: agents' and supervisors' sessions get 403 here.

Why publishes are serialised per flow and carry a base: the page sends the version (the file's
content hash) it started editing from. Under the flow's lock the file is read again; if its version
is not the base (another admin published, or someone edited the file on disk), the answer is 409
with both texts and nothing is written. The database's per-flow version number is the second
guard (two nodes): recording the version first means a lost race writes no file. A version is
recorded before the file is written, then the controller's flows are reloaded at once, so the
next call takes the new version (running journeys keep theirs, as with any reload).

Why checks run in a thread: a check parses the edited text and every other flow file (up to
``MAX_FLOW_BYTES`` each, about 0.5 s for the largest), and the event loop also runs the calls.

Why bodies are read here with a limit of their own: the application's limit (64 KiB) is for
forms and chat; a flow file may be up to ``MAX_FLOW_BYTES``, so these routes take a little over
twice that (JSON escaping) and refuse more with 413 before reading it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from ivr.errors import IvrError
from ivr.flow.funnel import FunnelWindow
from ivr.flow.layout import flow_svg
from ivr.flow.loader import MAX_FLOW_BYTES, flow_files, flow_version
from ivr.flow.model import Flow, FlowProblem
from ivr.flow.publishing import NAME, BadFlowName, check_text, flow_path, write_atomic
from ivr.flow.simulate import Transcript
from ivr.store.flow_versions import FlowVersionStore, VersionConflict
from ivr.store.funnels import FunnelStore
from ivr.web.agents_auth import same_token, token_hash
from ivr.web.desktop import AGENTS, PAGE_HEADERS, login_page, same_origin, sign_in
from ivr.web.errors import json_error

log = logging.getLogger(__name__)
STATIC = Path(__file__).resolve().parent / "static" / "studio"
PREFIX = "/studio"
SESSION_COOKIE = "ivr_studio"
ROLE = "admin"
#: a flow file at its largest, JSON-escaped, with room for the other fields
MAX_BODY = 2 * MAX_FLOW_BYTES + 16 * 1024
CHANNELS = ("voice", "chat", "sms")
MAX_INPUTS = 50
MAX_INPUT_CHARS = 200


class FlowLookup:
    """The flows a simulation runs: the draft under its name, the live ones for what it invokes."""

    def __init__(self, draft: Flow, live: Callable[[str, str | None], Flow]) -> None:
        self.draft = draft
        self.live = live

    def get(self, name: str, version: str | None = None) -> Flow:
        if name == self.draft.name and version in (None, self.draft.version):
            return self.draft
        return self.live(name, version)


#: (flows, flow, caller, channel, inputs) -> what the caller would hear or read
Simulate = Callable[[FlowLookup, str, str | None, str, Sequence[str]], Awaitable[Transcript]]


@dataclass
class Studio:
    """What the studio's routes need from the composition root."""

    directory: Path
    versions: FlowVersionStore
    #: reload the controller's flows after a publish, so the next call takes the new version
    reload: Callable[[], object]
    #: the live flows, for what a simulated draft invokes
    live: Callable[[str, str | None], Flow]
    simulate: Simulate
    #: (queues.conf's path, the queues it defines), or None when there is no file to check against
    queues: Callable[[], tuple[str, frozenset[str]] | None] = lambda: None
    #: where real callers went at each step (the interaction log), painted on the diagram
    funnels: FunnelStore | None = None
    locks: dict[str, asyncio.Lock] = field(default_factory=dict)

    def lock(self, name: str) -> asyncio.Lock:
        return self.locks.setdefault(name, asyncio.Lock())


STUDIO = web.AppKey("studio", Studio)
routes = web.RouteTableDef()


def _problem(p: FlowProblem) -> dict[str, Any]:
    return {"file": p.file, "line": p.line, "step": p.step, "message": p.message, "text": str(p)}


async def require_admin(request: web.Request, *, change: bool = False) -> dict[str, Any]:
    """The signed-in admin, else 401 (no session) or 403 (another role's session; for a change,
    a missing or wrong CSRF token or another Origin)."""
    token = request.cookies.get(SESSION_COOKIE)
    found = await request.app[AGENTS].session(token_hash(token)) if token else None
    if found is None:
        raise json_error(web.HTTPUnauthorized, "log in first")
    account, expected = found
    if account["role"] != ROLE:
        log.warning("%s %s refused at %s: admins only", account["role"], account["username"], request.path)
        raise json_error(web.HTTPForbidden, "admins only")
    if change:
        if not same_origin(request):
            raise json_error(web.HTTPForbidden, "cross-origin request refused")
        if not same_token(request.headers.get("X-CSRF-Token"), expected):
            raise json_error(web.HTTPForbidden, "missing or wrong CSRF token")
    return account


def _too_large(size: int) -> web.HTTPException:
    return web.HTTPRequestEntityTooLarge(
        max_size=MAX_BODY,
        actual_size=size,
        text=json.dumps({"error": f"a request here has at most {MAX_BODY // 1024} KiB"}),
        content_type="application/json",
    )


async def _body(request: web.Request) -> dict[str, Any]:
    """The JSON object sent, read no further than ``MAX_BODY``."""
    if request.content_length is not None and request.content_length > MAX_BODY:
        raise _too_large(request.content_length)
    data = bytearray()
    while chunk := await request.content.read(64 * 1024):
        data += chunk
        if len(data) > MAX_BODY:
            raise _too_large(len(data))
    try:
        body = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        raise json_error(web.HTTPBadRequest, "send a JSON object") from None
    if not isinstance(body, dict):
        raise json_error(web.HTTPBadRequest, "send a JSON object")
    return body


def _text(body: dict[str, Any], key: str) -> str:
    value = body.get(key)
    if not isinstance(value, str):
        raise json_error(web.HTTPBadRequest, f"{key!r} must be text")
    return value


def _path(studio: Studio, name: str) -> Path:
    try:
        return flow_path(studio.directory, name)
    except BadFlowName as exc:
        raise json_error(web.HTTPBadRequest, str(exc)) from None


def _read(path: Path) -> tuple[str, str] | None:
    """(text, version) of a flow file, or None when there is none. Reads no more than a flow
    file may hold (plus one byte, so a bigger one is still a version, and fails its check)."""
    try:
        with path.open("rb") as f:
            raw = f.read(MAX_FLOW_BYTES + 1)
    except FileNotFoundError:
        return None
    return raw.decode("utf-8", errors="replace"), flow_version(raw)


def _diagram(flow: Flow | None) -> str | None:
    return flow_svg(flow) if flow is not None else None


@routes.get("/studio/login")
async def login_form(request: web.Request) -> web.Response:
    return login_page(request, STATIC / "login.html", PREFIX)


@routes.post("/studio/login")
async def login(request: web.Request) -> web.Response:
    return await sign_in(request, role=ROLE, prefix=PREFIX, session_cookie=SESSION_COOKIE)


@routes.get("/studio")
async def redirect(request: web.Request) -> web.Response:
    raise web.HTTPSeeOther("/studio/")


@routes.get("/studio/")
async def page(request: web.Request) -> web.Response:
    if not request.cookies.get(SESSION_COOKIE):
        raise web.HTTPSeeOther("/studio/login")
    try:
        await require_admin(request)
    except web.HTTPUnauthorized:
        raise web.HTTPSeeOther("/studio/login") from None
    return web.Response(text=(STATIC / "index.html").read_text(), content_type="text/html", headers=PAGE_HEADERS)


@routes.get("/studio/api/me")
async def me(request: web.Request) -> web.Response:
    account = await require_admin(request)
    found = await request.app[AGENTS].session(token_hash(request.cookies.get(SESSION_COOKIE, "")))
    assert found is not None
    return web.json_response({"admin": account, "csrf": found[1]})


@routes.post("/studio/api/logout")
async def logout(request: web.Request) -> web.Response:
    account = await require_admin(request, change=True)
    await request.app[AGENTS].end_session(token_hash(request.cookies.get(SESSION_COOKIE, "")))
    log.info("admin %s logged out", account["username"])
    response = web.json_response({"ok": True})
    response.del_cookie(SESSION_COOKIE, path=PREFIX)
    return response


@routes.get("/studio/api/flows")
async def flows(request: web.Request) -> web.Response:
    await require_admin(request)
    studio = request.app[STUDIO]
    out = []
    for path in flow_files(studio.directory) if studio.directory.is_dir() else []:
        name = path.stem
        if not NAME.fullmatch(name):
            continue  # not a name the studio writes: git and an editor still can
        found = _read(path)
        if found is None:
            continue
        text, version = found
        latest = await studio.versions.sync_disk(name, text, version)
        out.append(
            {
                "name": name,
                "version": version,
                "number": latest["number"],
                "author": latest["author"],
                "source": latest["source"],
                "changed_at": latest["created_at"],
            }
        )
    return web.json_response({"flows": out})


@routes.get("/studio/api/flows/{name}")
async def flow(request: web.Request) -> web.Response:
    await require_admin(request)
    studio = request.app[STUDIO]
    name = request.match_info["name"]
    found = _read(_path(studio, name))
    if found is None:
        raise json_error(web.HTTPNotFound, f"no flow file {name}.yaml")
    text, version = found
    latest = await studio.versions.sync_disk(name, text, version)
    loaded, problems = await asyncio.to_thread(check_text, studio.directory, name, text, studio.queues())
    return web.json_response(
        {
            "name": name,
            "version": version,
            "number": latest["number"],
            "text": text,
            "problems": [_problem(p) for p in problems],
            "svg": _diagram(loaded),
            "history": await studio.versions.history(name),
            "audit": await studio.versions.audit(name, limit=20),
        }
    )


@routes.get("/studio/api/flows/{name}/versions/{number}")
async def version(request: web.Request) -> web.Response:
    await require_admin(request)
    studio = request.app[STUDIO]
    name = request.match_info["name"]
    _path(studio, name)
    try:
        number = int(request.match_info["number"])
    except ValueError:
        raise json_error(web.HTTPBadRequest, "a version number is a whole number") from None
    found = await studio.versions.get(name, number)
    if found is None:
        raise json_error(web.HTTPNotFound, f"flow {name} has no version {number}")
    return web.json_response(found)


#: the funnel windows the diagram offers (the same words as ``ivr funnel --window``)
FUNNEL_WINDOWS = ("24h", "7d")


@routes.get("/studio/api/flows/{name}/funnel")
async def funnel(request: web.Request) -> web.Response:
    """The live funnel of the last 24 h or 7 days, keyed by step id like the diagram's
    ``data-step`` nodes (the same answer as ``GET /api/funnel``, behind the admin's session)."""
    await require_admin(request)
    studio = request.app[STUDIO]
    name = request.match_info["name"]
    _path(studio, name)
    window = request.query.get("window", "24h")
    if window not in FUNNEL_WINDOWS:
        raise json_error(web.HTTPBadRequest, f"window must be one of {', '.join(FUNNEL_WINDOWS)}")
    if studio.funnels is None:
        raise json_error(web.HTTPNotFound, "no interaction log to count from")
    span = FunnelWindow.parse(now=time.time(), window=window)
    found = await studio.funnels.funnel(name, span)
    return web.json_response(found.to_dict(span))


@routes.post("/studio/api/check")
async def check(request: web.Request) -> web.Response:
    await require_admin(request, change=True)
    body = await _body(request)
    studio = request.app[STUDIO]
    name, text = _text(body, "name"), _text(body, "text")
    _path(studio, name)
    loaded, problems = await asyncio.to_thread(check_text, studio.directory, name, text, studio.queues())
    return web.json_response(
        {
            "version": flow_version(text.encode()),
            "problems": [_problem(p) for p in problems],
            "svg": _diagram(loaded),
        }
    )


async def _publish(
    account: dict[str, Any], studio: Studio, name: str, text: str, base: str, *, action: str, detail: str = ""
) -> web.Response:
    """Check, compare with the file now, record, write, reload: the one path of publish and rollback."""
    path = _path(studio, name)
    loaded, problems = await asyncio.to_thread(check_text, studio.directory, name, text, studio.queues())
    if problems:
        return web.json_response(
            {"error": f"{len(problems)} problem(s): not published", "problems": [_problem(p) for p in problems]},
            status=422,
        )
    new_version = flow_version(text.encode())
    async with studio.lock(name):
        found = _read(path)
        current_text, current_version = found if found is not None else ("", "")
        latest = await studio.versions.sync_disk(name, current_text, current_version) if found else None
        if current_version != base:
            log.warning(
                "admin %s: %s of flow %s from %s refused: the file is at %s",
                account["username"],
                action,
                name,
                base or "(new)",
                current_version or "(none)",
            )
            return web.json_response(
                {
                    "error": "conflict: the flow changed since you opened it; nothing was written",
                    "current": {**(latest or {}), "version": current_version, "text": current_text},
                    "yours": {"base": base, "text": text},
                },
                status=409,
            )
        if new_version == current_version:
            return web.json_response({"unchanged": True, "version": current_version, **(latest or {})})
        try:
            recorded = await studio.versions.record(
                name,
                text=text,
                version=new_version,
                author=account["username"],
                source="studio",
                after=latest["number"] if latest else 0,
                action=action,
                detail=detail,
            )
        except VersionConflict as exc:
            return web.json_response(
                {
                    "error": f"conflict: {exc}; nothing was written",
                    "current": await studio.versions.latest(name, text=True),
                },
                status=409,
            )
        try:
            await asyncio.to_thread(write_atomic, path, text)
        except OSError as exc:
            log.error("flow %s version %s recorded but not written: %s", name, recorded["number"], exc)
            raise json_error(web.HTTPServiceUnavailable, f"cannot write {path.name}: {exc.strerror}") from None
    log.info(
        "admin %s: %s flow %s version %d (%s)%s",
        account["username"],
        action,
        name,
        recorded["number"],
        new_version,
        f" {detail}" if detail else "",
    )
    try:
        studio.reload()
    except Exception:  # the file is written and recorded: the watcher loads it on its next look
        log.exception("flows not reloaded after publishing %s", name)
    return web.json_response({**recorded, "svg": _diagram(loaded)})


@routes.post("/studio/api/flows/{name}/publish")
async def publish(request: web.Request) -> web.Response:
    account = await require_admin(request, change=True)
    body = await _body(request)
    studio = request.app[STUDIO]
    name = request.match_info["name"]
    _path(studio, name)
    return await _publish(account, studio, name, _text(body, "text"), _text(body, "base"), action="publish")


@routes.post("/studio/api/flows/{name}/rollback")
async def rollback(request: web.Request) -> web.Response:
    account = await require_admin(request, change=True)
    body = await _body(request)
    studio = request.app[STUDIO]
    name = request.match_info["name"]
    _path(studio, name)
    number = body.get("number")
    if not isinstance(number, int) or isinstance(number, bool):
        raise json_error(web.HTTPBadRequest, "'number' is the version to roll back to")
    old = await studio.versions.get(name, number)
    if old is None:
        raise json_error(web.HTTPNotFound, f"flow {name} has no version {number}")
    return await _publish(
        account, studio, name, old["text"], _text(body, "base"), action="rollback", detail=f"to version {number}"
    )


@routes.post("/studio/api/simulate")
async def simulate(request: web.Request) -> web.Response:
    await require_admin(request, change=True)
    body = await _body(request)
    studio = request.app[STUDIO]
    name = _text(body, "name")
    path = _path(studio, name)
    text = body.get("text")
    if text is None:
        found = _read(path)
        if found is None:
            raise json_error(web.HTTPNotFound, f"no flow file {name}.yaml")
        text = found[0]
    if not isinstance(text, str):
        raise json_error(web.HTTPBadRequest, "'text' must be text")
    caller = body.get("caller") or None
    channel = body.get("channel", "voice")
    inputs = body.get("inputs", [])
    if caller is not None and (not isinstance(caller, str) or len(caller) > 32):
        raise json_error(web.HTTPBadRequest, "'caller' is a phone number")
    if channel not in CHANNELS:
        raise json_error(web.HTTPBadRequest, f"'channel' is one of {', '.join(CHANNELS)}")
    if (
        not isinstance(inputs, list)
        or len(inputs) > MAX_INPUTS
        or not all(isinstance(i, str) and len(i) <= MAX_INPUT_CHARS for i in inputs)
    ):
        raise json_error(web.HTTPBadRequest, f"'inputs' is a list of at most {MAX_INPUTS} texts")
    loaded, problems = await asyncio.to_thread(check_text, studio.directory, name, text, studio.queues())
    if loaded is None or problems:
        return web.json_response(
            {"error": "the flow has problems: fix them first", "problems": [_problem(p) for p in problems]},
            status=422,
        )
    try:
        transcript = await studio.simulate(FlowLookup(loaded, studio.live), name, caller, channel, inputs)
    except IvrError as exc:
        raise json_error(web.HTTPUnprocessableEntity, f"cannot simulate: {exc}") from None
    return web.json_response(
        {
            "lines": transcript.lines,
            "path": transcript.path,
            "status": transcript.status,
            "queue": transcript.queue,
            "skill": transcript.skill,
        }
    )


def setup_studio(app: web.Application, studio: Studio) -> None:
    """Register the studio on ``app``, after ``setup_desktop`` (whose account store and login
    limits it shares)."""
    app[STUDIO] = studio
    app.add_routes(routes)
    app.router.add_static("/studio/static/", STATIC, show_index=False)
