#!/usr/bin/env python3
"""What operators' figures cost: a /metrics scrape under load, and the counters' share of a call.

1. **Scrape**: ``ivr serve`` (speech off, SQLite) with ``--calls`` calls held open by fake
   Asterisk connections (each answers its call's first ``--replies`` AGI commands, so the command
   histogram has samples, then holds the call waiting on the next reply), then ``--scrapes``
   sequential ``GET /metrics`` over keep-alive. Prints the scrape's wall time (p50/p95/max) as
   the client sees it, and checks the scrape itself says ``ivr_agi_calls_active == --calls``.
2. **Counters' share of a call**: two FastAGI servers in this process, the same handler (the five
   commands of the ``bench_menu`` call: STREAM FILE, EXEC Read, GET VARIABLE, STREAM FILE, SET
   VARIABLE), one with ``observe_command`` wired to the telemetry histogram and one without. A
   child process plays Asterisk for ``--per-round`` calls at a time, alternating servers for
   ``--rounds`` rounds; the server side's CPU per call is this process's CPU time over the round
   (the child's is its own). The ratio with/without is an upper bound on what the counters add to
   a real call, whose flow, journey and database work come on top of the same observations.

    .venv/bin/python bench/metrics.py [--calls 200] [--scrapes 200] [--rounds 30] [--per-round 500]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from prometheus_client import Histogram  # noqa: E402

from ivr.agi.server import AgiServer, AgiSession  # noqa: E402
from ivr.telemetry import COMMAND_BUCKETS, Telemetry  # noqa: E402
from lab.controller import ControllerProcess  # noqa: E402

TOKEN = "bench-metrics-token-" + "x" * 20
MENU_CALL = (
    'STREAM FILE ivr/thank-you-for-calling-ce598488 ""',
    'EXEC Read "IVR_MENU_KEY,ivr/please-choose-from-the-following-14e28566,1,,1,3"',
    "GET VARIABLE IVR_MENU_KEY",
    'STREAM FILE ivr/we-are-working-on-it-80f19c19 ""',
    'SET VARIABLE IVR_ACTION "hangup"',
)


def env(route: str, n: int) -> bytes:
    return (
        f"agi_network: yes\nagi_network_script: {route}\nagi_request: agi://127.0.0.1/{route}\n"
        f"agi_channel: PJSIP/lab-{n:08x}\nagi_language: en\nagi_type: PJSIP\nagi_uniqueid: 1764000000.{n}\n"
        f"agi_version: 22.1.0\nagi_callerid: 5550100\nagi_calleridname: bench\nagi_dnid: 5550100\n"
        f"agi_context: from-trunk\nagi_extension: 5550100\nagi_priority: 1\n\n"
    ).encode()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- 1. the scrape at N active calls ----------------------------------------------------------------


async def hold_call(port: int, n: int, replies: int, held: asyncio.Event, release: asyncio.Event) -> int:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(env("inbound", n))
    answered = 0
    try:
        for _ in range(replies):
            line = await reader.readline()
            if not line:
                return answered
            writer.write(b"200 result=0\n")
            answered += 1
        await reader.readline()  # the next command: left unanswered, the call stays up
        held.set()
        await release.wait()
    finally:
        writer.close()
    return answered


async def scrape_times(base: str, scrapes: int) -> tuple[list[float], str]:
    import aiohttp

    times: list[float] = []
    text = ""
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {TOKEN}"}) as http:
        for _ in range(scrapes):
            started = time.perf_counter()
            async with http.get(base + "/metrics") as r:
                text = await r.text()
                assert r.status == 200, text
            times.append(time.perf_counter() - started)
    return times, text


async def scrape_bench(calls: int, replies: int, scrapes: int) -> None:
    with tempfile.TemporaryDirectory(prefix="ivr-bench-metrics-") as tmp:
        agi_port = free_port()
        proc = ControllerProcess(
            flows_dir=REPO / "dialplans",
            data_dir=Path(tmp),
            agi_port=agi_port,
            log_level="INFO",
            env={
                "IVR_SPEECH_ENGINE": "off",
                "IVR_WEB_METRICS_TOKEN": TOKEN,
                "IVR_FLOWS_DEFAULT": "support",
            },
        )
        proc.start()
        try:
            proc.wait_for_log("HTTP API listening on")
            port = re.search(r"HTTP API listening on http://127\.0\.0\.1:(\d+)/", proc.log_path.read_text())
            assert port
            base = f"http://127.0.0.1:{port.group(1)}"
            release = asyncio.Event()
            helds = [asyncio.Event() for _ in range(calls)]
            tasks = [asyncio.create_task(hold_call(agi_port, n, replies, helds[n], release)) for n in range(calls)]
            async with asyncio.timeout(60):
                await asyncio.gather(*(h.wait() for h in helds))
            await scrape_times(base, 5)  # warm: first-use imports, connection set-up
            times, text = await scrape_times(base, scrapes)
            active = re.search(r"^ivr_agi_calls_active (\S+)$", text, re.M)
            count = re.search(r"^ivr_agi_command_seconds_count (\S+)$", text, re.M)
            assert active and count
            release.set()
            await asyncio.gather(*tasks)
        finally:
            proc.stop()
    ms = sorted(t * 1000 for t in times)
    print(
        f"scrape at {float(active.group(1)):.0f} active calls ({float(count.group(1)):.0f} command samples, "
        f"{len(text)} bytes): p50 {statistics.median(ms):.2f} ms, p95 {ms[int(len(ms) * 0.95) - 1]:.2f} ms, "
        f"max {ms[-1]:.2f} ms over {len(ms)} scrapes (target: under 20 ms)"
    )


# -- 2. the counters' share of a call ---------------------------------------------------------------


async def menu_call(session: AgiSession) -> None:
    for line in MENU_CALL:
        await session.command(line)


async def asterisk_client(port: int, calls: int, concurrency: int) -> None:
    """Plays Asterisk's side (in the child process): ``calls`` calls, ``concurrency`` at a time."""
    next_call = iter(range(calls))

    async def worker() -> None:
        for n in next_call:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(env("menu", n))
            while await reader.readline():
                writer.write(b"200 result=0\n")
            writer.close()

    await asyncio.gather(*(worker() for _ in range(concurrency)))


