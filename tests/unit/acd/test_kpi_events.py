"""What the ACD adds to the interaction log for the KPIs: a caller who gives up in the queue
(``queue_abandoned``, with how long they held) and the end of an agent's call (``agent_completed``)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from ivr.acd.service import Acd
from ivr.ami import events as ev
from ivr.flow.model import Journey
from ivr.store.customers import CustomerStore
from ivr.store.journeys import JourneyStore, make_engine


async def test_queue_abandon_is_logged_on_the_callers_journey(tmp_path: Path) -> None:
    journeys = JourneyStore(make_engine(f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite3'}"), batch_delay=0.0)
    await journeys.start()
    acd = Acd(ami=None, journeys=journeys, customers=CustomerStore(journeys.engine))
    try:
        journeys.save(Journey(id="j1", flow="support", version="v1", channel="voice"))
        caller = ev.Channel("PJSIP/trunk-1", "1.1", variables={"IVR_JOURNEY_ID": "j1"})
        await acd.handle(ev.QueueCallerJoin(time.time(), "billing", caller, 1, 1))
        await acd.handle(ev.QueueCallerAbandon(time.time(), "billing", caller, 1, 1, 37))
        assert await logged(journeys, "j1") == [("queue_abandoned", {"queue": "billing", "hold_time": 37})]
    finally:
        await acd.stop()
        await journeys.stop()


async def logged(journeys: JourneyStore, journey_id: str) -> list[tuple[str, dict[str, Any]]]:
    """The journey's events once the ACD's recording task has run (it records in the background)."""
    for _ in range(100):
        await journeys.flush()
        found = [(e["kind"], e["data"]) for e in await journeys.interactions(journey_id)]
        if found:
            return found
        await asyncio.sleep(0.02)
    return []
