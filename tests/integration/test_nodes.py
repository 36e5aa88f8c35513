"""Two controller nodes, one contact center, on real parts: two ``ivr serve`` processes sharing a
PostgreSQL and a Redis, one lab Asterisk. Node A takes the ACD lease (it drives AMI), node B
follows. The agent's desktop is on B: her login goes to A's ACD over Redis, and her state comes
back the same way. Caller H holds in "billing"; caller K, after H, presses 1 for a callback (booked
through A). Then A is killed with SIGKILL, as in a crash. B must take the lease over within
seconds of the kill, connect to AMI, rebuild the queue from Asterisk and log the agent in again
(paused); when she says ready she gets H's screen pop, and when she is ready again K is called
back: once, by B, under B's fencing token, and reaches her.

The faults on the call's path use the dialplan's two addresses (node 1 on 4573, node 2 on
lab.asterisk.AGI_STANDBY_PORT): how long a caller waits when node 1 refuses or does not answer;
node 1 killed while its caller is in a menu (the fallback queue takes them, their journey stays at
the menu, node 2's call completes); a caller on a follower hears the queue position the leader
knows; PostgreSQL restarted during calls; Redis restarted under a desktop on the follower.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import socket
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from sqlalchemy import text

from ivr.ami import events as ev
from ivr.ami.client import AmiClient
from ivr.channels.handoff import TokenCodec
from ivr.flow.journey import Journey
from ivr.flow.loader import parse_flow
from ivr.flow.model import QUEUE_MINUTES_PROMPT, QUEUE_POSITION_PROMPT, QUEUE_WAIT_PROMPT, Prompt
from ivr.store.continuations import ContinuationStore
from ivr.store.journeys import JourneyStore, make_engine
from lab.agents import add_agent
from lab.asterisk import AGI_STANDBY_PORT, AsteriskLab
from lab.controller import ControllerProcess
from lab.postgres import PostgresServer
from lab.redis import RedisServer, throwaway_redis
from lab.require import require
from lab.sipp import CallerScript, Dtmf, run_caller_async
from lab.softphone import Softphone

NUMBER = "5550189"
HOLDER = "+15551239202"
CALLBACK = "+15551239201"
FLOW = f"""\
flow: cbq
numbers: ["{NUMBER}"]
start: to_billing
steps:
  to_billing:
    queue: {{name: billing, skill: billing, priority: 5}}
"""
#: the takeover the issue asks for: callbacks and pops resume within this of the kill
TAKEOVER_S = 5.0
#: a chat that queues for billing at once (the continuation link resumes it at its queue step)
CHAT_FLOW = """\
flow: chatq
start: to_billing
steps:
  to_billing:
    queue: {name: billing, skill: billing, announce: false, callback_after: false}
"""
HANDOFF_SECRET = "handoff-secret-" + "n" * 20


def ms(prompt_ms: dict[str, int], prompt: Prompt) -> int:
    return prompt_ms[prompt.audio_name().split("/", 1)[1]]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def wait_until(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await predicate() if asyncio.iscoroutinefunction(predicate) else predicate():
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def web_base(proc: ControllerProcess) -> str:
    port = re.findall(r"listening on http://127\.0\.0\.1:(\d+)/", proc.log_path.read_text())[0]
    return f"http://127.0.0.1:{port}"


async def ann_desktop(web: aiohttp.ClientSession, base: str) -> aiohttp.ClientWebSocketResponse:
    """Ann signs in at ``base``'s desktop over HTTP (login form, CSRF) and opens its websocket."""
    page = await (await web.get(f"{base}/desktop/login")).text()
    form = re.search(r'name="csrf" value="([^"]+)"', page)
    assert form
    await web.post(
        f"{base}/desktop/login", data={"username": "ann", "password": "ann-password-1", "csrf": form.group(1)}
    )
    csrf = (await (await web.get(f"{base}/desktop/api/me")).json())["csrf"]
    return await web.ws_connect(f"{base}/desktop/ws?csrf={csrf}", headers={"Origin": base})


async def read_desktop(ws: aiohttp.ClientWebSocketResponse, into: list[dict[str, Any]]) -> None:
    async for msg in ws:
        if msg.type == aiohttp.WSMsgType.TEXT:
            into.append(msg.json())


@pytest.fixture
def redis() -> Iterator[RedisServer]:
    require("redis-server")
    with throwaway_redis() as server:
        yield server


