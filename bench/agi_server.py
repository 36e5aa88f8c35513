#!/usr/bin/env python3
"""The FastAGI server layer alone, side by side: ``ivr.agi.server`` with nothing behind it.

``agi_load.py`` measures the whole controller, whose CPU per call moves by 10% from one run to the
next on a shared machine (the flow, the lookup, the writer, the threads), so a change to the
socket and protocol layer alone (a few tens of microseconds) does not show there. Here the
product's own ``AgiServer`` from this checkout, and with ``--base-code`` from another one, serves
a handler that sends the short call's four commands (``ANSWER``, ``STREAM FILE``, two ``SET
VARIABLE``) and nothing else, on uvloop as ``ivr serve`` runs. The servers take turns, the order
flipping each round; this script plays Asterisk (the same environment as ``agi_load.py``, and
``STREAM FILE`` answered at once) on CPU 0, the server runs on CPU 1. Printed: each round's server
CPU per call (user + system, from /proc), and this / base pair by pair (median and range).

    .venv/bin/python bench/agi_server.py [--calls 4000] [--rate 300] [--rounds 4] [--base-code /work/main]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench import agi_load  # noqa: E402  (the same fake Asterisk's environment and /proc reading)

PORT = 4591  # neither the lab's 4573 nor agi_load.py's 4581


def serve(code: str, port: int) -> None:
    """The server side (a child process): the checkout's AgiServer and a four-command handler."""
    sys.path.insert(0, code)
    import uvloop

    import ivr
    from ivr.agi import commands
    from ivr.agi.server import AgiServer, AgiSession

    if not Path(ivr.__file__).resolve().is_relative_to(Path(code).resolve()):  # imported before the path was set
        raise SystemExit(f"the server runs ivr from {ivr.__file__}, not from {code}")

    async def short_call(session: AgiSession) -> None:
        await session.command(commands.answer())
        await session.command('STREAM FILE beep ""')
        await session.set_variable("IVR_ACTION", "done")
        await session.set_variable("IVR_ROUTE", "bench")

    async def main() -> None:
        server = AgiServer(lambda env: short_call, host="127.0.0.1", port=port)
        await server.start()
        print("ready", flush=True)
        await asyncio.Event().wait()

    uvloop.install()
    asyncio.run(main())


async def _call(n: int) -> bool:
    reader, writer = await asyncio.open_connection("127.0.0.1", PORT)
    writer.write(agi_load.environment(n, 2000))
    commands = 0
    while line := await reader.readline():
        commands += 1
        writer.write(b"200 result=0 endpos=400\n" if line.startswith(b"STREAM FILE") else b"200 result=1\n")
    writer.close()
    return commands == 4


async def _load(calls: int, rate: float, offset: int) -> int:
    started = time.perf_counter()
    tasks = []
    for n in range(calls):
        tasks.append(asyncio.create_task(_call(offset + n)))
        await asyncio.sleep(max(0.0, started + (n + 1) / rate - time.perf_counter()))
    return sum(await asyncio.gather(*tasks))


def run_once(code: Path, args: argparse.Namespace) -> float:
    """One server's CPU per call in microseconds, after a warm-up of a tenth of the calls."""
    server = subprocess.Popen(
        [sys.executable, __file__, "--serve", str(code), str(PORT)], stdout=subprocess.PIPE, cwd="/"
    )
    try:
        assert server.stdout is not None
        if server.stdout.readline().strip() != b"ready":
            raise SystemExit(f"the server from {code} did not start")
        if len(os.sched_getaffinity(0)) > 1:
            os.sched_setaffinity(server.pid, {1})
        asyncio.run(_load(args.calls // 10, args.rate, 0))
        before = sum(agi_load.cpu_split(server.pid))
        calls: int = args.calls
        served = asyncio.run(_load(calls, args.rate, calls))
        cpu = sum(agi_load.cpu_split(server.pid)) - before
        if served != calls:
            raise SystemExit(f"{code}: {calls - served} calls did not get their four commands")
        return 1e6 * cpu / calls
    finally:
        server.kill()
        server.wait()


def main() -> int:
    if len(sys.argv) == 4 and sys.argv[1] == "--serve":
        serve(sys.argv[2], int(sys.argv[3]))
        return 0
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=4000)
    parser.add_argument("--rate", type=float, default=300)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--base-code", type=Path, help="another checkout, run as 'base' round by round")
    args = parser.parse_args()
    if len(os.sched_getaffinity(0)) > 1:
        os.sched_setaffinity(0, {0})  # this script plays Asterisk on CPU 0, the server has CPU 1
    codes = [("this", REPO)] + ([("base", args.base_code.resolve())] if args.base_code else [])
    figures: dict[str, list[float]] = {name: [] for name, _ in codes}
    for number in range(args.rounds):
        for name, code in codes if number % 2 == 0 else codes[::-1]:
            figures[name].append(run_once(code, args))
            print(f"round {number + 1} {name}: server CPU {figures[name][-1]:.0f} us/call", flush=True)
    for name, values in figures.items():
        print(f"{name}: median {statistics.median(values):.0f} us/call ({min(values):.0f}-{max(values):.0f})")
    if args.base_code:
        ratios = [this / base for this, base in zip(figures["this"], figures["base"], strict=True)]
        print(
            f"this / base, pair by pair: median {statistics.median(ratios):.2f} ({min(ratios):.2f}-{max(ratios):.2f})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
