"""The web chat (``/c/<token>``, ``/chat/``) and the SMS gateway callbacks (``/sms/kannel/...``).

How a link becomes a chat:

1. ``GET /c/<token>`` checks the token (signature, expiry, the continuation row: unused, bound to
   its customer) and answers a small page that claims it with a POST. Nothing is claimed by a
   GET, so an SMS app that previews links cannot use the customer's link up; the page's script
   posts at once, so the customer sees no extra step. The first open of each link is logged
   (``link_opened``, the continuation funnel's "opened"); later opens are not.
2. ``POST /c/<token>`` claims the continuation (one conditional UPDATE: single use), sets an
   HttpOnly, SameSite=Strict session cookie (only its hash is stored), resumes the journey on the
   ``chat`` channel and redirects to ``/chat/``. The token never appears again.
3. ``/chat/`` is a static page (no build step); it reads ``/chat/api/state`` and posts answers to
   ``/chat/api/input`` (JSON only, so another site's form cannot post for the customer).

Every refusal (bad, forged, tampered, expired or used token; no session) is a plain page that
says what happened and carries no journey data.
"""

from __future__ import annotations

import hmac
import html
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

from ivr.acd.chat import BlendedChats, ChatContact, ChatOffers, chat_topic, still_waiting
from ivr.aio import wait_for
from ivr.bus.pubsub import Bus
from ivr.channels.chat import TextFlows, View
from ivr.channels.handoff import REASON_TEXT, TokenCodec, TokenRejected, new_session, session_hash
from ivr.channels.sms import SmsChannel
from ivr.flow.model import Queue
from ivr.store.continuations import Continuation, ContinuationStore
from ivr.store.journeys import JourneyStore

log = logging.getLogger(__name__)
STATIC = Path(__file__).resolve().parent / "static" / "chat"
COOKIE = "ivr_chat"
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; base-uri 'none'; form-action 'self'",
    "Referrer-Policy": "no-referrer",  # the token is in the URL: never send it on
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
}
#: how far back a new ACD leader looks for chats still waiting for an agent (past any wait's end)
ADOPT_HORIZON_S = 3600.0
REFUSAL_STATUS = {"expired": 410, "used": 410, "disabled": 503}


@dataclass
class ChatSettings:
    codec: TokenCodec | None
    continuations: ContinuationStore
    chat: TextFlows
    session_ttl: float
    secure_cookie: bool = False
    #: "call me now": journey id -> started? ; None when calls cannot be placed
    call_me: Callable[[str], Awaitable[bool]] | None = None
    #: blended agents: a chat reaching a queue step is offered to an agent
    agents: BlendedChats | None = None
    bus: Bus | None = None
    retry_offer: float = 2.0  # seconds between offers while no agent can take the chat


CHAT: web.AppKey[ChatSettings] = web.AppKey("chat", ChatSettings)
SMS: web.AppKey[SmsChannel] = web.AppKey("sms", SmsChannel)
SMS_TOKEN: web.AppKey[str] = web.AppKey("sms_token", str)


def _page(title: str, body: str, *, status: int = 200, script: str | None = None) -> web.Response:
    tag = f'<script src="/chat/static/{script}"></script>' if script else ""
    text = (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        '<meta name=viewport content="width=device-width, initial-scale=1">'
        f'<title>{html.escape(title)}</title><link rel=stylesheet href="/chat/static/chat.css">{tag}</head>'
        f"<body><main class=card>{body}</main></body></html>"
    )
    return web.Response(text=text, status=status, content_type="text/html", headers=SECURITY_HEADERS)


def refusal(reason: str) -> web.Response:
    """A clear page, no data: the same words for every reason a link is not valid."""
    message = REASON_TEXT.get(reason, REASON_TEXT["unknown"])
    body = (
        f"<h1 id=refused data-reason={html.escape(reason)}>{html.escape(message)}</h1>"
        "<p>Nothing from your conversation is shown here. You can call us, or ask for a new link.</p>"
    )
    return _page("Link not valid", body, status=REFUSAL_STATUS.get(reason, 403))


