"""ACD leader failover: SIGKILL the leader node with callbacks under way; how soon does the survivor
drive the ACD, and was every callback dialled exactly once?

    .venv/bin/python bench/failover.py [--kills 20] [--seed 1]

Two ``ivr serve`` nodes (lab.controller) at the dialplan's two AGI addresses, on one throwaway
PostgreSQL and Redis and the lab Asterisk 22 (AMI on, speech off). Two agents, each with a desktop
open on each node and a SIPp phone answering in 0.3 s: ann (billing) takes the callbacks, driven
by a bot that says ready whenever she is paused or in wrap-up (as after every takeover: a new
leader logs agents in again paused); bob (support) takes the rounds' queued callers, his bot says
ready only once a new leader has logged him in again. The customers' phone is one SIPp UAS
answering every callback in 0.3 s. The bench's own AMI session watches Asterisk and hangs every
connected call up 1 s after it connected.

Each round, a caller dials support and waits there (bob is in wrap-up or paused), then one
callback ticket is booked (straight into the store, as the queue step does) due ``--spread``
seconds around the moment the leader is then killed with SIGKILL, so over the rounds the dial
falls before, across (claimed, ringing, queued, talking) and after the kill. What "resume" is made
of, each from the kill: the survivor's log says ``ACD role: leader`` and then ``AMI connected``;
the round's callback, when the survivor dialled it (not the old leader before the kill), reaches
the customers' UAS (the INVITE's time in SIPp's message trace) and is answered (its
OriginateResponse on the bench's AMI session); bob's desktop on the survivor receives the pop of
the caller who queued before the kill. The bots' instant "ready" is in the last three (a person
takes longer). The killed node starts again as the follower; the lease's fencing token must grow
by exactly one each round.

The accounting is counted at Asterisk, never from the controllers' logs: INVITEs per customer
number at the customers' UAS and OriginateResponses per ticket on the bench's AMI session. After
the last round the bench waits (``--drain``) until every ticket is ``done``, then reports each
ticket dialled once (ok), more than once (twice), or never / not done (lost).

Target (issue): callbacks and pops resume within 5 s p99 of the kill; zero callbacks dialled
twice or lost over 20 kills. Raw numbers go to bench/results/.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import re
import socket
import statistics
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
from sqlalchemy import text

from ivr.agi import variables as var
from ivr.ami import events as ev
from ivr.ami.client import AmiClient
from ivr.store.agents import CallbackStore
from ivr.store.journeys import make_engine
from ivr.store.leases import ACD_LEASE, LeaseStore
from lab.agents import add_agent
from lab.asterisk import AGI_STANDBY_PORT, AsteriskLab
from lab.controller import ControllerProcess
from lab.lock import lab_session_lock
from lab.postgres import throwaway_postgres
from lab.redis import throwaway_redis
from lab.sipp import CallerScript, run_caller_async
from lab.softphone import Softphone

RESULTS = Path(__file__).resolve().parent / "results"
FLOW = """\
flow: failover
numbers: ["5550179"]
start: to_billing
steps:
  to_billing:
    queue: {name: billing, skill: billing}
"""
POP_NUMBER = "5550178"
POP_FLOW = f"""\
flow: failover_pop
numbers: ["{POP_NUMBER}"]
start: to_support
steps:
  to_support:
    queue: {{name: support, skill: support}}
"""
PASSWORD = "ann-password-1"
BOB_PASSWORD = "bob-password-1"
TALK_S = 1.0  # a connected callback is hung up this long after it connected
TARGET_S = 5.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def count(proc: ControllerProcess, needle: str) -> int:
    return proc.log_path.read_text(errors="replace").count(needle) if proc.log_path.exists() else 0


async def wait_count(proc: ControllerProcess, needle: str, above: int, timeout: float) -> float:
    """Monotonic time at which ``needle`` appeared in the log more than ``above`` times."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if count(proc, needle) > above:
            return time.monotonic()
        await asyncio.sleep(0.01)
    raise RuntimeError(f"{needle!r} not seen after {timeout} s:\n{proc.log_tail()}")


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def figures(values: list[float]) -> dict[str, float | int]:
    if not values:
        return {"n": 0}
    return {
        "n": len(values),
        "p50_s": round(statistics.median(values), 3),
        "p99_s": round(percentile(values, 99), 3),
        "max_s": round(max(values), 3),
    }


