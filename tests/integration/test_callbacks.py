"""A callback keeps its place, on real calls: caller B holds in "billing"; caller A, who called
after B, hears their position and wait, presses 1 and hangs up (a ticket keeps their place);
caller C calls after that and holds. When the agent becomes ready, B (ahead, still holding) is
answered first; when she is ready again, A is called back (AMI Originate to A's phone, a SIPp UAS),
joins the queue and reaches the agent with A's journey (the screen pop's context) although C was
already holding when the agent became free: the ticket is ahead of C. Only then is C answered.
The timeline records every step, and the KPIs say the callback kept its place.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from ivr.ami import events as ev
from ivr.ami.client import AmiClient, AmiError
from ivr.flow.model import (
    CALLBACK_OFFER_PROMPT,
    QUEUE_MINUTES_PROMPT,
    QUEUE_POSITION_PROMPT,
    QUEUE_WAIT_PROMPT,
    Prompt,
)
from ivr.kpis import ReportRequest
from ivr.store.journeys import make_engine
from ivr.store.kpis import KpiStore
from lab.agents import add_agent
from lab.asterisk import AsteriskLab
from lab.controller import ControllerProcess
from lab.sipp import CallerScript, Dtmf, SippResult, run_caller_async
from lab.softphone import Softphone

NUMBER = "5550189"
HOLDER = "+15551239102"
CALLBACK = "+15551239101"
LATER = "+15551239103"  # C: calls after the ticket was booked
FLOW = f"""\
flow: cbq
numbers: ["{NUMBER}"]
start: to_billing
steps:
  to_billing:
    queue: {{name: billing, skill: billing, priority: 5}}
"""


def ms(prompt_ms: dict[str, int], prompt: Prompt) -> int:
    return prompt_ms[prompt.audio_name().split("/", 1)[1]]


def journeys_of(db: Path, caller: str) -> list[str]:
    with sqlite3.connect(db, timeout=10) as conn:
        return [r[0] for r in conn.execute("SELECT id FROM journeys WHERE caller = ? ORDER BY started_at", (caller,))]


def kinds(db: Path, journey_id: str) -> list[str]:
    with sqlite3.connect(db, timeout=10) as conn:
        return [
            r[0] for r in conn.execute("SELECT kind FROM interactions WHERE journey_id = ? ORDER BY id", (journey_id,))
        ]


def tickets(db: Path) -> list[tuple[str, str, str | None]]:
    with sqlite3.connect(db, timeout=10) as conn:
        return list(conn.execute("SELECT phone, status, open_customer FROM callbacks ORDER BY ticket_at"))


async def wait_until(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


async def read_desktop(ws: aiohttp.ClientWebSocketResponse, into: list[dict[str, Any]]) -> None:
    """Read the agent's desktop socket for the whole test, as the browser does: a socket nobody
    reads never answers the server's heartbeat and is closed under a waiting test."""
    async for msg in ws:
        if msg.type == aiohttp.WSMsgType.TEXT:
            into.append(msg.json())


def queue_wrapup_s(lab: AsteriskLab) -> float:
    """app_queue's ``wrapuptime`` for our queues (queues.conf): no call for the agent until then."""
    found = re.search(r"^wrapuptime\s*=\s*(\d+)", (lab.config_dir / "queues.conf").read_text(), re.MULTILINE)
    assert found, "queues.conf sets wrapuptime"
    return float(found.group(1))


def statuses(desktop: list[dict[str, Any]]) -> list[str]:
    """The agent's statuses as the desktop heard them, in order."""
    return [str(m["agent"]["status"]) for m in desktop if m.get("type") == "state"]


def connects(seen: list[ev.AmiEvent]) -> list[str]:
    """Caller ids in the order the agent was connected to them."""
    return [e.caller.callerid for e in seen if isinstance(e, ev.AgentConnect)]


async def callback_kpis(db: Path) -> tuple[int, int, int, float | None]:
    """(booked, dialled, kept their place, kept share) today, read as ``ivr report`` reads them."""
    engine = make_engine(f"sqlite+aiosqlite:///{db}")
    try:
        now = time.time()
        start, end = (time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t)) for t in (now - 3600, now + 3600))
        deadline = time.monotonic() + 10
        while True:  # the journey writer commits in batches
            (row,) = await KpiStore(engine).report(ReportRequest.parse(start, end, by="flow"))
            found = row.figures
            if found.callbacks_dialled or time.monotonic() > deadline:
                return found.callbacks_booked, found.callbacks_dialled, found.callbacks_kept, found.callbacks_kept_share
            await asyncio.sleep(0.2)
    finally:
        await engine.dispose()


