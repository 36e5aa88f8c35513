#!/usr/bin/env python3
"""A flow's 7-day funnel over a large interaction log in PostgreSQL: p50 / p99 of ``FunnelStore.funnel``.

A throwaway PostgreSQL (lab.postgres) at head, filled with ``--rows`` interactions (default
1,000,000: journeys of ten events each, as the engine and the ACD log them: started, step, personalized
menu, a rejected input, a choice, step, queued, journey_queued, agent connected, agent
completed; a third of the journeys in another flow, one in twenty through a sub-flow) spread over
the last ``--days`` days ending now (7: the whole log is in the window, the worst case), with one
``contact_facts`` row per journey as the writer keeps them. Then the funnel of ``support`` for the
last ``--window`` runs ``--runs`` times, timed from the call to the counts; and the plans of its
three selections are printed (EXPLAIN ANALYZE), to see which indexes they take.

A script, not a test: it prints the figures and writes bench/results/funnel-*.json.

Run: ``.venv/bin/python bench/funnel.py [--rows 1000000] [--days 7] [--window 7d] [--runs 10]``.
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

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


from ivr.flow.funnel import FunnelWindow  # noqa: E402
from ivr.store import schema  # noqa: E402
from ivr.store.funnels import FunnelStore  # noqa: E402
from ivr.store.journeys import make_engine  # noqa: E402
from lab.postgres import throwaway_postgres  # noqa: E402

EVENTS_PER_JOURNEY = 10
FILL = """
INSERT INTO interactions (journey_id, customer_id, channel, kind, step, data, at)
SELECT 'j' || g, 'c' || (g % 50000), CASE WHEN g % 5 = 0 THEN 'chat' ELSE 'voice' END, t.kind,
  CASE WHEN t.kind = 'journey_started' THEN NULL
       WHEN g % 20 = 1 AND t.n BETWEEN 5 AND 6 THEN 'ask_pin' ELSE t.step END,
  CASE t.kind
    WHEN 'journey_started' THEN json_build_object('flow', CASE WHEN g % 3 = 0 THEN 'sales' ELSE 'support' END)
    WHEN 'menu_personalized' THEN json_build_object('holdout', g % 10 = 0)
    WHEN 'option_chosen' THEN json_build_object('flow', CASE WHEN g % 3 = 0 THEN 'sales' ELSE 'support' END,
      'position', 1 + g % 3, 'option', 'o' || (g % 3), 'mode', CASE WHEN g % 4 = 0 THEN 'speech' ELSE 'dtmf' END)
    WHEN 'input_rejected' THEN json_build_object('status', CASE WHEN g % 2 = 0 THEN 'nomatch' ELSE 'noinput' END)
    WHEN 'queued' THEN json_build_object('queue', 'q' || (g % 6), 'skill', 's' || (g % 6))
    WHEN 'agent_connected' THEN json_build_object('agent_id', 'ag' || (g % 40))
    ELSE '{{}}'::json END,
  {start} + g * {spacing} + t.off + (g % 7) * t.jitter
FROM generate_series(0, {journeys} - 1) g CROSS JOIN (VALUES
  (1, 'journey_started', NULL, 0, 0), (2, 'step_entered', 'main_menu', 1, 0),
  (3, 'menu_personalized', 'main_menu', 1, 0), (4, 'input_rejected', 'main_menu', 4, 1),
  (5, 'option_chosen', 'main_menu', 6, 1), (6, 'step_entered', 'to_queue', 7, 1), (7, 'queued', 'to_queue', 8, 1),
  (8, 'journey_queued', 'to_queue', 8, 1), (9, 'agent_connected', 'to_queue', 20, 5),
  (10, 'agent_completed', 'to_queue', 200, 20)) AS t(n, kind, step, off, jitter);
-- one journey in twenty went through the PIN sub-flow between its choice and its queue step
INSERT INTO interactions (journey_id, customer_id, channel, kind, step, data, at)
SELECT 'j' || g, NULL, 'voice', t.kind, 'verify',
  CASE t.kind WHEN 'flow_entered' THEN json_build_object('flow', 'verify_identity', 'returns', true)
              ELSE json_build_object('flow', 'support') END,
  {start} + g * {spacing} + t.off
FROM generate_series(1, {journeys} - 1, 20) g CROSS JOIN (VALUES ('flow_entered', 6.5), ('flow_returned', 6.9)) AS t(kind, off);
INSERT INTO contact_facts (journey_id, started_at, channel, flow)
SELECT journey_id, at, channel, data->>'flow' FROM interactions WHERE kind = 'journey_started';
"""


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


async def measure(url: str, runs: int, window: str) -> tuple[list[float], int, int, list[str]]:
    engine = make_engine(url)
    try:
        store = FunnelStore(engine)
        wanted = FunnelWindow.parse(now=time.time(), window=window)
        times = []
        journeys = steps = 0
        for _ in range(runs + 2):
            began = time.perf_counter()
            funnel = await store.funnel("support", wanted)
            times.append((time.perf_counter() - began) * 1000.0)
            journeys, steps = funnel.journey_count, len(funnel.steps)
        queries = (
            store.counted_query("support", wanted),
            store.entered_query("support", wanted),
            store.moved_query("support", wanted),
        )
        sql = [str(q.compile(dialect=engine.dialect, compile_kwargs={"literal_binds": True})) for q in queries]
        return times[2:], journeys, steps, sql  # two warm-up runs
    finally:
        await engine.dispose()


async def migrate(url: str) -> None:
    engine = make_engine(url)
    try:
        await schema.upgrade(engine)
    finally:
        await engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--days", type=float, default=7.0)
    parser.add_argument("--window", default="7d")
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    journeys = args.rows // EVENTS_PER_JOURNEY
    now = time.time()
    span = args.days * 86400.0 - 600.0  # every journey well inside a window of --days
    start = now - 300.0 - span
    with throwaway_postgres() as pg:
        url = pg.create_database("funnel")
        asyncio.run(migrate(url))
        began = time.perf_counter()
        pg.psql(FILL.format(start=start, spacing=span / journeys, journeys=journeys), database="funnel")
        filled = time.perf_counter() - began
        pg.psql("ANALYZE", database="funnel")
        count = int(pg.psql("SELECT count(*) FROM interactions", database="funnel"))
        times, counted, steps, sql = asyncio.run(measure(url, args.runs, args.window))
        plans = [pg.psql(f"SET jit = off; EXPLAIN (ANALYZE, BUFFERS) {q}", database="funnel") for q in sql]
    for plan in plans:
        print(plan)
    result = {
        "rows": count,
        "days": args.days,
        "window": args.window,
        "journeys_counted": counted,
        "steps": steps,
        "runs": len(times),
        "p50_ms": round(statistics.median(times), 1),
        "p99_ms": round(percentile(times, 0.99), 1),
        "max_ms": round(max(times), 1),
        "fill_s": round(filled, 1),
    }
    print(json.dumps(result, indent=2))
    out = REPO / "bench" / "results"
    out.mkdir(exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    (out / f"funnel-{stamp}.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