@pytest.fixture
def shared_db(postgres: PostgresServer) -> Iterator[str]:
    name = f"test_{uuid.uuid4().hex[:16]}"
    url = postgres.create_database(name)
    yield url
    postgres.drop_database(name)


@pytest.fixture
async def nodes(
    lab: AsteriskLab, tmp_path: Path, shared_db: str, redis: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[ControllerProcess, ControllerProcess, Softphone]]:
    lab.restart()  # fresh queues and device states (we hold the lab lock)
    flows = tmp_path / "flows"
    flows.mkdir()
    (flows / "cbq.yaml").write_text(FLOW)
    (flows / "chatq.yaml").write_text(CHAT_FLOW)
    monkeypatch.setenv("IVR_DATABASE_URL", shared_db)  # ivr agents add, and both nodes
    customer_phone = Softphone("customer", ring_ms=4000, register=False)
    agent_phone = Softphone("agent1001", lab.agent_passwords["agent1001"], ring_ms=1000)
    env = {
        "IVR_FLOWS_DEFAULT": "cbq",
        "IVR_AMI_SECRET": lab.ami_secret,
        "IVR_SPEECH_ENGINE": "off",
        "IVR_CALLBACKS_OFFER_AFTER": "0",
        "IVR_PUBSUB_URL": redis.url,
        "IVR_CALLBACKS_DIAL": f"PJSIP/trunk/sip:{{number}}@127.0.0.1:{customer_phone.port}",
        "IVR_HANDOFF_SECRET": HANDOFF_SECRET,  # chat links
    }
    a = ControllerProcess(flows_dir=flows, data_dir=tmp_path / "a", env=env)  # the dialplan's AGI port
    b = ControllerProcess(flows_dir=flows, data_dir=tmp_path / "b", agi_port=free_port(), env=env)
    async with customer_phone, agent_phone:
        a.start(timeout=30)  # migrates the database first
        a.wait_for_log("ACD role: leader")
        a.wait_for_log("AMI connected")
        add_agent(tmp_path / "a", "ann", "agent1001", ["billing"], "ann-password-1")
        b.start(timeout=30)
        b.wait_for_log("ACD role: follower")
        try:
            yield a, b, customer_phone
        finally:
            a.kill()
            b.stop()
            await asyncio.to_thread(lab.restart)


