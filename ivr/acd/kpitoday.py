"""Today's KPIs for the wallboard: read from the database every few seconds by one task, whatever
the number of supervisors watching.

Why a cache with one owner: ``KpiStore.report`` adds up the day's 15-minute sums and groups the
current quarter hour's contact rows in SQL, which is cheap once but not once per browser per second. ``TodayKpis`` refreshes ``latest`` every ``refresh``
seconds (three reports: by queue for each queue's service level, by interval for the day's chart,
and by holdout for the personalization comparison); the wallboard publisher puts ``latest`` into
the snapshot it publishes, so every page on every node sees the same figures.

``today`` is pure: the three reports in, the board's ``kpis`` part out (only the figures the page
shows, so the message stays small). The day is the UTC day, as in ``ivr report``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable, Sequence
from typing import Any

from ivr.aio import cancel_and_wait, wait_for
from ivr.kpis import DEFAULT_SERVICE_LEVEL_S, ReportRequest, ReportRow
from ivr.store.kpis import KpiStore

log = logging.getLogger(__name__)
DAY = 86400.0
#: the longest ``stop`` waits for a read in flight before cancelling it
STOP_WAIT = 10.0
#: the width of the day's chart bars
CHART_INTERVAL = "15min"
#: what the queue rows and the day's totals show
QUEUE_FIGURES = ("offered", "handled", "abandoned", "service_level", "avg_wait_s", "avg_handle_s")
#: what the holdout comparison shows: the figures personalization is meant to move
HOLDOUT_FIGURES = (
    "contacts",
    "containment",
    "first_option_share",
    "avg_time_to_choice_s",
    "bad_input_per_contact",
    "service_level",
    "abandoned",
)


def day_start(now: float) -> float:
    """Midnight UTC of the day ``now`` falls in."""
    return float(math.floor(now / DAY) * DAY)


def _pick(row: ReportRow, names: Sequence[str]) -> dict[str, Any]:
    figures = row.figures.to_dict()
    return {name: figures[name] for name in names}


def today(
    by_queue: Sequence[ReportRow],
    by_interval: Sequence[ReportRow],
    by_holdout: Sequence[ReportRow],
    *,
    day: float,
    service_level_s: float,
) -> dict[str, Any]:
    """The wallboard's ``kpis``: per queue, the day's totals, the chart's bars, the holdout split."""
    totals = {"offered": 0, "handled": 0, "abandoned": 0, "within": 0.0}
    for row in by_queue:
        f = row.figures
        totals["offered"] += f.offered
        totals["handled"] += f.handled
        totals["abandoned"] += f.abandoned
        totals["within"] += (f.service_level or 0.0) * f.handled
    handled = int(totals["handled"])
    return {
        "day": day,
        "service_level_s": service_level_s,
        "queues": {row.key: _pick(row, QUEUE_FIGURES) for row in by_queue if row.key != "-"},
        "totals": {
            "offered": int(totals["offered"]),
            "handled": handled,
            "abandoned": int(totals["abandoned"]),
            # weighted by handled calls: the share answered within the target over all queues
            "service_level": totals["within"] / handled if handled else None,
        },
        "chart": [
            {
                "interval": row.key,
                "offered": row.figures.offered,
                "handled": row.figures.handled,
                "abandoned": row.figures.abandoned,
            }
            for row in by_interval
        ],
        "holdout": {row.key: _pick(row, HOLDOUT_FIGURES) for row in by_holdout},
    }


class TodayKpis:
    """Keeps ``latest`` (``today`` of the current UTC day) fresh; ``start``/``stop`` own its task."""

    def __init__(
        self,
        store: KpiStore,
        *,
        service_level_s: float = DEFAULT_SERVICE_LEVEL_S,
        refresh: float = 5.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.service_level_s = service_level_s
        self.refresh = refresh
        self.clock = clock
        self.latest: dict[str, Any] | None = None
        #: reports run so far (one per ``refresh`` seconds, never one per browser)
        self.reads = 0
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()

    async def read(self) -> dict[str, Any]:
        """Read today's three reports now and keep them as ``latest``."""
        start = day_start(self.clock())
        end = start + DAY

        def request(by: Any, **extra: Any) -> ReportRequest:
            return ReportRequest(start, end, by, **extra)

        by_queue, by_interval, by_holdout = await asyncio.gather(
            self.store.report(request("queue"), service_level_s=self.service_level_s),
            self.store.report(request("interval", interval=CHART_INTERVAL), service_level_s=self.service_level_s),
            self.store.report(request("holdout"), service_level_s=self.service_level_s),
        )
        self.reads += 1
        self.latest = today(by_queue, by_interval, by_holdout, day=start, service_level_s=self.service_level_s)
        return self.latest

    async def start(self) -> None:
        if self._task is None:
            self._stopping = asyncio.Event()
            self._task = asyncio.create_task(self._run(self._stopping), name="wallboard-kpis")

    async def stop(self) -> None:
        """Let a read in flight finish (at most ``STOP_WAIT`` seconds), then end the task.

        Why not cancel at once: a query cancelled while aiosqlite's thread runs it leaves a task
        behind that outlives the engine and hangs the event loop's shutdown (found by the app's
        start-then-stop tests); between reads the task only waits, and stops at once."""
        if self._task is not None:
            self._stopping.set()
            try:
                await wait_for(asyncio.shield(self._task), STOP_WAIT)
            except TimeoutError:
                await cancel_and_wait(self._task)
            self._task = None

    async def _run(self, stopping: asyncio.Event) -> None:
        while not stopping.is_set():
            try:
                await self.read()
            except Exception as exc:  # a database blip: keep the last figures, try again later
                log.warning("today's KPIs not refreshed: %s", exc)
            with contextlib.suppress(TimeoutError):
                await wait_for(stopping.wait(), self.refresh)
