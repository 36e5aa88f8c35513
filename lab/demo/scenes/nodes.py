"""One contact center on two controllers, and the leader killed with SIGKILL.

Two ``ivr serve`` nodes share one PostgreSQL and one Redis, the scene's own throwaway servers
(lab.postgres, lab.redis: the demo's controller keeps its data in SQLite, which only a lone node
may use), and the demo's Asterisk: node A where the dialplan tries first (``IVR_AGI``, port 4573)
and node B where it tries next (``IVR_AGI_STANDBY``, lab.asterisk.AGI_STANDBY_PORT). The demo's own
controller stops for the scene (node A needs its port, and two ACDs must not drive one app_queue)
and starts again before any scene after it (``DemoStack.restore_controller``). The first node
started takes the ACD lease; each says its role on ``/readyz``.

Ann's desktop (headless Chromium) is on node B, the follower; she is on a break (paused), and her
login reached A's ACD over Redis. H keys 1 into the billing queue and waits. K presses 1 for a
callback that keeps their place (behind H, who joined first). M is in node A's menu. Then node A
is killed: node B takes the lease and AMI over and logs Ann in again, paused. M's menu ends with
no node behind it, and the dialplan's fallback queue takes them (not node B: the flow would start
again from the top); their journey stays saved at the menu. Ann presses Ready on the page: H's
card pops on node B's desktop and her phone answers; H hangs up, she saves the wrap-up, and node B
dials K, once: counted at Asterisk (the customers' SIPp phone counts INVITEs, this scene's AMI
session OriginateResponses). No channel and no process is left.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

from ivr.ami import events as ev
from ivr.ami.client import AmiClient, AmiError
from ivr.flow.model import QUEUE_MINUTES_PROMPT, QUEUE_POSITION_PROMPT, QUEUE_WAIT_PROMPT
from lab.agents import add_agent
from lab.asterisk import AGI_STANDBY_PORT
from lab.browser import chromium
from lab.controller import ControllerProcess
from lab.demo.registry import Tell, check, scene
from lab.demo.scenes.browser_agent import channel_names, sign_out, until
from lab.demo.scenes.desktop import card_fields
from lab.demo.stack import (
    AGENT,
    AGENT_ENDPOINT,
    AGENT_NAME,
    DemoStack,
    JourneyRow,
    parse_journey_detail,
    parse_journey_list,
)
from lab.desktop import desktop_login
from lab.kannel import free_port
from lab.postgres import PostgresServer, throwaway_postgres
from lab.prompts import build_flow_prompts, prompt_lengths, prompt_ms
from lab.redis import RedisServer, throwaway_redis
from lab.sipp import CallerScript, Dtmf, SippResult, run_caller_async
from lab.softphone import Softphone

MENU_NUMBER = "5550300"
HOLD_NUMBER = "5550301"
WELCOME = "Thank you for calling Example Power."
#: a keyed menu in front of the billing queue; it waits long (4 tries) for a key, so a caller who
#: presses none is still in it when node A is killed
MENU_FLOW = f"""\
flow: nodes_menu
numbers: ["{MENU_NUMBER}"]
start: menu
steps:
  menu:
    menu:
      prompt: {WELCOME}
      speech: false
      tries: 4
      timeout: 2
      options:
        billing: {{dtmf: "1", say: "billing", next: to_billing}}
      on_failure: bye
  to_billing:
    queue: {{name: billing, skill: billing, priority: 5, announce: false, callback_after: false}}
  bye:
    hangup: {{}}
"""
#: the billing queue's direct line: the queue step announces the position and offers the callback
HOLD_FLOW = f"""\
flow: nodes_hold
numbers: ["{HOLD_NUMBER}"]
start: to_billing
steps:
  to_billing:
    queue: {{name: billing, skill: billing, priority: 5, callback_after: 0}}