async def test_the_acd_leader_is_killed_with_callers_queued_and_a_callback_booked(
    lab: AsteriskLab,
    nodes: tuple[ControllerProcess, ControllerProcess, Softphone],
    prompt_ms: dict[str, int],
    shared_db: str,
) -> None:
    a, b, customer_phone = nodes
    assert "AMI connected" not in b.log_path.read_text()  # a follower leaves AMI to the leader
    watch = AmiClient(username=lab.ami_username, secret=lab.ami_secret, events=True)
    seen: list[ev.AmiEvent] = []

    async def keep(event: ev.AmiEvent) -> None:
        caller = getattr(event, "caller", None)
        if caller is not None and caller.callerid in (HOLDER, CALLBACK):
            seen.append(event)

    def joined(callerid: str) -> bool:
        return any(isinstance(e, ev.QueueCallerJoin) and e.caller.callerid == callerid for e in seen)

    def connects() -> list[str]:
        return [e.caller.callerid for e in seen if isinstance(e, ev.AgentConnect)]

    def status() -> str | None:
        states = [m["agent"]["status"] for m in desktop if m.get("type") == "state"]
        return states[-1] if states else None

    engine = make_engine(shared_db)

    async def tickets() -> list[tuple[str, str, int | None]]:
        async with engine.connect() as conn:
            rows = await conn.execute(text("SELECT phone, status, dial_token FROM callbacks ORDER BY ticket_at"))
            return [(r[0], r[1], r[2]) for r in rows]

    watch.on_event(keep)
    await watch.connect()
    desktop: list[dict[str, Any]] = []
    base = web_base(b)
    web = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
    holder: asyncio.Task[Any] | None = None
    reader: asyncio.Task[None] | None = None
    try:
        # the agent's desktop on the follower: her login reaches A's ACD, her state comes back
        ws = await ann_desktop(web, base)
        reader = asyncio.create_task(read_desktop(ws, desktop), name="desktop-reader")
        a.wait_for_log("agent ann logged in on ")
        await wait_until(lambda: any(m.get("type") == "state" for m in desktop), 10, "her state from A")
        assert "agent ann logged in on " not in b.log_path.read_text()

        # H holds; K, after H, books a callback through A (the node the dialplan reaches)
        holder = asyncio.create_task(
            run_caller_async(CallerScript(caller_id=HOLDER, dialled=NUMBER, hangup_after_ms=60000), timeout=90)
        )
        await wait_until(lambda: joined(HOLDER), 30, "H holding")
        announce = sum(ms(prompt_ms, p) for p in (QUEUE_POSITION_PROMPT, QUEUE_WAIT_PROMPT, QUEUE_MINUTES_PROMPT))
        press_from = announce + 1200
        booked = await run_caller_async(
            CallerScript(
                caller_id=CALLBACK,
                dialled=NUMBER,
                dtmf=(Dtmf("1111", press_from, spacing_ms=900),),
                max_call_ms=press_from + 30000,
            ),
            timeout=60,
        )
        booked.raise_for_failure()

        async def booked_ticket() -> bool:
            return [t[:2] for t in await tickets()] == [(CALLBACK, "waiting")]

        await wait_until(booked_ticket, 10, "the ticket")

        # the leader dies; B takes the lease over and drives AMI within the bound
        killed = time.monotonic()
        a.kill()
        b.wait_for_log("ACD role: leader", timeout=TAKEOVER_S)
        b.wait_for_log("AMI connected", timeout=max(0.1, TAKEOVER_S - (time.monotonic() - killed)))
        took_over = time.monotonic() - killed
        assert took_over < TAKEOVER_S
        b.wait_for_log("agent ann logged in on ", timeout=2)  # B had no state of her: logged in again
        async with web.get(base + "/readyz") as r:
            assert (await r.json())["role"] == "leader"

        # H, queued before the kill, reaches her through B, pop and all
        await ws.send_json({"type": "ready"})
        await wait_until(lambda: any(m.get("type") == "pop" for m in desktop), 30, "H's pop on B")
        await wait_until(lambda: connects() == [HOLDER], 30, "H connected")
        assert customer_phone.invites() == 0  # H was ahead of the ticket
        # H's call ends once they are through (hanging up their channel ends it as their BYE
        # would: app_queue's AgentComplete, ann wraps up), not at the 60 s bound of their script
        first = next(e for e in seen if isinstance(e, ev.AgentConnect))
        await watch.action({"Action": "Hangup", "Channel": first.caller.name})
        (await holder).raise_for_failure()
        await wait_until(lambda: status() == "wrap_up", 10, "ann wrapping up")
        # ready during app_queue's own 5 s wrap-up: the ticket is due, B holds her for it and
        # dials it while K's phone rings; the queue connects them once its wrap-up has passed
        await ws.send_json({"type": "ready"})
        await wait_until(lambda: connects() == [HOLDER, CALLBACK], 40, "K called back and connected")
        assert len([m for m in desktop if m.get("type") == "pop"]) >= 2
        second = [e for e in seen if isinstance(e, ev.AgentConnect)][1]
        await watch.action({"Action": "Hangup", "Channel": second.agent_channel.name})

        async def done() -> bool:
            return [t[:2] for t in await tickets()] == [(CALLBACK, "done")]

        await wait_until(done, 10, "the ticket done")
        (ticket,) = await tickets()
        assert ticket[2] == 2  # claimed under B's token: A's (1) could claim nothing now
        assert customer_phone.invites() == 1  # dialled once
        await ws.close()
        print(f"takeover {took_over:.2f} s after SIGKILL")
    finally:
        for task in (holder, reader):
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        await web.close()
        await watch.stop()
        await engine.dispose()


async def chat_link(engine: Any, phone: str) -> tuple[str, str]:
    """A continuation link for a new chat journey at its queue step, as a handoff makes one:
    (journey id, token). Written straight into the shared database."""
    journeys = JourneyStore(engine)
    await journeys.start()
    try:
        journey = Journey.new(parse_flow(CHAT_FLOW), "chat", caller=phone)
        journey.step = "to_billing"
        journeys.save(journey)
        await journeys.flush()
    finally:
        await journeys.stop()
    continuation, expires = uuid.uuid4().hex, time.time() + 600
    await ContinuationStore(engine).create(
        id=continuation, journey_id=journey.id, customer_id=None, channel="chat", step="to_billing", expires_at=expires
    )
    return journey.id, TokenCodec(HANDOFF_SECRET).issue(continuation, None, expires)


