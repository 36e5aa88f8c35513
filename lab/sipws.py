"""A SIP REGISTER over a secure WebSocket (RFC 7118), the way a browser softphone sends it.

Why our own and not SIPp: SIPp has no WebSocket transport, and the tests of the browser
softphone's credentials need exactly one question answered: does Asterisk's WSS endpoint accept
this user name and password for this endpoint (200), or not (401/403)? The message and digest
building is pure (``register_message``, ``digest_authorization``, ``parse_response``); only
``register`` opens a socket (aiohttp's websocket client, subprotocol ``sip``).
"""

from __future__ import annotations

import hashlib
import re
import secrets
import ssl
from dataclasses import dataclass, field

import aiohttp

from lab.errors import LabError

_PARAM = re.compile(r'(\w+)=(?:"([^"]*)"|([^\s,]+))')


@dataclass(frozen=True)
class SipResponse:
    status: int
    reason: str
    headers: dict[str, list[str]] = field(default_factory=dict)

    def header(self, name: str) -> str:
        values = self.headers.get(name.lower(), [])
        return values[0] if values else ""


def parse_response(text: str) -> SipResponse:
    """The status line and headers of one SIP response (one websocket message carries one)."""
    head = text.split("\r\n\r\n", 1)[0]
    lines = head.split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("SIP/2.0") or not parts[1].isdigit():
        raise ValueError(f"not a SIP response: {lines[0]!r}")
    headers: dict[str, list[str]] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers.setdefault(name.strip().lower(), []).append(value.strip())
    return SipResponse(int(parts[1]), parts[2] if len(parts) > 2 else "", headers)


def challenge_params(header: str) -> dict[str, str]:
    """``Digest realm="asterisk",nonce="..."`` -> {"realm": "asterisk", "nonce": ...}."""
    scheme, _, rest = header.partition(" ")
    if scheme.lower() != "digest":
        raise ValueError(f"not a digest challenge: {header!r}")
    return {m.group(1).lower(): m.group(2) if m.group(2) is not None else m.group(3) for m in _PARAM.finditer(rest)}


def digest_authorization(
    challenge: dict[str, str], *, username: str, password: str, method: str, uri: str, cnonce: str, nc: int = 1
) -> str:
    """The Authorization header answering an MD5 digest challenge (RFC 2617, qop=auth if offered)."""

    def md5(text: str) -> str:
        return hashlib.md5(text.encode(), usedforsecurity=False).hexdigest()

    realm, nonce = challenge["realm"], challenge["nonce"]
    ha1 = md5(f"{username}:{realm}:{password}")
    ha2 = md5(f"{method}:{uri}")
    parts = [f'username="{username}"', f'realm="{realm}"', f'nonce="{nonce}"', f'uri="{uri}"', "algorithm=MD5"]
    if "auth" in challenge.get("qop", "").split(","):
        count = f"{nc:08x}"
        response = md5(f"{ha1}:{nonce}:{count}:{cnonce}:auth:{ha2}")
        parts += ["qop=auth", f"nc={count}", f'cnonce="{cnonce}"']
    else:
        response = md5(f"{ha1}:{nonce}:{ha2}")
    parts.append(f'response="{response}"')
    if "opaque" in challenge:
        parts.append(f'opaque="{challenge["opaque"]}"')
    return "Digest " + ", ".join(parts)


def register_message(
    *, user: str, domain: str, call_id: str, cseq: int, tag: str, branch: str, authorization: str = ""
) -> str:
    """A REGISTER from a websocket client: Via .../WSS with an invalid host, as RFC 7118 has it."""
    lines = [
        f"REGISTER sip:{domain} SIP/2.0",
        f"Via: SIP/2.0/WSS lab.invalid;branch=z9hG4bK{branch}",
        "Max-Forwards: 70",
        f"From: <sip:{user}@{domain}>;tag={tag}",
        f"To: <sip:{user}@{domain}>",
        f"Call-ID: {call_id}",
        f"CSeq: {cseq} REGISTER",
        f"Contact: <sip:{user}@lab.invalid;transport=ws>;expires=60",
        "Expires: 60",
        "User-Agent: ivr-lab-sipws",
    ]
    if authorization:
        lines.append(f"Authorization: {authorization}")
    lines.append("Content-Length: 0")
    return "\r\n".join(lines) + "\r\n\r\n"


async def register(
    url: str,
    user: str,
    password: str,
    *,
    username: str | None = None,
    domain: str = "127.0.0.1",
    cafile: str | None = None,
    timeout: float = 10,
) -> int:
    """REGISTER ``user`` over ``url`` (wss://...), answering one digest challenge with
    ``username`` (default: ``user``) and ``password``; returns the final status code."""
    context = ssl.create_default_context(cafile=cafile) if cafile else ssl.create_default_context()
    call_id, tag = secrets.token_hex(8), secrets.token_hex(4)
    wire = aiohttp.ClientTimeout(total=timeout)
    try:
        async with (
            aiohttp.ClientSession(timeout=wire) as session,
            session.ws_connect(url, protocols=("sip",), ssl=context) as ws,
        ):
            authorization = ""
            for cseq in (1, 2):
                await ws.send_str(
                    register_message(
                        user=user,
                        domain=domain,
                        call_id=call_id,
                        cseq=cseq,
                        tag=tag,
                        branch=secrets.token_hex(6),
                        authorization=authorization,
                    )
                )
                while True:
                    reply = parse_response(await ws.receive_str(timeout=timeout))
                    if reply.status >= 200:
                        break
                if reply.status != 401 or cseq == 2:
                    return reply.status
                offered = [challenge_params(h) for h in reply.headers.get("www-authenticate", [])]
                md5 = [c for c in offered if c.get("algorithm", "MD5").upper() == "MD5"]
                if not md5:
                    raise LabError(f"no MD5 digest challenge in {reply.headers.get('www-authenticate')}")
                challenge = md5[0]
                authorization = digest_authorization(
                    challenge,
                    username=username or user,
                    password=password,
                    method="REGISTER",
                    uri=f"sip:{domain}",
                    cnonce=secrets.token_hex(8),
                )
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        raise LabError(f"SIP over {url}: {exc}") from exc
    raise AssertionError("unreachable")