"""
HOLDER = "+15551250001"  # H: waits in billing across the kill
BOOKER = "+15551250002"  # K: books a callback behind H
IN_MENU = "+15551250003"  # M: in node A's menu when it is killed
AGENT_RING_MS = 500
CUSTOMER_RING_MS = 500
#: what the README promises for a takeover (lease 3 s + renewal 1 s + the AMI login), with room
TAKEOVER_S = 8.0


def readyz(base: str) -> dict[str, Any]:
    """A node's ``/readyz`` (open, like a load balancer's health check): its ACD role is in it."""
    with urllib.request.urlopen(f"{base}/readyz", timeout=5) as reply:
        return dict(json.load(reply))


def pick(rows: list[JourneyRow], caller: str) -> list[JourneyRow]:
    """The journeys of one caller in an ``ivr journeys`` listing. Pure."""
    return [r for r in rows if r.caller == caller]


class Watch:
    """The scene's own AMI session: what Asterisk did, whichever node leads."""

    def __init__(self, stack: DemoStack) -> None:
        self.ami = AmiClient(username=stack.lab.ami_username, secret=stack.secrets.ami, events=True)
        self.joins: list[ev.QueueCallerJoin] = []
        self.connects: list[ev.AgentConnect] = []
        #: the callback dials (Originate's ActionID is ``cb-<ticket>-<attempt>``), by whoever led
        self.originated: list[ev.OriginateResponse] = []
        self.ami.on_event(self._event)

    async def _event(self, event: ev.AmiEvent) -> None:
        if isinstance(event, ev.QueueCallerJoin):
            self.joins.append(event)
        elif isinstance(event, ev.AgentConnect):
            self.connects.append(event)
        elif isinstance(event, ev.OriginateResponse) and event.action_id.startswith("cb-"):
            self.originated.append(event)

    def joined(self, caller: str, queue: str) -> ev.QueueCallerJoin | None:
        return next((j for j in self.joins if j.caller.callerid == caller and j.queue == queue), None)

    def connected(self, caller: str) -> ev.AgentConnect | None:
        return next((c for c in self.connects if c.caller.callerid == caller), None)

    async def channels(self) -> list[str]:
        return channel_names(await self.ami.action_list({"Action": "CoreShowChannels"}))


async def end_calls(watch: Watch, calls: list[asyncio.Task[SippResult]]) -> None:
    """After a failed check: hang up what is still up, so no SIPp caller outlives the scene."""
    if all(task.done() for task in calls):
        return
    with contextlib.suppress(AmiError):
        for name in await watch.channels():
            await watch.ami.action({"Action": "Hangup", "Channel": name})
    for task in calls:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, 20)


@contextlib.contextmanager
def shared_servers() -> Iterator[tuple[PostgresServer, RedisServer]]:
    with throwaway_postgres() as postgres, throwaway_redis() as redis:
        yield postgres, redis


@contextlib.asynccontextmanager
async def servers() -> AsyncIterator[tuple[PostgresServer, RedisServer]]:
    """PostgreSQL and Redis started (and stopped) off the event loop: initdb takes seconds."""
    managed = shared_servers()
    started = await asyncio.to_thread(managed.__enter__)
    try:
        yield started
    finally:
        await asyncio.to_thread(managed.__exit__, None, None, None)


async def seen(condition: Callable[[], bool], timeout: float, what: str) -> None:
    """Wait for something the scene's AMI session records (a SceneFailed naming it if not)."""

    async def probe() -> bool:
        return condition()

    await until(probe, timeout, what)


async def wait_log(node: ControllerProcess, line: str, timeout: float) -> float:
    """Wait for ``line`` in the node's log; the monotonic time it was seen."""
    await asyncio.to_thread(node.wait_for_log, line, timeout)
    return time.monotonic()


