"""SIP credentials for agents' browser softphones, one random password per desktop login.

Why per login and not a password in a file: a browser softphone's password would otherwise sit in
the page, typed by the agent or stored by the browser, and work for ever from anywhere. Here the
controller makes a random one when the desktop asks for it (``POST /desktop/api/softphone``),
hands it to that browser session only, and deletes it at logout, when the session is revoked
(``ivr agents passwd|disable``) or expires. It is never written to our database nor logged.

Where Asterisk finds it: the endpoint ``<endpoint>-webrtc`` (pjsip.conf) names the auth object
``<endpoint>-webrtc-auth``, which exists in no file. ``sorcery.conf`` adds Asterisk's astdb as a
second source of auth objects (family ``ivr_sip/auth``); AMI ``DBPut`` creates the object as the
astdb sorcery wizard stores it (a JSON object of its fields) and ``DBDel`` removes it. The wizard
reads astdb on every lookup, so a REGISTER is accepted (or refused) from the moment the action
returns, without a reload. Measured on the lab's Asterisk 22 (one grant, one revoke, through the
controller's AMI client): DBPut 14 ms the first time, DBDel 1.3 ms. Not chosen, and not measured:
a generated include needs a ``pjsip reload`` that re-reads every PJSIP object, and ARI's dynamic
sorcery objects need ARI switched on (modules.conf keeps it off). Only the ACD leader holds AMI, so the
desktop's node asks it (``AcdDesk`` ops ``sip.grant`` and ``sip.revoke``).

astdb is a file in Asterisk's spool, so a credential outlives an Asterisk restart (the browser
re-registers with it) and also a controller that dies without revoking: the next leader deletes
the family (``DBDelTree``, :func:`clear_action`) when it takes the lead and puts back only the
grants of pages still open (``ivr.acd.desk``). One auth object per endpoint: each new request
replaces the password, so of two tabs the last one to ask keeps registering.

Each endpoint has its own auth object whose user name is the endpoint's name, so a browser that
presents another agent's credentials for its endpoint is refused by Asterisk's digest check.

Why the password never crosses the bus: the page may be served by a follower node while only the
leader holds AMI, and the bus between them is Redis, whose streams keep each message (up to
``STREAM_MAXLEN`` entries, a day) for anyone who can read Redis. So no node sends a password. The
node serving the page draws a random nonce and both it and the leader derive the same password
from it (:class:`SoftphoneKeys`): HKDF-SHA256 (RFC 5869) of the AMI secret, which every node that
may lead already has, then HMAC of the endpoint and the nonce. A grant on the bus is
``{endpoint, nonce, tag}``: the tag (a second HMAC key of the same HKDF) lets the leader refuse a
grant from a node whose secret differs, with a clear error, rather than put a password the page
does not know. Why the AMI secret and not a new one: whoever holds it can already read the
password from astdb (AMI ``DBGet``), so deriving from it gives nobody anything new, and a
deployment has no second secret to distribute. Not chosen: sealing a random password (AES-GCM)
needs the same shared key and a library the lock does not have (``cryptography``); this needs only
``hmac``. The leader keeps each endpoint's current grant (nonce and tag, never the password) so it
can re-derive and put them all again after clearing the family (:func:`clear_action`).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets
from dataclasses import dataclass
from typing import Any

from ivr.ami.actions import Action

#: the astdb family the astdb sorcery wizard reads res_pjsip's auth objects from (sorcery.conf)
FAMILY = "ivr_sip/auth"
BROWSER_SUFFIX = "-webrtc"
_ENDPOINT = re.compile(r"^[A-Za-z0-9_.-]{1,56}$")
_NONCE = re.compile(r"^[A-Za-z0-9_-]{16,64}$")
#: HKDF's salt: fixed and public (RFC 5869 allows it), it separates this use of the AMI secret
HKDF_SALT = b"ivr softphone credentials v1"


def browser_endpoint(endpoint: str) -> str:
    """The WebRTC endpoint of an agent's SIP endpoint (pjsip.conf's ``agentNNNN-webrtc``)."""
    if not _ENDPOINT.match(endpoint):
        raise ValueError(f"not a PJSIP endpoint name: {endpoint!r}")
    return endpoint + BROWSER_SUFFIX


def phone_endpoint(agent: dict[str, Any]) -> str:
    """The endpoint the queues ring for this agent: the browser's when their phone is ``browser``."""
    endpoint = str(agent["endpoint"])
    return browser_endpoint(endpoint) if agent.get("phone") == "browser" else endpoint


def auth_id(endpoint: str) -> str:
    """The auth object the browser endpoint of ``endpoint`` names (``auth =`` in pjsip.conf)."""
    return browser_endpoint(endpoint) + "-auth"


