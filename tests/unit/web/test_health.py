"""/healthz, /readyz and /metrics: the readiness rules with literal checks and a fake clock, then
the endpoints on the whole controller (``ivr.app.App``: real aiohttp, SQLite, the AGI server)."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from ivr.app import App
from ivr.config import load_config
from ivr.web.health import Readiness
from tests.unit.bounded import stop_bounded

ROOT = Path(__file__).resolve().parents[3]
METRICS_TOKEN = "metrics-token-" + "m" * 20


# -- the readiness rules -------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def test_each_check_reports_ok_down_unreachable_or_timeout() -> None:
    async def ok() -> bool:
        return True

    async def down() -> bool:
        return False

    async def broken() -> bool:
        raise ConnectionRefusedError("secret detail: 10.0.0.5:5432")

    async def hangs() -> bool:
        await asyncio.sleep(10)
        return True

    readiness = Readiness({"a": ok, "b": down, "c": broken, "d": hangs}, check_timeout=0.05)
    assert await readiness.states() == {"a": "ok", "b": "down", "c": "unreachable", "d": "timeout"}


async def test_one_run_serves_every_poll_within_max_age() -> None:
    clock = Clock()
    runs = [0]
    healthy = [True]

    async def database() -> bool:
        runs[0] += 1
        await asyncio.sleep(0.01)  # concurrent polls arrive while this run is under way
        return healthy[0]

    readiness = Readiness({"database": database}, max_age=0.5, clock=clock)
    answers = await asyncio.gather(*(readiness.states() for _ in range(20)))
    assert runs[0] == 1 and all(a == {"database": "ok"} for a in answers)
    healthy[0] = False
    clock.now += 0.4
    assert await readiness.states() == {"database": "ok"} and runs[0] == 1  # still fresh
    clock.now += 0.1
    assert await readiness.states() == {"database": "down"} and runs[0] == 2


async def test_a_change_of_state_is_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    up = [True]

    async def ami() -> bool:
        return up[0]

    readiness = Readiness({"ami": ami}, max_age=0, clock=clock)
    caplog.set_level(logging.INFO, logger="ivr.web.health")
    await readiness.states()
    up[0] = False
    for _ in range(3):
        await readiness.states()
    up[0] = True
    await readiness.states()
    assert [r.getMessage() for r in caplog.records] == ["readiness: ami ok -> down", "readiness: ami down -> ok"]
    assert [r.levelno for r in caplog.records] == [logging.WARNING, logging.INFO]


# -- the endpoints on the controller -------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def started_app(data_dir: Path, **env: str) -> App:
    environ = {
        "IVR_DATA_DIR": str(data_dir),
        "IVR_FLOWS_DIR": str(ROOT / "dialplans"),
        "IVR_WEB_PORT": "0",
        "IVR_AGI_PORT": str(free_port()),
        "IVR_SPEECH_ENGINE": "off",
        "IVR_FLOWS_WATCH_INTERVAL": "60",
        **env,
    }
    app = App(load_config(environ=environ))
    await app.start()
    return app


@pytest.fixture
async def app(tmp_path: Path) -> AsyncIterator[App]:
    started = await started_app(tmp_path, IVR_WEB_METRICS_TOKEN=METRICS_TOKEN)
    try:
        yield started
    finally:
        await stop_bounded(started.stop)


def base(app: App) -> str:
    return f"http://127.0.0.1:{app.web.port}"


async def test_healthz_is_open_and_carries_the_security_headers(app: App) -> None:
    async with aiohttp.ClientSession() as http, http.get(base(app) + "/healthz") as r:
        assert r.status == 200 and await r.json() == {"ok": True}
        assert r.headers["Cache-Control"] == "no-store" and r.headers["X-Frame-Options"] == "DENY"


async def test_readyz_follows_the_agi_listener(app: App) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.get(base(app) + "/readyz") as r:
            assert r.status == 200
            assert await r.json() == {"ready": True, "checks": {"agi": "ok", "database": "ok"}, "role": "leader"}
        await app.agi.stop()  # calls can no longer connect: not ready, whatever else is fine
        await asyncio.sleep(0.6)  # past the cached run
        async with http.get(base(app) + "/readyz") as r:
            assert r.status == 503
            assert await r.json() == {"ready": False, "checks": {"agi": "down", "database": "ok"}, "role": "leader"}


async def test_metrics_need_their_token_and_parse(app: App) -> None:
    url = base(app) + "/metrics"
    async with aiohttp.ClientSession() as http:
        async with http.get(url) as r:
            assert r.status == 401 and r.headers["WWW-Authenticate"] == "Bearer"
        async with http.get(url, headers={"Authorization": "Bearer not-the-token"}) as r:
            assert r.status == 401
        api = {"Authorization": "Bearer " + METRICS_TOKEN}
        async with http.get(base(app) + "/api/customers/x/timeline", headers=api) as r:
            assert r.status == 503  # the metrics token is not the API's (and the API is off here)
        async with http.get(base(app) + "/no-such-page") as r:
            assert r.status == 404
        async with http.get(url, headers=api) as r:
            assert r.status == 200
            assert r.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
            text = await r.text()
    found = {
        f.name: {(s.name, tuple(sorted(s.labels.items()))): s.value for s in f.samples}
        for f in text_string_to_metric_families(text)
    }
    for name in (
        "ivr_agi_calls_active",
        "ivr_agi_calls",
        "ivr_agi_calls_failed",
        "ivr_agi_command_seconds",
        "ivr_journey_writer_queue",
        "ivr_journey_batch_seconds",
        "ivr_speech_decode_seconds",
        "ivr_ami_configured",
        "ivr_pubsub_outbox",
        "ivr_http_requests",
        "process_cpu_seconds",
    ):
        assert name in found, name
    http_counts = found["ivr_http_requests"]
    assert http_counts[("ivr_http_requests_total", (("code", "401"),))] == 2
    assert http_counts[("ivr_http_requests_total", (("code", "404"),))] == 1
    assert http_counts[("ivr_http_requests_total", (("code", "503"),))] == 1
    assert found["ivr_ami_configured"][("ivr_ami_configured", ())] == 0
    assert "ivr_ami_connected" not in found  # no AMI configured: no state to report


async def test_metrics_are_off_without_a_token(tmp_path: Path) -> None:
    app = await started_app(tmp_path)
    try:
        async with aiohttp.ClientSession() as http, http.get(base(app) + "/metrics") as r:
            assert r.status == 503
            assert "IVR_WEB_METRICS_TOKEN" in await r.text()
    finally:
        await stop_bounded(app.stop)
