#!/usr/bin/env python3
"""CPU per caller lookup and per first-call creation, in-process, this checkout against another.

``agi_load.py`` measures a whole call's CPU in ``ivr serve``, but on a shared machine its figure
moves by 10-15% from run to run, more than the changes it should judge. The caller lookup (one
statement for a known number) and a first call's creation (two INSERTs in a transaction) are the
call path's database work; this script times only them, with the store code of a checkout
(``--base-code``, e.g. main, imported through PYTHONPATH in a child process), rounds interleaved
and the order flipping: process CPU (every thread: aiosqlite's or asyncpg's work counts) per
lookup of ``--callers`` known numbers, ``--inflight`` at once, and per creation of a new one.

    .venv/bin/python bench/lookup_cpu.py [--lookups 3000] [--inflight 10] [--rounds 5] [--base-code /work/main]
        [--database sqlite|postgresql]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


async def measure(url: str, callers: int, lookups: int, inflight: int, creations: int) -> dict[str, float]:
    """Runs in the child: the checkout's own store code on a fresh database."""
    from ivr.store.customers import CallerProfiles, CustomerStore
    from ivr.store.journeys import make_engine
    from ivr.store.schema import upgrade

    engine = make_engine(url)
    await upgrade(engine)
    store = CustomerStore(engine)
    profiles = CallerProfiles(store, timeout=10.0)
    numbers = [f"+1555400{n:04d}" for n in range(callers)]
    for number in numbers:  # warm: every caller known, the pool filled, statements compiled
        await profiles.load(number)

    async def run(items: list[str]) -> float:
        queue = iter(items)

        async def worker() -> None:
            for number in queue:
                await profiles.load(number)

        started = time.process_time()
        await asyncio.gather(*(worker() for _ in range(inflight)))
        return time.process_time() - started

    known = await run([numbers[n % callers] for n in range(lookups)])
    new = await run([f"+1555500{n:04d}" for n in range(creations)])
    await profiles.stop()
    await engine.dispose()
    return {"lookup_ms": 1000 * known / lookups, "create_ms": 1000 * new / creations}


def child(code: Path | None, args: argparse.Namespace, number: int) -> dict[str, float]:
    data = Path(tempfile.mkdtemp(prefix="ivr-lookup-cpu-"))
    url = f"sqlite+aiosqlite:///{data / 'ivr.sqlite3'}"
    if args.pg is not None:
        url = args.pg.create_database(f"lookup_cpu_{number}")
    env = {**os.environ, "PYTHONPATH": str(code or REPO)}
    argv = [sys.executable, __file__, "--child", url, str(args.callers), str(args.lookups), str(args.inflight)]
    argv.append(str(args.creations))
    out = subprocess.run(argv, env=env, cwd=tempfile.gettempdir(), capture_output=True, text=True, check=False)
    if out.returncode:
        raise RuntimeError(out.stderr[-3000:])
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        url, callers, lookups, inflight, creations = sys.argv[2:7]
        figures = asyncio.run(measure(url, int(callers), int(lookups), int(inflight), int(creations)))
        print(json.dumps(figures))
        return 0
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--callers", type=int, default=200)
    parser.add_argument("--lookups", type=int, default=3000)
    parser.add_argument("--creations", type=int, default=600)
    parser.add_argument("--inflight", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--base-code", type=Path)
    parser.add_argument("--database", choices=("sqlite", "postgresql"), default="sqlite")
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))
    from lab.postgres import PostgresServer

    args.pg = PostgresServer().start() if args.database == "postgresql" else None
    codes: list[tuple[str, Path | None]] = [("this", None)]
    if args.base_code is not None:
        codes.append(("base", args.base_code))
    results: dict[str, list[dict[str, float]]] = {name: [] for name, _ in codes}
    runs = 0
    try:
        for number in range(args.rounds):
            for name, code in codes if number % 2 == 0 else codes[::-1]:
                runs += 1
                figures = child(code, args, runs)
                results[name].append(figures)
                print(
                    f"round {number + 1} {name}: lookup {figures['lookup_ms']:.3f} ms CPU, "
                    f"creation {figures['create_ms']:.3f} ms CPU",
                    flush=True,
                )
    finally:
        if args.pg is not None:
            args.pg.stop()
    for key in ("lookup_ms", "create_ms"):
        line = f"{key.removesuffix('_ms')}: " + ", ".join(
            f"{name} median {statistics.median(r[key] for r in rounds):.3f} ms" for name, rounds in results.items()
        )
        if args.base_code is not None:
            ratios = [a[key] / b[key] for a, b in zip(results["this"], results["base"], strict=True)]
            line += f"; this / base median {statistics.median(ratios):.2f} ({min(ratios):.2f}-{max(ratios):.2f})"
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
