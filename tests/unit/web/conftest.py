"""The whole controller (``ivr.app.App``) in the test's event loop, for probing its HTTP side.

Real parts: the aiohttp server on loopback, SQLite, the flows of ``dialplans/``, the Kannel
provider (pointed at a loopback port where nothing listens: the gateway is down), the in-process
bus, the ACD without AMI. Every secret is set, so every endpoint is live.
"""

from __future__ import annotations

import asyncio
import socket
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import text

from ivr.app import App
from ivr.config import load_config
from ivr.flow.model import Journey
from ivr.store.models import Base
from tests.unit.bounded import stop_bounded

ROOT = Path(__file__).resolve().parents[3]
API_TOKEN = "api-token-" + "a" * 20
SMS_KEY = "sms-key-" + "k" * 20
SECRET = "handoff-secret-" + "s" * 20
METRICS_TOKEN = "metrics-token-" + "m" * 20


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Live:
    def __init__(self, app: App, kannel_port: int) -> None:
        self.app = app
        self.kannel_port = kannel_port
        self.base = f"http://127.0.0.1:{app.web.port}"

    @property
    def port(self) -> int:
        return self.app.web.port

    async def row_counts(self) -> dict[str, int]:
        """Rows in every table: what an unauthorized request must not change."""
        await self.app.store.flush()
        counts = {}
        async with self.app.store.engine.connect() as conn:
            for table in Base.metadata.sorted_tables:
                counts[table.name] = int((await conn.execute(text(f"SELECT count(*) FROM {table.name}"))).scalar_one())
        return counts

    async def chat_link(self, phone: str = "+15551230099") -> str:
        """A continuation link (token) for a fresh chat journey of a customer, as a handoff makes."""
        app = self.app
        assert app.codec is not None
        customer = await app.customers.identify(phone)
        journey = Journey.new(app.flows.get("payments"), "chat", caller=phone)
        journey.customer_id = customer
        view = await app.chat.begin(journey)
        assert view.step is not None, "the payments flow waits at a step"
        continuation = uuid.uuid4().hex
        expires = time.time() + 600
        await app.continuations.create(
            id=continuation,
            journey_id=journey.id,
            customer_id=customer,
            channel="chat",
            step=view.step,
            expires_at=expires,
        )
        return app.codec.issue(continuation, customer, expires)


async def raw_request(port: int, request: bytes, *, timeout: float = 10.0) -> bytes:
    """Bytes on a plain socket: aiohttp's client would refuse to send most hostile headers."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        await writer.drain()
        async with asyncio.timeout(timeout):
            return await reader.read()
    finally:
        writer.close()


def status_of(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1])


async def start_live(data_dir: Path) -> Live:
    """The controller started with every secret set; the caller stops ``live.app``."""
    kannel_port = free_port()
    env = {
        "IVR_DATA_DIR": str(data_dir),
        "IVR_FLOWS_DIR": str(ROOT / "dialplans"),
        "IVR_WEB_PORT": "0",
        "IVR_AGI_PORT": str(free_port()),
        "IVR_SPEECH_ENGINE": "off",
        "IVR_FLOWS_WATCH_INTERVAL": "60",
        "IVR_API_TOKEN": API_TOKEN,
        "IVR_WEB_METRICS_TOKEN": METRICS_TOKEN,
        "IVR_HANDOFF_SECRET": SECRET,
        "IVR_SMS_PROVIDER": "kannel",
        "IVR_SMS_KANNEL_PASSWORD": "kannel-password",
        "IVR_SMS_KANNEL_URL": f"http://127.0.0.1:{kannel_port}/cgi-bin/sendsms",
        "IVR_SMS_INBOUND_TOKEN": SMS_KEY,
    }
    app = App(load_config(environ=env))
    await app.start()
    return Live(app, kannel_port)


@pytest.fixture
async def live(tmp_path: Path) -> AsyncIterator[Live]:
    started = await start_live(tmp_path)
    try:
        yield started
    finally:
        await stop_bounded(started.app.stop)
