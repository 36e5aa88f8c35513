"""The SQL that feeds a flow's funnel (``ivr.flow.funnel``) for one window.

Which journeys: those that started in the window (``contact_facts.started_at``, indexed) in the
flow, or that entered it as a sub-flow (a ``flow_entered`` naming it). Only the kinds the funnel
reads (``ivr.flow.funnel.KINDS``) are read, each reduced to the few ``data`` fields it needs.

Why two paths: a log entry names its step but not its flow, so the flow of an entry is known only
by replaying its journey in order. But most journeys never leave the flow they started in (no
``flow_entered`` at all: ``ix_interactions_flow_entered`` says so with one probe of a small
index), and every entry of theirs is the flow's: those are grouped in SQL into a few rows per
step. Only the journeys that moved between flows are read entry by entry, in the order of
``ix_interactions_journey`` (journey, id), and replayed. ``replayed`` reads every journey entry
by entry: the reference the grouped path is tested against.

Bounded: the window is at most ``ivr.flow.funnel.MAX_WINDOW_S`` (checked again here, so no caller
can ask for the whole log), and entries are streamed in chunks into the count, never held as a
list.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, Select, and_, case, distinct, exists, func, literal, null, or_, select, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ivr.errors import StoreError
from ivr.flow.funnel import KINDS, MAX_WINDOW_S, MOVES, Funnel, FunnelBuilder, FunnelEvent, FunnelWindow
from ivr.store.models import ContactFactRow, InteractionRow

#: rows fetched per round trip while streaming
CHUNK = 5000
_I = InteractionRow.__table__
_C = ContactFactRow.__table__
#: kinds counted per step (the moves only say which flow the entries after them are in)
COUNTED = tuple(k for k in KINDS if k not in MOVES)


class FunnelStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def funnel(self, flow: str, window: FunnelWindow) -> Funnel:
        """The funnel of ``flow`` over the journeys started in ``window``."""
        builder = FunnelBuilder(flow)
        async with self.engine.connect() as conn:
            await self._no_jit(conn)
            for query in (self.counted_query(flow, window), self.entered_query(flow, window)):
                for row in await conn.execute(query):
                    builder.add_counted(*row)
            builder.add_journeys((await conn.execute(self.stayed_query(flow, window))).scalar_one())
            await self._stream(conn, self.moved_query(flow, window), builder)
        return builder.funnel

    async def replayed(self, flow: str, window: FunnelWindow) -> Funnel:
        """The same funnel with every journey replayed entry by entry (slow; for tests)."""
        builder = FunnelBuilder(flow)
        async with self.engine.connect() as conn:
            await self._stream(conn, self._entries(flow, window), builder)
        return builder.funnel

    async def _no_jit(self, conn: AsyncConnection) -> None:
        """PostgreSQL's JIT compiles these plans for longer than they run (3.2 s of 5.2 s for a
        week of 200,000 entries in EXPLAIN ANALYZE, bench/funnel.py): off for this transaction."""
        if self.engine.dialect.name == "postgresql":
            await conn.execute(text("SET LOCAL jit = off"))

    @staticmethod
    async def _stream(conn: AsyncConnection, query: Select[Any], builder: FunnelBuilder) -> None:
        result = await conn.stream(query.execution_options(yield_per=CHUNK))
        async for rows in result.partitions(CHUNK):  # one await per chunk, not per row
            for row in rows:
                builder.add(FunnelEvent(*row))

    # ------------------------------------------------------------------------------ queries
    def counted_query(self, flow: str, window: FunnelWindow) -> Select[Any]:
        """(kind, step, option, mode, status, entries, 0) over the journeys that stayed in ``flow``.

        No count of distinct journeys here: a distinct count makes PostgreSQL sort every entry
        (to disk at a week of a million), where a plain count is a hash of a few groups.
        """
        i, c = _I.c, _C.c
        columns = (i.kind, i.step, _option(), _mode(), _status())
        return (
            select(*columns, func.count(), literal(0))
            .select_from(_C.join(_I, i.journey_id == c.journey_id))
            .where(_stayed(flow, window), i.kind.in_(COUNTED), i.step.is_not(None), i.kind != "step_entered")
            .group_by(*columns)
        )

    def entered_query(self, flow: str, window: FunnelWindow) -> Select[Any]:
        """("step_entered", step, None, None, None, entries, journeys) over the journeys that
        stayed in ``flow``: only these entries need their journeys counted once each."""
        i, c = _I.c, _C.c
        return (
            select(
                literal("step_entered"),
                i.step,
                null(),
                null(),
                null(),
                func.count(),
                func.count(distinct(i.journey_id)),
            )
            .select_from(_C.join(_I, i.journey_id == c.journey_id))
            .where(_stayed(flow, window), i.kind == "step_entered", i.step.is_not(None))
            .group_by(i.step)
        )

    def stayed_query(self, flow: str, window: FunnelWindow) -> Select[Any]:
        """How many journeys started in ``flow`` and stayed in it (``contact_facts`` only)."""
        return select(func.count()).select_from(_C).where(_stayed(flow, window))

    def moved_query(self, flow: str, window: FunnelWindow) -> Select[Any]:
        """Every entry (of the funnel's kinds) of the journeys that moved between flows: started
        in ``flow`` or entering it. Found from their ``flow_entered`` entries (the partial index),
        then read journey by journey (``ix_interactions_journey``)."""
        alias, c = _I.alias("moved"), _C.c
        m = alias.c
        moved = (
            select(m.journey_id)
            .select_from(alias.join(_C, c.journey_id == m.journey_id))
            .where(
                m.kind == "flow_entered", _started_in(window), or_(c.flow == flow, _field_of(m.data, "flow") == flow)
            )
        )
        return self._read(_I.c.journey_id.in_(moved))

    def _entries(self, flow: str, window: FunnelWindow) -> Select[Any]:
        """Entries of every journey started in ``window`` in ``flow`` or entering it."""
        c = _C.c
        entered = _I.alias("entered").c
        into = exists().where(
            entered.journey_id == c.journey_id,
            entered.kind == "flow_entered",
            entered.data["flow"].as_string() == flow,
        )
        journeys = select(c.journey_id).where(_started_in(window), or_(c.flow == flow, into))
        return self._read(_I.c.journey_id.in_(journeys))

    @staticmethod
    def _read(which: ColumnElement[bool]) -> Select[Any]:
        i = _I.c
        return (
            select(
                i.journey_id,
                i.kind,
                i.step,
                _only((*MOVES, "option_chosen"), _field("flow")),
                _option(),
                _mode(),
                _status(),
                _only(("flow_entered",), i.data["returns"].as_boolean()),
            )
            .where(which, i.kind.in_(KINDS))
            .order_by(i.journey_id, i.id)
        )


def _stayed(flow: str, window: FunnelWindow) -> ColumnElement[bool]:
    c = _C.c
    return and_(_started_in(window), c.flow == flow, ~_moved(c.journey_id))


def _started_in(window: FunnelWindow) -> ColumnElement[bool]:
    if window.end - window.start > MAX_WINDOW_S or window.end <= window.start:
        raise StoreError(f"a funnel window must be positive and at most {MAX_WINDOW_S / 86400:g} days")
    c = _C.c
    return and_(c.started_at >= window.start, c.started_at < window.end)


def _moved(journey_id: Any) -> ColumnElement[bool]:
    """The journey has a ``flow_entered``: a probe of the partial ``ix_interactions_flow_entered``."""
    m = _I.alias("moved").c
    return exists().where(m.journey_id == journey_id, m.kind == "flow_entered")


def _field_of(data: Any, name: str) -> ColumnElement[str]:
    """A text field of an entry's ``data`` (``->>`` on PostgreSQL, ``json_extract`` on SQLite)."""
    found: ColumnElement[str] = data[name].as_string()
    return found


def _field(name: str) -> ColumnElement[str]:
    return _field_of(_I.c.data, name)


def _only(kinds: tuple[str, ...], value: ColumnElement[Any]) -> ColumnElement[Any]:
    """``value`` for entries of ``kinds``, else NULL. Why: ``data`` is JSON text on PostgreSQL,
    parsed again by every ``->>``, and most entries (steps entered, ends) need none of it."""
    return case((_I.c.kind.in_(kinds), value))


def _option() -> ColumnElement[str]:
    return _only(("option_chosen",), _field("option"))


def _mode() -> ColumnElement[str]:
    return _only(("option_chosen",), _field("mode"))


def _status() -> ColumnElement[str]:
    return _only(("input_rejected",), _field("status"))
