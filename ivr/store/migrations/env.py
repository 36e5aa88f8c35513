"""Alembic environment for sync and async URLs alike.

Three ways in:

* ``ivr.store.schema.upgrade(engine)`` (what ``ivr serve`` and ``JourneyStore.start()`` do) hands
  an open connection in ``config.attributes["connection"]``: migrations run on it, inside the
  caller's transaction.
* A URL (``sqlalchemy.url`` in the Alembic config, else the product's own ``database.url``) with an
  async driver (``sqlite+aiosqlite``, ``postgresql+asyncpg``): an async engine, driven with
  ``run_sync``.
* A URL with a sync driver (``sqlite``, ``postgresql+psycopg``): a plain engine.

On PostgreSQL the run holds a transaction-scoped advisory lock, so several controllers starting at
once against one database migrate one after another instead of racing on the DDL.
"""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy import Connection, create_engine, pool, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from ivr.store.models import Base

MIGRATION_LOCK = 0x1F5_0001  # any constant unique to this product's migrations

config = context.config
target_metadata = Base.metadata


def _url() -> str:
    url = config.get_main_option("sqlalchemy.url")
    if url:
        return url
    from ivr.config import load_config

    return load_config().database_url


def run_on(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",  # SQLite's ALTER TABLE is limited
        compare_type=True,
    )
    with context.begin_transaction():
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
        context.run_migrations()


async def _run_async(url: str) -> None:
    engine = create_async_engine(url, poolclass=pool.NullPool)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(run_on)
    finally:
        await engine.dispose()


def run_online() -> None:
    given = config.attributes.get("connection")
    if given is not None:
        run_on(given)
        return
    url = _url()
    if make_url(url).get_dialect().is_async:
        asyncio.run(_run_async(url))
        return
    engine = create_engine(url, poolclass=pool.NullPool)
    try:
        with engine.begin() as conn:
            run_on(conn)
    finally:
        engine.dispose()


def run_offline() -> None:
    """``--sql``: print the DDL for a DBA instead of running it."""
    context.configure(url=_url(), target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
