"""``ivr simulate`` reads the caller's real profile from the configured database and writes
nothing there: every table is the same, row for row, before and after. On SQLite and PostgreSQL."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from sqlalchemy import inspect, text

from ivr.flow.model import Interaction, Journey
from ivr.store.customers import CustomerStore
from ivr.store.journeys import JourneyStore, make_engine

DIALPLANS = Path(__file__).resolve().parents[2] / "dialplans"


async def snapshot(url: str) -> dict[str, list[tuple[Any, ...]]]:
    engine = make_engine(url)
    try:
        async with engine.connect() as conn:
            tables = await conn.run_sync(lambda c: inspect(c).get_table_names())
            out = {}
            for table in sorted(tables):
                rows = (await conn.execute(text(f'SELECT * FROM "{table}"'))).all()
                out[table] = sorted(tuple(map(repr, r)) for r in rows)
            return out
    finally:
        await engine.dispose()


async def test_simulate_shows_the_real_profile_and_writes_nothing(database_url: str, tmp_path: Path) -> None:
    store = JourneyStore(make_engine(database_url), batch_delay=0.0)
    await store.start()
    try:
        customers = CustomerStore(store.engine)
        cid = await customers.create(name="Olga", phones=["+15551230077"])
        for n in range(3):  # three past calls reporting an outage
            j = Journey(uuid.uuid4().hex, "support", "v1", "voice", caller="+15551230077", customer_id=cid)
            store.save(
                j, [Interaction("option_chosen", "main_menu", {"option": "outage", "key": "2"}, time.time() - 3600 * n)]
            )
        await store.flush()
    finally:
        await store.stop()
    before = await snapshot(database_url)
    assert before["interactions"] and before["customers"]

    env = {**os.environ, "IVR_DATABASE_URL": database_url, "IVR_DATA_DIR": str(tmp_path)}
    env.pop("IVR_CONFIG", None)
    args = ["simulate", "support", "--flows", str(DIALPLANS), "--caller", "+15551230077", "--input", "1"]
    done = subprocess.run(  # noqa: ASYNC221 - the command as an admin runs it, nothing else runs meanwhile
        [sys.executable, "-m", "ivr.cli", *args], env=env, capture_output=True, text=True, timeout=120, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    assert f"~ caller +15551230077: customer {cid}, 3 past contact(s)" in done.stdout
    assert "[main_menu] For reporting an outage press 1." in done.stdout  # personalized: outage first
    assert "~ menu order outage, pay_bill, agent:" in done.stdout
    assert "path: greeting > check_hours > main_menu > outage_info" in done.stdout
    assert await snapshot(database_url) == before
