"""A flow's funnel from real calls: SIPp callers -> Asterisk 22 -> ``ivr serve`` (with AMI) on SQLite
and on PostgreSQL, read back over the controller's own ``GET /api/funnel``: every count is the one
the scripted calls make.

Four callers on a three-option menu, each a known path: a wrong key then option 1 (a no-match,
then the hours and goodbye), option 2 into a PIN sub-flow typed ahead (the sub-flow's steps count
in its own funnel, not in the caller's), a hang-up during the menu (left at the menu), and option 0
to a queue nobody answers (transferred to the agents).
"""

from __future__ import annotations

import asyncio
import re
import shutil
import time
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from ivr.flow.model import Journey, Prompt
from ivr.store.journeys import JourneyStore, make_engine
from lab.asterisk import AsteriskLab
from lab.controller import ControllerProcess
from lab.prompts import build_flow_prompts
from lab.sipp import CallerScript, Dtmf, run_caller_async

REPO = Path(__file__).resolve().parents[2]
NUMBER = "5550155"
TOKEN = "funnel-calls-token"
MENU = "Which would you like today?"
SORRY = "Sorry, that is not a valid choice."
PIN = "Please enter your four digit PIN."
FLOW = f"""\
# Test line for the funnel: three options, one into a sub-flow, one to a queue nobody answers.
flow: funnel
numbers: ["{NUMBER}"]
start: main_menu
steps:
  main_menu:
    menu:
      prompt: {MENU}
      tries: 2
      timeout: 4
      options:
        hours:   {{dtmf: "1", say: "our opening hours", next: hours}}
        account: {{dtmf: "2", say: "your account", next: check}}
        agent:   {{dtmf: "0", say: "talking to someone", next: to_queue}}
      on_failure: goodbye
  hours:
    say: We are open every day.
    next: goodbye
  check:
    invoke: funnel_pin
    next: goodbye
  to_queue:
    queue: {{name: billing, skill: billing}}
  goodbye:
    hangup: Thank you for calling. Goodbye.
"""
SUB_FLOW = f"""\
flow: funnel_pin
start: ask_pin
steps:
  ask_pin:
    ask: {{prompt: {PIN}, slot: pin, digits: 4, secret: true, tries: 2, timeout: 4, on_failure: done}}
    next: done
  done:
    return: {{}}
"""
WRONG_THEN_HOURS, ACCOUNT, HUNG_UP, AGENT = "+15551238001", "+15551238002", "+15551238003", "+15551238004"


def ms(lab: AsteriskLab, text: str) -> int:
    with wave.open(str(lab.sounds_dir / f"{Prompt(text).audio_name()}.wav")) as w:
        return int(w.getnframes() * 1000 / w.getframerate())


@pytest.fixture
def flows_dir(lab: AsteriskLab, tmp_path: Path) -> Path:
    flows = tmp_path / "flows"
    shutil.copytree(REPO / "dialplans", flows)
    (flows / "funnel.yaml").write_text(FLOW)
    (flows / "funnel_pin.yaml").write_text(SUB_FLOW)
    build_flow_prompts(flows, lab.sounds_dir)  # raises on a flow that does not load
    return flows


@pytest.fixture
def serving(lab: AsteriskLab, flows_dir: Path, tmp_path: Path, database_url: str) -> Iterator[ControllerProcess]:
    proc = ControllerProcess(
        flows_dir=flows_dir,
        data_dir=tmp_path / "ivr",
        env={
            "IVR_DATABASE_URL": database_url,
            "IVR_AMI_SECRET": lab.ami_secret,
            "IVR_SPEECH_ENGINE": "off",
            "IVR_CALLBACKS_OFFER_AFTER": "-1",
            "IVR_API_TOKEN": TOKEN,
        },
    )
    proc.start(timeout=30)
    proc.wait_for_log("AMI connected")
    yield proc
    proc.stop()


async def finished(store: JourneyStore, caller: str, timeout: float = 30) -> Journey:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for j in await store.recent(50):
            if j.caller == caller and j.status != "active":
                return j
        await asyncio.sleep(0.2)
    raise AssertionError(f"no finished journey of {caller} within {timeout}s")