async def test_a_chat_waiting_when_the_acd_leader_is_killed_reaches_an_agent_on_the_survivor_with_its_wait(
    nodes: tuple[ControllerProcess, ControllerProcess, Softphone], shared_db: str
) -> None:
    """A customer's chat page on B queues for billing while ann (her desktop on B too) is
    paused: the chat waits in A's memory. A is killed; B leads, adopts the chat from the store,
    and when ann says ready her desktop on B is offered it; its ``chat_offered`` counts the wait
    from when it first queued, under A."""
    a, b, _ = nodes
    engine = make_engine(shared_db)
    base = web_base(b)
    desktop: list[dict[str, Any]] = []
    agent_web = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
    customer = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
    tasks: list[asyncio.Task[Any]] = []
    page: list[str] = []

    async def read_page(response: aiohttp.ClientResponse) -> None:
        async for line in response.content:
            page.append(line.decode().strip())

    async def queued_at(journey_id: str) -> float | None:
        found = [e for e in await JourneyStore(engine).interactions(journey_id) if e["kind"] == "journey_queued"]
        return float(found[-1]["at"]) if found else None

    try:
        ws = await ann_desktop(agent_web, base)
        tasks.append(asyncio.create_task(read_desktop(ws, desktop), name="desktop-reader"))
        a.wait_for_log("agent ann logged in on ")  # paused: she takes no chat yet
        journey_id, token = await chat_link(engine, "+15551239401")
        async with customer.post(f"{base}/c/{token}", headers={"Origin": base}, allow_redirects=False) as r:
            assert r.status == 303, await r.text()
        events = await customer.get(f"{base}/chat/api/events")  # offers it to A's ACD every 2 s
        tasks.append(asyncio.create_task(read_page(events), name="chat-page"))

        async def has_queued() -> bool:
            return await queued_at(journey_id) is not None

        await wait_until(has_queued, 10, "the chat queued")
        first_queued = await queued_at(journey_id)
        assert first_queued is not None
        await asyncio.sleep(2.5)  # an offer reached A (nobody could take it: it waits there)

        killed = time.time()
        a.kill()
        b.wait_for_log("ACD role: leader", timeout=TAKEOVER_S)
        b.wait_for_log("agent ann logged in on ", timeout=TAKEOVER_S)
        await ws.send_json({"type": "ready"})

        def offered() -> list[dict[str, Any]]:
            return [m for m in desktop if m.get("type") == "chat.offer"]

        await wait_until(lambda: offered(), 10, "the chat offered to ann on B")
        (offer,) = offered()
        assert offer["contact"]["journey_id"] == journey_id
        await wait_until(lambda: any("agent.joined" in line for line in page), 5, "the page told")

        async def logged_offer() -> bool:
            return any(e["kind"] == "chat_offered" for e in await JourneyStore(engine).interactions(journey_id))

        await wait_until(logged_offer, 5, "chat_offered in the journey's log")
        (event,) = [e for e in await JourneyStore(engine).interactions(journey_id) if e["kind"] == "chat_offered"]
        hold = event["data"]["hold_time"]
        assert hold >= killed - first_queued + 0.5, (hold, killed - first_queued)  # not restarted at adoption
        assert hold <= time.time() - first_queued
        await ws.close()
    finally:
        print(f"node A:\n{a.log_tail()}\nnode B:\n{b.log_tail()}")  # shown when the test fails
        for task in tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await customer.close()
        await agent_web.close()
        await engine.dispose()


# ------------------------------------------------------------------ faults on the call's path

