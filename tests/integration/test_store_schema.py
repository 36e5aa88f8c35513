"""The schema is Alembic's: migrations build exactly what the models describe, on both databases."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, inspect, text

from ivr.cli import main
from ivr.flow.model import Journey
from ivr.store import schema
from ivr.store.journeys import JourneyStore, make_engine
from ivr.store.models import Base

TABLES = {"journeys", "interactions", "customers", "customer_identities", "option_stats", "customer_slots"}


def _differences(conn: Connection) -> list[object]:
    return list(compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata))


async def test_migrations_build_what_the_models_describe(database_url: str) -> None:
    engine = make_engine(database_url)
    try:
        await schema.upgrade(engine)
        await schema.upgrade(engine)  # idempotent: a second start changes nothing
        assert await schema.current(engine) == schema.head()
        async with engine.connect() as conn:
            assert await conn.run_sync(_differences) == []
            assert set(await conn.run_sync(lambda c: inspect(c).get_table_names())) >= TABLES
    finally:
        await engine.dispose()


async def test_downgrade_to_nothing_and_back(database_url: str) -> None:
    engine = make_engine(database_url)
    try:
        await schema.upgrade(engine)
        async with engine.begin() as conn:
            await conn.run_sync(lambda c: _run(c, "downgrade", "base"))
        async with engine.connect() as conn:
            assert not TABLES & set(await conn.run_sync(lambda c: inspect(c).get_table_names()))
        await schema.upgrade(engine)
        assert await schema.current(engine) == schema.head()
    finally:
        await engine.dispose()


def _run(conn: Connection, verb: str, revision: str) -> None:
    cfg = schema.alembic_config()
    cfg.attributes["connection"] = conn
    getattr(command, verb)(cfg, revision)


async def test_a_database_from_before_migrations_is_stamped_then_upgraded(database_url: str) -> None:
    """What ``create_all`` used to make (journeys + interactions, no alembic_version) keeps its rows."""
    engine = make_engine(database_url)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(lambda c: _run(c, "upgrade", schema.PRE_ALEMBIC_REVISION))
            await conn.execute(text("DROP TABLE alembic_version"))
            old = Journey(id="j1", flow="support", version="v1", channel="voice", status="completed")
            await conn.execute(
                text(
                    "INSERT INTO journeys (id, flow, flow_version, channel, status, data, started_at, updated_at)"
                    " VALUES ('j1', 'support', 'v1', 'voice', 'completed', :data, 1, 2)"
                ),
                {"data": json.dumps(old.to_dict())},
            )
        store = JourneyStore(engine)
        await store.start()  # what ivr serve does
        try:
            assert await schema.current(engine) == schema.head()
            assert await store.get("j1") == old
        finally:
            await store.stop()
    finally:
        await engine.dispose()


async def test_ivr_db_upgrade_and_current(
    database_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)  # no ./ivr.toml
    monkeypatch.delenv("IVR_CONFIG", raising=False)
    monkeypatch.setenv("IVR_DATABASE_URL", database_url)
    assert await _cli(["db", "current"]) == 0
    assert "revision (empty)" in capsys.readouterr().out
    assert await _cli(["db", "upgrade"]) == 0
    assert f"revision {schema.head()} " in capsys.readouterr().out


async def _cli(argv: list[str]) -> int:
    """The CLI runs its own event loop: call it from a thread, as from a shell."""
    return await asyncio.to_thread(main, argv)
