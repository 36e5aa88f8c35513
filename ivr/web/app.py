"""The HTTP application factory and its server, owned by ``ivr.app.App`` (start/stop).

Every ``/api/`` request passes the ``Authorize`` function first (``auth.py``); nothing else in the
application checks credentials, so replacing the scheme is replacing that one argument.

What every request and response gets here, whichever feature registered the route:

* header values that are not UTF-8 are refused (400) before any handler runs, except cookies:
  an undecodable cookie is dropped, so a stray cookie another application on the same host set
  cannot lock a customer out, and no handler ever hashes or compares a string it cannot encode;
* every response, errors and static files included, carries the security headers and
  ``Cache-Control: no-store`` (a page or ``/desktop/api/me`` holds a CSRF token or customer data:
  no cache, shared or private, may keep it). A route may set its own stricter values; this
  only fills what is missing. It is an ``on_response_prepare`` hook rather than a middleware
  because streamed responses (server-sent events, websockets) are prepared inside the handler,
  where a middleware could no longer change their headers.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiohttp import hdrs, web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.typedefs import Handler

from ivr.store.customers import CustomerStore
from ivr.web import api
from ivr.web.auth import Authorize
from ivr.web.connections import MIN_USEFUL, ConnectionGuard, http_connection_cap
from ivr.web.errors import json_error

log = logging.getLogger(__name__)
AUTHORIZE: web.AppKey[Authorize] = web.AppKey("authorize")

#: What every response carries unless its route set a value of its own.
SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}
#: Largest request body any route takes (login form, chat JSON, SMS callback); more is a 413.
MAX_BODY = 64 * 1024


def _encodable(value: str) -> bool:
    """aiohttp decodes header bytes as UTF-8 with ``surrogateescape``: a lone surrogate is a byte
    that was not UTF-8, and ``str.encode()`` (hashing a token, comparing a secret) raises on it."""
    try:
        value.encode()
    except UnicodeEncodeError:
        return False
    return True


def _clean_cookie_header(value: str) -> str:
    """The Cookie header without the cookies whose name or value is not UTF-8."""
    kept = []
    for pair in value.split(";"):
        if _encodable(pair):
            kept.append(pair.strip())
    return "; ".join(p for p in kept if p)


@web.middleware
async def utf8_headers(request: web.Request, handler: Handler) -> web.StreamResponse:
    bad = [name for name, value in request.headers.items() if name != hdrs.COOKIE and not _encodable(value)]
    if bad or not _encodable(request.path) or not _encodable(request.query_string):
        raise json_error(web.HTTPBadRequest, "headers and the URL must be UTF-8")
    cookies = request.headers.getall(hdrs.COOKIE, [])
    if any(not _encodable(c) for c in cookies):
        headers = request.headers.copy()
        headers.popall(hdrs.COOKIE)
        cleaned = "; ".join(filter(None, (_clean_cookie_header(c) for c in cookies)))
        if cleaned:
            headers[hdrs.COOKIE] = cleaned
        request = request.clone(headers=headers)
    return await handler(request)


@web.middleware
async def require_auth(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.path.startswith("/api/"):
        await request.app[AUTHORIZE](request)
    return await handler(request)


async def security_headers(request: web.Request, response: web.StreamResponse) -> None:
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)


class _ServerLog(logging.LoggerAdapter[logging.Logger]):
    """aiohttp's server log, with malformed requests at DEBUG in one line.

    aiohttp answers a request its parser refuses (a line over ``max_line_size``, bad framing,
    garbage on the port) with a 400 and logs it at ERROR with a full traceback: any client could
    fill the log with tracebacks that say nothing about our code. Errors of our handlers are
    still logged at ERROR with their traceback."""

    def exception(self, msg: object, *args: object, exc_info: Any = True, **kwargs: Any) -> None:
        if isinstance(exc_info, HttpProcessingError) and 400 <= exc_info.code < 500:
            self.logger.debug("refused a malformed HTTP request (%d): %.200s", exc_info.code, exc_info.message)
            return
        self.logger.error(msg, *args, exc_info=exc_info, **kwargs)


def create_app(customers: CustomerStore, authorize: Authorize, *, max_body: int = MAX_BODY) -> web.Application:
    app = web.Application(middlewares=[utf8_headers, require_auth], client_max_size=max_body)
    app.on_response_prepare.append(security_headers)
    app[AUTHORIZE] = authorize
    app[api.CUSTOMERS] = customers
    app.add_routes(api.routes)
    return app


class WebServer:
    """One aiohttp application on one TCP address; ``port=0`` picks a free port (see ``.port``).

    Calls come before web pages: at most ``max_connections`` HTTP connections, and never more than
    the process's descriptor limit minus ``reserved_descriptors`` (kept for FastAGI, AudioSocket,
    the database and the SMS gateway). A connection must send its request head within
    ``header_timeout`` seconds; a keep-alive connection idle for ``idle_timeout`` is closed.
    """

    def __init__(
        self,
        app: web.Application,
        *,
        host: str = "127.0.0.1",
        port: int = 8080,
        header_timeout: float = 10.0,
        idle_timeout: float = 15.0,
        max_connections: int = 1000,
        reserved_descriptors: int = 256,
    ) -> None:
        self.app = app
        self.host = host
        self.port = port
        self.header_timeout = header_timeout
        self.idle_timeout = idle_timeout
        self.max_connections = max_connections
        self.reserved_descriptors = reserved_descriptors
        self.guard: ConnectionGuard | None = None
        self._runner: web.AppRunner | None = None
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        runner = web.AppRunner(
            self.app,
            access_log=None,
            shutdown_timeout=2.0,
            keepalive_timeout=self.idle_timeout,
            max_line_size=8190,
            max_field_size=8190,
            logger=_ServerLog(logging.getLogger("aiohttp.server")),
        )
        await runner.setup()
        assert runner.server is not None
        cap = http_connection_cap(self.max_connections, self.reserved_descriptors)
        if cap < MIN_USEFUL:
            log.warning(
                "only %d HTTP connection(s) allowed: the descriptor limit (ulimit -n) leaves little beyond "
                "the %d reserved for calls; raise it",
                cap,
                self.reserved_descriptors,
            )
        self.guard = ConnectionGuard(runner.server, cap=cap, header_timeout=self.header_timeout)
        try:
            self._server = await asyncio.get_running_loop().create_server(
                self.guard, self.host, self.port, backlog=128, reuse_address=True
            )
        except OSError:
            await runner.cleanup()
            raise
        self._runner = runner
        self.port = int(self._server.sockets[0].getsockname()[1])
        log.info("HTTP API listening on http://%s:%d/api/ (at most %d connections)", self.host, self.port, cap)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
