"""SMS as a channel, through a real gateway (Kannel), behind a small provider interface.

Outgoing (MT): ``SmsProvider.send``; the Kannel provider calls smsbox's ``/cgi-bin/sendsms`` and
asks for delivery reports at our ``dlr-url``. Incoming (MO) messages and delivery reports come to
our aiohttp endpoints (``ivr.web.chat.setup_sms``), which Kannel calls through its ``get-url``
and ``dlr-url``; both require ``sms.inbound_token`` (no default: they answer 503 until it is set).

SMS runs flows itself: a journey started by an incoming message (or handed over from a call)
sends each step's words as one message; the customer's reply is the input, numbers or words
matched to options by the same intent matcher as speech (``ivr.channels.chat.text_input``). One
open SMS journey per number: the next message from that number answers its question.

Why an interface: an HTTP SMS provider or SMPP is one more class with ``send``; nothing else in
the product knows it is Kannel.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import aiohttp

from ivr.aio import cancel_and_wait
from ivr.channels.chat import TextFlows, View, menu_text
from ivr.errors import ChannelError
from ivr.flow.model import Flow, Interaction, Journey, Menu
from ivr.flow.profile import CallerProfile
from ivr.store.journeys import JourneyStore
from ivr.store.phones import to_e164

log = logging.getLogger(__name__)
MAX_SMS_TEXT = 1000  # concatenated SMS: about 6 parts


class SmsError(ChannelError):
    """The gateway refused a message or could not be reached.

    ``retryable``: the same message may go through later (gateway unreachable, or it said it
    is temporarily unable); a refusal of the message itself is not retried."""

    def __init__(self, message: str, *, retryable: bool = False) -> None:
        super().__init__(message)
        self.retryable = retryable


class SmsProvider(Protocol):
    """Sends one text message; raises :class:`SmsError` when the gateway does not accept it."""

    name: str

    async def start(self) -> None: ...
    async def stop(self) -> None: ...
    async def send(self, to: str, text: str, reference: str) -> None: ...


class KannelProvider:
    """Kannel smsbox's sendsms HTTP interface (``202 0: Accepted for delivery``)."""

    name = "kannel"
    DLR_MASK = "27"  # 1 delivered + 2 failed + 8 accepted by the SMSC + 16 rejected by the SMSC

    def __init__(
        self,
        sendsms_url: str,
        username: str,
        password: str,
        *,
        sender: str = "",
        dlr_url: str | Callable[[], str] = "",
        timeout: float = 5.0,
    ) -> None:
        if not password:
            raise SmsError("sms.kannel_password is not set")
        self.sendsms_url = sendsms_url
        self.username = username
        self.password = password
        self.sender = sender
        #: with "{ref}": our reference; Kannel fills %d (the status). A function when the address
        #: is only known once the HTTP server listens (port 0): read at each send.
        self.dlr_url = dlr_url
        self.timeout = timeout
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout))

    async def stop(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def send(self, to: str, text: str, reference: str) -> None:
        if self._session is None:
            raise SmsError("the Kannel provider is not started")
        params = {
            "username": self.username,
            "password": self.password,
            "to": to,
            "text": text[:MAX_SMS_TEXT],
            "charset": "UTF-8",
            "coding": "0",
        }
        if self.sender:
            params["from"] = self.sender
        dlr_url = self.dlr_url() if callable(self.dlr_url) else self.dlr_url
        if dlr_url:
            params["dlr-mask"] = self.DLR_MASK
            params["dlr-url"] = dlr_url.replace("{ref}", reference)
        try:
            async with self._session.get(self.sendsms_url, params=params) as reply:
                body = await reply.text()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise SmsError(f"Kannel sendsms unreachable: {exc}", retryable=True) from exc
        if reply.status not in (200, 202) or not body.startswith("0:"):
            raise SmsError(
                f"Kannel refused the message: HTTP {reply.status} {body.strip()[:200]}", retryable=reply.status >= 500
            )


def sms_text(view: View) -> str:
    """A turn as one message: what was said, then the question with its options."""
    lines = list(view.messages)
    if isinstance(view.waiting, Menu):
        if lines and lines[-1] == view.waiting.prompt.text:
            lines.pop()
        lines.append(menu_text(view.waiting))
    return "\n".join(lines)


class ProfileSource(Protocol):
    async def load(self, phone: str | None) -> CallerProfile | None: ...


class OpenJourneys(Protocol):
    """``ivr.store.continuations.ContinuationStore``: the SMS conversation open for a number."""

    async def open_journey(self, caller: str, channel: str) -> str | None: ...


@dataclass
class _Reply:
    """A journey's answer waiting for the gateway."""

    to: str
    text: str
    journey_id: str
    customer_id: str | None
    queued_at: float = field(default_factory=time.monotonic)


@dataclass
class _Turns:
    """Messages of one number take turns: one lock, and how many messages hold or wait for it."""

    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    users: int = 0


class SmsOutbox:
    """Sending messages, queueing replies for a gateway that is down, and matching the gateway's
    delivery reports to journeys.

    Apart from :class:`SmsChannel` because more than the SMS conversation sends: continuation
    links (``ivr.channels.handoff.Handoffs``) go out this way too, and the SMS conversation's
    flows send those links. With the outbox first, each is built with what it needs.

    ``send`` sends now and raises when the gateway refuses (a hand-off tells the caller at once
    whether the link went out). ``queue`` is for replies: **a reply never fails the message it
    answers.** By the time a reply is sent the journey has advanced and been saved; if the gateway
    is unreachable then, the reply waits in an in-order queue that a background task
    (``start``/``stop``) sends with backoff (``retry_first`` doubling up to ``retry_max`` seconds),
    one WARNING when the gateway goes and one INFO when it is back. A reply older than ``max_age``
    seconds, or beyond ``max_queued``, is dropped with a WARNING: a menu hours late would answer a
    question the customer no longer has.
    """

    def __init__(
        self,
        provider: SmsProvider,
        store: JourneyStore,
        *,
        retry_first: float = 1.0,
        retry_max: float = 60.0,
        max_age: float = 3600.0,
        max_queued: int = 5000,
    ) -> None:
        self.provider = provider
        self.store = store
        self._refs: dict[str, tuple[str, str | None]] = {}  # our reference -> (journey, customer), for reports
        self.sent = 0
        self.retry_first = retry_first
        self.retry_max = retry_max
        self.max_age = max_age
        self.max_queued = max_queued
        self._replies: deque[_Reply] = deque()
        self._wake = asyncio.Event()
        self._sender: asyncio.Task[None] | None = None
        self._gateway_down = False

    @property
    def queued(self) -> int:
        """Replies waiting for the gateway."""
        return len(self._replies)

    async def start(self) -> None:
        """Start the gateway, then the task that sends queued replies."""
        await self.provider.start()
        if self._sender is None:
            self._sender = asyncio.create_task(self._send_replies(), name="sms-outbox")

    async def stop(self) -> None:
        if self._sender is not None:
            await cancel_and_wait(self._sender)
            self._sender = None
        if self._replies:
            log.warning("%d SMS reply(ies) not sent at shutdown", len(self._replies))
        await self.provider.stop()

    async def send(self, to: str, text: str, *, journey_id: str | None = None, customer_id: str | None = None) -> str:
        """Send one message now; it goes to the journey's log (``sms_sent``) when it belongs to one."""
        reference = uuid.uuid4().hex
        await self.provider.send(to, text, reference)
        self.sent += 1
        if journey_id:
            if len(self._refs) > 10000:
                self._refs.clear()
            self._refs[reference] = (journey_id, customer_id)
            await self._log(journey_id, customer_id, "sms_sent", {"reference": reference, "length": len(text)})
        return reference

    def queue(self, to: str, text: str, *, journey_id: str, customer_id: str | None) -> None:
        """A reply, sent in order by the background task (never by the request that made it)."""
        if len(self._replies) >= self.max_queued:
            dropped = self._replies.popleft()
            log.warning(
                "SMS outbox full (%d): dropped the oldest reply, to journey %s", self.max_queued, dropped.journey_id
            )
        self._replies.append(_Reply(to, text, journey_id, customer_id))
        self._wake.set()

    async def _log(self, journey_id: str, customer_id: str | None, kind: str, data: dict[str, Any]) -> None:
        self.store.append(journey_id, customer_id, "sms", [Interaction(kind, None, data, time.time())])

    async def delivery(self, reference: str, status: str) -> None:
        """A delivery report from the gateway (Kannel %d: 1 delivered, 2 failed, 8 accepted, 16 rejected)."""
        found = self._refs.get(reference)
        if found is not None:
            await self._log(found[0], found[1], "sms_delivery", {"reference": reference, "status": status})

    async def _send_replies(self) -> None:
        """Send queued replies in order; on a gateway that cannot be reached, wait and retry."""
        delay = self.retry_first
        while True:
            if not self._replies:
                self._wake.clear()
                await self._wake.wait()
                continue
            reply = self._replies[0]
            if time.monotonic() - reply.queued_at > self.max_age:
                self._replies.popleft()
                log.warning("SMS reply to journey %s dropped: not sent within %gs", reply.journey_id, self.max_age)
                continue
            try:
                await self.send(reply.to, reply.text, journey_id=reply.journey_id, customer_id=reply.customer_id)
            except SmsError as exc:
                if not exc.retryable:
                    self._replies.popleft()
                    log.error("SMS reply to journey %s refused, not retried: %s", reply.journey_id, exc)
                    continue
                if not self._gateway_down:
                    self._gateway_down = True
                    log.warning("SMS gateway down, %d reply(ies) wait and are retried: %s", len(self._replies), exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.retry_max)
                continue
            except Exception:  # a bug must not stop every later reply
                self._replies.popleft()
                log.exception("SMS reply to journey %s failed", reply.journey_id)
                continue
            self._replies.popleft()
            delay = self.retry_first
            if self._gateway_down:
                self._gateway_down = False
                log.info("SMS gateway back; %d reply(ies) still queued", len(self._replies))


class SmsChannel:
    """The SMS channel: receive, and run journeys whose turns are messages; replies go out by the outbox.

    **One conversation per number, in order.** Messages from one number are handled one at a
    time, in the order they arrived (asyncio locks are FIFO): without it, a burst from one number
    found no open journey in each concurrent request and started one journey per message.
    """

    def __init__(
        self,
        outbox: SmsOutbox,
        text: TextFlows,
        *,
        pick_flow: Callable[[], Flow],
        profiles: ProfileSource | None = None,
        open_journeys: OpenJourneys | None = None,
        country_code: str = "",
    ) -> None:
        self.outbox = outbox
        self.text = text
        self.pick_flow = pick_flow
        self.profiles = profiles
        self.open_journeys = open_journeys
        self.country_code = country_code
        self._open: dict[str, str] = {}  # number -> journey id waiting for that number's reply
        self._turns: dict[str, _Turns] = {}
        self.received = 0

    @property
    def queued(self) -> int:
        """Replies waiting for the gateway."""
        return self.outbox.queued

    async def send(self, to: str, text: str, *, journey_id: str | None = None, customer_id: str | None = None) -> str:
        return await self.outbox.send(to, text, journey_id=journey_id, customer_id=customer_id)

    async def delivery(self, reference: str, status: str) -> None:
        await self.outbox.delivery(reference, status)

    async def incoming(self, sender: str, text: str) -> str | None:
        """An MO message: answer the open journey of this number, or start one. Returns its id."""
        number = to_e164(sender, self.country_code)
        if number is None:
            log.warning("SMS from an unusable sender %r ignored", sender)
            return None
        self.received += 1
        async with self._turn_of(number):
            return await self._answer(number, text)

    @contextlib.asynccontextmanager
    async def _turn_of(self, number: str) -> AsyncIterator[None]:
        turns = self._turns.get(number)
        if turns is None:
            turns = self._turns[number] = _Turns()
        turns.users += 1
        try:
            async with turns.lock:
                yield
        finally:
            turns.users -= 1
            if not turns.users:
                del self._turns[number]

    async def _answer(self, number: str, text: str) -> str:
        journey_id = self._open.get(number)
        if journey_id is None and self.open_journeys is not None:
            journey_id = await self.open_journeys.open_journey(number, "sms")
        view = await self.text.answer(journey_id, text) if journey_id else None
        if view is None:
            view = await self._begin(number)
        self._reply(number, view)
        return view.journey_id

    async def _begin(self, number: str) -> View:
        journey = Journey.new(self.pick_flow(), "sms", caller=number)
        journey.refs = {"sms": number}
        profile = await self.profiles.load(number) if self.profiles is not None else None
        if profile is not None:
            journey.customer_id = profile.customer_id
            journey.customer = {**profile.fields, "verified": profile.verified, "contacts": profile.contacts}
        return await self.text.begin(journey)

    def _reply(self, number: str, view: View) -> None:
        if view.waiting is not None:
            self._open[number] = view.journey_id
        else:
            self._open.pop(number, None)
        body = sms_text(view)
        if body:
            self.outbox.queue(number, body, journey_id=view.journey_id, customer_id=view.customer_id)


__all__ = ["KannelProvider", "SmsChannel", "SmsError", "SmsOutbox", "SmsProvider", "sms_text"]
