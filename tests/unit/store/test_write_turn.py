"""SQLite writers of one process take turns (``ivr.store.turns.write_turn``)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from ivr.store.customers import CustomerStore
from ivr.store.journeys import JourneyStore, make_engine
from ivr.store.turns import write_turn


async def test_a_creation_waiting_for_its_turn_holds_no_pooled_connection(tmp_path: Path) -> None:
    store = JourneyStore(make_engine(f"sqlite+aiosqlite:///{tmp_path / 'ivr.sqlite3'}"))
    await store.start()
    try:
        customers = CustomerStore(store.engine)
        async with write_turn(store.engine):  # the journey writer's batch, say
            creation = asyncio.create_task(customers.create(phones=["+15551230001"]))
            await asyncio.sleep(0.1)
            assert not creation.done()
            # it waits here, not in SQLite's busy handler on a connection the lookups need
            assert store.engine.pool.checkedout() == 0  # type: ignore[attr-defined]
        customer_id = await creation
        assert await customers.find("phone", "+15551230001") == customer_id
    finally:
        await store.stop()


async def test_postgresql_has_no_turn() -> None:
    class Engine:
        class dialect:  # the shape of AsyncEngine.dialect
            name = "postgresql"

    async with write_turn(Engine()):  # type: ignore[arg-type]
        pass  # a no-op context: PostgreSQL's writers do not queue in the process
