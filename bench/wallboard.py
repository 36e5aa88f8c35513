"""Wallboard latency and stream at scale: an ACD event -> the change painted in a real Chromium.

    .venv/bin/python bench/wallboard.py [--agents 300] [--callers 1000] [--events 30]

One controller in this process (``ivr.app.App``: SQLite, the in-process bus, no AMI), ``--agents``
agents logged in to the ACD and ``--callers`` callers waiting (each with a prepared IVR context),
and one supervisor's wallboard in Chromium. The driver hands the ACD queue events the way the AMI
client does (``Acd.handle``), one every 0.3-1.3 s (random, so events land anywhere in the
publisher's round), alternately a caller joining and leaving, and while it runs a background churn
of agent state changes (every 5 ms) stands for a busy centre's AMI traffic.

Latency per event = the page's ``Date.now()`` when it painted the message that carries the change
(``data-painted-at``) minus the moment the driver handed the event to the ACD; same host, same
clock. Target: every event < 1 s. Also printed: messages and bytes per second on the bus, what
each open page receives.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from playwright.async_api import expect

from ivr.acd.topics import WALLBOARD
from ivr.ami import events as ev
from ivr.app import App
from ivr.config import load_config
from ivr.web.agents_auth import hash_password
from lab.browser import chromium

ROOT = Path(__file__).resolve().parents[1]
QUEUES = ("billing", "support", "sales", "outage")


async def main(agents: int, callers: int, events: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as data:
        env = {
            "IVR_DATA_DIR": data,
            "IVR_FLOWS_DIR": str(ROOT / "dialplans"),
            "IVR_WEB_PORT": "0",
            "IVR_AGI_PORT": "0",
            "IVR_SPEECH_ENGINE": "off",
            "IVR_FLOWS_WATCH_INTERVAL": "60",
        }
        app = App(load_config(environ=env))
        await app.start()
        try:
            return await measure(app, agents, callers, events)
        finally:
            await app.stop()


async def measure(app: App, agents: int, callers: int, events: int) -> dict[str, Any]:
    acd = app.acd
    for i in range(agents):
        await acd.login(
            {
                "id": f"a{i}",
                "username": f"agent{i}",
                "display_name": f"Agent {i:03d}",
                "endpoint": f"agent{i}",
                "skills": {QUEUES[i % 4]: 0, "main": 1},
            }
        )
    now = time.time()
    for i in range(callers):
        caller = ev.Channel(f"PJSIP/trunk-{i:08x}", f"{now:.0f}.{i}", callerid=f"+1555{i:07d}")
        await acd.handle(ev.QueueCallerJoin(now - callers + i, QUEUES[i % 4], caller, i + 1, i + 1))
    await app.agents.add(
        username="sue",
        display_name="Sue",
        password_hash=hash_password("sue-password"),
        endpoint="",
        skills={},
        role="supervisor",
    )
    base = f"http://127.0.0.1:{app.web.port}"

    async def churn() -> None:
        i = 0
        while True:
            state = acd.states[f"a{i % agents}"]
            state.status = ("ready", "on_call", "paused", "wrap_up")[i % 4]
            state.since = time.time()
            i += 1
            await asyncio.sleep(0.005)

    received: list[tuple[float, int]] = []

    async def listen() -> None:
        async with app.bus.subscribe(WALLBOARD) as sub:
            async for message in sub:
                received.append((time.monotonic(), len(json.dumps(message))))

    latencies: list[float] = []
    async with chromium() as browser:
        page = await browser.new_page()  # type: ignore[attr-defined]
        await page.goto(f"{base}/supervisor/login")
        await page.fill("#username", "sue")
        await page.fill("#password", "sue-password")
        await page.click("#signin")
        await expect(page.locator("#status")).to_have_text("live", timeout=10000)
        total = page.locator("#callers-total")
        await expect(total).to_have_text(f"(50 longest of {callers})", timeout=10000)
        tasks = [asyncio.create_task(churn()), asyncio.create_task(listen())]
        started = time.monotonic()
        try:
            extra = ev.Channel("PJSIP/trunk-bench", "bench.1", callerid="+15550000001")
            for n in range(events):
                await asyncio.sleep(random.uniform(0.3, 1.3))
                at = time.time()
                if n % 2 == 0:
                    await acd.handle(ev.QueueCallerJoin(at, "billing", extra, callers + 1, callers + 1))
                    want = callers + 1
                else:
                    await acd.handle(ev.QueueCallerLeave(at, "billing", extra, callers + 1, callers))
                    want = callers
                await expect(total).to_have_text(f"(50 longest of {want})", timeout=5000)
                painted = float(await page.get_attribute("body", "data-painted-at") or 0)
                latencies.append((painted - at) * 1000)
        finally:
            elapsed = time.monotonic() - started
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
    sizes = [size for _, size in received]
    latencies.sort()
    return {
        "agents": agents,
        "callers": callers,
        "events": events,
        "latency_ms": {
            "p50": round(statistics.median(latencies)),
            "p90": round(latencies[int(0.9 * (len(latencies) - 1))]),
            "max": round(latencies[-1]),
        },
        "messages_per_s": round(len(received) / elapsed, 2),
        "bytes_per_s": round(sum(sizes) / elapsed),
        "largest_message_bytes": max(sizes) if sizes else 0,
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--agents", type=int, default=300)
    parser.add_argument("--callers", type=int, default=1000)
    parser.add_argument("--events", type=int, default=30)
    args = parser.parse_args()
    figures = asyncio.run(main(args.agents, args.callers, args.events))
    print(json.dumps(figures, indent=2))
    ok = figures["latency_ms"]["max"] < 1000
    print(f"target: every event painted within 1 s: {'met' if ok else 'MISSED'}")
