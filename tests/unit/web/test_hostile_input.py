"""Bad input on the web side gets a clear 4xx, never a 500 or a traceback in the log; HEAD and
foreign origins change nothing; one SMS conversation per number; every response has the
security headers. Against the whole controller (``conftest.live``)."""

from __future__ import annotations

import asyncio
import base64
import logging
import re
from collections.abc import Iterator

import aiohttp
import pytest
from aiohttp import web
from sqlalchemy import text

from tests.unit.web.conftest import API_TOKEN, SMS_KEY, Live, raw_request, status_of

AUTH = {"Authorization": f"Bearer {API_TOKEN}"}


@pytest.fixture
def errors(caplog: pytest.LogCaptureFixture) -> Iterator[list[logging.LogRecord]]:
    """Records at ERROR or above, or with a traceback, logged during the test."""
    caplog.set_level(logging.INFO)
    found: list[logging.LogRecord] = []
    yield found
    found.extend(r for r in caplog.records if r.levelno >= logging.ERROR or (r.exc_info and r.levelno > logging.DEBUG))
    assert not found, [r.getMessage() for r in found]


def cursor(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


async def test_timeline_cursors_with_huge_numbers_infinity_nan_or_nesting_are_400(
    live: Live, errors: list[logging.LogRecord]
) -> None:
    customer = await live.app.customers.identify("+15551230001")
    bad = [
        b"[1e999,1]",
        b"[Infinity,1]",
        b"[NaN,1]",
        b"[1," + str(10**30).encode() + b"]",
        b"[1,-1]",
        b"[" * 2000 + b"]" * 2000,  # deeper than the JSON parser's recursion limit
        b"[[[[[[[[[[[[1]]]]]]]]]]]]",
    ]
    async with aiohttp.ClientSession() as http:
        for raw in bad:
            url = f"{live.base}/api/customers/{customer}/timeline"
            async with http.get(url, params={"before": cursor(raw)}, headers=AUTH) as reply:
                assert reply.status == 400, raw[:40]
                assert "bad cursor" in (await reply.json())["error"], raw[:40]
        async with http.get(f"{live.base}/api/customers/{customer}/timeline", headers=AUTH) as reply:
            assert reply.status == 200


async def claimed_chat(live: Live, http: aiohttp.ClientSession) -> None:
    token = await live.chat_link()
    async with http.post(f"{live.base}/c/{token}", allow_redirects=False) as reply:
        assert reply.status == 303


async def test_deeply_nested_json_on_the_chat_endpoints_is_400(live: Live, errors: list[logging.LogRecord]) -> None:
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        await claimed_chat(live, http)
        nested = "[" * 20_000 + "]" * 20_000  # 40 kB: under the body limit, far over the parser's depth
        for path in ("/chat/api/input", "/chat/api/message"):
            async with http.post(
                f"{live.base}{path}", data=nested, headers={"Content-Type": "application/json"}
            ) as reply:
                assert reply.status == 400, path
                assert (await reply.json())["error"] == "send JSON"


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/desktop/"),
        ("GET", "/desktop/api/me"),
        ("POST", "/desktop/api/logout"),
        ("GET", "/desktop/ws"),
        ("GET", "/chat/"),
        ("GET", "/chat/api/state"),
        ("POST", "/chat/api/input"),
        ("GET", "/chat/api/events"),
        ("POST", "/c/not-a-token"),
        ("GET", "/api/customers/x/timeline"),
    ],
)
async def test_non_utf8_authorization_or_cookie_is_a_4xx_before_authentication(
    live: Live, errors: list[logging.LogRecord], method: str, path: str
) -> None:
    for header in (
        b"Authorization: Bearer \xff\xfe\xfd",
        b"Cookie: ivr_session=\xff\xfe; ivr_chat=\xc3\x28",
        b"Cookie: ivr_chat=\xe9t\xe9",
    ):
        answer = await raw_request(
            live.port,
            f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n".encode()
            + header
            + b"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        )
        assert 300 <= status_of(answer) < 500, (header, answer[:200])


async def test_a_malformed_or_huge_multipart_login_is_a_4xx(live: Live, errors: list[logging.LogRecord]) -> None:
    parts = {
        "no name": (b"Content-Disposition: form-data\r\n\r\nann", 400),
        "10 MB field": (b'Content-Disposition: form-data; name="username"\r\n\r\n' + b"a" * 10_000_000, 413),
        "10 MB file": (
            b'Content-Disposition: form-data; name="password"; filename="x"\r\n\r\n' + b"a" * 10_000_000,
            413,
        ),
    }
    for name, (part, status) in parts.items():
        body = b"--XX\r\n" + part + b"\r\n--XX--\r\n"
        head = (
            "POST /desktop/login HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: multipart/form-data; boundary=XX\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        ).encode()
        try:
            answer = await raw_request(live.port, head + body)
        except ConnectionResetError:  # refused before the whole body was read: fine, but say what
            pytest.fail(f"{name}: connection reset instead of {status}")
        assert status_of(answer) == status, (name, answer[:200])


async def sms_journeys(live: Live, phone: str) -> list[str]:
    await live.app.store.flush()
    async with live.app.store.engine.connect() as conn:
        rows = await conn.execute(
            text("SELECT id FROM journeys WHERE channel = 'sms' AND caller = :phone"), {"phone": phone}
        )
        return [row[0] for row in rows]


async def test_an_sms_while_kannel_is_down_is_answered_later_and_the_journey_is_consistent(
    live: Live, errors: list[logging.LogRecord], caplog: pytest.LogCaptureFixture
) -> None:
    assert live.app.sms is not None
    live.app.sms.outbox.retry_first = 0.2
    phone = "+15551230002"
    async with aiohttp.ClientSession() as http:
        params = {"key": SMS_KEY, "from": phone, "to": "1000", "text": "hello"}
        async with http.get(f"{live.base}/sms/kannel/mo", params=params) as reply:
            assert reply.status == 200
    journeys = await sms_journeys(live, phone)
    assert len(journeys) == 1
    await asyncio.sleep(0.5)
    assert live.app.sms.queued == 1 and live.app.sms.outbox.sent == 0
    assert any("SMS gateway down" in r.getMessage() for r in caplog.records)

    # the gateway comes back on the same address: the queued reply goes out
    received: list[dict[str, str]] = []

    async def sendsms(request: web.Request) -> web.Response:
        received.append(dict(request.query))
        return web.Response(status=202, text="0: Accepted for delivery")

    gateway = web.Application()
    gateway.router.add_get("/cgi-bin/sendsms", sendsms)
    runner = web.AppRunner(gateway)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", live.kannel_port).start()
    try:
        async with asyncio.timeout(10):
            while live.app.sms.queued:  # noqa: ASYNC110 - polling the channel's counter is the point
                await asyncio.sleep(0.05)
    finally:
        await runner.cleanup()
    assert [r["to"] for r in received] == [phone]
    assert live.app.sms.outbox.sent == 1
    assert await sms_journeys(live, phone) == journeys
    assert any("SMS gateway back" in r.getMessage() for r in caplog.records)


async def test_head_on_the_sms_endpoints_has_no_side_effect(live: Live, errors: list[logging.LogRecord]) -> None:
    before = await live.row_counts()
    async with aiohttp.ClientSession() as http:
        for path in ("/sms/kannel/mo", "/sms/kannel/dlr"):
            params = {"key": SMS_KEY, "from": "+15551230003", "text": "hi", "ref": "x", "status": "1"}
            async with http.head(f"{live.base}{path}", params=params) as reply:
                assert reply.status == 405
    assert await live.row_counts() == before
    assert live.app.sms is not None and live.app.sms.received == 0


async def test_concurrent_messages_from_one_number_make_one_conversation_at_a_time(
    live: Live, errors: list[logging.LogRecord]
) -> None:
    """A burst from one number is one conversation: as many journeys as the same messages make
    one after another (a journey ends after a few answers it cannot match, then the next
    message starts another), not one journey per message."""
    messages = [f"message {i}" for i in range(24)]
    async with aiohttp.ClientSession() as http:

        async def send(phone: str, text: str) -> int:
            params = {"key": SMS_KEY, "from": phone, "to": "1000", "text": text}
            async with http.get(f"{live.base}/sms/kannel/mo", params=params) as reply:
                return reply.status

        for text in messages:
            assert await send("+15551230040", text) == 200
        one_after_another = len(await sms_journeys(live, "+15551230040"))
        assert set(await asyncio.gather(*(send("+15551230041", text) for text in messages))) == {200}
    assert len(await sms_journeys(live, "+15551230041")) == one_after_another < len(messages) / 2


async def test_a_continuation_claim_from_a_foreign_origin_is_refused(
    live: Live, errors: list[logging.LogRecord]
) -> None:
    token = await live.chat_link("+15551230005")
    async with aiohttp.ClientSession() as http:
        async with http.post(
            f"{live.base}/c/{token}", headers={"Origin": "https://evil.example"}, allow_redirects=False
        ) as reply:
            assert reply.status == 403
            assert "Set-Cookie" not in reply.headers
        # still claimable by the customer's own page
        async with http.post(f"{live.base}/c/{token}", headers={"Origin": live.base}, allow_redirects=False) as reply:
            assert reply.status == 303


async def test_every_response_has_the_security_headers_and_no_store(
    live: Live, errors: list[logging.LogRecord]
) -> None:
    await live.app.agents.add(
        username="ann",
        display_name="Ann",
        password_hash=__import__("ivr.web.agents_auth", fromlist=["x"]).hash_password("ann-password"),
        endpoint="agent1001",
        skills={"billing": 0},
        agent_id="ann",
    )
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        page = await (await http.get(f"{live.base}/desktop/login")).text()
        match = re.search(r'name="csrf" value="([^"]+)"', page)
        assert match
        await http.post(
            f"{live.base}/desktop/login",
            data={"username": "ann", "password": "ann-password", "csrf": match.group(1)},
            allow_redirects=False,
        )
        for path in (
            "/desktop/api/me",
            "/desktop/static/desktop.js",
            "/chat/static/chat.css",
            "/desktop/login",
            "/no/such/page",
            "/api/customers/x/timeline",
        ):
            async with http.get(f"{live.base}{path}") as reply:
                if path == "/desktop/api/me":
                    assert reply.status == 200 and "csrf" in await reply.json()
                assert reply.headers.get("Cache-Control") == "no-store", path
                assert reply.headers.get("X-Content-Type-Options") == "nosniff", path
                assert reply.headers.get("X-Frame-Options") == "DENY", path
                assert "Content-Security-Policy" in reply.headers, path
                assert "Referrer-Policy" in reply.headers, path


async def test_a_customer_closing_the_chat_page_is_not_an_error(
    live: Live, errors: list[logging.LogRecord], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="ivr.web.chat")
    live.app.chat_settings.retry_offer = 0.1  # the stream writes (and notices a closed page) this often
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        await claimed_chat(live, http)
        for _ in range(3):
            reply = await http.get(f"{live.base}/chat/api/events")
            assert reply.status == 200
            assert reply.headers["Content-Type"] == "text/event-stream"
            assert reply.headers["Cache-Control"] == "no-store"
            await reply.content.readline()  # the stream is live
            reply.close()  # the customer closes the page
        await asyncio.sleep(1.0)  # the handlers write into the closed connections meanwhile
    assert any("event stream closed" in r.getMessage() for r in caplog.records)
