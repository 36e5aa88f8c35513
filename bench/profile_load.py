"""How long a call waits for its caller's profile: p50/p99 against a one-row indexed lookup.

A throwaway PostgreSQL (``lab.postgres``) is migrated with the product's own migrations and
filled with 100,000 customers and 1,000,000 interactions (plus the journeys and the aggregates they
imply: ``option_stats`` computed with the store's own decay arithmetic, ``customer_slots``), loaded
with COPY. Then, for random callers, side by side on the same pooled SQLAlchemy + asyncpg engine:

* **profile**: ``CallerProfiles.load(phone)``, exactly what the voice channel awaits at call start
  (E.164 normalisation, timeout guard, the one-statement profile query, building the profile);
* **profile + rank**: the same, then ranking a four-option menu from it (``personalize.rank_menu``);
* **baseline**: a plain indexed lookup of one row,
  ``SELECT customer_id FROM customer_identities WHERE kind = 'phone' AND value = $1``,
  through the same store code path (``CustomerStore.find``).

It also proves the call path is one statement per caller: client side with a SQLAlchemy
``before_cursor_execute`` listener, server side with ``log_statement = all`` on a fresh pool
(which would show any BEGIN/ROLLBACK or ping the driver sent). Target: profile p99 < 5 ms.

    .venv/bin/python bench/profile_load.py [--customers 100000] [--interactions 1000000] [--lookups 2000]

A script, not a timed test: figures depend on the machine. It runs in about a minute or two.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import random
import statistics
import sys
import time
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
from sqlalchemy import event

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ivr.flow.personalize import rank_menu
from ivr.store import schema
from ivr.store.aggregates import DAY, tally
from ivr.store.customers import CallerProfiles, CustomerStore
from ivr.store.journeys import make_engine
from lab.postgres import PostgresServer

HALF_LIFE = 30 * DAY
NOW = time.time()
MENUS = {
    ("support", "main_menu"): ("pay_bill", "outage", "moving", "agent"),
    ("billing", "pay_menu"): ("card", "bank", "plan"),
}
CHANNELS = ("voice",) * 16 + ("chat",) * 3 + ("sms",)
COPY_CHUNK = 100_000


def progress(message: str) -> None:
    print(f"[{time.monotonic() - STARTED:6.1f}s] {message}", file=sys.stderr, flush=True)


STARTED = time.monotonic()


def phone(n: int) -> str:
    return f"+1555{n:07d}"


# ------------------------------------------------------------------------------------ data
@dataclass
class Data:
    customers: list[tuple[Any, ...]]
    identities: list[tuple[Any, ...]]
    journeys: list[tuple[Any, ...]]
    interactions: list[tuple[Any, ...]]
    option_stats: list[tuple[Any, ...]]
    slots: list[tuple[Any, ...]]
    heavy: list[int]  # customer numbers with the most journeys


def generate(n_customers: int, n_interactions: int, rng: random.Random) -> Data:
    ids = [uuid.UUID(int=rng.getrandbits(128)).hex for _ in range(n_customers)]
    customers, identities = [], []
    for n, cid in enumerate(ids):
        created = NOW - rng.uniform(30, 900) * DAY
        email = f"customer{n}@example.com" if rng.random() < 0.5 else None
        crm = f"CRM-{n:07d}" if rng.random() < 0.3 else None
        customers.append(
            (
                cid,
                f"Customer {n}",
                email,
                crm,
                rng.choice(("standard", "standard", "gold", "platinum")),
                rng.choice(("en", "en", "en", "es", "fr")),
                rng.random() < 0.2,
                created,
                created,
            )
        )
        identities.append(("phone", phone(n), cid, created))
        if email:
            identities.append(("email", email, cid, created))
        if crm:
            identities.append(("crm", crm, cid, created))
    progress(f"{len(customers):,} customers, {len(identities):,} identities generated")

    # Who calls: heavy-tailed (a few customers call very often, most rarely), like real traffic.
    weights = [rng.paretovariate(1.2) for _ in range(n_customers)]
    journeys: list[tuple[Any, ...]] = []
    interactions: list[tuple[Any, ...]] = []
    choices: dict[tuple[str, str, str, str], list[float]] = defaultdict(list)
    last_slot: dict[str, tuple[str, str, float]] = {}
    per_customer: dict[int, int] = defaultdict(int)
    batch = 10_000
    while len(interactions) < n_interactions:
        for n in rng.choices(range(n_customers), weights, k=batch):
            if len(interactions) >= n_interactions:
                break
            cid = ids[n]
            per_customer[n] += 1
            jid = uuid.UUID(int=rng.getrandbits(128)).hex
            channel = rng.choice(CHANNELS)
            t = NOW - rng.uniform(0, 365) * DAY
            flow, step = rng.choice(list(MENUS))
            options = MENUS[(flow, step)]
            # each caller has a favourite option, chosen most of the time
            option = options[n % len(options)] if rng.random() < 0.7 else rng.choice(options)
            events: list[tuple[str, str | None, dict[str, Any]]] = [
                ("journey_started", None, {"flow": flow}),
                ("step_entered", step, {"kind": "menu"}),
                ("option_chosen", step, {"option": option, "key": "1", "mode": "dtmf"}),
                ("step_entered", "account", {"kind": "ask"}),
            ]
            slots: dict[str, str] = {}
            if rng.random() < 0.6:
                account = f"{rng.randrange(10**7, 10**8)}"
                slots["account_number"] = account
                events.append(("slot_filled", "account", {"slot": "account_number", "mode": "dtmf", "length": 8}))
                if cid not in last_slot or last_slot[cid][2] < t:
                    last_slot[cid] = (account, channel, t + 4)
            events += [
                ("step_entered", "to_queue", {"kind": "queue"}),
                ("queued", "to_queue", {"queue": "billing", "priority": 5}),
                ("journey_queued", "to_queue", {}),
            ]
            choices[(cid, flow, step, option)].append(t + 2)
            for i, (kind, at_step, data) in enumerate(events):
                interactions.append((jid, cid, channel, kind, at_step, json.dumps(data), t + i))
            snapshot = {
                "id": jid,
                "flow": flow,
                "version": "bench0001",
                "channel": channel,
                "step": "to_queue",
                "status": "queued",
                "caller": phone(n),
                "customer_id": cid,
                "slots": slots,
                "path": [step, "account", "to_queue"],
                "started_at": t,
                "updated_at": t + len(events),
            }
            journeys.append(
                (jid, flow, "bench0001", channel, "to_queue", "queued", phone(n), cid, json.dumps(snapshot), t, t + 8)
            )
        progress(f"{len(interactions):,} interactions in {len(journeys):,} journeys generated")

    option_stats = []
    for (cid, flow, step, option), times in choices.items():
        tallied = tally(times, HALF_LIFE)
        assert tallied is not None
        option_stats.append((cid, flow, step, option, tallied.count, tallied.score, tallied.last_at))
    slots_rows = [(cid, "account_number", v, ch, at) for cid, (v, ch, at) in last_slot.items()]
    heavy = sorted(per_customer, key=per_customer.__getitem__, reverse=True)[: max(1, n_customers // 100)]
    progress(
        f"aggregates: {len(option_stats):,} option_stats, {len(slots_rows):,} customer_slots; "
        f"busiest customer has {per_customer[heavy[0]]} journeys"
    )
    return Data(customers, identities, journeys, interactions, option_stats, slots_rows, heavy)


async def load(dsn: str, data: Data) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        tables: list[tuple[str, list[str], list[tuple[Any, ...]]]] = [
            (
                "customers",
                ["id", "display_name", "email", "crm_id", "tier", "language", "verified", "created_at", "updated_at"],
                data.customers,
            ),
            ("customer_identities", ["kind", "value", "customer_id", "created_at"], data.identities),
            (
                "journeys",
                [
                    "id",
                    "flow",
                    "flow_version",
                    "channel",
                    "step",
                    "status",
                    "caller",
                    "customer_id",
                    "data",
                    "started_at",
                    "updated_at",
                ],
                data.journeys,
            ),
            ("interactions", ["journey_id", "customer_id", "channel", "kind", "step", "data", "at"], data.interactions),
            ("option_stats", ["customer_id", "flow", "step", "option", "count", "score", "last_at"], data.option_stats),
            ("customer_slots", ["customer_id", "slot", "value", "channel", "at"], data.slots),
        ]
        for table, columns, rows in tables:
            started = time.monotonic()
            for i in range(0, len(rows), COPY_CHUNK):
                await conn.copy_records_to_table(table, records=rows[i : i + COPY_CHUNK], columns=columns)
                if len(rows) > COPY_CHUNK:
                    progress(f"COPY {table}: {min(i + COPY_CHUNK, len(rows)):,}/{len(rows):,}")
            progress(f"COPY {table}: {len(rows):,} rows in {time.monotonic() - started:.1f}s")
        await conn.execute("VACUUM ANALYZE")
        progress("VACUUM ANALYZE done")
        size = await conn.fetchval("SELECT pg_size_pretty(pg_database_size(current_database()))")
        progress(f"database size {size}")
    finally:
        await conn.close()


# ------------------------------------------------------------------------------------ timing
@dataclass(frozen=True)
class MenuOption:
    id: str
    key: str
    pin: str | None = None


MAIN_MENU = [
    MenuOption("pay_bill", "1"),
    MenuOption("outage", "2"),
    MenuOption("moving", "3"),
    MenuOption("agent", "0", "last"),
]


def percentile(samples: list[float], p: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def summary(samples: list[float]) -> tuple[float, float, float]:
    ms = [s * 1000 for s in samples]
    return percentile(ms, 50), percentile(ms, 99), statistics.fmean(ms)


async def timed(fn: Callable[[], Awaitable[Any]]) -> tuple[float, Any]:
    started = time.perf_counter()
    result = await fn()
    return time.perf_counter() - started, result


async def measure(url: str, callers: list[int], label: str) -> dict[str, tuple[float, float, float]]:
    engine = make_engine(url)
    customers = CustomerStore(engine)
    profiles = CallerProfiles(customers, timeout=5.0)
    statements: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        statements.append(statement)

    async def profile_and_rank(number: str) -> Any:
        profile = await profiles.load(number)
        assert profile is not None
        return rank_menu(
            MAIN_MENU, profile.option_stats("support", "main_menu"), now=time.time(), contacts=profile.contacts
        )

    try:
        for n in callers[:300]:  # warm the pool, the prepared-statement caches and the OS cache
            await profiles.load(phone(n))
            await customers.find("phone", phone(n))
        results: dict[str, list[float]] = {"profile": [], "profile + rank": [], "baseline": []}
        event.listen(engine.sync_engine, "before_cursor_execute", count)
        for i, n in enumerate(callers):
            number = phone(n)
            # alternate the order so neither side always runs on a freshly warmed connection
            order = ("profile", "baseline") if i % 2 else ("baseline", "profile")
            for name in order:
                if name == "profile":
                    before = len(statements)
                    seconds, profile = await timed(functools.partial(profiles.load, number))
                    assert profile is not None, number
                    assert len(statements) - before == 1, statements[before:]
                else:
                    seconds, found = await timed(functools.partial(customers.find, "phone", number))
                    assert found is not None
                results[name].append(seconds)
            seconds, _ranking = await timed(functools.partial(profile_and_rank, number))
            results["profile + rank"].append(seconds)
        event.remove(engine.sync_engine, "before_cursor_execute", count)
        assert profiles.failures == 0
        print(f"\n{label}: {len(callers):,} lookups each, milliseconds")
        print(f"  {'':16} {'p50':>7} {'p99':>7} {'mean':>7}")
        out = {name: summary(samples) for name, samples in results.items()}
        for name, (p50, p99, mean) in out.items():
            print(f"  {name:16} {p50:7.3f} {p99:7.3f} {mean:7.3f}")
        return out
    finally:
        await engine.dispose()


async def server_side_statements(server: PostgresServer, database: str, url: str) -> int:
    """Statements the server logged for 5 profile loads on a fresh pool (log_statement = all)."""
    server.psql(f"ALTER DATABASE {database} SET log_statement = 'all'")
    engine = make_engine(url)
    try:
        profiles = CallerProfiles(CustomerStore(engine))
        await profiles.load(phone(1))  # connect + prepare outside the window
        mark = server.log_path.stat().st_size
        for n in range(2, 7):
            await profiles.load(phone(n))
        await asyncio.sleep(0.5)
        with server.log_path.open("rb") as log:
            log.seek(mark)
            logged = [line for line in log.read().decode(errors="replace").splitlines() if "LOG:  " in line]
    finally:
        await engine.dispose()
        server.psql(f"ALTER DATABASE {database} RESET log_statement")
    lines = [line for line in logged if "statement:" in line or "execute" in line]
    for line in lines[:3]:
        print("   ", line.split("LOG:  ", 1)[1][:110])
    return len(lines)


async def main_async(args: argparse.Namespace) -> int:
    rng = random.Random(args.seed)
    data = generate(args.customers, args.interactions, rng)
    with PostgresServer(settings={"shared_buffers": "256MB"}) as server:
        progress(f"PostgreSQL {server.psql('SHOW server_version').strip()} on port {server.port}")
        url = server.create_database("bench")
        engine = make_engine(url)
        await schema.upgrade(engine)
        await engine.dispose()
        await load(server.url("bench", driver=""), data)
        del data.journeys, data.interactions

        callers = [rng.randrange(args.customers) for _ in range(args.lookups)]
        uniform = await measure(url, callers, "random callers")
        heavy = await measure(url, [rng.choice(data.heavy) for _ in range(args.lookups // 4)], "busiest 1% of callers")
        logged = await server_side_statements(server, "bench", url)

    p50, p99, _ = uniform["profile"]
    b50, b99, _ = uniform["baseline"]
    print(
        f"\nprofile p50 {p50:.3f} ms, p99 {p99:.3f} ms; baseline p50 {b50:.3f} ms, p99 {b99:.3f} ms; "
        f"ratio p50 {p50 / b50:.2f}x, p99 {p99 / b99:.2f}x"
    )
    print(f"busiest callers: profile p99 {heavy['profile'][1]:.3f} ms")
    print(f"statements per profile load: client 1 (checked on every lookup), server {logged / 5:g} (log_statement)")
    ok = p99 < 5.0 and logged == 5
    print(f"target p99 < 5 ms and one statement per call: {'met' if ok else 'NOT met'}")
    return 0 if ok else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--interactions", type=int, default=1_000_000)
    parser.add_argument("--lookups", type=int, default=2_000)
    parser.add_argument("--seed", type=int, default=3)
    args = parser.parse_args()
    try:
        import uvloop  # what `ivr serve` runs on

        uvloop.install()
    except ImportError:
        pass
    return asyncio.run(main_async(args))


if __name__ == "__main__":
    sys.exit(main())
