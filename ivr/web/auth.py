"""Who may call the HTTP API. ONE function decides, so swapping the scheme is one line in ``app.py``.

Today: a single bearer token from the config (``api.token``), for machine clients (the CRM, a
wallboard). Agents' login sessions will be another ``Authorize`` function checking a
session cookie, passed to ``create_app`` instead of this one.

Secure by default: with no token configured the API is off (503), not open; the comparison runs in
constant time so the token cannot be guessed byte by byte from response times.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable

from aiohttp import web

from ivr.web.errors import json_error

#: Raises an ``aiohttp.web.HTTPException`` to refuse the request; returns the caller's name to allow it.
Authorize = Callable[[web.Request], Awaitable[str]]


def bearer_token(token: str, *, env_name: str = "IVR_API_TOKEN") -> Authorize:
    expected = token.encode()

    async def authorize(request: web.Request) -> str:
        if not expected:
            raise json_error(web.HTTPServiceUnavailable, f"API disabled: set {env_name}")
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), expected):
            raise json_error(
                web.HTTPUnauthorized, "missing or wrong bearer token", headers={"WWW-Authenticate": "Bearer"}
            )
        return "api-token"

    return authorize
