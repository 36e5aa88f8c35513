"""The log entries a flow's funnel is counted from (``ivr.flow.funnel``), for one window.

Which journeys: those that started in the window (``contact_facts.started_at``, indexed) in the
flow, or that entered it as a sub-flow (a ``flow_entered`` naming it). Which entries: only the
kinds the funnel reads (``ivr.flow.funnel.KINDS``), each reduced to the few ``data`` fields it
reads, so no JSON document crosses the wire. They are read through ``ix_interactions_journey``
(journey, id), which is also the order the funnel needs: each journey's entries together, as
logged.

Bounded: the window is at most ``ivr.flow.funnel.MAX_WINDOW_S`` (checked again here, so no caller
can ask for the whole log), and rows are streamed in chunks into the count, never held as a list.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from sqlalchemy import Select, and_, exists, or_, select
from sqlalchemy.ext.asyncio import AsyncEngine

from ivr.errors import StoreError
from ivr.flow.funnel import KINDS, MAX_WINDOW_S, Funnel, FunnelEvent, FunnelWindow, build_funnel
from ivr.store.models import ContactFactRow, InteractionRow

#: rows fetched per round trip while streaming
CHUNK = 5000


class FunnelStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def funnel(self, flow: str, window: FunnelWindow) -> Funnel:
        """The funnel of ``flow`` over the journeys started in ``window``."""
        return build_funnel(flow, [e async for e in self.events(flow, window)])

    async def events(self, flow: str, window: FunnelWindow) -> AsyncIterator[FunnelEvent]:
        async with self.engine.connect() as conn:
            result = await conn.stream(self.query(flow, window).execution_options(yield_per=CHUNK))
            async for row in result:
                yield FunnelEvent(*row)

    def query(self, flow: str, window: FunnelWindow) -> Select[Any]:
        """The selection, for ``events`` and for an EXPLAIN (``bench/funnel.py``)."""
        if window.end - window.start > MAX_WINDOW_S or window.end <= window.start:
            raise StoreError(f"a funnel window must be positive and at most {MAX_WINDOW_S / 86400:g} days")
        i = InteractionRow.__table__.c
        c = ContactFactRow.__table__.c
        entered = InteractionRow.__table__.alias("entered").c
        as_sub_flow = exists().where(
            entered.journey_id == c.journey_id,
            entered.kind == "flow_entered",
            entered.data["flow"].as_string() == flow,
        )
        return (
            select(
                i.journey_id,
                i.kind,
                i.step,
                i.data["flow"].as_string(),
                i.data["option"].as_string(),
                i.data["mode"].as_string(),
                i.data["status"].as_string(),
                i.data["returns"].as_boolean(),
            )
            .select_from(ContactFactRow.__table__.join(InteractionRow.__table__, i.journey_id == c.journey_id))
            .where(
                and_(c.started_at >= window.start, c.started_at < window.end),
                or_(c.flow == flow, as_sub_flow),
                i.kind.in_(KINDS),
            )
            .order_by(i.journey_id, i.id)
        )
