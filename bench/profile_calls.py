#!/usr/bin/env python3
"""Where a call's CPU goes: py-spy's raw stacks of ``ivr serve`` split into the call's stages.

``bench/agi_load.py --profile DIR`` samples the controller with py-spy while it takes calls and
prints this table after each run; run this file on the raw stacks it kept to print it again:

    .venv/bin/python bench/profile_calls.py DIR/run1-this.txt [--cpu-ms-per-call 5.0]

Each sample (py-spy ``--gil``: the thread holding the GIL) goes to the stage of its innermost
frame that names one: so logging or telemetry called from the lookup count as logging or
telemetry, and SQLAlchemy's and asyncio's frames count for the store or the AGI code that called
them. Only a stack with no such frame goes to SQLAlchemy or asyncio themselves (SQLAlchemy runs
statements in greenlets, whose stacks do not reach their caller). Frames on aiosqlite's connection threads have no caller in their stack; they are
split by what the thread ran (an ``executemany`` is the journey writer's, ``execute_fetchall``
the profile statement, the rest single statements: creations, renewals, commits).
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

#: (stage, substrings of a frame "function (file:line)"), innermost match wins; first listed wins
#: among patterns matching the same frame
STAGES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("logging", ("logging/__init__.py", "ivr/logs.py")),
    ("telemetry", ("ivr/telemetry.py",)),
    ("personalization", ("ivr/flow/personalize.py", "ivr/flow/stages.py", "ivr/flow/profile.py")),
    (
        "caller lookup",
        (
            "load_profile (ivr/store/customers.py",
            "_fetch_profile (ivr/store/customers.py",
            "profile_from_rows (ivr/store/customers.py",
            "CallerProfiles.load",
            "_load (ivr/store/customers.py",
            "load (ivr/store/customers.py",
        ),
    ),
    (
        "customer creation",
        ("create (ivr/store/customers.py", "_create (ivr/store/customers.py", "_add_identity (ivr/store/customers.py"),
    ),
    # the wallboard's KPIs, refreshed every 5 s by one task: not per call, but it grows with them
    (
        "KPI report refresh (wallboard)",
        (
            "ivr/acd/kpitoday.py",
            "report (ivr/store/kpis.py",
            "_all (ivr/store/kpis.py",
            "_kept (ivr/store/kpis.py",
            "_from_contacts (ivr/store/kpis.py",
            "statements (ivr/store/kpi_sums.py",
            "groups (ivr/store/kpi_sums.py",
        ),
    ),
    ("journey writes: KPI contact rows and sums", ("ivr/store/kpi_sums.py", "ivr/store/kpis.py", "ivr/kpis.py")),
    ("journey writes: journeys, interactions, aggregates", ("ivr/store/journeys.py", "ivr/store/aggregates.py")),
    ("flow", ("ivr/flow/",)),
    ("voice channel", ("ivr/channels/",)),
    ("AGI parsing and commands", ("ivr/agi/protocol.py", "ivr/agi/commands.py", "ivr/agi/variables.py")),
    ("AGI server and sockets", ("ivr/agi/server.py",)),
    ("SQLite thread: executemany (journey writer)", ("executemany (aiosqlite",)),
    ("SQLite thread: execute_fetchall (lookup)", ("_execute_fetchall (aiosqlite", "execute_fetchall (aiosqlite")),
    ("SQLite thread: other statements", ("aiosqlite/core.py", "aiosqlite/cursor.py")),
    ("asyncpg", ("asyncpg/",)),
)
#: stages of a sample none of whose frames names one of the above (same rule)
FALLBACK: tuple[tuple[str, tuple[str, ...]], ...] = (
    # SQLAlchemy runs a statement in a greenlet whose stack does not reach its caller
    ("SQLAlchemy (statements, pool; caller not in the stack)", ("sqlalchemy/", "greenlet")),
    ("asyncio: streams, transports", ("asyncio/streams.py", "asyncio/selector_events.py")),
)
#: the loop itself: py-spy shows asyncio's run_once/select below Runner.run as nothing
LOOP = "asyncio loop (select, scheduling)"
OTHER = "the rest"


def stage_of(stack: str) -> str:
    """The stage of one raw py-spy stack (frames root first, ';'-separated)."""
    frames = stack.split(";")
    for stages in (STAGES, FALLBACK):
        for frame in reversed(frames):
            for stage, patterns in stages:
                if any(p in frame for p in patterns):
                    return stage
    if frames[-1].startswith("Runner.run (asyncio/runners.py"):
        return LOOP
    return OTHER


def split(lines: Iterable[str]) -> Counter[str]:
    """Samples per stage, from py-spy's raw format ("stack count" per line)."""
    samples: Counter[str] = Counter()
    for line in lines:
        stack, _, count = line.rstrip().rpartition(" ")
        if stack and count.isdigit():
            samples[stage_of(stack)] += int(count)
    return samples


def stage_table(lines: Iterable[str], *, cpu_ms_per_call: float | None = None) -> str:
    """A Markdown table: each stage's share of the samples (and of the CPU per call, if given)."""
    samples = split(lines)
    total = sum(samples.values()) or 1
    head = "| stage | share | ms per call |\n|---|---|---|" if cpu_ms_per_call else "| stage | share |\n|---|---|"
    rows = [head]
    for stage, n in samples.most_common():
        share = n / total
        row = f"| {stage} | {100 * share:.1f}% |"
        if cpu_ms_per_call:
            row += f" {share * cpu_ms_per_call:.2f} |"
        rows.append(row)
    rows.append(f"({total} samples)")
    return "\n".join(rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("raw", type=Path, nargs="+", help="py-spy --format raw output")
    parser.add_argument("--cpu-ms-per-call", type=float)
    args = parser.parse_args()
    for path in args.raw:
        print(f"{path}:\n{stage_table(path.read_text().splitlines(), cpu_ms_per_call=args.cpu_ms_per_call)}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