def new_password() -> str:
    """192 random bits, URL-safe: nothing in it needs quoting in a digest or a JSON value."""
    return secrets.token_urlsafe(24)


def new_nonce() -> str:
    """128 random bits, URL-safe: what a grant carries instead of the password."""
    return secrets.token_urlsafe(16)


def hkdf_extract(salt: bytes, ikm: bytes) -> bytes:
    """RFC 5869 HKDF-Extract with SHA-256."""
    return hmac.new(salt, ikm, hashlib.sha256).digest()


def hkdf_expand(prk: bytes, info: bytes, length: int) -> bytes:
    """RFC 5869 HKDF-Expand with SHA-256 (at most 255 blocks)."""
    if not 0 < length <= 255 * 32:
        raise ValueError("HKDF-Expand gives 1 to 8160 bytes")
    out, block = b"", b""
    for counter in range(1, -(-length // 32) + 1):
        block = hmac.new(prk, block + info + bytes([counter]), hashlib.sha256).digest()
        out += block
    return out[:length]


@dataclass(frozen=True)
class Grant:
    """What crosses the bus for one softphone's credentials: nothing a password can be had from
    without the nodes' key."""

    endpoint: str
    nonce: str
    tag: str

    def to_args(self) -> dict[str, str]:
        return {"endpoint": self.endpoint, "nonce": self.nonce, "tag": self.tag}


class SoftphoneKeys:
    """The two keys every node derives alike from the shared secret: one makes passwords, one
    tags grants. ``random()`` is for one process alone (its desk is its own leader)."""

    def __init__(self, secret: bytes) -> None:
        if not secret:
            raise ValueError("the softphone key needs a secret")
        prk = hkdf_extract(HKDF_SALT, secret)
        self._password_key = hkdf_expand(prk, b"sip password", 32)
        self._tag_key = hkdf_expand(prk, b"grant tag", 32)

    @classmethod
    def from_secret(cls, secret: str) -> SoftphoneKeys:
        return cls(secret.encode())

    @classmethod
    def random(cls) -> SoftphoneKeys:
        return cls(secrets.token_bytes(32))

    @staticmethod
    def _message(endpoint: str, nonce: str) -> bytes:
        if not _ENDPOINT.match(endpoint):
            raise ValueError(f"not a PJSIP endpoint name: {endpoint!r}")
        if not _NONCE.match(nonce):
            raise ValueError("a softphone grant's nonce is 16-64 URL-safe characters")
        return f"{endpoint}\n{nonce}".encode()

    def password(self, endpoint: str, nonce: str) -> str:
        """The SIP password of ``endpoint``'s browser phone for this nonce: 192 bits, URL-safe."""
        digest = hmac.new(self._password_key, self._message(endpoint, nonce), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest[:24]).decode()

    def grant(self, endpoint: str, nonce: str | None = None) -> Grant:
        """A grant of a fresh (or the given) nonce, tagged."""
        nonce = nonce or new_nonce()
        tag = hmac.new(self._tag_key, self._message(endpoint, nonce), hashlib.sha256).hexdigest()[:32]
        return Grant(endpoint, nonce, tag)

    def check(self, args: dict[str, Any]) -> Grant:
        """The grant a bus message carries, if this node's key tagged it alike; else ValueError."""
        endpoint, nonce, tag = str(args.get("endpoint", "")), str(args.get("nonce", "")), str(args.get("tag", ""))
        expected = self.grant(endpoint, nonce)
        if not hmac.compare_digest(expected.tag, tag):
            raise ValueError("softphone grant not made with this leader's key: give every node the same ami.secret")
        return expected


def grant_action(endpoint: str, password: str) -> Action:
    """AMI DBPut creating the auth object of ``endpoint``'s browser phone with ``password``."""
    if not re.fullmatch(r"[A-Za-z0-9_-]{16,128}", password):
        raise ValueError("a browser softphone password is 16-128 URL-safe characters")
    user = browser_endpoint(endpoint)
    # json.dumps escapes any line break: nothing here can end the AMI header early
    value = json.dumps({"auth_type": "digest", "username": user, "password": password}, separators=(",", ":"))
    return {"Action": "DBPut", "Family": FAMILY, "Key": auth_id(endpoint), "Val": value}


def revoke_action(endpoint: str) -> Action:
    """AMI DBDel removing the auth object: no REGISTER (nor call) of that browser endpoint passes."""
    return {"Action": "DBDel", "Family": FAMILY, "Key": auth_id(endpoint)}


def clear_action() -> Action:
    """AMI DBDelTree of every browser phone's auth object: what a dead controller left behind."""
    return {"Action": "DBDelTree", "Family": FAMILY}
