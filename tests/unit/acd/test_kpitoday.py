"""Today's KPIs for the wallboard: the pure shaping with literal report rows, and the cache on a
real SQLite store fed through the real journey writer."""

from __future__ import annotations

import asyncio
from pathlib import Path

from ivr.acd.kpitoday import DAY, TodayKpis, day_start, today
from ivr.flow.loader import load_flow_file
from ivr.flow.model import Interaction, Journey
from ivr.kpis import ContactFacts, report
from ivr.store.journeys import JourneyStore, make_engine
from ivr.store.kpis import KpiStore

T0 = 1_764_748_800.0  # 2025-12-03T08:00:00Z
DIALPLANS = Path(__file__).resolve().parents[3] / "dialplans"


def contact(jid: str, **facts: object) -> ContactFacts:
    base: dict[str, object] = {"journey_id": jid, "started_at": T0, "channel": "voice", "flow": "support"}
    return ContactFacts(**{**base, **facts})  # type: ignore[arg-type]


CONTACTS = [
    # answered in 10 s (within 20 s), personalized menu
    contact("a", queued_at=T0 + 5, queue="billing", answered_at=T0 + 15, holdout=False, ended="queued"),
    # answered in 40 s (late), holdout
    contact("b", queued_at=T0 + 5, queue="billing", answered_at=T0 + 45, holdout=True, ended="queued"),
    # abandoned a quarter of an hour later
    contact("c", started_at=T0 + 900, queued_at=T0 + 905, queue="support", abandoned_at=T0 + 930, holdout=True),
    # contained in the IVR
    contact("d", ended="completed", holdout=False),
]  # fmt: skip


def test_today_gives_queue_service_levels_totals_the_chart_and_the_holdout_split() -> None:
    board = today(
        report(CONTACTS, by="queue"),
        report(CONTACTS, by="interval", interval="15min"),
        report(CONTACTS, by="holdout"),
        day=day_start(T0),
        service_level_s=20.0,
    )
    assert board["day"] == 1_764_720_000.0  # midnight UTC
    assert board["queues"]["billing"]["service_level"] == 0.5
    assert (board["queues"]["support"]["offered"], board["queues"]["support"]["abandoned"]) == (1, 1)
    assert "-" not in board["queues"]  # the contained call has no queue
    assert board["totals"] == {"offered": 3, "handled": 2, "abandoned": 1, "service_level": 0.5}
    assert board["chart"] == [
        {"interval": "2025-12-03T08:00:00Z", "offered": 2, "handled": 2, "abandoned": 0},
        {"interval": "2025-12-03T08:15:00Z", "offered": 1, "handled": 0, "abandoned": 1},
    ]
    assert board["holdout"]["holdout"]["contacts"] == 2 and board["holdout"]["personalized"]["contacts"] == 2
    assert board["holdout"]["personalized"]["containment"] == 0.5
    assert board["holdout"]["holdout"]["containment"] == 0.0


async def test_one_read_per_refresh_from_the_real_store(tmp_path: Path) -> None:
    store = JourneyStore(make_engine(f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite3'}"), batch_delay=0.001)
    await store.start()
    try:
        flow = load_flow_file(DIALPLANS / "support.yaml")
        journey = Journey.new(flow, "voice", caller="+15551230001")
        store.save(
            journey,
            [
                Interaction("journey_started", journey.step, {"flow": "support"}, T0),
                Interaction("queued", journey.step, {"queue": "billing", "skill": "billing"}, T0 + 5),
                Interaction("journey_queued", journey.step, {}, T0 + 5),
                Interaction("agent_connected", journey.step, {"agent_id": "ag1", "queue": "billing"}, T0 + 12),
            ],
        )
        await store.flush()
        kpis = TodayKpis(KpiStore(store.engine), service_level_s=20.0, refresh=60.0, clock=lambda: T0 + 3600)
        assert kpis.latest is None
        await kpis.start()
        for _ in range(200):
            if kpis.latest is not None:
                break
            await asyncio.sleep(0.01)
        assert kpis.latest is not None
        assert kpis.latest["queues"]["billing"] == {
            "offered": 1,
            "handled": 1,
            "abandoned": 0,
            "service_level": 1.0,
            "avg_wait_s": 7.0,
            "avg_handle_s": None,
        }
        assert kpis.reads == 1  # every page reads the cache; the database once per refresh
        await kpis.stop()
        yesterday = TodayKpis(KpiStore(store.engine), clock=lambda: T0 + DAY)
        assert (await yesterday.read())["totals"]["offered"] == 0  # a new day starts from zero
    finally:
        await store.stop()
