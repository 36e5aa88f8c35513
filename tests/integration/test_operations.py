"""What operators poll, against ``ivr serve`` on the real lab.

* ``/metrics`` after real calls (SIPp -> Asterisk 22 -> FastAGI): Prometheus's own parser reads
  it, and the counters show those calls, their AGI round trips and the journey writer's commits.
* ``/readyz`` with the real dependencies taken away and brought back: PostgreSQL halted (its
  data kept) and resumed, Asterisk stopped and started (AMI gone, then reconnected).
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from lab.asterisk import AsteriskLab
from lab.controller import ControllerProcess
from lab.postgres import PostgresServer
from lab.prompts import prompt_ms as ms
from lab.require import require
from lab.sipp import CallerScript, Dtmf, run_caller_async
from tests.integration.test_voice_ivr import GREETING, OUTAGE, by_caller

REPO = Path(__file__).resolve().parents[2]
DIALPLANS = REPO / "dialplans"
TOKEN = "metrics-token-" + "m" * 24


def web_port(controller: ControllerProcess) -> int:
    controller.wait_for_log("HTTP API listening on")
    match = re.search(r"HTTP API listening on http://127\.0\.0\.1:(\d+)/", controller.log_path.read_text())
    assert match, controller.log_tail()
    return int(match.group(1))


def get(url: str, token: str | None = None) -> tuple[int, str]:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=5) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def metrics(base: str) -> dict[str, dict[str, float]]:
    """family -> {sample name with its labels: value}, read with Prometheus's parser."""
    status, text = get(base + "/metrics", TOKEN)
    assert status == 200, text
    found: dict[str, dict[str, float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            found.setdefault(family.name, {})[f"{sample.name}{{{labels}}}"] = sample.value
    return found


def readiness(base: str) -> tuple[int, dict[str, Any]]:
    status, text = get(base + "/readyz")
    return status, json.loads(text)


def wait_readiness(base: str, status: int, timeout: float, **checks: str) -> dict[str, Any]:
    """Poll /readyz every 0.2 s until it answers ``status`` with these check states."""
    deadline = time.monotonic() + timeout
    last: tuple[int, dict[str, Any]] = (0, {})
    while time.monotonic() < deadline:
        last = readiness(base)
        if last[0] == status and all(last[1]["checks"].get(k) == v for k, v in checks.items()):
            return last[1]
        time.sleep(0.2)
    raise AssertionError(f"/readyz never answered {status} with {checks}; last {last}")


@pytest.fixture
def controller(lab: AsteriskLab, tmp_path: Path) -> Iterator[ControllerProcess]:
    proc = ControllerProcess(
        flows_dir=DIALPLANS,
        data_dir=tmp_path / "ivr",
        env={"IVR_SPEECH_ENGINE": "off", "IVR_WEB_METRICS_TOKEN": TOKEN},  # menus on keys: no model to load
    )
    try:
        proc.start(timeout=60)
        yield proc
    finally:
        proc.stop()  # also when it did not come up in time: never leave it holding the AGI port


def test_metrics_parse_and_count_real_calls(controller: ControllerProcess, prompt_ms: dict[str, int]) -> None:
    base = f"http://127.0.0.1:{web_port(controller)}"
    before = metrics(base)
    assert before["ivr_agi_calls"]["ivr_agi_calls_total{}"] == 0
    assert before["ivr_agi_command_seconds"]["ivr_agi_command_seconds_count{}"] == 0

    # the support flow's two menus answered "2", "2" (as in test_voice_ivr.py): the call completes
    first = ms(prompt_ms, GREETING) + 800
    second = first + ms(prompt_ms, OUTAGE) + 1200

    async def calls() -> None:
        scripts = [
            CallerScript(
                caller_id=f"+1555123{n:04d}",
                dtmf=(Dtmf("2", first), Dtmf("2", second)),
                max_call_ms=40000,
            )
            for n in (7001, 7002)
        ]
        for result in await asyncio.gather(*(run_caller_async(s) for s in scripts)):
            result.raise_for_failure()

    asyncio.run(calls())
    for caller in ("+15551237001", "+15551237002"):
        by_caller(controller, caller, status="completed")
    after = metrics(base)
    assert after["ivr_agi_calls"]["ivr_agi_calls_total{}"] == 2
    assert after["ivr_agi_calls_failed"]["ivr_agi_calls_failed_total{}"] == 0
    assert after["ivr_agi_calls_active"]["ivr_agi_calls_active{}"] == 0
    commands = after["ivr_agi_command_seconds"]
    assert commands["ivr_agi_command_seconds_count{}"] >= 10  # answer, menus, variables: per call
    assert commands["ivr_agi_command_seconds_bucket{le=+Inf}"] == commands["ivr_agi_command_seconds_count{}"]
    assert after["ivr_journey_batch_seconds"]["ivr_journey_batch_seconds_count{}"] >= 1
    assert after["ivr_journey_commits"]["ivr_journey_commits_total{}"] >= 1
    assert after["ivr_journey_writer_queue"]["ivr_journey_writer_queue{}"] == 0
    assert after["ivr_http_requests"]["ivr_http_requests_total{code=200}"] >= 1  # the first scrape
    # where a call's time goes: each probe heard these two calls (two new callers: two creations)
    assert after["ivr_agi_first_command_seconds"]["ivr_agi_first_command_seconds_count{}"] == 2
    assert after["ivr_caller_lookup_seconds"]["ivr_caller_lookup_seconds_count{}"] == 2
    assert after["ivr_customer_create_seconds"]["ivr_customer_create_seconds_count{}"] == 2
    assert after["ivr_agi_control_command_seconds"]["ivr_agi_control_command_seconds_count{}"] >= 2  # GET VARIABLE
    assert after["ivr_flow_step_seconds"]["ivr_flow_step_seconds_count{}"] >= 6  # start, two menus, ... per call
    assert after["ivr_event_loop_lag_seconds"]["ivr_event_loop_lag_seconds_count{}"] >= 10  # a wake-up every 50 ms
    # no caller's number anywhere in what operators scrape
    _, text = get(base + "/metrics", TOKEN)
    assert "5551237001" not in text and "5551237002" not in text


def test_readyz_follows_the_database_and_ami(lab: AsteriskLab, tmp_path: Path) -> None:
    require("postgresql")
    with PostgresServer() as pg:
        url = pg.create_database("ops_ready")
        proc = ControllerProcess(
            flows_dir=DIALPLANS,
            data_dir=tmp_path / "ivr",
            env={
                "IVR_DATABASE_URL": url,
                "IVR_AMI_SECRET": lab.ami_secret,
                "IVR_SPEECH_ENGINE": "off",
                "IVR_WEB_METRICS_TOKEN": TOKEN,
            },
        )
        try:
            proc.start(timeout=60)
            base = f"http://127.0.0.1:{web_port(proc)}"
            wait_readiness(base, 200, 20, agi="ok", database="ok", ami="ok")

            pg.halt()
            down = wait_readiness(base, 503, 10, agi="ok", ami="ok")
            assert down["checks"]["database"] in ("unreachable", "timeout") and down["ready"] is False
            assert get(base + "/healthz")[0] == 200  # the process is up: only readiness says no
            pg.resume()
            wait_readiness(base, 200, 20, agi="ok", database="ok", ami="ok")

            lab.stop()
            wait_readiness(base, 503, 10, agi="ok", database="ok", ami="down")
            assert metrics(base)["ivr_ami_connected"]["ivr_ami_connected{}"] == 0
            lab.start()
            wait_readiness(base, 200, 40, agi="ok", database="ok", ami="ok")
            assert metrics(base)["ivr_ami_connected"]["ivr_ami_connected{}"] == 1
        finally:
            proc.stop()
            if not lab.is_running():
                lab.start()  # the rest of the session needs its Asterisk