async def _check(settings: ChatSettings, token: str) -> Continuation:
    """The continuation this token may claim, or TokenRejected with the reason."""
    if settings.codec is None:
        raise TokenRejected("disabled")
    now = time.time()
    claim = settings.codec.verify(token, now)
    found = await settings.continuations.get(claim.continuation_id)
    if found is None:
        raise TokenRejected("unknown")
    if not settings.codec.bound_to(claim, found.customer_id):
        raise TokenRejected("wrong_customer")
    if found.claimed_at is not None:
        raise TokenRejected("used")
    if found.expires_at <= now:
        raise TokenRejected("expired")
    return found


async def link_page(request: web.Request) -> web.Response:
    settings = request.app[CHAT]
    token = request.match_info["token"]
    try:
        found = await _check(settings, token)
    except TokenRejected as exc:
        log.info("continuation link refused: %s", exc.reason)
        return refusal(exc.reason)
    now = time.time()
    if await settings.continuations.first_open(found.id, now):  # a refresh or a bot: no new row
        await settings.chat.link_opened(found.journey_id, now)
    body = (
        "<h1>Continue where you left off</h1>"
        f'<form id=claim method=post action="/c/{html.escape(token)}">'
        "<button type=submit>Continue</button></form>"
    )
    return _page("Continue", body, script="claim.js")


def same_origin(request: web.Request) -> bool:
    """No Origin (an old browser), our own, or our own page's post: another site's page may not
    make a customer's browser claim a link (and start a chat in that browser's name).

    Why ``null`` can be ours: our pages send ``Referrer-Policy: no-referrer``, and with it a
    browser sends ``Origin: null`` on the page's own form post. ``Sec-Fetch-Site`` then says
    where the post came from; no page can set it, so a foreign or sandboxed page's ``null`` with
    ``cross-site`` (or without the header) is still refused.
    """
    origin = request.headers.get("Origin")
    if origin is None or origin == f"{request.scheme}://{request.host}":
        return True
    return origin == "null" and request.headers.get("Sec-Fetch-Site") == "same-origin"


async def claim_link(request: web.Request) -> web.StreamResponse:
    settings = request.app[CHAT]
    token = request.match_info["token"]
    if not same_origin(request):
        log.info("continuation claim refused: foreign origin")
        return _page("Link not valid", "<h1 id=refused>This link must be opened directly.</h1>", status=403)
    try:
        found = await _check(settings, token)
    except TokenRejected as exc:
        log.info("continuation claim refused: %s", exc.reason)
        return refusal(exc.reason)
    cookie, hashed = new_session()
    if not await settings.continuations.claim(found.id, hashed, time.time()):
        return refusal("used")  # lost a race with another browser
    view = await settings.chat.resume(found.journey_id, via="link", step=found.step)
    if view is None:
        return refusal("unknown")
    log.info("journey %s continues in chat at %s", found.journey_id, view.step)
    response = web.Response(status=303, headers={**SECURITY_HEADERS, "Location": "/chat/"})
    response.set_cookie(
        COOKIE,
        cookie,
        max_age=int(settings.session_ttl),
        httponly=True,
        samesite="Strict",
        secure=settings.secure_cookie,
        path="/",
    )
    return response


async def _session(request: web.Request) -> Continuation | None:
    settings = request.app[CHAT]
    value = request.cookies.get(COOKIE)
    if not value or len(value) > 200:
        return None
    found = await settings.continuations.by_session(session_hash(value))
    if found is None or found.claimed_at is None or found.claimed_at + settings.session_ttl < time.time():
        return None
    return found


async def chat_page(request: web.Request) -> web.StreamResponse:
    if await _session(request) is None:
        return refusal("unknown")
    return web.FileResponse(STATIC / "chat.html", headers=SECURITY_HEADERS)


