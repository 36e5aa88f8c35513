#!/usr/bin/env python3
"""Today's KPIs over a large interaction log in PostgreSQL: p50 / p99 of ``KpiStore.report``.

A throwaway PostgreSQL (lab.postgres) at the schema before ``contact_facts``, filled with ``--rows``
interactions
(default 1,000,000: journeys of ten events each, as the engine and the ACD log them: started,
step, personalized menu, a no-match, a choice, step, queued, journey_queued, agent connected,
agent completed) spread over the last ``--days`` days ending now (1: the whole log is today, the
worst case), then migrated to head, which folds the log into one row per contact (the migration's
backfill; timed too). Then the report for today (UTC midnight to now, ``--by``) runs ``--runs`` times,
timed from the call to the rows, SQL and the arithmetic both: ``KpiStore.report`` (the whole
15-minute slots from ``kpi_sums``, the current quarter hour from the contact rows) and, side by
side on the same database, ``KpiStore.report_from_contacts`` (every contact row grouped per request,
as before the sums); the two must give the same figures, and the bench says so.

A script, not a test: it prints the figures and writes bench/results/kpis-*.json.

Run: ``.venv/bin/python bench/kpis.py [--rows 1000000] [--days 1] [--runs 30] [--by queue]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ivr.kpis import ReportRequest, ReportRow  # noqa: E402
from ivr.store import schema  # noqa: E402
from ivr.store.journeys import make_engine  # noqa: E402
from ivr.store.kpis import KpiStore  # noqa: E402
from lab.postgres import throwaway_postgres  # noqa: E402

EVENTS_PER_JOURNEY = 10
FILL = """
INSERT INTO interactions (journey_id, customer_id, channel, kind, step, data, at)
SELECT 'j' || g, 'c' || (g % 50000), CASE WHEN g % 5 = 0 THEN 'chat' ELSE 'voice' END, t.kind, NULL,
  CASE t.kind
    WHEN 'journey_started' THEN json_build_object('flow', CASE WHEN g % 3 = 0 THEN 'sales' ELSE 'support' END)
    WHEN 'menu_personalized' THEN json_build_object('holdout', g % 10 = 0)
    WHEN 'option_chosen' THEN json_build_object('position', 1 + g % 3, 'option', 'o' || (g % 3))
    WHEN 'input_rejected' THEN json_build_object('status', CASE WHEN g % 2 = 0 THEN 'nomatch' ELSE 'noinput' END)
    WHEN 'queued' THEN json_build_object('queue', 'q' || (g % 6), 'skill', 's' || (g % 6))
    WHEN 'agent_connected' THEN json_build_object('agent_id', 'ag' || (g % 40))
    ELSE '{{}}'::json END,
  {start} + g * {spacing} + t.off + (g % 7) * t.jitter
FROM generate_series(0, {journeys} - 1) g CROSS JOIN (VALUES
  ('journey_started', 0, 0), ('step_entered', 1, 0), ('menu_personalized', 1, 0), ('input_rejected', 4, 1),
  ('option_chosen', 6, 1), ('step_entered', 7, 1), ('queued', 8, 1), ('journey_queued', 8, 1),
  ('agent_connected', 20, 5), ('agent_completed', 200, 20)) AS t(kind, off, jitter)
"""


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


async def measure(url: str, runs: int, by: str) -> dict[str, Any]:
    engine = make_engine(url)
    try:
        store = KpiStore(engine)
        now = time.time()
        midnight = datetime.fromtimestamp(now, UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        end = datetime.fromtimestamp(now + 1, UTC)
        wanted = ReportRequest.parse(midnight.isoformat(), end.isoformat(), by=by)
        out: dict[str, Any] = {}
        found: dict[str, list[ReportRow]] = {}
        for name, read in (("sums", store.report), ("contacts", store.report_from_contacts)):
            times = []
            for _ in range(runs + 2):
                began = time.perf_counter()
                found[name] = await read(wanted)
                times.append((time.perf_counter() - began) * 1000.0)
            times = times[2:]  # two warm-up runs
            out[name] = {
                "p50_ms": round(statistics.median(times), 1),
                "p99_ms": round(percentile(times, 0.99), 1),
                "max_ms": round(max(times), 1),
            }
        out["groups"] = len(found["sums"])
        out["contacts_today"] = sum(r.figures.contacts for r in found["sums"])
        out["same_figures"] = _same(found["sums"], found["contacts"])
        return out
    finally:
        await engine.dispose()


def _same(got: list[ReportRow], want: list[ReportRow]) -> bool:
    """Every figure equal (means and shares to 1e-9: sums of seconds added in another order)."""
    if [(r.key, r.holdout) for r in got] != [(r.key, r.holdout) for r in want]:
        return False
    for g, w in zip(got, want, strict=True):
        for name, value in w.figures.to_dict().items():
            other = g.figures.to_dict()[name]
            if isinstance(value, float) and isinstance(other, float):
                if not math.isclose(value, other, rel_tol=1e-9, abs_tol=1e-9):
                    return False
            elif value != other:
                return False
    return True


async def migrate(url: str, revision: str) -> None:
    engine = make_engine(url)
    try:
        await schema.upgrade(engine, revision)
    finally:
        await engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--days", type=float, default=1.0)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--by", default="queue")
    args = parser.parse_args()
    journeys = args.rows // EVENTS_PER_JOURNEY
    now = time.time()
    midnight = datetime.fromtimestamp(now, UTC).replace(hour=0, minute=0, second=0, microsecond=0).timestamp()
    today = max(600.0, now - midnight - 300.0)  # leave the last five minutes' events inside "today"
    span = today + (args.days - 1) * 86400.0
    start = now - 300.0 - span
    with throwaway_postgres() as pg:
        url = pg.create_database("kpis")
        asyncio.run(migrate(url, "0005"))  # the log as it was before contact_facts...
        began = time.perf_counter()
        pg.psql(FILL.format(start=start, spacing=span / journeys, journeys=journeys), database="kpis")
        filled = time.perf_counter() - began
        began = time.perf_counter()
        asyncio.run(migrate(url, "head"))  # ... folded into contact rows by the migration
        backfilled = time.perf_counter() - began
        pg.psql("ANALYZE", database="kpis")
        count = int(pg.psql("SELECT count(*) FROM interactions", database="kpis"))
        measured = asyncio.run(measure(url, args.runs, args.by))
    result = {
        "rows": count,
        "days": args.days,
        "by": args.by,
        "runs": args.runs,
        **measured,
        "fill_s": round(filled, 1),
        "backfill_s": round(backfilled, 1),
    }
    print(json.dumps(result, indent=2))
    out = REPO / "bench" / "results"
    out.mkdir(exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    (out / f"kpis-{stamp}.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