MIDCALL_NUMBER = "5550191"
#: a menu that waits long for its key: the node serving it is killed while the caller is in it
MIDCALL_FLOW = f"""\
flow: midcall
numbers: ["{MIDCALL_NUMBER}"]
start: greeting
steps:
  greeting:
    say: Thank you for calling.
    next: menu
  menu:
    menu:
      prompt: Please choose from the following.
      speech: false
      tries: 3
      timeout: 10
      options:
        billing: {{dtmf: "1", say: "billing", next: billing}}
        outage: {{dtmf: "2", say: "outages", next: outage}}
      on_failure: bye
  billing:
    say: Billing is closed today.
    next: bye
  outage:
    say: We are working on it.
    next: bye
  bye:
    hangup: {{}}
"""
ON_B = "+15551239301"  # reaches node 2: node 1 is down when it calls
#: when ON_B presses their key (ms after the answer): after node 1 is killed (asserted; 3.6-6.8 s
#: after ON_B dialled), while node 2's menu waits for a key in its second try. (18 s fell outside
#: the wait once: the caller's key was lost and their menu ran out of tries.)
B_KEY_MS = 25000
ON_A = "+15551239302"  # reaches node 1, which is killed while it waits in the menu
FOLLOWER_FIRST = "+15551239303"
FOLLOWER_SECOND = "+15551239304"


@pytest.fixture
async def pair(
    lab: AsteriskLab, tmp_path: Path, shared_db: str, redis: RedisServer
) -> AsyncIterator[tuple[ControllerProcess, ControllerProcess]]:
    """Node A where the dialplan tries first (IVR_AGI, 4573) and node B where it tries next
    (IVR_AGI_STANDBY), on one PostgreSQL and Redis; neither started: each test starts them in
    the order it needs (the first one started takes the ACD lease)."""
    flows = tmp_path / "flows"
    flows.mkdir()
    (flows / "cbq.yaml").write_text(FLOW)
    (flows / "midcall.yaml").write_text(MIDCALL_FLOW)
    env = {
        "IVR_FLOWS_DEFAULT": "cbq",
        "IVR_AMI_SECRET": lab.ami_secret,
        "IVR_SPEECH_ENGINE": "off",
        "IVR_DATABASE_URL": shared_db,
        "IVR_PUBSUB_URL": redis.url,
        "IVR_CALLBACKS_OFFER_AFTER": "-1",
    }
    a = ControllerProcess(flows_dir=flows, data_dir=tmp_path / "a", env=env)
    b = ControllerProcess(flows_dir=flows, data_dir=tmp_path / "b", agi_port=AGI_STANDBY_PORT, env=env)
    try:
        yield a, b
    finally:
        a.kill()
        b.kill()


async def journey_of(engine: Any, caller: str) -> dict[str, Any] | None:
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                text("SELECT id, step, status, data FROM journeys WHERE caller = :c ORDER BY started_at DESC"),
                {"c": caller},
            )
        ).first()
    if row is None:
        return None
    data = row[3] if isinstance(row[3], dict) else json.loads(row[3])
    return {"id": row[0], "step": row[1], "status": row[2], "data": data}