async def together(*steps: Awaitable[Any]) -> list[Any]:
    """Run ``steps`` at once and let every one finish (each start is then owned by the scene's
    exit stack) before the first failure, if any, is raised."""
    results = await asyncio.gather(*steps, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return results


async def read_saved(stack: DemoStack, env: dict[str, str], caller: str) -> tuple[list[JourneyRow], dict[str, Any]]:
    """``ivr journeys`` on the shared database: the caller's rows, and the newest one in full."""
    rows = pick(parse_journey_list(await stack.ivr("journeys", "--limit", "20", env=env)), caller)
    check(bool(rows), f"no journey saved for {caller}")
    journey, _ = parse_journey_detail(await stack.ivr("journeys", rows[0].id, env=env))
    return rows, journey


async def wrap_up(page: Any) -> None:
    """The card's wrap-up after the call ended: a disposition, saved; she is ready again."""
    await page.wait_for_selector("#status[data-status=wrap_up]", timeout=10000)
    await page.select_option("#call select[name=disposition]", "resolved")
    await page.click("#call button[name=save]")


@scene(
    "nodes",
    "One contact center on two controllers; the leader is killed",
    "node B leads within seconds; the waiting caller pops on B, the callback is dialled once, the killed node's caller is saved",
    order=70,
)
async def nodes(stack: DemoStack, tell: Tell) -> str:
    work = stack.work_dir / "nodes"
    flows = work / "flows"
    flows.mkdir(parents=True)
    (flows / "nodes_menu.yaml").write_text(MENU_FLOW)
    (flows / "nodes_hold.yaml").write_text(HOLD_FLOW)
    password = stack.secrets.agent_password
    watch = Watch(stack)
    customers = Softphone("customer", ring_ms=CUSTOMER_RING_MS, register=False)
    phone = Softphone(AGENT_ENDPOINT, stack.lab.agent_passwords[AGENT_ENDPOINT], ring_ms=AGENT_RING_MS)
    calls: list[asyncio.Task[SippResult]] = []
    ports = {"A": free_port(), "B": free_port()}
    web = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
    tell("the demo's controller stops for this scene: node A takes its FastAGI port, and one ACD drives AMI")
    async with contextlib.AsyncExitStack() as scope:
        # everything that needs neither the database nor node A's port starts while initdb runs
        entering = asyncio.ensure_future(scope.enter_async_context(servers()))
        try:
            browser, *_ = await together(
                scope.enter_async_context(chromium()),
                asyncio.to_thread(stack.stop_controller),
                asyncio.to_thread(build_flow_prompts, flows, stack.lab.sounds_dir),
                scope.enter_async_context(customers),
                scope.enter_async_context(phone),
                watch.ami.connect(),
            )
        finally:
            postgres, redis = await entering
        scope.push_async_callback(watch.ami.stop)
        scope.push_async_callback(end_calls, watch, calls)
        database = postgres.create_database("contact_center")
        tell("two nodes share a throwaway PostgreSQL and Redis (the demo's own controller uses SQLite)")
        env = {
            "IVR_DATABASE_URL": database,
            "IVR_PUBSUB_URL": redis.url,
            "IVR_AMI_SECRET": stack.secrets.ami,
            "IVR_API_TOKEN": stack.secrets.api_token,
            "IVR_SPEECH_ENGINE": "off",
            "IVR_FLOWS_DEFAULT": "nodes_menu",
            "IVR_CALLBACKS_DIAL": f"PJSIP/trunk/sip:{{number}}@127.0.0.1:{customers.port}",
        }
        node_a = ControllerProcess(flows_dir=flows, data_dir=work / "a", env={**env, "IVR_WEB_PORT": str(ports["A"])})
        node_b = ControllerProcess(
            flows_dir=flows,
            data_dir=work / "b",
            agi_port=AGI_STANDBY_PORT,
            env={**env, "IVR_WEB_PORT": str(ports["B"])},
        )
        scope.callback(node_b.stop)
        scope.callback(node_a.kill)

        # 1. two nodes; the first one started takes the ACD lease
        await asyncio.to_thread(node_a.start, 30)  # migrates the database first
        await wait_log(node_a, "AMI connected", 15)
        tell(f"node A starts first; then node B, and `ivr agents add {AGENT}` (skill billing)")
        await together(
            asyncio.to_thread(node_b.start, 30),
            asyncio.to_thread(
                add_agent, work / "a", AGENT, AGENT_ENDPOINT, ["billing"], password, name=AGENT_NAME, env=env
            ),
        )
        await wait_log(node_b, "ACD role: follower", 10)
        roles = {name: (await asyncio.to_thread(readyz, base)).get("role") for name, base in web.items()}
        tell(f"node A: {roles['A']}, node B: {roles['B']} (their /readyz; FastAGI on 4573 and {AGI_STANDBY_PORT})")
        check(roles == {"A": "leader", "B": "follower"}, f"roles {roles}")
        check("AMI connected" not in node_b.log_path.read_text(), "the follower connected to AMI")

        # 2. the agent on node B, on a break; H waits in billing; K books a callback; M in A's menu
        lengths = prompt_lengths(stack.lab.sounds_dir)
        key_at = prompt_ms(lengths, WELCOME) // 2  # into the welcome: the key barges in
        offer = (QUEUE_POSITION_PROMPT, QUEUE_WAIT_PROMPT, QUEUE_MINUTES_PROMPT)
        book_at = sum(prompt_ms(lengths, p.text) for p in offer) + 1200  # 1 pressed through the offer
        booked_by = book_at + 3 * 900 + 500  # K hangs up after the last 1, not at the end of the thanks
        page = await desktop_login(browser, web["B"], AGENT, password, ready=False)
        scope.push_async_callback(sign_out, page, web["B"])
        await wait_log(node_a, "agent ann logged in on ", 10)
        tell(f"{AGENT!r} signs in at node B's desktop, paused: her login reached node A's ACD over Redis")

        def call(script: CallerScript) -> asyncio.Task[SippResult]:
            calls.append(asyncio.create_task(run_caller_async(script, timeout=150)))
            return calls[-1]

        tell(f"H {HOLDER} dials {MENU_NUMBER} and keys 1 into billing, where H waits")
        tell(f"K {BOOKER} dials the billing line {HOLD_NUMBER} and presses 1 to be called back, keeping the place")
        tell(f"M {IN_MENU} dials {MENU_NUMBER} and presses nothing: node A's menu waits for a key")
        holder = call(
            CallerScript(caller_id=HOLDER, dialled=MENU_NUMBER, dtmf=(Dtmf("1", key_at),), max_call_ms=120000)
        )
        booker = call(
            CallerScript(
                caller_id=BOOKER,
                dialled=HOLD_NUMBER,
                dtmf=(Dtmf("1111", book_at, spacing_ms=900),),
                hangup_after_ms=booked_by,
                max_call_ms=booked_by + 1000,
            )
        )
        in_menu = call(CallerScript(caller_id=IN_MENU, dialled=MENU_NUMBER, max_call_ms=120000))
        await seen(lambda: watch.joined(HOLDER, "billing") is not None, 20, "H in billing")
        tell.call_result(await booker, "K")
        check(" booked for journey " in node_a.log_path.read_text(), "node A booked no callback for K")

        # 3. the leader dies
        tell("node A is killed with SIGKILL")
        killed = time.monotonic()
        node_a.kill()
        led = await wait_log(node_b, "ACD role: leader", TAKEOVER_S) - killed
        ami = await wait_log(node_b, "AMI connected", TAKEOVER_S) - killed
        await wait_log(node_b, "agent ann logged in on ", 5)
        role_b = (await asyncio.to_thread(readyz, web["B"])).get("role")
        tell(f"  kill -> node B leader in {led:.1f} s, AMI connected {ami:.1f} s; its /readyz says {role_b}")
        tell("  node B logs Ann in again through its own ACD, paused (nobody confirmed her screen yet)")
        check(role_b == "leader", f"node B's role after the kill: {role_b}")
        check(ami < TAKEOVER_S, f"node B drove AMI {ami:.1f} s after the kill")

        await seen(lambda: watch.joined(IN_MENU, "main") is not None, 15, "M in the fallback queue")
        fallback = watch.joined(IN_MENU, "main")
        assert fallback is not None
        tell("  M: node A's menu ended with no node behind it; the dialplan's fallback queue 'main' took M")
        await watch.ami.action({"Action": "Hangup", "Channel": fallback.caller.name})
        tell.call_result(await in_menu, "M")
        saved = asyncio.create_task(read_saved(stack, env, IN_MENU))  # read while the agent works

        await page.wait_for_selector("#status[data-status=paused]", timeout=5000)
        clicked = time.monotonic()
        await page.click("#btn-ready")
        await page.wait_for_selector("#call.ringing", timeout=20000)
        popped = time.monotonic() - clicked
        first = await card_fields(page)
        tell(f"Ann presses Ready on node B's desktop: H's card pops {popped:.1f} s later")
        tell(f"    caller {first['caller']}, queue {first['queue']}, waited {first['waited']}, path {first['path']}")
        check(first["caller"] == HOLDER, f"the first card is for {first['caller']}, not H")
        await page.wait_for_selector("#call.active", timeout=AGENT_RING_MS + 10000)
        await seen(lambda: watch.connected(HOLDER) is not None, 10, "H connected")
        check(customers.invites() == 0, "K was dialled before H, who called first, was served")
        h_connect = watch.connected(HOLDER)
        assert h_connect is not None
        tell("  her phone answers; H hangs up; she saves the wrap-up and is ready")
        await watch.ami.action({"Action": "Hangup", "Channel": h_connect.caller.name})
        tell.call_result(await holder, "H")
        await wrap_up(page)

        await page.wait_for_selector("#call.ringing", timeout=30000)  # the saved card was cleared
        second = await card_fields(page)
        tell(f"node B dials K back; K answers and Ann's card pops for {second['caller']}")
        check(second["caller"] == BOOKER, f"the second card is for {second['caller']}, not K")
        await page.wait_for_selector("#call.active", timeout=AGENT_RING_MS + 10000)
        await seen(lambda: watch.connected(BOOKER) is not None, 10, "K connected")
        k_connect = watch.connected(BOOKER)
        assert k_connect is not None
        await watch.ami.action({"Action": "Hangup", "Channel": k_connect.agent_channel.name})
        await wrap_up(page)

        # what is left: the journeys in the shared database, the dials counted at Asterisk
        m_rows, m_journey = await saved

        async def k_callback() -> list[str]:
            timeline = await asyncio.to_thread(stack.timeline, BOOKER, web=web["B"])
            return [e["kind"] for e in timeline if e["kind"].startswith("callback_")]

        # read until the connection is there, as a person refreshing the page would: it reaches the
        # database with the writer's next batch, which may come after the wrap-up is saved
        k_kinds = await k_callback()
        for _ in range(20):
            if "callback_connected" in k_kinds:
                break
            await asyncio.sleep(0.5)
            k_kinds = await k_callback()
        tell(
            f"  M's journey {m_journey['id'][:12]}: saved at step {m_journey['step']!r}, "
            f"{'waiting there (resumable)' if m_journey.get('waiting') else 'not waiting'}"
        )
        tell(f"  K's timeline: {', '.join(k_kinds)}")

        async def no_channels() -> bool:
            return not await watch.channels()

        await until(no_channels, 10, "no channel left (AMI CoreShowChannels)")
        dials, invites = len(watch.originated), customers.invites()
        tell(f"  at Asterisk: {dials} callback Originate, {invites} INVITE at K's phone; 0 channels left")
    tell("node B stopped, PostgreSQL and Redis removed")
    check(len(m_rows) == 1, f"M has {len(m_rows)} journeys (started again on node B?)")
    check(m_journey["step"] == "menu" and bool(m_journey.get("waiting")), f"M's journey {m_journey}")
    check(k_kinds[:1] == ["callback_requested"] and "callback_connected" in k_kinds, f"K's callback {k_kinds}")
    check(dials == 1 and invites == 1, f"K was dialled {dials} times (Originate), {invites} INVITEs")
    check(watch.originated[0].response == "Success", f"the callback's dial: {watch.originated[0].response}")
    return f"node B led {led:.1f} s after the kill (AMI {ami:.1f} s); H's pop on B, K dialled once, M saved at the menu"