async def overhead_bench(rounds: int, per_round: int) -> None:
    telemetry = Telemetry()
    plain = AgiServer(lambda env: menu_call, port=0)
    counted = AgiServer(lambda env: menu_call, port=0, observe_command=telemetry.agi_command_seconds.observe)
    await plain.start()
    await counted.start()
    cpu: dict[str, list[float]] = {"without": [], "with": []}
    try:
        order = [("without", plain), ("with", counted)]
        for r in range(rounds + 1):  # round 0 warms both
            for name, server in order if r % 2 else order[::-1]:
                before_calls = server.total_calls
                started = time.process_time()
                child = await asyncio.create_subprocess_exec(
                    sys.executable, __file__, "--client", str(server.port), str(per_round)
                )
                assert await child.wait() == 0
                used = time.process_time() - started
                served = server.total_calls - before_calls
                assert served == per_round, (served, per_round)
                if r:
                    cpu[name].append(used / served)
    finally:
        await plain.stop()
        await counted.stop()
    without = statistics.median(cpu["without"]) * 1e6
    with_ = statistics.median(cpu["with"]) * 1e6
    observed = telemetry.agi_command_seconds.count
    # each round ran both servers back to back: their ratio cancels the machine's drift between rounds
    pairs = sorted(w / o for w, o in zip(cpu["with"], cpu["without"], strict=True))
    quartiles = statistics.quantiles(pairs, n=4)
    print(
        f"server CPU per 5-command call, median of {rounds} interleaved rounds of {per_round} calls: "
        f"without counters {without:.1f} us, with {with_:.1f} us ({observed:.0f} round trips observed)"
    )
    print(
        f"  with / without, paired by round: median {statistics.median(pairs):.3f}, "
        f"quartiles {quartiles[0]:.3f}-{quartiles[2]:.3f} (target: under 1.02)"
    )
    micro = Telemetry(process=False).agi_command_seconds
    n = 200_000
    started = time.perf_counter()
    for _ in range(n):
        sent = time.perf_counter()
        micro.observe(time.perf_counter() - sent)
    print(
        f"  one observation (two clock reads + LoopHistogram.observe): {(time.perf_counter() - started) / n * 1e6:.2f} us"
    )
    library = Histogram("x", "the library's histogram, for comparison", buckets=COMMAND_BUCKETS, registry=None)
    started = time.perf_counter()
    for _ in range(n):
        sent = time.perf_counter()
        library.observe(time.perf_counter() - sent)
    print(f"  the same with prometheus_client's Histogram.observe: {(time.perf_counter() - started) / n * 1e6:.2f} us")


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--client":
        asyncio.run(asterisk_client(int(sys.argv[2]), int(sys.argv[3]), concurrency=20))
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=200, help="calls held open during the scrapes")
    parser.add_argument("--replies", type=int, default=3, help="AGI commands answered per held call")
    parser.add_argument("--scrapes", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--per-round", type=int, default=500)
    parser.add_argument("--only", choices=["scrape", "overhead"], default=None)
    args = parser.parse_args()
    print(f"{os.cpu_count()} cores; {time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime())} UTC; load {os.getloadavg()}")
    if args.only in (None, "scrape"):
        asyncio.run(scrape_bench(args.calls, args.replies, args.scrapes))
    if args.only in (None, "overhead"):
        asyncio.run(overhead_bench(args.rounds, args.per_round))


if __name__ == "__main__":
    main()