def invites_by_number(phone: Softphone) -> Counter[str]:
    """INVITEs the customers' UAS received, by the number dialled (its Request-URI's user)."""
    return Counter(number for number, _ in invite_times(phone))


def invite_times(phone: Softphone) -> list[tuple[str, float]]:
    """(number dialled, wall-clock time) of every INVITE the customers' UAS received, from SIPp's
    message trace: each message follows a line of dashes and the local date and time."""
    path = phone.workdir / "messages.log"
    return parse_invites(path.read_text(errors="replace") if path.exists() else "")


def parse_invites(trace: str) -> list[tuple[str, float]]:
    """The INVITEs in a SIPp ``-trace_msg`` file, each with the time (epoch seconds) of the header
    before it, read as this machine's local time as SIPp wrote it. Pure but for the time zone."""
    found: list[tuple[str, float]] = []
    stamp = float("nan")
    for line in trace.splitlines():
        header = re.match(r"^-{10,} (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+)", line)
        if header:
            stamp = datetime.strptime(header.group(1), "%Y-%m-%d %H:%M:%S.%f").timestamp()
            continue
        invite = re.match(r"^INVITE sip:([^@\s]+)@", line)
        if invite:
            found.append((invite.group(1), stamp))
    return found


class Watch:
    """The bench's own AMI session: what Asterisk did, whoever leads. Hangs connected calls up
    (callbacks and the rounds' queued callers) ``TALK_S`` after they connected."""

    def __init__(self, lab: AsteriskLab) -> None:
        self.ami = AmiClient(username=lab.ami_username, secret=lab.ami_secret, events=True)
        #: ticket id -> monotonic times of its OriginateResponses (Success or not)
        self.originated: dict[str, list[float]] = {}
        #: ticket id -> times it connected to an agent
        self.connected: dict[str, list[float]] = {}
        #: caller id -> when it joined a queue
        self.joined: dict[str, float] = {}
        self._hangups: set[asyncio.Task[None]] = set()
        self.ami.on_event(self._event)

    async def _event(self, event: ev.AmiEvent) -> None:
        if isinstance(event, ev.OriginateResponse) and event.action_id.startswith("cb-"):
            self.originated.setdefault(event.action_id.split("-")[1], []).append(time.monotonic())
        elif isinstance(event, ev.QueueCallerJoin):
            self.joined.setdefault(event.caller.callerid, time.monotonic())
        elif isinstance(event, ev.AgentConnect):
            called_back = event.caller.variables.get(var.CALLBACK_ID)
            if called_back:
                self.connected.setdefault(called_back, []).append(time.monotonic())
            task = asyncio.create_task(self._hang_up(event.agent_channel.name))
            self._hangups.add(task)
            task.add_done_callback(self._hangups.discard)

    async def _hang_up(self, channel: str) -> None:
        await asyncio.sleep(TALK_S)
        with contextlib.suppress(Exception):
            await self.ami.action({"Action": "Hangup", "Channel": channel})

    async def stop(self) -> None:
        for task in list(self._hangups):
            task.cancel()
        await self.ami.stop()


