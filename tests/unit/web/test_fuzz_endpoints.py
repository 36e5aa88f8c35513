"""Every HTTP endpoint the controller registers, fuzzed with Hypothesis over a raw socket.

The routes are read from the application's router, so a new endpoint is covered without
touching this file. Random methods, path parameters, query strings, headers (raw bytes that
are not UTF-8 included: aiohttp's client would refuse to send them) and bodies, all without
credentials. Never a 5xx, never an ERROR or a traceback in the log, never a changed row.
"""

from __future__ import annotations

import asyncio
import logging
import re
import socket
import threading
import urllib.parse
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.unit.bounded import stop_bounded
from tests.unit.web.conftest import Live, start_live, status_of

T = TypeVar("T")
METHODS = ["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD", "TRACE", "PRI", "X-NOPE"]
HEADER_NAMES = [
    "Authorization",
    "Cookie",
    "Origin",
    "X-CSRF-Token",
    "Content-Type",
    "Accept",
    "Accept-Encoding",
    "Referer",
    "User-Agent",
    "X-Forwarded-For",
    "Sec-WebSocket-Key",
    "Upgrade",
]
QUERY_KEYS = ["before", "limit", "key", "from", "to", "text", "ref", "status", "csrf", "error", "x"]


class Loop:
    """The controller's event loop on a thread, so Hypothesis (synchronous) can drive it."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(60)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


class Problems(logging.Handler):
    """ERROR records, and any record with a traceback, from anywhere in the process."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno >= logging.ERROR or (record.exc_info and record.levelno > logging.DEBUG):
            self.records.append(record)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Live, Loop, Problems]]:
    loop = Loop()
    live = loop.run(start_live(tmp_path))
    problems = Problems()
    root = logging.getLogger()
    old_level = root.level
    root.setLevel(logging.INFO)
    root.addHandler(problems)
    try:
        yield live, loop, problems
    finally:
        root.removeHandler(problems)
        root.setLevel(old_level)
        loop.run(stop_bounded(live.app.stop))
        loop.close()


def endpoints(app: web.Application) -> list[tuple[str, str]]:
    """(method, path template) of every route the router holds; static folders as a file path."""
    found = []
    for route in app.router.routes():
        info = route.resource.get_info() if route.resource is not None else {}
        template = info.get("formatter") or info.get("path") or (info.get("prefix", "") + "/{file}")
        found.append((route.method, str(template)))
    return sorted(set(found))


def quoted(data: bytes) -> str:
    return urllib.parse.quote_from_bytes(data, safe="")


header_value = st.binary(max_size=60).map(lambda b: re.sub(rb"[\r\n\x00]", b"", b).strip())
cookie_value = st.lists(
    st.tuples(st.sampled_from([b"ivr_session", b"ivr_chat", b"ivr_login_csrf", b"x"]), header_value),
    max_size=3,
).map(lambda pairs: b"; ".join(k + b"=" + v for k, v in pairs))


@st.composite
def requests(draw: st.DrawFn, routes: list[tuple[str, str]]) -> bytes:
    method, template = draw(st.sampled_from(routes))
    if method == "*" or draw(st.booleans()):
        method = draw(st.sampled_from(METHODS))
    path = re.sub(r"\{[^}]+\}", lambda _: quoted(draw(st.binary(min_size=1, max_size=40))), template)
    query = draw(st.lists(st.tuples(st.sampled_from(QUERY_KEYS), st.binary(max_size=40)), max_size=4))
    if query:
        path += "?" + "&".join(f"{k}={quoted(v)}" for k, v in query)
    headers = [(b"Host", b"127.0.0.1")]
    for name in draw(st.lists(st.sampled_from(HEADER_NAMES), max_size=5, unique=True)):
        value = draw(cookie_value if name == "Cookie" else header_value)
        headers.append((name.encode(), value))
    body = draw(
        st.one_of(
            st.binary(max_size=300),
            st.recursive(
                st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
                lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
                max_leaves=8,
            ).map(lambda v: repr(v).replace("'", '"').encode()),
            st.integers(1, 5000).map(lambda depth: b"[" * depth + b"]" * depth),
        )
    )
    head = f"{method} {path} HTTP/1.1\r\n".encode()
    for raw_name, raw_value in headers:
        head += raw_name + b": " + raw_value + b"\r\n"
    head += f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
    return head + body


def send(port: int, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return answer


def test_no_endpoint_answers_5xx_logs_a_traceback_or_changes_data_without_credentials(
    served: tuple[Live, Loop, Problems],
) -> None:
    live, loop, problems = served
    routes = endpoints(live.app.web.app)
    assert ("POST", "/chat/api/input") in routes and ("GET", "/sms/kannel/mo") in routes  # the router was read
    before = loop.run(live.row_counts())

    @settings(max_examples=250, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(requests(routes))
    def one(request: bytes) -> None:
        problems.records.clear()  # each example answers for its own log lines (and shrinks right)
        answer = send(live.port, request)
        if answer:  # a request the parser refuses outright may be closed without a word
            assert status_of(answer) < 500, (request[:300], answer[:300])
        assert not problems.records, [(r.getMessage(), request[:300]) for r in problems.records]
        assert loop.run(live.row_counts()) == before, request[:300]

    one()