@pytest.fixture
async def setup(lab: AsteriskLab, tmp_path: Path) -> AsyncIterator[tuple[ControllerProcess, Softphone, Softphone]]:
    lab.restart()  # fresh queues and device states (we hold the lab lock); see test_desktop.py
    flows = tmp_path / "flows"
    flows.mkdir()
    (flows / "cbq.yaml").write_text(FLOW)
    data = tmp_path / "ivr"
    data.mkdir()
    add_agent(data, "ann", "agent1001", ["billing"], "ann-password-1")  # set-up, before any call
    # the customer picks up after a few seconds, as people do: longer than app_queue's retry (2 s),
    # so a caller holding in the queue is offered a free agent before a callback could join
    customer_phone = Softphone("customer", ring_ms=4000, register=False)
    agent_phone = Softphone("agent1001", lab.agent_passwords["agent1001"], ring_ms=1000)
    proc = ControllerProcess(
        flows_dir=flows,
        data_dir=data,
        env={
            "IVR_FLOWS_DEFAULT": "cbq",
            "IVR_AMI_SECRET": lab.ami_secret,
            "IVR_SPEECH_ENGINE": "off",
            "IVR_CALLBACKS_OFFER_AFTER": "0",
            # the lab has no carrier: the trunk endpoint dials the customer's SIPp directly
            "IVR_CALLBACKS_DIAL": f"PJSIP/trunk/sip:{{number}}@127.0.0.1:{customer_phone.port}",
        },
    )
    async with customer_phone, agent_phone:
        proc.start(timeout=30)
        proc.wait_for_log("AMI connected")
        try:
            yield proc, customer_phone, agent_phone
        finally:
            proc.stop()
            await asyncio.to_thread(lab.restart)  # the agent's queue membership must not outlive the test


