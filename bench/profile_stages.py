"""What the journey stages cost the profile load: the one statement before and after, side by side.

The profile (``CustomerStore.load_profile``) now also carries the caller's latest journeys, their
open callback ticket and their unused continuation link (``ivr.flow.stages``), in the same one
statement. This measures that statement against the statement without those three branches (what
the call path ran before), on SQLite (a file, WAL, as ``ivr serve`` runs it) and on a throwaway
PostgreSQL (``lab.postgres``), both migrated with the product's migrations and filled with
``--customers`` customers and ``--journeys`` journeys, a third of them the busiest caller's (the
worst case: the latest three of thousands). It also checks that the load is still one statement.

    .venv/bin/python bench/profile_stages.py [--customers 2000] [--journeys 6000] [--lookups 1000]

A script, not a timed test: figures depend on the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from sqlalchemy import event, insert, text

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ivr.store import schema
from ivr.store.customers import PROFILE_BY_PHONE_SQL, CustomerStore, profile_from_rows
from ivr.store.journeys import make_engine
from ivr.store.models import (
    CallbackRow,
    ContinuationRow,
    CustomerIdentityRow,
    CustomerRow,
    JourneyRow,
    OptionStatRow,
)
from lab.postgres import throwaway_postgres

#: The statement as the call path ran it before the stages: the branches up to the journeys.
BEFORE_SQL = PROFILE_BY_PHONE_SQL.split("UNION ALL\nSELECT * FROM (\n  SELECT 'journey'")[0]
NOW = time.time()


def phone(n: int) -> str:
    return f"+1555{n:07d}"


async def fill(url: str, customers: int, journeys: int, rng: random.Random) -> None:
    engine = make_engine(url)
    await schema.upgrade(engine)
    ids = [uuid.uuid4().hex for _ in range(customers)]
    async with engine.begin() as conn:
        await conn.execute(
            insert(CustomerRow),
            [{"id": c, "verified": False, "created_at": NOW, "updated_at": NOW} for c in ids],
        )
        await conn.execute(
            insert(CustomerIdentityRow),
            [{"kind": "phone", "value": phone(n), "customer_id": c, "created_at": NOW} for n, c in enumerate(ids)],
        )
        await conn.execute(
            insert(OptionStatRow),
            [
                {"customer_id": c, "flow": "support", "step": "main_menu", "option": o, "count": 2, "score": 1.5}
                | {"last_at": NOW - 3600}
                for c in ids
                for o in ("pay_bill", "outage")
            ],
        )
        rows: list[dict[str, Any]] = []
        for i in range(journeys):
            cid = ids[0] if i % 3 == 0 else rng.choice(ids)  # the busiest caller has a third of them
            t = NOW - rng.uniform(0, 90 * 86400)
            jid = uuid.uuid4().hex
            status = rng.choice(("completed", "queued", "abandoned", "handed_off"))
            data = {"id": jid, "flow": "support", "status": status, "intent": rng.choice(("billing", "outage", None))}
            rows.append(
                {
                    "id": jid,
                    "flow": "support",
                    "flow_version": "bench",
                    "channel": "voice",
                    "step": "account",
                    "status": status,
                    "caller": None,
                    "customer_id": cid,
                    "data": data,
                    "started_at": t,
                    "updated_at": t + 60,
                }
            )
        for start in range(0, len(rows), 1000):
            await conn.execute(insert(JourneyRow), rows[start : start + 1000])
        handed = [r for r in rows if r["status"] == "handed_off"]
        await conn.execute(
            insert(ContinuationRow),
            [
                {
                    "id": uuid.uuid4().hex,
                    "journey_id": r["id"],
                    "customer_id": r["customer_id"],
                    "channel": "sms",
                    "step": "account",
                    "created_at": r["updated_at"],
                    "expires_at": r["updated_at"] + 86400,
                    "claimed_at": None if rng.random() < 0.5 else r["updated_at"] + 60,
                }
                for r in handed
            ],
        )
        await conn.execute(
            insert(CallbackRow),
            [
                {
                    "id": uuid.uuid4().hex,
                    "customer_id": c,
                    "open_customer": c,
                    "journey_id": "j",
                    "phone": phone(n),
                    "queue": "billing",
                    "skill": "billing",
                    "status": "waiting",
                    "ticket_at": NOW - 600,
                    "not_before": NOW,
                    "context": {},
                    "created_at": NOW,
                    "updated_at": NOW,
                }
                for n, c in enumerate(ids)
                if n % 10 == 0
            ],
        )
    if engine.dialect.name == "postgresql":
        async with engine.connect() as conn:
            await conn.execute(text("ANALYZE"))
            await conn.commit()
    await engine.dispose()


async def measure(url: str, customers: int, lookups: int, rng: random.Random) -> dict[str, Any]:
    engine = make_engine(url)
    store = CustomerStore(engine)
    statements: list[str] = []
    event.listen(engine.sync_engine, "before_cursor_execute", lambda *a: statements.append(a[2]))
    before = text(BEFORE_SQL)
    out: dict[str, Any] = {}
    busiest = [0] * lookups
    anyone = [rng.randrange(customers) for _ in range(lookups)]
    for who, numbers in (("busiest caller", busiest), ("any caller", anyone)):
        runs: dict[str, Callable[[int], Awaitable[Any]]] = {
            "before": lambda n: store._fetch(before, {"key": phone(n)}),
            "after": lambda n: store.load_profile(phone=phone(n)),
        }
        samples: dict[str, list[float]] = {"before": [], "after": []}
        for i, n in enumerate(numbers):
            # alternate, so a busy moment on a shared machine costs both the same
            for label in ("before", "after") if i % 2 else ("after", "before"):
                t0 = time.perf_counter()
                await runs[label](n)
                samples[label].append((time.perf_counter() - t0) * 1000)
        for label, times in samples.items():
            times = sorted(times[50:])  # the first ones warm the pool and the caches
            out[f"{who}, {label}"] = (statistics.median(times), times[int(len(times) * 0.99) - 1])
    statements.clear()
    profile = await store.load_profile(phone=phone(0))
    out["statements per load"] = len(statements)
    out["busiest caller's profile"] = (len(profile.recent), profile.callback is not None) if profile else None
    rows = await store._fetch(text(PROFILE_BY_PHONE_SQL), {"key": phone(0), "since": time.time() - 7 * 86400})
    assert profile_from_rows(rows) == profile
    await engine.dispose()
    return out


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=2000)
    parser.add_argument("--journeys", type=int, default=6000)
    parser.add_argument("--lookups", type=int, default=1000)
    args = parser.parse_args()
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite+aiosqlite:///{tmp}/bench.db"
        await fill(url, args.customers, args.journeys, random.Random(1))
        results["sqlite"] = await measure(url, args.customers, args.lookups, random.Random(2))
    with throwaway_postgres() as pg:
        pg.create_database("bench")
        url = pg.url("bench")
        await fill(url, args.customers, args.journeys, random.Random(1))
        results["postgresql"] = await measure(url, args.customers, args.lookups, random.Random(2))
    print(f"{args.customers} customers, {args.journeys} journeys ({args.journeys // 3} of the busiest caller)")
    for db, figures in results.items():
        for key, value in figures.items():
            shown = f"p50 {value[0]:.2f} ms, p99 {value[1]:.2f} ms" if key.endswith(("before", "after")) else value
            print(f"{db:10} {key:28} {shown}")
    print(json.dumps(results))


if __name__ == "__main__":
    asyncio.run(main())