def _json(data: dict[str, Any], status: int = 200) -> web.Response:
    return web.json_response(data, status=status, headers=SECURITY_HEADERS)


class _BadBody(Exception):
    """The request body is not the JSON object an endpoint takes; the message says why."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


async def _json_body(request: web.Request) -> dict[str, Any]:
    """The body as a JSON object. Deep nesting is refused like any other bad JSON: the parser
    raises RecursionError, not ValueError, on a few thousand nested brackets."""
    if request.content_type != "application/json":
        raise _BadBody("send JSON", 415)
    try:
        body = await request.json()
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise _BadBody("send JSON", 400) from None
    if not isinstance(body, dict):
        raise _BadBody("send a JSON object", 400)
    return body


async def chat_state(request: web.Request) -> web.Response:
    found = await _session(request)
    if found is None:
        return _json({"error": "no chat session: open the link from your text message"}, 401)
    view = await request.app[CHAT].chat.view(found.journey_id)
    if view is None:
        return _json({"error": "this conversation is over"}, 410)
    settings = request.app[CHAT]
    contact, agents = contact_id(found.journey_id), settings.agents
    return _json(
        {
            **view.to_json(),
            "call_me": settings.call_me is not None,
            "agent_chat": agents is not None,
            "agent": agents is not None and agents.agent_of(contact) is not None,
            "left": agents.left_reason(contact) if agents is not None else None,
        }
    )


async def chat_input(request: web.Request) -> web.Response:
    found = await _session(request)
    if found is None:
        return _json({"error": "no chat session: open the link from your text message"}, 401)
    try:
        body = await _json_body(request)
    except _BadBody as exc:
        return _json({"error": str(exc)}, exc.status)
    text, option = body.get("text", ""), body.get("option")
    if not isinstance(text, str) or (option is not None and not isinstance(option, str)):
        return _json({"error": "text and option are strings"}, 400)
    settings = request.app[CHAT]
    view = await settings.chat.answer(found.journey_id, text, option)
    if view is None:
        return _json({"error": "this conversation is not waiting for an answer"}, 409)
    agent = await offer_to_agent(settings, view) if view.queued is not None else None
    return _json({**view.to_json(), "agent_chat": settings.agents is not None, "agent": agent is not None})


def contact_id(journey_id: str) -> str:
    return f"chat-{journey_id}"


def chat_contact(journey_id: str, customer_id: str | None, queue: Queue) -> ChatContact:
    """The contact the blended agents are offered for a chat journey waiting in ``queue``."""
    return ChatContact(
        contact_id=contact_id(journey_id),
        journey_id=journey_id,
        skill=queue.skill or queue.queue,
        channel="chat",
        customer_id=customer_id,
        context={"queue": queue.queue, "priority": queue.priority},
        timeout=float(queue.timeout),
    )


async def adopt_waiting_chats(store: JourneyStore, offers: ChatOffers, *, now: float) -> int:
    """On becoming the ACD leader: the chats still waiting for an agent (a queued chat journey
    whose log has nothing after ``journey_queued`` that ended the wait, :func:`still_waiting`)
    wait in this leader's ``offers`` from when they first queued (``ChatOffers.adopt``). Returns
    how many were adopted. Looks back :data:`ADOPT_HORIZON_S`."""
    adopted = 0
    for journey in await store.queued_on("chat", now - ADOPT_HORIZON_S):
        joined = still_waiting(await store.interactions(journey.id))
        if joined is None:
            continue
        contact = chat_contact(journey.id, journey.customer_id, _queued(journey.id, journey.outcome))
        if offers.adopt(contact, joined):
            adopted += 1
    return adopted


async def offer_to_agent(settings: ChatSettings, view: View) -> str | None:
    """A chat that reached a queue step goes to a blended agent with the skill.

    None: no agent can take it now; the page's event stream keeps offering it."""
    if settings.agents is None or view.queued is None:
        return None
    contact = chat_contact(view.journey_id, view.customer_id, view.queued)
    try:
        return await settings.agents.offer(contact)
    except Exception:  # the customer keeps waiting; the next offer may work
        log.exception("chat %s could not be offered to an agent", contact.contact_id)
        return None


