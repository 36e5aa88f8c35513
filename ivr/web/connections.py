"""How many HTTP connections the web side may hold, and for how long one may sit without a request.

Why this exists: the HTTP server and the FastAGI server live in one process and draw file
descriptors from one ``RLIMIT_NOFILE``. Idle HTTP connections cost the attacker nothing; once they
have taken every descriptor, ``accept()`` on the FastAGI socket fails, Asterisk sees the AGI
connection end at once and the caller falls to the dialplan fallback. Calls come first, so:

* the web side gets a **cap** below the process's descriptor limit, leaving ``reserve``
  descriptors for AGI, AudioSocket, the database pool, Kannel and log files
  (:func:`http_connection_cap`);
* a connection over the cap is answered ``503`` and closed at once (it costs one descriptor for
  a moment, never a lasting one), with one WARNING a minute saying how many were refused;
* a connection that has not sent a complete request head within ``header_timeout`` seconds of
  connecting is closed (a slowloris, or a socket opened and left). Between requests aiohttp's own
  ``keepalive_timeout`` closes idle keep-alive connections; in aiohttp 3.14 that timer also
  runs from the connection's start, this one does not depend on it.

aiohttp has no connection cap and no header deadline of its own, so :class:`ConnectionGuard`
wraps its protocol factory (``web.Server``): each accepted connection gets a thin protocol that
counts it, watches for the end of the first request head, and hands every byte on unchanged.
"""

from __future__ import annotations

import asyncio
import logging
import resource
import time
from collections.abc import Callable
from typing import Final, cast

log = logging.getLogger(__name__)

_BODY: Final = b"too many connections; retry later\n"
#: Answer to a connection over the cap: short, complete, and the connection closes after it.
REFUSED: Final = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\n"
    + f"Content-Length: {len(_BODY)}\r\n".encode()
    + b"Retry-After: 5\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n"
    + _BODY
)
_END_OF_HEAD: Final = b"\r\n\r\n"
#: At most one "cap reached" WARNING per this many seconds (with the count refused since).
LOG_EVERY: Final = 60.0
#: Fewer HTTP connections than this is not a usable web side: start-up says so.
MIN_USEFUL: Final = 16


def http_connection_cap(wanted: int, reserve: int, soft_limit: int | None = None) -> int:
    """The HTTP connection cap: ``wanted``, but never more than the descriptor limit minus ``reserve``.

    ``soft_limit`` defaults to the process's ``RLIMIT_NOFILE`` soft limit (what ``accept()`` is
    held to); ``RLIM_INFINITY`` leaves ``wanted`` alone. Never below zero.
    """
    if soft_limit is None:
        soft_limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if soft_limit == resource.RLIM_INFINITY or soft_limit < 0:
        return max(0, wanted)
    return max(0, min(wanted, soft_limit - reserve))


class _Refused(asyncio.Protocol):
    """Over the cap: say so and close, reading nothing."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        stream = cast(asyncio.Transport, transport)  # uvloop's transports are not asyncio's classes
        stream.write(REFUSED)
        stream.close()


class _Guarded(asyncio.Protocol):
    """One counted HTTP connection: forwards everything to aiohttp's protocol, bounds the first head."""

    __slots__ = ("_deadline", "_guard", "_head_seen", "_inner", "_tail", "_transport")

    def __init__(self, guard: ConnectionGuard, inner: asyncio.Protocol) -> None:
        self._guard = guard
        self._inner = inner
        self._transport: asyncio.Transport | None = None
        self._deadline: asyncio.TimerHandle | None = None
        self._head_seen = False
        self._tail = b""  # the last bytes seen, for an end of head split across two reads
        # Counted from the factory call, not from connection_made (scheduled with call_soon): one
        # loop iteration may accept a whole backlog, and every one of them must see the count.
        guard.open += 1

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)
        if self._guard.header_timeout > 0:
            loop = asyncio.get_running_loop()
            self._deadline = loop.call_later(self._guard.header_timeout, self._too_slow)
        self._inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if not self._head_seen:
            window = self._tail + data
            if _END_OF_HEAD in window:
                self._head_seen = True
                self._cancel_deadline()
            else:
                self._tail = window[-(len(_END_OF_HEAD) - 1) :]
        self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_deadline()
        self._guard.open -= 1
        self._inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()

    def _too_slow(self) -> None:
        self._deadline = None
        if not self._head_seen and self._transport is not None:
            self._guard.timed_out += 1
            log.debug("HTTP connection sent no request head within %gs; closing", self._guard.header_timeout)
            self._transport.abort()

    def _cancel_deadline(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None


class ConnectionGuard:
    """A protocol factory for ``loop.create_server``: aiohttp's, counted, capped and head-bounded.

    ``open`` is the number of HTTP connections held now, ``refused`` how many were turned away
    over the cap, ``timed_out`` how many were closed for sending no request head in time.
    """

    def __init__(self, factory: Callable[[], asyncio.Protocol], *, cap: int, header_timeout: float) -> None:
        self._factory = factory
        self.cap = cap
        self.header_timeout = header_timeout
        self.open = 0
        self.refused = 0
        self.timed_out = 0
        self._refused_unlogged = 0
        self._last_log = -LOG_EVERY

    def __call__(self) -> asyncio.Protocol:
        if self.open >= self.cap:
            self._refuse()
            return _Refused()
        return _Guarded(self, self._factory())

    def _refuse(self) -> None:
        self.refused += 1
        self._refused_unlogged += 1
        now = time.monotonic()
        if now - self._last_log >= LOG_EVERY:
            log.warning(
                "HTTP connection cap reached (%d open, cap %d): refused %d connection(s) since the last "
                "report; descriptors stay reserved for calls (web.max_connections, web.reserved_descriptors)",
                self.open,
                self.cap,
                self._refused_unlogged,
            )
            self._last_log = now
            self._refused_unlogged = 0
