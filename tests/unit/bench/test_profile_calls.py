"""The per-stage split of a call's CPU (``bench/profile_calls.py``), on literal py-spy raw stacks."""

from __future__ import annotations

from bench.profile_calls import LOOP, OTHER, split, stage_of, stage_table

SERVE = "<module> (ivr/cli.py:615);main (ivr/cli.py:611);cmd_serve (ivr/cli.py:40);run (asyncio/runners.py:190)"
LOOKUP = (
    f"{SERVE};Runner.run (asyncio/runners.py:118);AgiServer._run_call (ivr/agi/server.py:504);"
    "InboundCalls.identify (ivr/channels/voice.py:480);CallerProfiles.load (ivr/store/customers.py:452);"
    "CustomerStore._fetch_profile (ivr/store/customers.py:262)"
)


def test_the_innermost_frame_that_names_a_stage_decides() -> None:
    assert stage_of(LOOKUP) == "caller lookup"
    logged = f"{LOOKUP};CallerProfiles._failed (ivr/store/customers.py:470);Logger.error (logging/__init__.py:1518)"
    assert stage_of(logged) == "logging"
    # SQLAlchemy and asyncio count for the code that called them, when it is in the stack ...
    writer = (
        f"{SERVE};Runner.run (asyncio/runners.py:118);JourneyStore._write (ivr/store/journeys.py:363);"
        "SumsWriter.write (ivr/store/kpi_sums.py:300);Connection.execute (sqlalchemy/engine/base.py:1412)"
    )
    assert stage_of(writer) == "journey writes: KPI contact rows and sums"
    sent = f"{SERVE};Runner.run (asyncio/runners.py:118);AgiSession.command (ivr/agi/server.py:137);StreamWriter.write (asyncio/streams.py:343)"
    assert stage_of(sent) == "AGI server and sockets"
    # ... and for themselves when it is not (a greenlet's stack, the loop)
    greenlet = "greenlet_spawn (sqlalchemy/util/concurrency.py:190);Connection._execute_context (sqlalchemy/engine/base.py:1837)"
    assert stage_of(greenlet).startswith("SQLAlchemy")
    assert stage_of(f"{SERVE};Runner.run (asyncio/runners.py:118)") == LOOP
    thread = (
        "_bootstrap (threading.py:1002);Thread.run (threading.py:982);_connection_worker_thread (aiosqlite/core.py:63)"
    )
    assert stage_of(f"{thread};Connection.executemany (aiosqlite/core.py:222)").endswith("(journey writer)")
    assert stage_of(f"{SERVE};uuid4 (uuid.py:723)") == OTHER


def test_samples_add_up_per_stage_and_the_table_shares_the_cpu() -> None:
    lines = [f"{LOOKUP} 30", f"{SERVE};Runner.run (asyncio/runners.py:118) 10", "garbage", ""]
    assert split(lines) == {"caller lookup": 30, LOOP: 10}
    table = stage_table(lines, cpu_ms_per_call=4.0)
    assert "| caller lookup | 75.0% | 3.00 |" in table
    assert f"| {LOOP} | 25.0% | 1.00 |" in table
    assert table.endswith("(40 samples)")