async def test_a_node_killed_mid_call_sends_its_caller_to_the_fallback_and_the_other_nodes_call_completes(
    lab: AsteriskLab, pair: tuple[ControllerProcess, ControllerProcess], shared_db: str
) -> None:
    a, b = pair
    engine = make_engine(shared_db)
    watch = AmiClient(username=lab.ami_username, secret=lab.ami_secret, events=True)
    joins: list[tuple[str, str]] = []

    async def keep(event: ev.AmiEvent) -> None:
        if isinstance(event, ev.QueueCallerJoin):
            joins.append((event.caller.callerid, event.queue))

    watch.on_event(keep)
    await watch.connect()
    on_b: asyncio.Task[Any] | None = None
    try:
        # node 1 is down (connection refused): the dialplan's [ivr-agi] takes the call to node 2
        b.start(timeout=30)
        dialled_b = time.monotonic()  # ON_B's call is answered after this: its key comes after + B_KEY_MS
        on_b = asyncio.create_task(
            run_caller_async(
                # the key comes after node 1 is killed (asserted below): node 2's menu is then in
                # its second try
                CallerScript(caller_id=ON_B, dialled=MIDCALL_NUMBER, dtmf=(Dtmf("2", B_KEY_MS),), max_call_ms=40000),
                timeout=60,
            )
        )

        async def at_menu(caller: str) -> bool:
            journey = await journey_of(engine, caller)
            return journey is not None and journey["step"] == "menu"

        async def b_at_menu() -> bool:
            return await at_menu(ON_B)

        async def a_at_menu() -> bool:
            return await at_menu(ON_A)

        await wait_until(b_at_menu, 20, "the first caller in node 2's menu")
        a.start(timeout=30)  # node 1 is back: the next call goes to it
        # node 1 is killed while its caller is in the menu (Asterisk runs the menu's Read()); the
        # caller presses a key 6 s into the call, after the kill
        on_a = await asyncio.wait_for(
            asyncio.gather(
                run_caller_async(
                    CallerScript(caller_id=ON_A, dialled=MIDCALL_NUMBER, dtmf=(Dtmf("1", 6000),), max_call_ms=9000),
                    timeout=40,
                ),
                _kill_when(a, a_at_menu),
            ),
            40,
        )
        killed_after = on_a[1] - dialled_b
        print(f"node 1 killed {killed_after:.1f} s after node 2's caller dialled; their key at {B_KEY_MS / 1000} s")
        assert killed_after < B_KEY_MS / 1000  # node 2's caller pressed their key after the kill
        # the killed node's caller: res_agi sees the socket closed once the command it was running
        # (the menu's Read) returns, and the call leaves AGI with AGISTATUS=SUCCESS and no
        # IVR_ACTION: the fallback queue took them; it was not retried on node 2 (the menu would
        # start again from the greeting)
        assert (ON_A, "main") in joins
        assert on_a[0].calls_created == 1 and on_a[0].failed == 0
        async with engine.connect() as conn:
            count = (await conn.execute(text("SELECT count(*) FROM journeys WHERE caller = :c"), {"c": ON_A})).scalar()
        assert count == 1  # not started again on node 2
        # ... and their journey is saved as far as it got: waiting at the menu, resumable there
        killed = await journey_of(engine, ON_A)
        assert killed is not None and killed["step"] == "menu"
        assert killed["data"]["waiting"], killed
        # the call on node 2 went on: the key pressed after the kill reached the end of its flow
        result = await on_b
        result.raise_for_failure()
        assert result.who_hung_up == "ivr"

        async def completed() -> bool:
            journey = await journey_of(engine, ON_B)
            return journey is not None and journey["status"] == "completed"

        await wait_until(completed, 5, "the journey on node 2 completed")  # the writer's batch
        done = await journey_of(engine, ON_B)
        assert done is not None
        assert done["data"]["path"][-2:] == ["outage", "bye"], done
        assert (ON_B, "main") not in joins
    finally:
        print(f"node 1:\n{a.log_tail()}\nnode 2:\n{b.log_tail()}")  # shown when the test fails
        if on_b is not None and not on_b.done():
            on_b.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await on_b
        await watch.stop()
        await engine.dispose()


async def _kill_when(node: ControllerProcess, ready: Any) -> float:
    """Kill ``node`` once ``ready``; returns when (``time.monotonic()``)."""
    await wait_until(ready, 15, "the caller in node 1's menu")
    node.kill()
    return time.monotonic()


async def test_a_call_on_a_follower_hears_the_queue_position_the_leader_knows(
    lab: AsteriskLab, pair: tuple[ControllerProcess, ControllerProcess], shared_db: str, prompt_ms: dict[str, int]
) -> None:
    a, b = pair
    b.start(timeout=30)  # node 2 leads (AMI, the ACD); node 1, where calls land, follows
    b.wait_for_log("AMI connected")
    a.start(timeout=30)
    a.wait_for_log("ACD role: follower")
    a.wait_for_log("queue estimates: from the ACD leader's view", timeout=10)  # the leader's heartbeat: 5 s
    engine = make_engine(shared_db)
    watch = AmiClient(username=lab.ami_username, secret=lab.ami_secret, events=True)
    joined: list[str] = []

    async def keep(event: ev.AmiEvent) -> None:
        if isinstance(event, ev.QueueCallerJoin) and event.queue == "billing":
            joined.append(event.caller.callerid)

    watch.on_event(keep)
    await watch.connect()
    first: asyncio.Task[Any] | None = None
    try:
        first = asyncio.create_task(
            run_caller_async(CallerScript(caller_id=FOLLOWER_FIRST, dialled=NUMBER, hangup_after_ms=25000), timeout=40)
        )
        b.wait_for_log("ACD state rebuilt", timeout=5)

        async def estimated(caller: str) -> dict[str, Any] | None:
            journey = await journey_of(engine, caller)
            if journey is None:
                return None
            store = JourneyStore(engine)
            for event in await store.interactions(journey["id"]):
                if event["kind"] in ("queue_announced", "queue_estimated"):
                    return dict(event["data"])
            return None

        await wait_until(lambda: FOLLOWER_FIRST in joined, 30, "the first caller holding in billing")
        assert (await estimated(FOLLOWER_FIRST) or {}).get("position") == 1
        announce = sum(ms(prompt_ms, p) for p in (QUEUE_POSITION_PROMPT, QUEUE_WAIT_PROMPT, QUEUE_MINUTES_PROMPT))
        await asyncio.sleep(1.0)  # the leader's view carries the first caller within 0.25 s of its join
        second_call = asyncio.create_task(
            run_caller_async(
                CallerScript(caller_id=FOLLOWER_SECOND, dialled=NUMBER, hangup_after_ms=announce + 3000), timeout=30
            )
        )
        # they joined the queue after the announcement: hung up then (as their BYE would), not at
        # the bound of their script
        await wait_until(lambda: FOLLOWER_SECOND in joined or second_call.done(), 30, "the second caller queued")
        await asyncio.to_thread(lab.hang_up_caller, FOLLOWER_SECOND)
        second = await second_call
        assert second.calls_created == 1
        facts = await estimated(FOLLOWER_SECOND)
        # before, a follower estimated from its own empty ACD: always "number 1"
        assert facts is not None and facts["position"] == 2, facts
        assert "AMI connected" not in a.log_path.read_text()  # node 1, which served the call, follows
    finally:
        print(f"node 1:\n{a.log_tail()}\nnode 2:\n{b.log_tail()}")  # shown when the test fails
        if first is not None and not first.done():
            first.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await first
        await watch.stop()
        await engine.dispose()


