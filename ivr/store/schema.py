"""Bringing a database to the schema this code expects: ``alembic upgrade head``, from Python.

Why at start-up rather than only as an admin step: the embedded SQLite database must just work on
a fresh machine, and a controller must never run against a schema older than its code. The upgrade
is idempotent and cheap when there is nothing to do (one SELECT of ``alembic_version``).
A database made by the old ``create_all`` (tables, no ``alembic_version``) is stamped at the
revision that describes it, then upgraded.
"""

from __future__ import annotations

import logging
from pathlib import Path

from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, inspect
from sqlalchemy.ext.asyncio import AsyncEngine

log = logging.getLogger(__name__)
MIGRATIONS = Path(__file__).resolve().parent / "migrations"
PRE_ALEMBIC_REVISION = "0001"  # the journeys + interactions tables create_all used to make


def alembic_config(url: str | None = None) -> AlembicConfig:
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("path_separator", "os")
    if url:
        cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))  # ConfigParser interpolation
    return cfg


def head() -> str:
    revision = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert revision is not None
    return revision


def _current(conn: Connection) -> str | None:
    return MigrationContext.configure(conn).get_current_revision()


def _upgrade(conn: Connection, revision: str) -> None:
    cfg = alembic_config()
    cfg.attributes["connection"] = conn
    tables = set(inspect(conn).get_table_names())
    if "journeys" in tables and "alembic_version" not in tables:
        log.info("database predates migrations: stamping it at revision %s", PRE_ALEMBIC_REVISION)
        command.stamp(cfg, PRE_ALEMBIC_REVISION)
    before = _current(conn)
    command.upgrade(cfg, revision)
    after = _current(conn)
    if before != after:
        log.info("database schema upgraded from %s to %s", before or "nothing", after)


async def upgrade(engine: AsyncEngine, revision: str = "head") -> None:
    """Migrate to ``revision`` in one transaction (PostgreSQL: DDL rolls back on failure)."""
    async with engine.begin() as conn:
        await conn.run_sync(_upgrade, revision)


async def current(engine: AsyncEngine) -> str | None:
    async with engine.connect() as conn:
        return await conn.run_sync(_current)
