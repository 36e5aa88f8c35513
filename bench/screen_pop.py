"""Screen-pop latency: Asterisk's AgentCalled -> the card painted in a real Chromium (p50, p99).

    .venv/bin/python bench/screen_pop.py [--calls 40] [--rate 2] [--agents 50] [--redis]

One lab Asterisk 22, ``ivr serve`` as a child process (AMI on, speech off), ``--agents`` agents
logged in to the desktop and ready in queue "billing": the first four own the lab's real PJSIP
phones (SIPp softphones that answer after 300 ms) and are real Chromium pages; the rest are
websocket clients (aiohttp) whose phones are not registered, so app_queue never rings them but
they are logged in, in the queue, and receive their state over the same bus. SIPp callers arrive
at ``--rate`` per second straight into the queue and hang up after 6 s; agents in wrap-up are set
ready again by the driver.

Latency per pop = the page's ``Date.now()`` after the frame with the card was painted (rAF +
setTimeout 0) minus the ``Timestamp:`` of the AgentCalled event (Asterisk's clock; same host).
Target: p99 < 100 ms. Raw numbers go to bench/results/.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

from ivr.store.agents import AgentStore
from ivr.store.journeys import JourneyStore, make_engine
from ivr.web.agents_auth import hash_password
from lab.asterisk import AsteriskLab
from lab.browser import chromium
from lab.controller import ControllerProcess
from lab.lock import lab_session_lock
from lab.redis import throwaway_redis
from lab.sipp import CallerScript, run_load
from lab.softphone import Softphone

RESULTS = Path(__file__).resolve().parent / "results"
PHONES = ("agent1001", "agent1002", "agent1003", "agent1004")
FLOW = """\
flow: pop_bench
numbers: ["5550190"]
start: to_billing
steps:
  to_billing:
    queue: {name: billing, skill: billing, priority: 5}