async def test_a_callback_is_answered_after_the_callers_before_it_and_before_those_after_it(
    lab: AsteriskLab, setup: tuple[ControllerProcess, Softphone, Softphone], prompt_ms: dict[str, int]
) -> None:
    controller, customer_phone, _agent_phone = setup

    port = int(re.findall(r"listening on http://127\.0\.0\.1:(\d+)/", controller.log_path.read_text())[0])
    base = f"http://127.0.0.1:{port}"
    watch = AmiClient(username=lab.ami_username, secret=lab.ami_secret, events=True)
    seen: list[ev.AmiEvent] = []

    async def keep(event: ev.AmiEvent) -> None:
        caller = getattr(event, "caller", None)
        if caller is not None and caller.callerid in (HOLDER, CALLBACK, LATER):  # ours only, not a neighbour's
            seen.append(event)

    def joined(callerid: str) -> bool:
        return any(isinstance(e, ev.QueueCallerJoin) and e.caller.callerid == callerid for e in seen)

    watch.on_event(keep)
    await watch.connect()
    desktop: list[dict[str, Any]] = []
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as web:
        page = await (await web.get(f"{base}/desktop/login")).text()
        csrf_form = re.search(r'name="csrf" value="([^"]+)"', page)
        assert csrf_form
        await web.post(
            f"{base}/desktop/login",
            data={"username": "ann", "password": "ann-password-1", "csrf": csrf_form.group(1)},
        )
        csrf = (await (await web.get(f"{base}/desktop/api/me")).json())["csrf"]
        ws = await web.ws_connect(f"{base}/desktop/ws?csrf={csrf}", headers={"Origin": base})
        reader = asyncio.create_task(read_desktop(ws, desktop), name="desktop-reader")
        later: asyncio.Task[SippResult] | None = None
        try:
            # ann is logged in but paused: nobody can answer yet
            announce = sum(ms(prompt_ms, p) for p in (QUEUE_POSITION_PROMPT, QUEUE_WAIT_PROMPT, QUEUE_MINUTES_PROMPT))
            press_from = announce + 1200  # after the two numbers, into the offer prompt: a key until it is taken
            # B and C answer the offer with 2, "keep holding": they join the queue then, not after
            # the offer's 5 s without an answer (which ends the same way: holding, no ticket)
            keep_holding = Dtmf("2222", press_from, spacing_ms=900)
            holder = asyncio.create_task(
                run_caller_async(
                    CallerScript(caller_id=HOLDER, dialled=NUMBER, dtmf=(keep_holding,), hangup_after_ms=40000),
                    timeout=70,
                )
            )
            await wait_until(lambda: joined(HOLDER), 30, "B holding")
            booked = await run_caller_async(
                CallerScript(
                    caller_id=CALLBACK,
                    dialled=NUMBER,
                    dtmf=(Dtmf("1111", press_from, spacing_ms=900),),
                    max_call_ms=press_from + ms(prompt_ms, CALLBACK_OFFER_PROMPT) + 20000,
                ),
                timeout=60,
            )
            booked.raise_for_failure()
            assert booked.who_hung_up == "ivr"  # "we will call you back ... Goodbye"
            db = controller.db_path
            await wait_until(lambda: [t[:2] for t in tickets(db)] == [(CALLBACK, "waiting")], 10, "the ticket")
            assert tickets(db)[0][2] is not None  # open: held by the caller's customer, who cannot book a second
            assert not joined(CALLBACK)

            # C calls after the ticket was booked and holds (2: no callback) until answered
            later = asyncio.create_task(
                run_caller_async(
                    CallerScript(caller_id=LATER, dialled=NUMBER, dtmf=(keep_holding,), max_call_ms=150000), timeout=180
                )
            )
            await ws.send_json({"type": "ready"})  # B is ahead of the ticket and of C: B first
            await wait_until(lambda: len(connects(seen)) == 1, 30, "B connected")
            assert connects(seen) == [HOLDER]
            await wait_until(lambda: joined(LATER), 40, "C holding")
            assert customer_phone.invites() == 0  # nobody dialled A while B was ahead
            # B's call ends as soon as the story has used it (B's own hang-up timer is only the
            # ceiling of how long B holds: on a slow machine it may have ended already); ann goes
            # to wrap-up
            first = next(e for e in seen if isinstance(e, ev.AgentConnect))
            with contextlib.suppress(AmiError):  # "No such channel": B hung up first
                await watch.action({"Action": "Hangup", "Channel": first.agent_channel.name})
            (await holder).raise_for_failure()
            # she writes her notes for longer than app_queue's own wrap-up: once she says ready,
            # app_queue may offer her to C at once (autofill), before A's phone has even rung
            await asyncio.sleep(queue_wrapup_s(lab) + 1.0)
            assert customer_phone.invites() == 0  # ann in wrap-up, then not ready: no callback yet
            assert connects(seen) == [HOLDER]

            # ann is free while C holds: the ticket is ahead of C, so A is called back and answered
            await ws.send_json({"type": "ready"})
            await wait_until(lambda: len(connects(seen)) == 2, 30, "the second caller connected")
            assert connects(seen) == [HOLDER, CALLBACK], "C took the agent the callback was due"
            assert customer_phone.invites() == 1
            second = [e for e in seen if isinstance(e, ev.AgentConnect)][1]
            (journey_a,) = journeys_of(db, CALLBACK)
            assert second.caller.journey_id == journey_a  # the agent gets A's journey: same context
            assert second.caller.variables.get("IVR_CALLBACK_ID")
            heard = len(desktop)
            await watch.action({"Action": "Hangup", "Channel": second.agent_channel.name})
            await wait_until(lambda: "callback_connected" in kinds(db, journey_a), 10, "callback_connected recorded")
            story = kinds(db, journey_a)
            assert story.index("queue_announced") < story.index("callback_requested") < story.index("callback_dialled")
            assert tickets(db)[0][1:] == ("done", None)  # closed: the customer may book again

            # then C, still holding, gets the next free agent
            await wait_until(lambda: "wrap_up" in statuses(desktop[heard:]), 10, "ann in wrap-up after A")
            await ws.send_json({"type": "ready"})
            await wait_until(lambda: len(connects(seen)) == 3, 30, "C connected")
            assert connects(seen) == [HOLDER, CALLBACK, LATER]
            third = [e for e in seen if isinstance(e, ev.AgentConnect)][2]
            await watch.action({"Action": "Hangup", "Channel": third.agent_channel.name})
            (await later).raise_for_failure()
            assert customer_phone.invites() == 1  # one callback, dialled once
            # the KPIs agree: C joined billing after the booking and was answered after A's dial
            assert await callback_kpis(db) == (1, 1, 1, 1.0)
        finally:
            if later is not None and not later.done():
                later.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await later
            await ws.close()
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
    await watch.stop()