class StandbyNode:
    """A FastAGI listener at the dialplan's second address that only notes when Asterisk reached
    it and tells the call to hang up: what the caller waited for is then the call's length."""

    def __init__(self) -> None:
        self.reached: list[str] = []
        self.server: asyncio.Server | None = None

    async def __aenter__(self) -> StandbyNode:
        self.server = await asyncio.start_server(self._session, "127.0.0.1", AGI_STANDBY_PORT)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        script = ""
        while (line := await reader.readline()).strip():
            if line.startswith(b"agi_network_script:"):
                script = line.split(b":", 1)[1].strip().decode()
        self.reached.append(script)
        writer.write(b'SET VARIABLE IVR_ACTION "hangup"\n')
        await writer.drain()
        await reader.readline()
        writer.close()


@contextlib.contextmanager
def unanswering_host(port: int) -> Iterator[None]:
    """A node whose host does not answer: a listener on ``port`` whose accept queue is full, so
    the kernel drops Asterisk's SYNs as a host that is off the network would (no RST, no reply)."""
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", port))
    listener.listen(0)
    fillers = []
    try:
        for _ in range(3):
            filler = socket.socket()
            filler.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                filler.connect(("127.0.0.1", port))
            fillers.append(filler)
        time.sleep(0.1)
        with pytest.raises(OSError):  # proven silent before it is used
            socket.create_connection(("127.0.0.1", port), timeout=0.3).close()
        yield
    finally:
        for sock in [*fillers, listener]:
            sock.close()


async def test_the_dialplan_tries_node_2_when_node_1_refuses_or_does_not_answer(lab: AsteriskLab) -> None:
    """What a caller waits (answer -> served by node 2) when node 1's process is down (its host
    refuses the connection) and when its host does not answer (res_agi's 2 s connect timeout)."""
    waited: dict[str, float] = {}
    async with StandbyNode() as standby:
        for case in ("refused", "no answer"):
            with contextlib.ExitStack() as stack:
                if case == "no answer":
                    stack.enter_context(unanswering_host(4573))
                result = await run_caller_async(
                    CallerScript(caller_id="+15551239310", dialled="5550199", max_call_ms=15000), timeout=30
                )
            result.raise_for_failure()
            assert result.who_hung_up == "ivr"  # node 2 decided: hang up (not the fallback queue)
            (waited[case],) = (ms / 1000 for ms in result.call_lengths_ms)
        assert standby.reached == ["inbound", "inbound"]
    print(f"caller's wait for node 2: {waited}")
    assert waited["refused"] < 0.5
    assert 1.9 < waited["no answer"] < 3.0


DB_OUTAGE_CALLERS = ("+15551239320", "+15551239321")


