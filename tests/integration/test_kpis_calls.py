"""KPIs from real calls: SIPp callers -> Asterisk 22 -> ``ivr serve`` (with AMI) on SQLite and on
PostgreSQL, read back over the controller's own ``GET /api/kpis``.

Four callers on a two-option menu, each a known case: a wrong key then option 1 (contained,
completed, one no-match), option 1 at once (contained, completed), a hang-up during the menu
(contained, abandoned), and option 2 to the billing queue where no agent is logged in, hanging up
there after a few seconds (offered and abandoned: app_queue's QueueCallerAbandon, over AMI). Then
an agent signs in to the desktop (aiohttp, the browser's requests), says ready, and a fifth caller
keys option 2: her registered SIPp softphone rings, answers, and the caller hangs up a few seconds
later (handled: AMI AgentConnect and AgentComplete). The wait and the handle time the report gives
are checked against what the test itself saw of that call on AMI. The holdout is half the callers:
which half is the stable hash of each new customer, so the test reads the customer ids and checks
the journey and the split report say the same.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import re
import shutil
import time
import wave
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from ivr.ami import events as ev
from ivr.ami.client import AmiClient
from ivr.flow.model import Journey, Prompt
from ivr.flow.personalize import in_holdout
from ivr.store.journeys import JourneyStore, make_engine
from lab.agents import add_agent
from lab.asterisk import AsteriskLab
from lab.controller import ControllerProcess
from lab.prompts import build_flow_prompts
from lab.sipp import CallerScript, Dtmf, run_caller_async
from lab.softphone import Softphone

REPO = Path(__file__).resolve().parents[2]
NUMBER = "5550166"
TOKEN = "kpi-calls-token"
MENU = "Which would you like to hear about today?"
SORRY = "Sorry, that is not a valid choice."
FLOW = f"""\
# Test line for the KPIs: two options, one of them a queue nobody answers.
flow: kpis
numbers: ["{NUMBER}"]
start: main_menu
steps:
  main_menu:
    menu:
      prompt: {MENU}
      personalize: true
      tries: 2
      timeout: 4
      options:
        hours: {{dtmf: "1", say: "our opening hours", next: goodbye}}
        agent: {{dtmf: "2", say: "talking to someone", next: to_queue}}
      on_failure: goodbye
  to_queue:
    queue: {{name: billing, skill: billing}}
  goodbye:
    hangup: Thank you for calling. Goodbye.