class Desktop:
    """An agent's desktop on one node (sign-in over HTTP, then the websocket), with a bot that
    says ready when ``wants_ready(state)`` says so; every pop it receives is kept with its time."""

    def __init__(
        self, proc: ControllerProcess, username: str, password: str, wants_ready: Callable[[dict[str, Any]], bool]
    ) -> None:
        self.proc = proc
        self.username = username
        self.password = password
        self.wants_ready = wants_ready
        #: (monotonic time, pop) of every pop this desktop received
        self.pops: list[tuple[float, dict[str, Any]]] = []
        self.web = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.task: asyncio.Task[None] | None = None

    async def open(self) -> None:
        port = re.findall(r"listening on http://127\.0\.0\.1:(\d+)/", self.proc.log_path.read_text())[-1]
        base = f"http://127.0.0.1:{port}"
        page = await (await self.web.get(f"{base}/desktop/login")).text()
        form = re.search(r'name="csrf" value="([^"]+)"', page)
        assert form, "no login form"
        await self.web.post(
            f"{base}/desktop/login", data={"username": self.username, "password": self.password, "csrf": form.group(1)}
        )
        csrf = (await (await self.web.get(f"{base}/desktop/api/me")).json())["csrf"]
        self.ws = await self.web.ws_connect(f"{base}/desktop/ws?csrf={csrf}", headers={"Origin": base})
        self.task = asyncio.create_task(self._bot(self.ws), name="desktop-bot")

    async def _bot(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        async for msg in ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                continue
            data = msg.json()
            if data.get("type") == "pop":
                self.pops.append((time.monotonic(), data))
            elif data.get("type") == "state" and self.wants_ready(data["agent"]):
                with contextlib.suppress(Exception):
                    await ws.send_json({"type": "ready"})

    async def send(self, message: dict[str, Any]) -> None:
        assert self.ws is not None
        await self.ws.send_json(message)

    async def close(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.task
        if self.ws is not None:
            with contextlib.suppress(Exception):
                await self.ws.close()
        await self.web.close()


async def lease(engine: Any) -> tuple[str, int, float] | None:
    return await LeaseStore(engine).holder(ACD_LEASE)


async def tickets(engine: Any) -> dict[str, dict[str, Any]]:
    async with engine.connect() as conn:
        rows = await conn.execute(text("SELECT id, phone, status, attempts, dial_token FROM callbacks"))
        return {r[0]: {"phone": r[1], "status": r[2], "attempts": r[3], "dial_token": r[4]} for r in rows}


async def run(
    kills: int, spread: float, drain: float, lab: AsteriskLab, url: str, redis_url: str, work: Path, seed: int
) -> dict[str, Any]:
    rng = random.Random(seed)
    flows = work / "flows"
    flows.mkdir()
    (flows / "failover.yaml").write_text(FLOW)
    (flows / "failover_pop.yaml").write_text(POP_FLOW)
    customers = Softphone("customer", ring_ms=300, register=False)
    agent_phone = Softphone("agent1001", lab.agent_passwords["agent1001"], ring_ms=300)
    bob_phone = Softphone("agent1002", lab.agent_passwords["agent1002"], ring_ms=300)
    env = {
        "IVR_DATABASE_URL": url,
        "IVR_PUBSUB_URL": redis_url,
        "IVR_AMI_SECRET": lab.ami_secret,
        "IVR_SPEECH_ENGINE": "off",
        "IVR_FLOWS_DEFAULT": "failover",
        "IVR_CALLBACKS_OFFER_AFTER": "-1",
        "IVR_CALLBACKS_DIAL": f"PJSIP/trunk/sip:{{number}}@127.0.0.1:{customers.port}",
    }
    # the dialplan's two AGI addresses: the rounds' callers reach whichever node is up
    nodes = [
        ControllerProcess(flows_dir=flows, data_dir=work / name, agi_port=port, env=env)
        for name, port in (("a", 4573), ("b", AGI_STANDBY_PORT))
    ]
    engine = make_engine(url)
    store = CallbackStore(engine)
    watch = Watch(lab)
    #: bob says ready only once a new leader has logged him in again: until then the round's
    #: caller waits for him across the kill
    bob_armed = False

    def ann_ready(agent: dict[str, Any]) -> bool:
        return str(agent["status"]) in ("paused", "wrap_up")

    def bob_ready(agent: dict[str, Any]) -> bool:
        return bob_armed and agent["status"] == "paused" and agent.get("reason") == "login"

    desktops: dict[tuple[int, str], Desktop] = {}

    async def open_desktops(index: int) -> None:
        for username, password, wants in (("ann", PASSWORD, ann_ready), ("bob", BOB_PASSWORD, bob_ready)):
            desktops[index, username] = Desktop(nodes[index], username, password, wants)
            await desktops[index, username].open()

    to_leader: list[float] = []
    to_ami: list[float] = []
    to_answered: list[float] = []
    to_pop: list[float] = []
    kills_at: list[dict[str, Any]] = []
    tokens: list[int] = []
    booked: dict[str, dict[str, Any]] = {}
    callers: list[asyncio.Task[Any]] = []
    async with customers, agent_phone, bob_phone:
        await watch.ami.connect()
        leader, follower = nodes
        try:
            leader.start(timeout=60)  # migrates the database first
            leader.wait_for_log("AMI connected", timeout=10)
            os.environ["IVR_DATABASE_URL"] = url
            await asyncio.to_thread(add_agent, leader.data_dir, "ann", "agent1001", ["billing"], PASSWORD)
            await asyncio.to_thread(add_agent, leader.data_dir, "bob", "agent1002", ["support"], BOB_PASSWORD)
            follower.start(timeout=60)
            follower.wait_for_log("ACD role: follower", timeout=10)
            for i in range(len(nodes)):
                await open_desktops(i)
            await wait_count(leader, "agent ann logged in on ", 0, 10)
            await wait_count(leader, "agent bob logged in on ", 0, 10)
            for round_ in range(kills):
                # a caller for bob, who is not ready: it waits in support across the kill
                caller_id = f"+1555710{round_:04d}"
                callers.append(
                    asyncio.create_task(
                        run_caller_async(
                            CallerScript(caller_id=caller_id, dialled=POP_NUMBER, max_call_ms=40000), timeout=60
                        )
                    )
                )
                deadline = time.monotonic() + 20
                while caller_id not in watch.joined:
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"round {round_}: the caller never joined support")
                    await asyncio.sleep(0.02)
                # a ticket due around the kill: before it (the old leader dials), across it, after it
                kill_in = 2.0
                due_in = kill_in + rng.uniform(-spread, spread)
                number = f"+1555700{round_:04d}"
                ticket = await store.open(
                    customer_id=f"bench:{number}",
                    journey_id=f"bench-failover-{round_}",
                    phone=number,
                    queue="billing",
                    skill="billing",
                    priority=5,
                    ticket_at=time.time(),
                    not_before=time.time() + due_in,
                    context={},
                )
                assert ticket is not None
                booked[ticket] = {"round": round_, "phone": number, "due_minus_kill_s": round(due_in - kill_in, 3)}
                await asyncio.sleep(kill_in)
                leads, amis = count(follower, "ACD role: leader"), count(follower, "AMI connected")
                before = await lease(engine)
                assert before is not None
                survivor = nodes.index(follower)
                pops_before = len(desktops[survivor, "bob"].pops)
                bob_armed = True
                killed, killed_wall = time.monotonic(), time.time()
                leader.kill()
                led = await wait_count(follower, "ACD role: leader", leads, timeout=15)
                connected = await wait_count(follower, "AMI connected", amis, timeout=15)
                to_leader.append(led - killed)
                to_ami.append(connected - killed)
                kills_at.append({"ticket": ticket, "killed_wall": killed_wall, "led_wall": killed_wall + led - killed})
                after = await lease(engine)
                assert after is not None and after[1] == before[1] + 1, (before, after)
                tokens.append(after[1])
                deadline = time.monotonic() + 20
                while len(desktops[survivor, "bob"].pops) <= pops_before:
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"round {round_}: no pop for the queued caller on the survivor")
                    await asyncio.sleep(0.01)
                to_pop.append(desktops[survivor, "bob"].pops[pops_before][0] - killed)
                bob_armed = False
                killed_index = nodes.index(leader)
                for username in ("ann", "bob"):
                    await desktops[killed_index, username].close()
                follows = count(leader, "ACD role: follower")
                await asyncio.to_thread(leader.start, 60)  # back as the follower for the next round
                await wait_count(leader, "ACD role: follower", follows, 10)
                await open_desktops(killed_index)
                # this round's ticket, if the survivor dialled it (not the old leader before the kill)
                dials = watch.originated.get(ticket, [])
                if dials and dials[0] > connected:
                    to_answered.append(dials[0] - killed)
                booked[ticket]["answered_after_kill_s"] = round(dials[0] - killed, 3) if dials else None
                leader, follower = follower, leader
                print(
                    f"round {round_ + 1}/{kills}: leader {to_leader[-1]:.2f} s, AMI {to_ami[-1]:.2f} s,"
                    f" pop {to_pop[-1]:.2f} s",
                    flush=True,
                )
            # every ticket done, or the drain's end
            deadline = time.monotonic() + drain
            while time.monotonic() < deadline:
                rows = await tickets(engine)
                if all(r["status"] == "done" for r in rows.values()):
                    break
                await asyncio.sleep(0.5)
            await asyncio.sleep(2.0)  # a late second dial would show up here
            rows = await tickets(engine)
        finally:
            for caller in callers:
                caller.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await caller
            for desktop in desktops.values():
                await desktop.close()
            for node in nodes:
                node.stop()
            stamp = time.strftime("%Y%m%d-%H%M%S")
            RESULTS.mkdir(exist_ok=True)
            for node in nodes:  # the nodes' own logs, beside the figures, to explain what went wrong
                if node.log_path.exists():
                    (RESULTS / f"failover-{stamp}-{node.data_dir.name}.log").write_bytes(node.log_path.read_bytes())
            await watch.stop()
            await engine.dispose()
        invites = invite_times(customers)  # read once SIPp has flushed its trace
    # kill -> the INVITE of the round's callback at the customers' UAS, when the survivor dialled it
    to_dialled: list[float] = []
    first_invite: dict[str, float] = {}
    for number, at in invites:
        first_invite.setdefault(number, at)
    for round_kill in kills_at:
        info = booked[round_kill["ticket"]]
        invited = first_invite.get(info["phone"])
        info["invite_after_kill_s"] = None if invited is None else round(invited - round_kill["killed_wall"], 3)
        if invited is not None and invited > round_kill["led_wall"]:
            to_dialled.append(invited - round_kill["killed_wall"])
    per_number = Counter(number for number, _ in invites)
    accounting: dict[str, list[dict[str, Any]]] = {"ok": [], "twice": [], "lost": []}
    for ticket, info in booked.items():
        row = rows.get(ticket, {})
        entry = {
            **info,
            "ticket": ticket,
            "status": row.get("status"),
            "invites": per_number.get(info["phone"], 0),
            "originate_responses": len(watch.originated.get(ticket, [])),
            "connected": len(watch.connected.get(ticket, [])),
            "dial_token": row.get("dial_token"),
        }
        if entry["invites"] > 1 or entry["connected"] > 1:
            accounting["twice"].append(entry)
        elif entry["invites"] == 0 or row.get("status") != "done":
            accounting["lost"].append(entry)
        else:
            accounting["ok"].append(entry)
    return {
        "kills": kills,
        "seed": seed,
        "load": os.getloadavg(),
        "kill_to_leader": figures(to_leader),
        "kill_to_ami_connected": figures(to_ami),
        "kill_to_callback_dialled_by_survivor": figures(to_dialled),
        "kill_to_callback_answered_by_survivor": figures(to_answered),
        "kill_to_pop_on_survivor": figures(to_pop),
        "tokens": tokens,
        "callbacks": {k: len(v) for k, v in accounting.items()},
        "not_ok": accounting["twice"] + accounting["lost"],
        "tickets": accounting["ok"] + accounting["twice"] + accounting["lost"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--spread", type=float, default=1.5, help="tickets fall due within this of the kill (s)")
    parser.add_argument("--drain", type=float, default=90.0, help="seconds to wait for every ticket done")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    with lab_session_lock():
        lab = AsteriskLab()
        lab.provision()
        lab.install_config()
        started = not lab.is_running()
        if started:
            lab.start()
        else:
            lab.restart()  # fresh queues and device states (we hold the lab lock)
        try:
            with throwaway_postgres() as pg, throwaway_redis() as redis, tempfile.TemporaryDirectory() as tmp:
                url = pg.create_database("failover")
                result = asyncio.run(
                    run(args.kills, args.spread, args.drain, lab, url, redis.url, Path(tmp), args.seed)
                )
        finally:
            if started:
                lab.stop()
    summary = {k: v for k, v in result.items() if k != "tickets"}
    print(json.dumps(summary, indent=2))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"failover-{time.strftime('%Y%m%d-%H%M%S')}.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