"""
PASSWORD = "bench-password"


async def seed(data: Path, agents: int) -> None:
    store = JourneyStore(make_engine(f"sqlite+aiosqlite:///{data / 'ivr.sqlite3'}"))
    await store.start()
    try:
        hashed = hash_password(PASSWORD)  # one hash for all: scrypt per agent would only slow the setup
        repo = AgentStore(store.engine)
        for i in range(agents):
            endpoint = PHONES[i] if i < len(PHONES) else f"bench{i:02d}"
            await repo.add(
                username=f"agent{i:02d}",
                display_name=f"Agent {i:02d}",
                password_hash=hashed,
                endpoint=endpoint,
                skills={"billing": 0},
                agent_id=f"a{i:02d}",
            )
    finally:
        await store.stop()


async def ws_agent(base: str, username: str, stop: asyncio.Event) -> int:
    """A logged-in desktop without a browser: logs in, goes ready, reads its websocket."""
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as web:
        page = await (await web.get(f"{base}/desktop/login")).text()
        csrf_form = re.search(r'name="csrf" value="([^"]+)"', page)
        assert csrf_form
        await web.post(
            f"{base}/desktop/login", data={"username": username, "password": PASSWORD, "csrf": csrf_form.group(1)}
        )
        csrf = (await (await web.get(f"{base}/desktop/api/me")).json())["csrf"]
        async with web.ws_connect(f"{base}/desktop/ws?csrf={csrf}", headers={"Origin": base}) as ws:
            await ws.send_json({"type": "ready"})
            received = 0
            while not stop.is_set():
                try:
                    await ws.receive_json(timeout=0.5)
                    received += 1
                except TimeoutError:
                    continue
            return received


async def browser_agent(browser: Any, base: str, username: str) -> Any:
    context = await browser.new_context()
    page = await context.new_page()
    await page.goto(f"{base}/desktop/login")
    await page.fill("#username", username)
    await page.fill("#password", PASSWORD)
    await page.click("#signin")
    await page.wait_for_selector("#status[data-status=paused]")
    await page.click("#btn-ready")
    await page.wait_for_selector("#status[data-status=ready]")
    return page


async def run(args: argparse.Namespace, lab: AsteriskLab) -> dict[str, Any]:
    data = Path(tempfile.mkdtemp(prefix="ivr-popbench-"))
    flows = data / "flows"
    flows.mkdir()
    (flows / "pop_bench.yaml").write_text(FLOW)
    await seed(data, args.agents)
    env = {
        "IVR_FLOWS_DEFAULT": "pop_bench",
        "IVR_AMI_SECRET": lab.ami_secret,
        "IVR_SPEECH_ENGINE": "off",
        "IVR_CALLBACKS_OFFER_AFTER": "-1",
    }
    redis = throwaway_redis() if args.redis else None
    if redis is not None:
        env["IVR_PUBSUB_URL"] = redis.__enter__().url
    controller = ControllerProcess(flows_dir=flows, data_dir=data, env=env, log_level="INFO")
    phones = [Softphone(p, lab.agent_passwords[p], ring_ms=300) for p in PHONES[: args.agents]]
    stop = asyncio.Event()
    try:
        for phone in phones:
            await phone.start()
        controller.start(timeout=30)
        controller.wait_for_log("AMI connected")
        port = int(re.findall(r"listening on http://127\.0\.0\.1:(\d+)/", controller.log_path.read_text())[0])
        base = f"http://127.0.0.1:{port}"
        async with chromium() as browser:
            pages = [await browser_agent(browser, base, f"agent{i:02d}") for i in range(len(phones))]
            others = [
                asyncio.create_task(ws_agent(base, f"agent{i:02d}", stop)) for i in range(len(phones), args.agents)
            ]
            await asyncio.sleep(2)

            async def keep_ready() -> None:
                while not stop.is_set():
                    for page in pages:
                        if await page.locator("#status[data-status=wrap_up]").count():
                            await page.click("#btn-ready")
                    await asyncio.sleep(0.2)

            readier = asyncio.create_task(keep_ready())
            started = time.monotonic()
            load = await asyncio.to_thread(
                run_load,
                CallerScript(caller_id="+15551230900", dialled="5550190", hangup_after_ms=6000, max_call_ms=30000),
                rate=args.rate,
                calls=args.calls,
            )
            elapsed = time.monotonic() - started
            await asyncio.sleep(1)
            stop.set()
            await readier
            received = [await t for t in others]
            pops: list[dict[str, float]] = []
            for page in pages:
                pops += await page.evaluate("window.__ivrPops")
    finally:
        stop.set()
        controller.stop()
        for phone in phones:
            await phone.stop()
        if redis is not None:
            redis.__exit__(None, None, None)
    latencies = sorted((p["painted_at"] - p["called_at"]) * 1000 for p in pops)
    q = statistics.quantiles(latencies, n=100, method="inclusive") if len(latencies) > 1 else latencies * 99
    return {
        "agents": args.agents,
        "calls": args.calls,
        "rate": args.rate,
        "bus": "redis" if args.redis else "memory",
        "sipp": load.summary(),
        "seconds": round(elapsed, 1),
        "pops": len(latencies),
        "p50_ms": round(statistics.median(latencies), 1) if latencies else None,
        "p99_ms": round(q[98], 1) if latencies else None,
        "max_ms": round(latencies[-1], 1) if latencies else None,
        "websocket_agents_messages": sum(received),
        "latencies_ms": [round(x, 1) for x in latencies],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=40)
    parser.add_argument("--rate", type=float, default=2.0)
    parser.add_argument("--agents", type=int, default=50)
    parser.add_argument("--redis", action="store_true", help="pub/sub through a throwaway Redis")
    args = parser.parse_args()
    with lab_session_lock():
        lab = AsteriskLab()
        lab.provision()
        lab.install_config()
        started = not lab.is_running()
        if started:
            lab.start()
        try:
            result = asyncio.run(run(args, lab))
        finally:
            if started:
                lab.stop()
    print(json.dumps({k: v for k, v in result.items() if k != "latencies_ms"}, indent=2))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"screen_pop-{time.strftime('%Y%m%d-%H%M%S')}.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
