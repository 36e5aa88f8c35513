"""ACD leader failover: SIGKILL the leader node with callbacks under way; how soon does the survivor
drive the ACD, and was every callback dialled exactly once?

    .venv/bin/python bench/failover.py [--kills 20] [--seed 1]

Two ``ivr serve`` nodes (lab.controller) on one throwaway PostgreSQL and Redis and the lab
Asterisk 22 (AMI on, speech off); one agent (ann on agent1001, a SIPp phone answering in 0.3 s)
with a desktop open on each node, driven by a bot that says ready whenever she is paused or in
wrap-up (as after every takeover: a new leader logs agents in again paused); the customers' phone
is one SIPp UAS answering every callback in 0.3 s. The bench's own AMI session watches Asterisk
and hangs every connected callback up 1 s after it connected.

Each round books one callback ticket (straight into the store, as the queue step does) due
``--spread`` seconds around the moment the leader is then killed with SIGKILL, so over the rounds
the dial falls before, across (claimed, ringing, queued, talking) and after the kill. Measured on
the survivor's log: the time from the kill to ``ACD role: leader`` and to its next ``AMI
connected`` (it dials callbacks and publishes pops from then on); on Asterisk: for each round's
ticket the survivor dialled (not the old leader before the kill), the time from the kill to its
OriginateResponse (the customer answered after 0.3 s of ringing; the bot's instant "ready" after
the new leader logged ann in again paused is in it: a person takes longer). The killed node starts
again as the follower; the lease's fencing token must grow by exactly one each round.

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
from lab.asterisk import AsteriskLab
from lab.controller import ControllerProcess
from lab.lock import lab_session_lock
from lab.postgres import throwaway_postgres
from lab.redis import throwaway_redis
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
PASSWORD = "ann-password-1"
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
    path = phone.workdir / "messages.log"
    found = re.findall(r"^INVITE sip:([^@\s]+)@", path.read_text(errors="replace") if path.exists() else "", re.M)
    return Counter(found)


class Watch:
    """The bench's own AMI session: what Asterisk did, whoever leads. Hangs connected callbacks up."""

    def __init__(self, lab: AsteriskLab) -> None:
        self.ami = AmiClient(username=lab.ami_username, secret=lab.ami_secret, events=True)
        #: ticket id -> monotonic times of its OriginateResponses (Success or not)
        self.originated: dict[str, list[float]] = {}
        #: ticket id -> times it connected to an agent
        self.connected: dict[str, list[float]] = {}
        self._hangups: set[asyncio.Task[None]] = set()
        self.ami.on_event(self._event)

    async def _event(self, event: ev.AmiEvent) -> None:
        if isinstance(event, ev.OriginateResponse) and event.action_id.startswith("cb-"):
            ticket = event.action_id.split("-")[1]
            self.originated.setdefault(ticket, []).append(time.monotonic())
        elif isinstance(event, ev.AgentConnect) and event.caller.variables.get(var.CALLBACK_ID):
            ticket = event.caller.variables[var.CALLBACK_ID]
            self.connected.setdefault(ticket, []).append(time.monotonic())
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
    """Ann's desktop on one node, with a bot that says ready whenever she is not (sign-in over HTTP)."""

    def __init__(self, proc: ControllerProcess) -> None:
        self.proc = proc
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
            f"{base}/desktop/login", data={"username": "ann", "password": PASSWORD, "csrf": form.group(1)}
        )
        csrf = (await (await self.web.get(f"{base}/desktop/api/me")).json())["csrf"]
        self.ws = await self.web.ws_connect(f"{base}/desktop/ws?csrf={csrf}", headers={"Origin": base})
        self.task = asyncio.create_task(self._bot(self.ws), name="desktop-bot")

    async def _bot(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        async for msg in ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                continue
            data = msg.json()
            if data.get("type") == "state" and data["agent"]["status"] in ("paused", "wrap_up"):
                with contextlib.suppress(Exception):
                    await ws.send_json({"type": "ready"})

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
    customers = Softphone("customer", ring_ms=300, register=False)
    agent_phone = Softphone("agent1001", lab.agent_passwords["agent1001"], ring_ms=300)
    env = {
        "IVR_DATABASE_URL": url,
        "IVR_PUBSUB_URL": redis_url,
        "IVR_AMI_SECRET": lab.ami_secret,
        "IVR_SPEECH_ENGINE": "off",
        "IVR_FLOWS_DEFAULT": "failover",
        "IVR_CALLBACKS_OFFER_AFTER": "-1",
        "IVR_CALLBACKS_DIAL": f"PJSIP/trunk/sip:{{number}}@127.0.0.1:{customers.port}",
    }
    nodes = [ControllerProcess(flows_dir=flows, data_dir=work / name, agi_port=free_port(), env=env) for name in "ab"]
    engine = make_engine(url)
    store = CallbackStore(engine)
    watch = Watch(lab)
    desktops: dict[int, Desktop] = {}
    to_leader: list[float] = []
    to_ami: list[float] = []
    to_dial: list[float] = []
    tokens: list[int] = []
    booked: dict[str, dict[str, Any]] = {}
    async with customers, agent_phone:
        await watch.ami.connect()
        leader, follower = nodes
        try:
            leader.start(timeout=60)  # migrates the database first
            leader.wait_for_log("AMI connected", timeout=10)
            os.environ["IVR_DATABASE_URL"] = url
            await asyncio.to_thread(add_agent, leader.data_dir, "ann", "agent1001", ["billing"], PASSWORD)
            follower.start(timeout=60)
            follower.wait_for_log("ACD role: follower", timeout=10)
            for i, node in enumerate(nodes):
                desktops[i] = Desktop(node)
                await desktops[i].open()
            await wait_count(leader, "agent ann logged in on ", 0, 10)
            for round_ in range(kills):
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
                killed = time.monotonic()
                leader.kill()
                led = await wait_count(follower, "ACD role: leader", leads, timeout=15)
                connected = await wait_count(follower, "AMI connected", amis, timeout=15)
                to_leader.append(led - killed)
                to_ami.append(connected - killed)
                after = await lease(engine)
                assert after is not None and after[1] == before[1] + 1, (before, after)
                tokens.append(after[1])
                killed_index = nodes.index(leader)
                await desktops[killed_index].close()
                follows = count(leader, "ACD role: follower")
                await asyncio.to_thread(leader.start, 60)  # back as the follower for the next round
                await wait_count(leader, "ACD role: follower", follows, 10)
                desktops[killed_index] = Desktop(leader)
                await desktops[killed_index].open()
                # this round's ticket, if the survivor dialled it (not the old leader before the kill)
                dials = watch.originated.get(ticket, [])
                if dials and dials[0] > connected:
                    to_dial.append(dials[0] - killed)
                booked[ticket]["dial_after_kill_s"] = round(dials[0] - killed, 3) if dials else None
                leader, follower = follower, leader
                print(f"round {round_ + 1}/{kills}: took over in {to_ami[-1]:.2f} s", flush=True)
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
        invites = invites_by_number(customers)
    accounting: dict[str, list[dict[str, Any]]] = {"ok": [], "twice": [], "lost": []}
    for ticket, info in booked.items():
        row = rows.get(ticket, {})
        entry = {
            **info,
            "ticket": ticket,
            "status": row.get("status"),
            "invites": invites.get(info["phone"], 0),
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
        "kill_to_leader": figures(to_leader),
        "kill_to_ami_connected": figures(to_ami),
        "kill_to_callback_dialled_by_survivor": figures(to_dial),
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
