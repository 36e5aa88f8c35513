"""Continuation links: move a journey to another channel and resume it at the same step.

The token in a link (``/c/<token>``) is the only thing a customer's phone carries. Its properties,
and why:

* **Signed** with HMAC-SHA256 under a key derived from ``handoff.secret`` (no default: with no
  secret the feature is off and says so once in the log). A token made with another key, or with
  any byte changed, fails the constant-time MAC check: *forged* and *tampered* are one case.
* **Unguessable**: the continuation id inside is 16 random bytes (``secrets``), not a counter.
* **Expiring**: the expiry is inside the signed payload (``handoff.ttl`` seconds after issue), and
  the database row has it too.
* **Single use**: claiming is one conditional UPDATE in the database (``claimed_at IS NULL``); a
  replayed link finds it set. The chat then runs on a session cookie issued at claim time.
* **Bound to the customer**: the payload has an 8-byte keyed tag of the customer id; a claim checks
  it against the continuation's customer, so a token cannot be pointed at someone else's journey.
* **Free of personal data**: version, random id, expiry, keyed tag; no phone number, name, journey
  id or step. Without the key, the tag reveals nothing.

Everything here down to :class:`Handoffs` is pure (bytes in, bytes out, time passed in).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import secrets
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, Protocol

from ivr.errors import IvrError
from ivr.flow.model import Handoff, Journey

log = logging.getLogger(__name__)

VERSION = 1
ID_BYTES = 16
TAG_BYTES = 8
MAC_BYTES = 16  # 128-bit truncated HMAC-SHA256: forgery odds 2^-128 per try
_PAYLOAD = struct.Struct(f">B{ID_BYTES}sI{TAG_BYTES}s")
TOKEN_BYTES = _PAYLOAD.size + MAC_BYTES

RejectReason = Literal["malformed", "forged", "expired", "used", "unknown", "wrong_customer"]
#: What the refusal page says for each reason. Deliberately no data about the journey.
REASON_TEXT: dict[str, str] = {
    "malformed": "This link is not valid.",
    "forged": "This link is not valid.",
    "expired": "This link has expired.",
    "used": "This link has already been used.",
    "unknown": "This link is not valid.",
    "wrong_customer": "This link is not valid.",
    "disabled": "Continuing by link is not available right now.",
}


class TokenRejected(IvrError):
    """A continuation token cannot be used; ``reason`` says why (for logs and the refusal page)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Claim:
    """What a verified token says: which continuation, until when, for which customer (tag)."""

    continuation_id: str  # hex
    expires_at: int
    customer_tag: bytes


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class TokenCodec:
    """Issues and verifies continuation tokens with one secret (pure; time is passed in)."""

    def __init__(self, secret: str) -> None:
        if len(secret) < 16:
            raise ValueError("handoff.secret must be at least 16 characters")
        root = secret.encode()
        self._token_key = hmac.new(root, b"ivr handoff token v1", hashlib.sha256).digest()
        self._customer_key = hmac.new(root, b"ivr handoff customer v1", hashlib.sha256).digest()

    def customer_tag(self, customer_id: str | None) -> bytes:
        """A keyed, truncated hash of the customer id: binds a token without revealing who."""
        return hmac.new(self._customer_key, (customer_id or "").encode(), hashlib.sha256).digest()[:TAG_BYTES]

    def _mac(self, payload: bytes) -> bytes:
        return hmac.new(self._token_key, payload, hashlib.sha256).digest()[:MAC_BYTES]

    def issue(self, continuation_id: str, customer_id: str | None, expires_at: float) -> str:
        raw_id = bytes.fromhex(continuation_id)
        if len(raw_id) != ID_BYTES:
            raise ValueError(f"continuation id must be {ID_BYTES} bytes of hex")
        payload = _PAYLOAD.pack(VERSION, raw_id, int(expires_at), self.customer_tag(customer_id))
        return _b64(payload + self._mac(payload))

    def verify(self, token: str, now: float) -> Claim:
        """The claim, or :class:`TokenRejected` (``malformed``, ``forged`` or ``expired``)."""
        if not token or len(token) > 2 * TOKEN_BYTES or not token.isascii():
            raise TokenRejected("malformed")
        try:
            raw = _unb64(token)
        except (binascii.Error, ValueError):
            raise TokenRejected("malformed") from None
        if len(raw) != TOKEN_BYTES or _b64(raw) != token:  # one encoding per token: no aliases
            raise TokenRejected("malformed")
        payload, mac = raw[: _PAYLOAD.size], raw[_PAYLOAD.size :]
        if not hmac.compare_digest(mac, self._mac(payload)):
            raise TokenRejected("forged")
        version, raw_id, expires_at, tag = _PAYLOAD.unpack(payload)
        if version != VERSION:
            raise TokenRejected("malformed")
        if now >= expires_at:
            raise TokenRejected("expired")
        return Claim(raw_id.hex(), expires_at, tag)

    def bound_to(self, claim: Claim, customer_id: str | None) -> bool:
        return hmac.compare_digest(claim.customer_tag, self.customer_tag(customer_id))