async def test_calls_go_on_while_postgresql_restarts_and_their_journeys_are_written_once_it_is_back(
    lab: AsteriskLab, pair: tuple[ControllerProcess, ControllerProcess], shared_db: str, postgres: PostgresServer
) -> None:
    a, _ = pair
    a.start(timeout=30)
    a.wait_for_log("ACD role: leader")
    engine = make_engine(shared_db)
    halted = False
    try:
        postgres.halt()  # every connection drops at once, as when the server crashes
        halted = True
        calls = [
            run_caller_async(
                CallerScript(caller_id=caller, dialled=MIDCALL_NUMBER, dtmf=(Dtmf("2", 4000),), max_call_ms=30000),
                timeout=60,
            )
            for caller in DB_OUTAGE_CALLERS
        ]
        results = await asyncio.gather(*calls)
        for result in results:  # each call ran its flow to the end, as an unknown caller
            result.raise_for_failure()
            assert result.who_hung_up == "ivr"
        assert "journey store write failed" in a.log_path.read_text()
        postgres.resume()
        halted = False

        async def all_written() -> bool:
            with contextlib.suppress(Exception):  # the pool reconnects on its own
                found = [await journey_of(engine, caller) for caller in DB_OUTAGE_CALLERS]
                return all(j is not None and j["status"] == "completed" for j in found)
            return False

        await wait_until(all_written, 20, "both journeys written after the restart")
        store = JourneyStore(engine)
        for caller in DB_OUTAGE_CALLERS:
            journey = await journey_of(engine, caller)
            assert journey is not None
            assert journey["data"]["path"][-3:] == ["menu", "outage", "bye"], journey
            assert journey["data"]["customer_id"] is None  # the lookup found no database: unknown caller
            kinds = [event["kind"] for event in await store.interactions(journey["id"])]
            assert "option_chosen" in kinds, kinds  # the log written with the journey, nothing lost
    finally:
        if halted:
            postgres.resume()
        print(f"node 1:\n{a.log_tail()}")
        await engine.dispose()


async def test_redis_restarts_under_two_nodes_and_a_desktop_on_the_follower_and_its_commands_and_pops_resume(
    lab: AsteriskLab, nodes: tuple[ControllerProcess, ControllerProcess, Softphone], redis: RedisServer
) -> None:
    _, b, _ = nodes
    desktop: list[dict[str, Any]] = []
    base = web_base(b)
    web = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
    watch = AmiClient(username=lab.ami_username, secret=lab.ami_secret, events=True)
    called: list[str] = []

    async def keep(event: ev.AmiEvent) -> None:
        if isinstance(event, ev.AgentCalled):
            called.append(event.caller.callerid)

    watch.on_event(keep)
    await watch.connect()
    reader: asyncio.Task[None] | None = None
    caller: asyncio.Task[Any] | None = None
    try:
        ws = await ann_desktop(web, base)
        reader = asyncio.create_task(read_desktop(ws, desktop), name="desktop-reader")
        await wait_until(lambda: any(m.get("type") == "state" for m in desktop), 10, "her state from the leader")

        redis.kill()  # as a crash: no save, the streams are gone
        await asyncio.sleep(1.0)
        redis.start()
        restarted = time.monotonic()

        def status() -> str | None:
            states = [m["agent"]["status"] for m in desktop if m.get("type") == "state"]
            return states[-1] if states else None

        # her commands reach the leader again: "ready" from the follower's desktop, answered
        while status() != "ready":
            assert time.monotonic() - restarted < 20, f"no command went through: {desktop[-3:]}\n{b.log_tail()}"
            await ws.send_json({"type": "ready"})
            with contextlib.suppress(AssertionError):
                await wait_until(lambda: status() == "ready", 2, "ready")
        commands_back = time.monotonic() - restarted

        # and pops: a caller queues, the leader's ACD rings her, the card reaches the follower's desktop
        caller = asyncio.create_task(
            run_caller_async(CallerScript(caller_id=HOLDER, dialled=NUMBER, hangup_after_ms=20000), timeout=40)
        )
        await wait_until(lambda: HOLDER in called, 30, "her phone rung for the caller")
        await wait_until(lambda: any(m.get("type") == "pop" for m in desktop), 5, "the pop on the follower")
        print(f"commands back {commands_back:.2f} s after Redis restarted")
        await ws.close()
    finally:
        for task in (caller, reader):
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        await web.close()
        await watch.stop()
