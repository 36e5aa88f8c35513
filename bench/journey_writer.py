#!/usr/bin/env python3
"""The journey writer alone: CPU per call of its batches, this checkout against another, side by side.

Why: ``agi_load.py`` measures a whole call (AGI exchange, lookup, flow, writer) and moves 10-15%
between runs of the same code on this shared machine, more than the writer's share of a call. Here
each run is a fresh process that feeds ``JourneyStore`` the steps of ``--calls`` short calls the
way a loaded controller does (every batch: ``--per-batch`` calls starting, as many one step in,
as many ending; ``--known`` of them with a customer, a fifth of those calling again), commits
each batch (``flush``), and reports its own CPU (all threads: aiosqlite's too) per call, the
statements per batch that go through SQLAlchemy, and on SQLite the trips per batch to the
connection's thread. Runs of this checkout and of ``--base-code`` alternate, the order flipping
each round; the ratio this / base is printed per round, with the median and spread.

    .venv/bin/python bench/journey_writer.py [--rounds 5] [--calls 3000] [--per-batch 6]
        [--database sqlite|postgresql] --base-code /work/main
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
T0 = 1_764_748_800.0  # 2025-12-03T08:00:00Z


async def child(url: str, calls: int, per_batch: int, known: float) -> dict[str, float]:
    """One run in this process (the checkout on ``PYTHONPATH``): warm-up, then the measured calls."""
    from sqlalchemy import event

    from ivr.flow.journey import Interaction, Journey
    from ivr.store.customers import CustomerStore
    from ivr.store.journeys import JourneyStore, make_engine

    store = JourneyStore(make_engine(url), batch_delay=0.0)
    await store.start()
    customers = [await CustomerStore(store.engine).create(phones=[f"+1555{n:07d}"]) for n in range(100)]
    statements = 0

    def counted(*_: Any) -> None:
        nonlocal statements
        statements += 1

    event.listen(store.engine.sync_engine, "before_cursor_execute", counted)
    trips = 0
    if url.startswith(
        "sqlite"
    ):  # trips to aiosqlite's connection thread (SQLite's statements may run out of SQLAlchemy's sight)
        import aiosqlite.core

        real = aiosqlite.core.Connection._execute

        async def tripped(self: Any, fn: Any, *args: Any, **kwargs: Any) -> Any:
            nonlocal trips
            trips += 1
            return await real(self, fn, *args, **kwargs)  # type: ignore[no-untyped-call]

        aiosqlite.core.Connection._execute = tripped  # type: ignore[method-assign]

    async def run(first: int, n: int) -> int:
        """Calls ``first .. first + n``, each in three consecutive batches; returns the batches."""
        live: list[tuple[Journey, int]] = []
        number, batches, at = first, 0, T0 + first
        while number < first + n or live:
            for _ in range(per_batch if number < first + n else 0):
                customer = customers[number % len(customers)] if (number * 7919) % 100 < 100 * known else None
                live.append((Journey(f"call-{number}", "bench", "v1", "voice", customer_id=customer), 0))
                number += 1
            kept: list[tuple[Journey, int]] = []
            for journey, stage in live:
                kind = ("journey_started", "step_entered", "journey_completed")[stage]
                journey.step = ("hello", "hello", "goodbye")[stage]
                store.save(journey, [Interaction(kind, journey.step, {"flow": "bench"}, at)])
                if stage < 2:
                    kept.append((journey, stage + 1))
            live = kept
            await store.flush()
            batches += 1
            at += 0.1
        return batches

    await run(0, per_batch * 20)  # warm-up: statements compiled, pools filled, caches warm
    statements = trips = 0
    cpu, wall = time.process_time(), time.perf_counter()
    batches = await run(per_batch * 20, calls)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    await store.stop()
    return {
        "cpu_ms_per_call": 1000 * cpu / calls,
        "wall_s": wall,
        "statements_per_batch": statements / batches,
        "trips_per_batch": trips / batches,
    }


def run_once(code: Path | None, args: argparse.Namespace, url: str) -> dict[str, float]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(code if code is not None else REPO)
    command = [sys.executable, str(Path(__file__).resolve()), "--child", url]
    command += ["--calls", str(args.calls), "--per-batch", str(args.per_batch), "--known", str(args.known)]
    # from a neutral folder: the child imports ivr from PYTHONPATH, not from the working folder
    out = subprocess.run(command, env=env, cwd=tempfile.gettempdir(), capture_output=True, text=True, check=True)
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calls", type=int, default=3000)
    parser.add_argument("--per-batch", type=int, default=6, help="calls starting per batch (60 calls/s at 100 ms)")
    parser.add_argument("--known", type=float, default=0.6, help="share of calls from a known customer")
    parser.add_argument("--database", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--base-code", type=Path, required=False)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(asyncio.run(child(args.child, args.calls, args.per_batch, args.known))))
        return 0
    sys.path.insert(0, str(REPO))
    from lab.postgres import PostgresServer

    codes: list[tuple[str, Path | None]] = [("this", None)]
    if args.base_code is not None:
        codes.append(("base", args.base_code.resolve()))
    pg = PostgresServer().start() if args.database == "postgresql" else None
    ratios: list[float] = []
    runs = 0
    try:
        for number in range(args.rounds):
            cpu: dict[str, float] = {}
            for name, code in codes if number % 2 == 0 else codes[::-1]:
                runs += 1
                folder = Path(tempfile.mkdtemp(prefix="ivr-journey-writer-"))
                if pg is not None:  # a fresh database per run, as SQLite gets a fresh file
                    url = pg.create_database(f"journey_writer_{runs}")
                else:
                    url = f"sqlite+aiosqlite:///{folder / 'ivr.sqlite3'}"
                try:
                    result = run_once(code, args, url)
                finally:
                    shutil.rmtree(folder, ignore_errors=True)
                cpu[name] = result["cpu_ms_per_call"]
                trips = f"{result['trips_per_batch']:.2f} trips/batch to SQLite's thread, " if pg is None else ""
                print(
                    f"round {number + 1} {name}: writer CPU {result['cpu_ms_per_call']:.3f} ms/call, "
                    f"{result['statements_per_batch']:.2f} statements/batch through SQLAlchemy, "
                    f"{trips}{result['wall_s']:.1f} s",
                    flush=True,
                )
            if len(cpu) == 2:
                ratios.append(cpu["this"] / cpu["base"])
                print(f"round {number + 1} this / base: {ratios[-1]:.2f}", flush=True)
    finally:
        if pg is not None:
            pg.stop()
    if ratios:
        print(f"this / base: median {statistics.median(ratios):.2f} ({min(ratios):.2f}-{max(ratios):.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