async def chat_message(request: web.Request) -> web.Response:
    """The customer writes to the agent who took the chat."""
    found = await _session(request)
    if found is None:
        return _json({"error": "no chat session"}, 401)
    settings = request.app[CHAT]
    if settings.agents is None:
        return _json({"error": "no agents take chats here"}, 503)
    try:
        body = await _json_body(request)
    except _BadBody as exc:
        return _json({"error": str(exc)}, exc.status)
    text = body.get("text")
    if not isinstance(text, str) or not text.strip():
        return _json({"error": "text is a non-empty string"}, 400)
    text = text.strip()[:2000]
    if not await settings.agents.customer_message(contact_id(found.journey_id), text):
        return _json({"error": "no agent has taken this chat yet"}, 409)
    await settings.agents.acd.record(found.journey_id, "chat_message", **{"from": "customer", "text": text})
    return _json({"sent": True})


async def chat_leave(request: web.Request) -> web.Response:
    """The customer closes the chat: the agent's chat ends, or, while no agent has it yet, the
    chat leaves the queue (logged as abandoned, as a caller hanging up in the queue)."""
    found = await _session(request)
    if found is None:
        return _json({"error": "no chat session"}, 401)
    agents = request.app[CHAT].agents
    if agents is None:
        return _json({"error": "no agents take chats here"}, 503)
    if request.content_type != "application/json":  # another site's form cannot post JSON
        return _json({"error": "send JSON"}, 415)
    left = await agents.leave(contact_id(found.journey_id))
    return _json({"left": left})


async def chat_events(request: web.Request) -> web.StreamResponse:
    """Server-sent events: what the agent writes (``agent.message``), and ``agent.closed``.

    While no agent has the chat, this request also owns the retry: every ``retry_offer`` seconds
    the chat is offered again (cancelled with the request when the customer leaves). Those offers
    are also how the ACD knows the customer is still there (``ivr.acd.chat``)."""
    found = await _session(request)
    settings = request.app[CHAT]
    agents, bus = settings.agents, settings.bus
    if found is None or agents is None or bus is None:
        return _json({"error": "no agent chat"}, 404)
    contact = contact_id(found.journey_id)
    response = web.StreamResponse(
        headers={**SECURITY_HEADERS, "Content-Type": "text/event-stream", "X-Accel-Buffering": "no"}
    )
    await response.prepare(request)
    try:
        await _stream_events(settings, agents, bus, response, found.journey_id)
    except ConnectionError:  # the customer closed the page: normal, not an error
        log.debug("chat %s: the customer's event stream closed", contact)
    return response


async def _stream_events(
    settings: ChatSettings, agents: BlendedChats, bus: Bus, response: web.StreamResponse, journey_id: str
) -> None:
    contact = contact_id(journey_id)
    async with bus.subscribe(chat_topic(contact)) as subscription:
        await _relay(settings, agents, response, journey_id, aiter(subscription))


async def _relay(
    settings: ChatSettings,
    agents: BlendedChats,
    response: web.StreamResponse,
    journey_id: str,
    messages: AsyncIterator[dict[str, Any]],
) -> None:
    contact = contact_id(journey_id)
    while True:
        left = agents.left_reason(contact)
        if left is not None:  # gave up waiting (here, or before this page was opened): over
            await response.write(f"data: {json_text({'type': 'queue.left', 'reason': left})}\n\n".encode())
            return
        if agents.agent_of(contact) is None:
            view = await settings.chat.view(journey_id)
            if view is not None and view.status == "queued":
                journey = await settings.chat.store.get(journey_id)
                queued = journey.outcome if journey else {}
                view.queued = _queued(journey_id, queued)
                if await offer_to_agent(settings, view):
                    await response.write(b'data: {"type": "agent.joined"}\n\n')
        try:
            message = await wait_for(anext(messages), settings.retry_offer)
        except TimeoutError:
            await response.write(b": waiting\n\n")  # also notices a customer who left
            continue
        await response.write(f"data: {json_text(message)}\n\n".encode())
        if message.get("type") == "queue.left":  # the leader gave up on it: the page is told, done
            return


