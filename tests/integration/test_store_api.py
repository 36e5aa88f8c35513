"""The timeline API over real HTTP (aiohttp server on a free port), on SQLite and PostgreSQL."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

import aiohttp
import pytest

from ivr.flow.model import Interaction, Journey
from ivr.store.customers import CustomerStore
from ivr.store.journeys import JourneyStore, make_engine
from ivr.web.app import WebServer, create_app
from ivr.web.auth import bearer_token

TOKEN = "s3cret-token-for-tests"
Serve = Callable[[str], Coroutine[Any, Any, str]]


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[JourneyStore]:
    s = JourneyStore(make_engine(database_url), batch_delay=0.0)
    await s.start()
    yield s
    await s.stop()


@pytest.fixture
async def serve(store: JourneyStore) -> AsyncIterator[Serve]:
    """Start the API with a given token ('' = not configured); returns its base URL."""
    servers: list[WebServer] = []

    async def start(token: str) -> str:
        server = WebServer(create_app(CustomerStore(store.engine), bearer_token(token)), host="127.0.0.1", port=0)
        await server.start()
        servers.append(server)
        return f"http://127.0.0.1:{server.port}"

    yield start
    for server in servers:
        await server.stop()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        yield session


def auth(token: str = TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def history(store: JourneyStore, customer_id: str, n: int) -> None:
    """n events alternating voice and chat, one second apart (t = 1..n)."""
    voice = Journey(id=uuid.uuid4().hex, flow="support", version="v1", channel="voice", customer_id=customer_id)
    chat = Journey(id=uuid.uuid4().hex, flow="support", version="v1", channel="chat", customer_id=customer_id)
    for t in range(1, n + 1):
        j = voice if t % 2 else chat
        store.save(j, [Interaction("step_entered", f"s{t}", {"t": t}, float(t))])
    await store.flush()


async def test_without_a_configured_token_the_api_is_off(serve: Serve, http: aiohttp.ClientSession) -> None:
    base = await serve("")
    async with http.get(f"{base}/api/customers/x/timeline", headers=auth("anything")) as r:
        assert r.status == 503
        assert await r.json() == {"error": "API disabled: set IVR_API_TOKEN"}


@pytest.mark.parametrize("headers", [{}, auth("wrong"), {"Authorization": TOKEN}, auth(TOKEN + "x")])
async def test_a_missing_or_wrong_token_is_refused(
    serve: Serve, http: aiohttp.ClientSession, store: JourneyStore, headers: dict[str, str]
) -> None:
    base = await serve(TOKEN)
    cid = await CustomerStore(store.engine).identify("+15551230001")
    async with http.get(f"{base}/api/customers/{cid}/timeline", headers=headers) as r:
        assert r.status == 401
        assert r.headers["WWW-Authenticate"] == "Bearer"
        assert "error" in await r.json()


async def test_timeline_by_id_and_by_phone_pages_newest_first(
    serve: Serve, http: aiohttp.ClientSession, store: JourneyStore
) -> None:
    base = await serve(TOKEN)
    customers = CustomerStore(store.engine)
    cid = await customers.create(name="Ann Lee", tier="gold", phones=["+15551230001"])
    await history(store, cid, 7)
    await history(store, await customers.identify("+15551230002"), 3)  # someone else's events

    seen: list[dict[str, Any]] = []
    url: str | None = f"{base}/api/customers/{cid}/timeline?limit=3"
    while url:
        async with http.get(url, headers=auth()) as r:
            assert r.status == 200, await r.text()
            body = await r.json()
        assert body["customer"]["name"] == "Ann Lee"
        assert body["customer"]["identities"] == [{"kind": "phone", "value": "+15551230001"}]
        seen += body["entries"]
        url = f"{base}/api/customers/{cid}/timeline?limit=3&before={body['next']}" if body["next"] else None
    assert [e["data"]["t"] for e in seen] == [7, 6, 5, 4, 3, 2, 1]
    assert [e["channel"] for e in seen[:2]] == ["voice", "chat"]
    assert set(seen[0]) == {"at", "channel", "kind", "journey_id", "step", "data"}
    assert seen[0]["at"] == "1970-01-01T00:00:07.000Z"

    async with http.get(f"{base}/api/customers/by-phone/+15551230001/timeline", headers=auth()) as r:
        assert r.status == 200
        by_phone = await r.json()
    assert by_phone["customer"]["id"] == cid
    assert by_phone["entries"] == seen
    assert by_phone["next"] is None


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/api/customers/nobody/timeline", 404),
        ("/api/customers/by-phone/+15559999999/timeline", 404),
        ("/api/customers/by-phone/anonymous/timeline", 400),
        ("/api/customers/{cid}/timeline?limit=0", 400),
        ("/api/customers/{cid}/timeline?limit=many", 400),
        ("/api/customers/{cid}/timeline?before=garbage!", 400),
    ],
)
async def test_bad_requests_get_a_json_error(
    serve: Serve, http: aiohttp.ClientSession, store: JourneyStore, path: str, status: int
) -> None:
    base = await serve(TOKEN)
    cid = await CustomerStore(store.engine).identify("+15551230001")
    async with http.get(base + path.format(cid=cid), headers=auth()) as r:
        assert r.status == status
        assert r.content_type == "application/json"
        assert "error" in await r.json()