def new_continuation_id() -> str:
    return secrets.token_hex(ID_BYTES)


def new_session() -> tuple[str, str]:
    """(cookie value, its SHA-256 hex for the database)."""
    value = secrets.token_urlsafe(32)
    return value, session_hash(value)


def session_hash(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def link_message(prefix: str | None, base_url: str, token: str) -> str:
    """The SMS text: the flow's words, then the link (no personal data in either)."""
    words = (prefix or "Continue where you left off").rstrip(" .:")
    return f"{words}: {base_url.rstrip('/')}/c/{token}"


# ----------------------------------------------------------------------------------- services
class SmsSender(Protocol):
    """What a handoff needs of the SMS channel (``ivr.channels.sms.SmsChannel``)."""

    async def send(
        self, to: str, text: str, *, journey_id: str | None = None, customer_id: str | None = None
    ) -> str: ...


class ContinuationRecords(Protocol):
    """``ivr.store.continuations.ContinuationStore``."""

    async def create(
        self, *, id: str, journey_id: str, customer_id: str | None, channel: str, step: str, expires_at: float
    ) -> None: ...


class Handoffs:
    """Executes the flow's ``Handoff`` command: a continuation row, a token, a text message.

    ``codec`` None means no ``handoff.secret`` is configured: every handoff then fails cleanly
    (the flow says it cannot text, and goes on), and the reason is logged once at WARNING.
    """

    def __init__(
        self,
        codec: TokenCodec | None,
        records: ContinuationRecords,
        sms: SmsSender | None,
        *,
        base_url: str | Callable[[], str],
        ttl: float,
    ) -> None:
        """``base_url``: the chat pages' public address put in links; a function when it is only
        known once the HTTP server listens (port 0), read at each link."""
        self.codec = codec
        self.records = records
        self.sms = sms
        self._base_url = base_url
        self.ttl = ttl
        self.sent = 0
        self._warned = False

    @property
    def base_url(self) -> str:
        return self._base_url() if callable(self._base_url) else self._base_url

    def _off(self, why: str) -> None:
        if not self._warned:
            log.warning("handoff to text is off: %s", why)
            self._warned = True

    async def send(self, journey: Journey, command: Handoff) -> tuple[bool, str]:
        """(sent?, what happened): never raises for a customer-facing failure."""
        if self.codec is None:
            self._off("set IVR_HANDOFF_SECRET (handoff.secret) to enable continuation links")
            return False, "disabled"
        if self.sms is None:
            self._off("no SMS gateway configured (sms.provider)")
            return False, "no-sms"
        if not journey.caller:
            return False, "no-number"
        try:
            continuation_id = new_continuation_id()
            expires_at = time.time() + self.ttl
            await self.records.create(
                id=continuation_id,
                journey_id=journey.id,
                customer_id=journey.customer_id,
                channel="chat",
                step=command.resume,
                expires_at=expires_at,
            )
            token = self.codec.issue(continuation_id, journey.customer_id, expires_at)
            text = link_message(command.prompt.text if command.prompt else None, self.base_url, token)
            reference = await self.sms.send(
                journey.caller, text, journey_id=journey.id, customer_id=journey.customer_id
            )
        except Exception as exc:  # the gateway or the database failed: the flow goes on here
            log.error("handoff of journey %s failed: %s", journey.id, exc)
            return False, "error"
        self.sent += 1
        log.info("journey %s: continuation link sent by SMS (%s)", journey.id, reference)
        return True, "link"