def step(entered: int, **counts: Any) -> dict[str, Any]:
    """A step's counts: ``entered`` journeys (each entered it once), the rest 0 unless given."""
    base: dict[str, Any] = {
        "entered": entered,
        "entered_times": entered,
        "options": {},
        "no_input": 0,
        "no_match": 0,
        "left": 0,
        "completed": 0,
        "failed": 0,
        "handed_off": 0,
        "transferred": 0,
    }
    return {**base, **counts}


async def test_real_calls_give_the_expected_funnel(
    lab: AsteriskLab, serving: ControllerProcess, database_url: str
) -> None:
    menu_key = ms(lab, MENU) + 700  # while the options are being read
    again = menu_key + ms(lab, SORRY) + 1500  # during the menu read again after "sorry"
    type_pin = menu_key + 1200  # type-ahead during the PIN prompt
    scripts = [
        CallerScript(caller_id=WRONG_THEN_HOURS, dialled=NUMBER, dtmf=(Dtmf("9", menu_key), Dtmf("1", again))),
        CallerScript(caller_id=ACCOUNT, dialled=NUMBER, dtmf=(Dtmf("2", menu_key), Dtmf("1234", type_pin))),
        CallerScript(caller_id=HUNG_UP, dialled=NUMBER, hangup_after_ms=ms(lab, MENU) // 2),
        CallerScript(caller_id=AGENT, dialled=NUMBER, dtmf=(Dtmf("0", menu_key),), hangup_after_ms=menu_key + 5000),
    ]
    for result in await asyncio.gather(*(run_caller_async(s, timeout=60) for s in scripts)):
        result.raise_for_failure()

    serving.wait_for_log("HTTP API listening on")
    port = re.search(r"HTTP API listening on http://127\.0\.0\.1:(\d+)/", serving.log_path.read_text())
    assert port is not None
    store = JourneyStore(make_engine(database_url))  # never started: reads only
    try:
        ended = {c: (await finished(store, c)).status for c in (WRONG_THEN_HOURS, ACCOUNT, HUNG_UP, AGENT)}
    finally:
        await store.engine.dispose()
    assert ended == {WRONG_THEN_HOURS: "completed", ACCOUNT: "completed", HUNG_UP: "abandoned", AGENT: "queued"}

    url = f"http://127.0.0.1:{port.group(1)}/api/funnel"
    auth = {"Authorization": f"Bearer {TOKEN}"}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
        async with http.get(url, params={"flow": "funnel", "window": "24h"}, headers=auth) as r:
            assert r.status == 200, await r.text()
            funnel = await r.json()
        async with http.get(url, params={"flow": "funnel_pin", "window": "24h"}, headers=auth) as r:
            pin = await r.json()

    third = 1 / 3
    assert funnel["journeys"] == 4
    assert funnel["steps"] == {
        "main_menu": step(
            4,
            options={
                "account": {"key": 1, "speech": 0, "text": 0, "share": third},
                "agent": {"key": 1, "speech": 0, "text": 0, "share": third},
                "hours": {"key": 1, "speech": 0, "text": 0, "share": third},
            },
            no_match=1,  # the 9
            no_input_rate=0.0,
            no_match_rate=0.25,  # of four inputs: three choices and the 9
            left=1,  # the hang-up during the menu
        ),
        "hours": step(1, no_input_rate=None, no_match_rate=None),
        "check": step(1, no_input_rate=None, no_match_rate=None),  # the invoke: its steps are funnel_pin's
        "goodbye": step(2, completed=2, no_input_rate=None, no_match_rate=None),
        "to_queue": step(1, transferred=1, no_input_rate=None, no_match_rate=None),
    }
    assert pin["journeys"] == 1
    assert pin["steps"] == {
        "ask_pin": step(1, no_input_rate=0.0, no_match_rate=0.0),
        "done": step(1, no_input_rate=None, no_match_rate=None),
    }