def _queued(journey_id: str, outcome: dict[str, Any]) -> Queue:
    """The queue a journey ended in (its ``outcome``), for offering it again."""
    return Queue(
        journey_id,
        str(outcome.get("queue") or "main"),
        outcome.get("skill"),
        int(outcome.get("priority") or 0),
        600,
        {},
    )


def json_text(data: Any) -> str:
    return json.dumps(data, separators=(",", ":"))


async def chat_call_me(request: web.Request) -> web.Response:
    found = await _session(request)
    if found is None:
        return _json({"error": "no chat session"}, 401)
    call_me = request.app[CHAT].call_me
    if call_me is None:
        return _json({"error": "calls cannot be placed right now"}, 503)
    if request.content_type != "application/json":
        return _json({"error": "send JSON"}, 415)
    started = await call_me(found.journey_id)
    return _json({"calling": started}, 200 if started else 503)


def setup_chat(app: web.Application, settings: ChatSettings) -> None:
    """Add the continuation links and the chat page to the HTTP application."""
    app[CHAT] = settings
    app.router.add_get("/c/{token}", link_page)
    app.router.add_post("/c/{token}", claim_link)
    app.router.add_get("/chat/", chat_page)
    app.router.add_get("/chat/api/state", chat_state)
    app.router.add_post("/chat/api/input", chat_input)
    app.router.add_post("/chat/api/call-me", chat_call_me)
    app.router.add_post("/chat/api/message", chat_message)
    app.router.add_post("/chat/api/leave", chat_leave)
    app.router.add_get("/chat/api/events", chat_events)
    app.router.add_static("/chat/static/", STATIC)


# ------------------------------------------------------------------------------------- SMS
def _sms_authorized(request: web.Request) -> web.Response | None:
    expected = request.app[SMS_TOKEN]
    if not expected:
        return web.Response(status=503, text="SMS callbacks disabled: set IVR_SMS_INBOUND_TOKEN\n")
    given = request.query.get("key", "")
    if not hmac.compare_digest(given.encode(), expected.encode()):
        return web.Response(status=401, text="wrong key\n")
    return None


async def sms_incoming(request: web.Request) -> web.Response:
    """Kannel's get-url: ``?key=...&from=%p&to=%P&text=%a``."""
    refused = _sms_authorized(request)
    if refused is not None:
        return refused
    sender, text = request.query.get("from", ""), request.query.get("text", "")
    journey_id = await request.app[SMS].incoming(sender, text)
    log.info("SMS received for journey %s", journey_id)
    return web.Response(text="")  # an empty reply: Kannel sends nothing back itself


async def sms_delivery(request: web.Request) -> web.Response:
    """Kannel's dlr-url: ``?key=...&ref=<ours>&status=%d``."""
    refused = _sms_authorized(request)
    if refused is not None:
        return refused
    await request.app[SMS].delivery(request.query.get("ref", ""), request.query.get("status", ""))
    return web.Response(text="")


def setup_sms(app: web.Application, sms: SmsChannel, inbound_token: str) -> None:
    """Kannel's callbacks; they answer 503 until ``sms.inbound_token`` is set."""
    app[SMS] = sms
    app[SMS_TOKEN] = inbound_token
    # No HEAD: aiohttp answers HEAD with the GET handler, and these handlers act (a HEAD from a
    # link checker or a proxy must not start a journey or log a delivery).
    app.router.add_get("/sms/kannel/mo", sms_incoming, allow_head=False)
    app.router.add_post("/sms/kannel/mo", sms_incoming)
    app.router.add_get("/sms/kannel/dlr", sms_delivery, allow_head=False)