"""
WRONG_THEN_RIGHT, AT_ONCE, HUNG_UP, QUEUED = "+15551237001", "+15551237002", "+15551237003", "+15551237004"
ANSWERED = "+15551237005"  # queued while an agent is ready: her phone rings, she answers
CALLERS = (WRONG_THEN_RIGHT, AT_ONCE, HUNG_UP, QUEUED, ANSWERED)
RING_MS, TALK_MS = 2000, 3000


def ms(lab: AsteriskLab, text: str) -> int:
    """How long a prompt of this test's flow plays (rendered by ``flows_dir``, after the session's
    ``prompt_ms`` was measured)."""
    with wave.open(str(lab.sounds_dir / f"{Prompt(text).audio_name()}.wav")) as w:
        return int(w.getnframes() * 1000 / w.getframerate())


@pytest.fixture
def flows_dir(lab: AsteriskLab, tmp_path: Path) -> Path:
    flows = tmp_path / "flows"
    shutil.copytree(REPO / "dialplans", flows)
    (flows / "kpis.yaml").write_text(FLOW)
    build_flow_prompts(flows, lab.sounds_dir)  # raises on a flow that does not load
    return flows


@pytest.fixture
def serving(
    lab: AsteriskLab, flows_dir: Path, tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[ControllerProcess]:
    data = tmp_path / "ivr"
    data.mkdir()
    with monkeypatch.context() as env:  # `ivr agents add` into the database the controller uses
        env.setenv("IVR_DATABASE_URL", database_url)
        add_agent(data, "ann", "agent1001", ["billing"], "ann-password-1", name="Ann Agent")
    proc = ControllerProcess(
        flows_dir=flows_dir,
        data_dir=data,
        env={
            "IVR_DATABASE_URL": database_url,
            "IVR_AMI_SECRET": lab.ami_secret,
            "IVR_SPEECH_ENGINE": "off",
            "IVR_CALLBACKS_OFFER_AFTER": "-1",
            "IVR_PERSONALIZE_HOLDOUT": "0.5",
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


async def logged(store: JourneyStore, journey: Journey, kind: str, timeout: float = 15) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found: list[dict[str, Any]] = [e["data"] for e in await store.interactions(journey.id) if e["kind"] == kind]
        if found:
            return found[0]
        await asyncio.sleep(0.2)
    raise AssertionError(f"no {kind} on journey {journey.id} within {timeout}s")


async def test_real_calls_give_the_expected_kpis(
    lab: AsteriskLab, serving: ControllerProcess, database_url: str
) -> None:
    menu_key = ms(lab, MENU) + 700  # while the options are being read
    again = menu_key + ms(lab, SORRY) + 1500  # during the menu read again after "sorry"
    in_queue_ms = 6000
    began = time.time()
    scripts = [
        CallerScript(caller_id=WRONG_THEN_RIGHT, dialled=NUMBER, dtmf=(Dtmf("9", menu_key), Dtmf("1", again))),
        CallerScript(caller_id=AT_ONCE, dialled=NUMBER, dtmf=(Dtmf("1", menu_key),)),
        CallerScript(caller_id=HUNG_UP, dialled=NUMBER, hangup_after_ms=ms(lab, MENU) // 2),
        CallerScript(
            caller_id=QUEUED, dialled=NUMBER, dtmf=(Dtmf("2", menu_key),), hangup_after_ms=menu_key + in_queue_ms
        ),
    ]
    for result in await asyncio.gather(*(run_caller_async(s, timeout=60) for s in scripts)):
        result.raise_for_failure()

    serving.wait_for_log("HTTP API listening on")
    port = re.search(r"HTTP API listening on http://127\.0\.0\.1:(\d+)/", serving.log_path.read_text())
    assert port is not None
    base = f"http://127.0.0.1:{port.group(1)}"
    seen = await answered_call(lab, base, menu_key)
    # what the test saw of the answered call on AMI: from joining app_queue to the agent's answer
    # (her phone rang RING_MS), and from the answer to the end of the conversation
    measured_wait = seen["AgentConnect"] - seen["QueueCallerJoin"]
    measured_handle = seen["AgentComplete"] - seen["AgentConnect"]
    assert measured_wait >= RING_MS / 1000 - 0.5 and measured_handle >= TALK_MS / 1000 - 1.0

    store = JourneyStore(make_engine(database_url))  # never started: reads only
    try:
        journeys = {c: await finished(store, c) for c in CALLERS}
        assert [journeys[c].status for c in CALLERS] == ["completed", "completed", "abandoned", "queued", "queued"]
        completed = await logged(store, journeys[ANSWERED], "agent_completed")  # from AMI
        assert completed["queue"] == "billing"
        abandon = await logged(store, journeys[QUEUED], "queue_abandoned")  # from AMI
        assert abandon["queue"] == "billing"
        # the holdout: half the customers by their hash, the same on the journey
        held = {c: in_holdout(str(j.customer_id), "kpis", 0.5) for c, j in journeys.items()}
        for caller, journey in journeys.items():
            assert journey.personalization["main_menu"]["holdout"] is held[caller]
    finally:
        await store.engine.dispose()

    url = f"{base}/api/kpis"
    window = {"from": _iso(began - 60), "to": _iso(time.time() + 60)}
    auth = {"Authorization": f"Bearer {TOKEN}"}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
        async with http.get(url, params={**window, "by": "flow"}, headers=auth) as r:
            assert r.status == 200, await r.text()
            (row,) = (await r.json())["rows"]
        async with http.get(url, params={**window, "by": "flow", "holdout": "1"}, headers=auth) as r:
            split = {x["holdout"]: x for x in (await r.json())["rows"]}
        async with http.get(url, params={**window, "by": "queue"}, headers=auth) as r:
            by_queue = {x["queue"]: x for x in (await r.json())["rows"]}
        async with http.get(url, params={**window, "by": "agent"}, headers=auth) as r:
            by_agent = {x["agent"]: x["handled"] for x in (await r.json())["rows"]}

    assert {k: row[k] for k in ("flow", "contacts", "offered", "handled", "abandoned", "contained")} == {
        "flow": "kpis",
        "contacts": 5,
        "offered": 2,
        "handled": 1,
        "abandoned": 1,
        "contained": 3,
    }
    assert row["containment"] == 0.6 and row["contained_by_outcome"] == {"abandoned": 1, "completed": 2}
    # the wait: from the queue step to the agent's answer, so app_queue's own hold and the moment
    # between the step and the join (no announcement: an agent was free)
    assert measured_wait - 0.5 <= row["avg_wait_s"] <= measured_wait + 1.5, (row["avg_wait_s"], measured_wait)
    assert row["p90_wait_s"] == math.floor(row["avg_wait_s"])
    assert abs(row["avg_handle_s"] - measured_handle) <= 1.0, (row["avg_handle_s"], measured_handle)
    assert row["service_level"] == 0.5  # answered within 20 s, of two offered
    assert sorted(by_agent.values()) == [0, 1] and by_agent["-"] == 0  # ann's one call
    # four choices (two of option 1, spoken first to new customers; two of option 2), one wrong key
    assert (row["choices"], row["first_option_share"], row["no_match"], row["no_input"]) == (4, 0.5, 1, 0)
    # time to abandon: from the queue step (the wait announcement included) to app_queue's
    # abandon, so at least the time app_queue itself held the caller, and at most the caller's
    # whole stay after pressing 2
    assert abandon["hold_time"] - 1.0 <= row["avg_abandon_s"] <= in_queue_ms / 1000 + 1.0
    assert row["avg_time_to_choice_s"] > 0
    billing = by_queue["billing"]
    assert (billing["offered"], billing["handled"], billing["abandoned"], by_queue["-"]["contacts"]) == (2, 1, 1, 3)

    expected_groups = {"holdout" if h else "personalized" for h in held.values()}
    assert set(split) == expected_groups
    for group in expected_groups:
        callers = [c for c, h in held.items() if ("holdout" if h else "personalized") == group]
        assert split[group]["contacts"] == len(callers)
        assert split[group]["abandoned"] == int(QUEUED in callers)
        assert split[group]["handled"] == int(ANSWERED in callers)
        assert split[group]["no_match"] == int(WRONG_THEN_RIGHT in callers)


async def answered_call(lab: AsteriskLab, base: str, menu_key: int) -> dict[str, float]:
    """Ann signs in at the desktop (paused), says ready; ANSWERED keys option 2 and joins billing;
    her SIPp softphone rings RING_MS, answers, and the caller hangs up TALK_MS later. Returns when
    the test saw each AMI event of that call (``time.time()``); she signs out at the end, so her
    queue membership does not outlive the test."""
    seen: dict[str, float] = {}

    async def keep(event: ev.AmiEvent) -> None:
        caller = getattr(event, "caller", None)
        if caller is not None and caller.callerid == ANSWERED:  # ours only, not a neighbour's
            seen.setdefault(type(event).__name__, time.time())

    watch = AmiClient(username=lab.ami_username, secret=lab.ami_secret, events=True)
    watch.on_event(keep)
    await watch.connect()
    states: list[str] = []
    phone = Softphone("agent1001", lab.agent_passwords["agent1001"], ring_ms=RING_MS)
    async with phone, aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as web:
        page = await (await web.get(f"{base}/desktop/login")).text()
        form = re.search(r'name="csrf" value="([^"]+)"', page)
        assert form
        await web.post(f"{base}/desktop/login", data={"username": "ann", "password": "ann-password-1", "csrf": form[1]})
        csrf = (await (await web.get(f"{base}/desktop/api/me")).json())["csrf"]
        ws = await web.ws_connect(f"{base}/desktop/ws?csrf={csrf}", headers={"Origin": base})

        async def read() -> None:  # as the browser does: a socket nobody reads is closed
            async for msg in ws:
                if msg.type == aiohttp.WSMsgType.TEXT and msg.json().get("type") == "state":
                    states.append(str(msg.json()["agent"]["status"]))

        reader = asyncio.create_task(read(), name="desktop-reader")
        try:
            await ws.send_json({"type": "ready"})
            await until(lambda: "ready" in states, 10, "ann ready")
            call = await run_caller_async(
                CallerScript(
                    caller_id=ANSWERED,
                    dialled=NUMBER,
                    dtmf=(Dtmf("2", menu_key),),
                    hangup_after_ms=menu_key + 2000 + RING_MS + TALK_MS,
                ),
                timeout=60,
            )
            call.raise_for_failure()
            try:
                await until(lambda: "AgentComplete" in seen, 10, "the agent's call completed")
            except AssertionError as exc:  # say how far the call got: queued, rang, connected ...
                raise AssertionError(f"{exc}; the call's AMI events (first seen at): {seen}") from None
            assert phone.invites() == 1  # her phone rang once: this call
            await web.post(f"{base}/desktop/api/logout", headers={"X-CSRF-Token": csrf, "Origin": base})
        finally:
            await ws.close()
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
            await watch.stop()
    return seen


async def until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.1)


def _iso(at: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(at))
