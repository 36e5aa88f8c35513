"""A callback keeps its place, on real calls: caller B holds in "billing"; caller A, who called
after B, hears their position and wait, presses 1 and hangs up (a ticket keeps their place).
When the agent becomes ready, B (ahead, still holding) is answered first; only after that is A
called back (AMI Originate to A's phone, a SIPp UAS), joins the queue and reaches the agent with
A's journey (the screen pop's context). The timeline records every step.
"""

from __future__ import annotations

import asyncio
import re
import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from ivr.ami import events as ev
from ivr.ami.client import AmiClient
from ivr.flow.model import (
    CALLBACK_OFFER_PROMPT,
    QUEUE_MINUTES_PROMPT,
    QUEUE_POSITION_PROMPT,
    QUEUE_WAIT_PROMPT,
    Prompt,
)
from lab.agents import add_agent
from lab.asterisk import AsteriskLab
from lab.controller import ControllerProcess
from lab.sipp import CallerScript, Dtmf, run_caller_async
from lab.softphone import Softphone

NUMBER = "5550189"
HOLDER = "+15551239102"
CALLBACK = "+15551239101"
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


@pytest.fixture
async def setup(lab: AsteriskLab, tmp_path: Path) -> AsyncIterator[tuple[ControllerProcess, Softphone, Softphone]]:
    lab.restart()  # fresh queues and device states (we hold the lab lock); see test_desktop.py
    flows = tmp_path / "flows"
    flows.mkdir()
    (flows / "cbq.yaml").write_text(FLOW)
    data = tmp_path / "ivr"
    data.mkdir()
    add_agent(data, "ann", "agent1001", ["billing"], "ann-password-1")  # set-up, before any call
    customer_phone = Softphone("customer", ring_ms=500, register=False)
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


async def test_a_callback_never_jumps_a_caller_who_held_and_then_gets_its_turn(
    lab: AsteriskLab, setup: tuple[ControllerProcess, Softphone, Softphone], prompt_ms: dict[str, int]
) -> None:
    controller, customer_phone, _agent_phone = setup

    port = int(re.findall(r"listening on http://127\.0\.0\.1:(\d+)/", controller.log_path.read_text())[0])
    base = f"http://127.0.0.1:{port}"
    watch = AmiClient(username=lab.ami_username, secret=lab.ami_secret, events=True)
    seen: list[ev.AmiEvent] = []

    async def keep(event: ev.AmiEvent) -> None:
        caller = getattr(event, "caller", None)
        if caller is not None and caller.callerid in (HOLDER, CALLBACK):  # ours only, not a neighbour's
            seen.append(event)

    watch.on_event(keep)
    await watch.connect()
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
        # ann is logged in but paused: nobody can answer yet

        announce = sum(ms(prompt_ms, p) for p in (QUEUE_POSITION_PROMPT, QUEUE_WAIT_PROMPT, QUEUE_MINUTES_PROMPT))
        holder = asyncio.create_task(
            run_caller_async(CallerScript(caller_id=HOLDER, dialled=NUMBER, hangup_after_ms=40000), timeout=70)
        )
        await wait_until(
            lambda: any(isinstance(e, ev.QueueCallerJoin) and e.caller.callerid == HOLDER for e in seen),
            30,
            "B holding",
        )
        press_from = announce + 1200  # after the two numbers, into the offer prompt: "1" until it is taken
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
        assert not any(isinstance(e, ev.QueueCallerJoin) and e.caller.callerid == CALLBACK for e in seen)

        await ws.send_json({"type": "ready"})  # B is ahead of the ticket: B first
        await wait_until(lambda: any(isinstance(e, ev.AgentConnect) for e in seen), 30, "B connected")
        first = next(e for e in seen if isinstance(e, ev.AgentConnect))
        assert first.caller.callerid == HOLDER
        assert customer_phone.invites() == 0  # nobody dialled A while B was ahead
        (await holder).raise_for_failure()  # B hangs up; ann goes to wrap-up
        await asyncio.sleep(1.0)
        assert customer_phone.invites() == 0  # ann in wrap-up: not ready, no callback yet
        await ws.send_json({"type": "ready"})
        await wait_until(lambda: customer_phone.invites() == 1, 20, "the callback to A's phone")
        await wait_until(
            lambda: sum(1 for e in seen if isinstance(e, ev.AgentConnect)) == 2, 30, "A connected to the agent"
        )
        second = [e for e in seen if isinstance(e, ev.AgentConnect)][1]
        (journey_a,) = journeys_of(db, CALLBACK)
        assert second.caller.journey_id == journey_a  # the agent gets A's journey: same context
        assert second.caller.variables.get("IVR_CALLBACK_ID")
        await watch.action({"Action": "Hangup", "Channel": second.agent_channel.name})
        await wait_until(lambda: "callback_connected" in kinds(db, journey_a), 10, "callback_connected recorded")
        story = kinds(db, journey_a)
        assert story.index("queue_announced") < story.index("callback_requested") < story.index("callback_dialled")
        assert tickets(db)[0][1:] == ("done", None)  # closed: the customer may book again
        await ws.close()
    await watch.stop()
