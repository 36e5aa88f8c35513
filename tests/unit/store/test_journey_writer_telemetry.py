"""What the journey writer tells operators: its backlog, each batch's commit time, and a ping.
Real SQLite (the database going away is tested on a real PostgreSQL: test_operations.py)."""

from __future__ import annotations

from pathlib import Path

from ivr.flow.loader import load_flow_file
from ivr.flow.model import Interaction, Journey
from ivr.store.journeys import JourneyStore, make_engine

DIALPLANS = Path(__file__).resolve().parents[3] / "dialplans"


async def test_backlog_and_batch_times_and_ping(tmp_path: Path) -> None:
    flow = load_flow_file(DIALPLANS / "support.yaml")
    observed: list[float] = []
    store = JourneyStore(
        make_engine(f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite3'}"), batch_delay=0.001, observe_batch=observed.append
    )
    await store.start()
    try:
        await store.ping()
        journey = Journey.new(flow, "voice", caller="+15551230001")
        store.save(journey, [Interaction("journey_started", journey.step, {}, 1.0)])
        assert store.backlog == 2  # the journey and its event, before the writer wakes
        await store.flush()
        assert store.backlog == 0
        assert len(observed) == store.commits == 1 and 0 < observed[0] < 5
    finally:
        await store.stop()
