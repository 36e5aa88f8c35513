"""KPIs in the database: the contact rows the writer keeps, and the report grouped in SQL.

Why a row per contact: a report over today at a busy centre would otherwise fold a million events
per request. The journey writer folds each batch's events into ``contact_facts`` in the same
transaction as the log (:func:`contact_upsert`: the merge rules of ``ivr.kpis`` written as an
upsert), so a retried batch never counts twice and the rows never run ahead of the log.

Why the grouping in SQL too: even a hundred thousand contact rows would take longer to carry into
Python than the whole budget of a wallboard refresh. The database returns one row of sums per
group (the sums ``ivr.kpis.sums_of`` defines) and a histogram of whole-second waits for the
percentile; ``ivr.kpis.figures`` does the division.

Why sums per 15 minutes on top: a busy day is still a hundred thousand contact rows to group per
request. The writer also keeps those sums per quarter of an hour and group (``ivr.store.kpi_sums``),
so a report adds up the whole quarters of its window and groups only what is left at its ends
(the current quarter of "today so far") from the contact rows; ``report_from_contacts`` is the
definition the sums are tested against.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import sqlite3
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any, NamedTuple

from sqlalchemy import ColumnElement, and_, case, exists, func, literal, or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from ivr.errors import StoreError
from ivr.kpis import (
    CONTAINED_ENDS,
    COUNTS,
    DEFAULT_SERVICE_LEVEL_S,
    FIRST,
    HIGHEST,
    INTERVALS,
    OFFER_REASONS,
    REPEAT_WINDOWS,
    SPEECH_COUNTS,
    TRANSFER_MODES,
    ContactFacts,
    Dimension,
    Event,
    GroupKey,
    GroupSums,
    ReportRequest,
    ReportRow,
    contact_delta,
    facts,
    interval_label,
    rows,
)
from ivr.store import kpi_sums
from ivr.store.models import ContactFactRow

_c = ContactFactRow.__table__.c
#: The speech columns a group sums as they are (key choices only count towards ``fell_back``).
SPEECH_SUMS = tuple(name for name in SPEECH_COUNTS if name != "key_choices")
#: An agent's transfers that took, one column per mode: a group sums them as they are.
TRANSFER_SUMS = tuple(f"agent_transfers_{mode}" for mode in TRANSFER_MODES)


def contact_upsert(dialect: str) -> Any:
    """Insert a contact row, or merge it into the stored one (``ivr.kpis.merge`` in SQL)."""
    insert: Any = postgresql.insert if dialect == "postgresql" else sqlite.insert
    stmt = insert(ContactFactRow.__table__)
    new = stmt.excluded
    merged: dict[str, ColumnElement[Any]] = {}
    for column, attached in FIRST.items():
        earlier = and_(new[column].is_not(None), (_c[column].is_(None)) | (new[column] < _c[column]))
        for name in (column, *attached):
            merged[name] = case((earlier, new[name]), else_=_c[name])
    for column in COUNTS:
        merged[column] = _c[column] + new[column]
    for column in HIGHEST:
        merged[column] = case(
            (new[column].is_(None), _c[column]),
            (_c[column].is_(None) | (new[column] > _c[column]), new[column]),
            else_=_c[column],
        )
    return stmt.on_conflict_do_update(index_elements=[_c.journey_id], set_=merged)


def contact_rows(
    events: Sequence[tuple[str, str, str, float, dict[str, Any], str | None, str | None]],
) -> list[dict[str, Any]]:
    """A batch of logged events ``(journey_id, channel, kind, at, data, step, customer_id)`` as one
    contact row per journey that has a KPI event in it. A contact's channel is that of its
    ``journey_started``; its customer, any the batch names."""
    by_journey: dict[str, list[Event]] = defaultdict(list)
    channel_of: dict[str, str] = {}
    customer_of: dict[str, str] = {}
    for journey_id, channel, kind, at, data, step, customer_id in events:
        by_journey[journey_id].append((kind, at, data, step))
        if customer_id is not None:
            customer_of[journey_id] = customer_id
        if kind == "journey_started" or journey_id not in channel_of:
            channel_of[journey_id] = channel
    out = []
    for journey_id, items in by_journey.items():
        row = contact_delta(channel_of[journey_id], items, customer_of.get(journey_id))
        if row is not None:
            out.append({"journey_id": journey_id, **row})
    return out


# ------------------------------------------------------------------------------- reading
def _key(by: Dimension, interval: str) -> ColumnElement[Any]:
    if by == "interval":
        width = INTERVALS[interval]
        return func.floor(_c.started_at / literal(float(width))) * literal(float(width))
    if by == "holdout":
        return _holdout_key()
    if by == "handoff":  # ivr.kpis.handoff_label
        dash = literal("-")
        pair = func.coalesce(_c.sent_from, dash).concat(literal(">")).concat(func.coalesce(_c.sent_to, dash))
        return case((_c.sent_at.is_(None), dash), else_=pair)
    if by == "step":  # ivr.kpis.step_label
        dash = literal("-")
        return func.coalesce(_c.flow, dash).concat(literal("/")).concat(func.coalesce(_c.ended_step, dash))
    if by == "agent":  # ivr.kpis.ContactFacts.agent: who took it, else who called out
        return func.coalesce(_c.agent_id, _c.outbound_agent, literal("-"))
    column = {"flow": _c.flow, "queue": _c.queue, "skill": _c.skill, "channel": _c.channel}[by]
    return func.coalesce(column, literal("-"))


def _holdout_key() -> ColumnElement[Any]:
    return case((_c.holdout == 1, literal("holdout")), (_c.holdout == 0, literal("personalized")), else_=literal("-"))


def _repeat(window: float) -> ColumnElement[bool]:
    """Another contact of the same identified customer started in ``window`` seconds before this
    one (``ivr.kpis.mark_repeats``); any stored contact counts, also one before the report's window."""
    earlier = ContactFactRow.__table__.alias("earlier").c
    return and_(
        _c.customer_id.is_not(None),
        exists().where(
            earlier.customer_id == _c.customer_id,
            earlier.started_at < _c.started_at,
            earlier.started_at >= _c.started_at - literal(window),
        ),
    )


def _place_kept() -> ColumnElement[bool]:
    """A dialled callback that nobody overtook (``ivr.kpis.overtakes``): no contact joined its
    queue after the booking and reached an agent before its first dial. Any stored contact
    counts, also one that started before the report's window."""
    later = ContactFactRow.__table__.alias("later").c
    return and_(
        _c.callback_at.is_not(None),
        _c.callback_dialled_at.is_not(None),
        ~exists().where(
            later.queue == _c.callback_queue,
            later.queued_at > _c.callback_at,
            later.answered_at < _c.callback_dialled_at,
            later.journey_id != _c.journey_id,
        ),
    )


def _count(condition: ColumnElement[bool]) -> ColumnElement[Any]:
    return func.sum(case((condition, 1), else_=0))


def _sum(condition: ColumnElement[bool], value: ColumnElement[Any]) -> ColumnElement[Any]:
    return func.coalesce(func.sum(case((condition, value))), literal(0.0))


def _group_columns(request: ReportRequest) -> list[ColumnElement[Any]]:
    """The group's key along ``by`` and, when split, the holdout group: what rows are grouped by."""
    keys: list[ColumnElement[Any]] = [_key(request.by, request.interval).label("k")]
    if request.split_holdout:
        keys.append(_holdout_key().label("h"))
    return keys


class KpiStore:
    """Reads the KPIs; the journey writer keeps ``contact_facts`` (see the module docstring)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def contacts(self, start: float, end: float) -> list[ContactFacts]:
        """Every contact that started in ``[start, end)`` (for inspection and tests; reports
        never load them)."""
        stmt = select(ContactFactRow.__table__).where(_c.started_at >= start, _c.started_at < end)
        async with self.engine.connect() as conn:
            found = (await conn.execute(stmt)).mappings().all()
        return [facts(row["journey_id"], dict(row)) for row in found]

    async def report(
        self, request: ReportRequest, *, service_level_s: float = DEFAULT_SERVICE_LEVEL_S
    ) -> list[ReportRow]:
        """The report ``ivr report`` prints and ``GET /api/kpis`` returns: the same numbers.

        The whole 15-minute slots of the window are added up from ``kpi_sums`` (``ivr.store.kpi_sums``);
        what is left at either end (the current quarter of an hour of "today so far") is grouped
        from the contact rows, and the two add up. A service level threshold with a fraction of a
        second, or a window inside one slot, is grouped from the contact rows alone.

        A database that cannot be read (down, unreachable, its file gone) is a StoreError, whatever
        the driver raised (SQLAlchemy's errors, sqlite3's on the one-trip path, a refused socket)."""
        try:
            return await self._report(request, service_level_s)
        except (SQLAlchemyError, sqlite3.Error, OSError) as exc:
            raise StoreError(f"the KPIs cannot be read: the database is not answering ({exc})") from exc

    async def _report(self, request: ReportRequest, service_level_s: float) -> list[ReportRow]:
        first, last = kpi_sums.slot_of(request.start), kpi_sums.slot_of(request.end)
        if first < request.start:
            first += kpi_sums.SLOT_S
        if last <= first or not float(service_level_s).is_integer():
            groups = await self._from_contacts(request, [(request.start, request.end)], service_level_s)
            return rows(request.by, groups)
        edges = [(s, e) for s, e in ((request.start, first), (last, request.end)) if e > s]
        sums, waits = kpi_sums.statements(
            request.by, float(INTERVALS[request.interval]), request.split_holdout, first, last, request.flow
        )
        reads: list[Any] = [self._all(sums), self._all(waits), self._kept(request, first, last)]
        if edges:
            reads.append(self._from_contacts(request, edges, service_level_s))
        done = await asyncio.gather(*reads)
        merged = kpi_sums.groups(
            done[0],
            done[1],
            split_holdout=request.split_holdout,
            service_level_s=int(service_level_s),
            label=lambda k: _label(request, k),
        )
        for key, kept in done[2].items():
            if key in merged:
                merged[key] = replace(merged[key], callbacks_kept=kept)
        for key, part in (done[3] if edges else {}).items():
            merged[key] = kpi_sums.add(merged[key], part) if key in merged else part
        return rows(request.by, merged)

    async def _kept(self, request: ReportRequest, start: float, end: float) -> dict[GroupKey, int]:
        """Callbacks that kept their place, per group, among contacts that started in
        ``[start, end)``: not a sum of rows (it looks at the other contacts of the callback's
        queue), so it is counted here, from the few contacts whose callback was dialled."""
        stmt = _kept_statement(replace(request, start=start, end=end))
        out: dict[GroupKey, int] = {}
        for row in await self._all(stmt):
            m = row._mapping
            out[(_label(request, m["k"]), str(m["h"]) if request.split_holdout else None)] = int(m["kept"])
        return out

    async def report_from_contacts(
        self, request: ReportRequest, *, service_level_s: float = DEFAULT_SERVICE_LEVEL_S
    ) -> list[ReportRow]:
        """The same report grouped from the contact rows alone, never from ``kpi_sums``: the
        definition the sums must reproduce (tests compare the two)."""
        return rows(request.by, await self._from_contacts(request, [(request.start, request.end)], service_level_s))

    async def _from_contacts(
        self, request: ReportRequest, windows: Sequence[tuple[float, float]], service_level_s: float
    ) -> dict[GroupKey, GroupSums]:
        """Each group's sums grouped from the contact rows that started in ``windows``."""
        offered = _c.queued_at.is_not(None)
        handled = and_(offered, _c.answered_at.is_not(None))
        abandoned = and_(offered, _c.answered_at.is_(None), _c.abandoned_at.is_not(None))
        wait = _c.answered_at - _c.queued_at
        ends = sorted(CONTAINED_ENDS)
        self_service = and_(_c.queued_at.is_(None), _c.transfers == 0)
        to_choice = and_(_c.menu_at.is_not(None), _c.chosen_at.is_not(None), _c.chosen_at >= _c.menu_at)
        booked = _c.callback_at.is_not(None)
        called_back = and_(booked, _c.callback_connected_at.is_not(None))
        sent = _c.sent_at.is_not(None)
        claimed = and_(sent, _c.claimed_at >= _c.sent_at)
        spoke = (_c.speech_heard + _c.speech_no_input) > 0
        outbound = _c.outbound_at.is_not(None)
        reason = case(
            (
                and_(_c.exhausted_at.is_not(None), _c.exhausted_at <= _c.queued_at),
                func.coalesce(_c.exhausted_by, literal("no_match")),
            ),
            else_=func.coalesce(_c.queue_reason, literal("flow")),
        )
        keys = _group_columns(request)
        in_window: tuple[ColumnElement[bool], ...] = (
            or_(*(and_(_c.started_at >= start, _c.started_at < end) for start, end in windows)),
        )
        if request.flow is not None:
            in_window = (*in_window, _c.flow == request.flow)
        sums = (
            select(
                *keys,
                func.count().label("contacts"),
                _count(offered).label("offered"),
                _count(handled).label("handled"),
                _count(abandoned).label("abandoned"),
                _sum(abandoned, _c.abandoned_at - _c.queued_at).label("abandon_s"),
                _sum(handled, wait).label("wait_s"),
                _count(and_(handled, wait <= service_level_s)).label("within_sl"),
                _sum(and_(handled, _c.agent_ended_at.is_not(None)), _c.agent_ended_at - _c.answered_at).label(
                    "handle_s"
                ),
                _count(and_(handled, _c.agent_ended_at.is_not(None))).label("handle_n"),
                *(_count(and_(self_service, _c.ended == end)).label(f"contained_{end}") for end in ends),
                func.sum(_c.choices).label("choices"),
                func.sum(_c.first_choices).label("first_choices"),
                _sum(to_choice, _c.chosen_at - _c.menu_at).label("to_choice_s"),
                _count(to_choice).label("to_choice_n"),
                func.sum(_c.no_match).label("no_match"),
                func.sum(_c.no_input).label("no_input"),
                _count(spoke).label("speech_contacts"),
                *(func.sum(_c[name]).label(name) for name in SPEECH_SUMS),
                _count(and_(spoke, _c.key_choices > 0)).label("fell_back"),
                *(_count(and_(offered, reason == r)).label(f"reason_{r}") for r in OFFER_REASONS),
                _count(_c.ended == "abandoned").label("left_in_flow"),
                _count(sent).label("links_sent"),
                _count(and_(sent, _c.opened_at >= _c.sent_at)).label("links_opened"),
                _count(claimed).label("links_claimed"),
                _count(and_(claimed, _c.completed_at >= _c.claimed_at)).label("links_completed"),
                _count(booked).label("callbacks_booked"),
                _count(and_(booked, _c.callback_dials > 0)).label("callbacks_dialled"),
                func.coalesce(func.sum(case((booked, _c.callback_dials))), literal(0)).label("callback_dials"),
                _count(called_back).label("callbacks_answered"),
                _count(and_(booked, _c.callback_failed_at.is_not(None))).label("callbacks_failed"),
                _sum(called_back, _c.callback_connected_at - _c.callback_at).label("callback_wait_s"),
                _count(_place_kept()).label("callbacks_kept"),
                _count(_c.customer_id.is_not(None)).label("known_contacts"),
                *(_count(_repeat(window)).label(name) for name, window in REPEAT_WINDOWS.items()),
                *(func.sum(_c[name]).label(name) for name in TRANSFER_SUMS),
                _count(outbound).label("outbound_calls"),
                _count(and_(outbound, _c.outbound_answered_at.is_not(None))).label("outbound_answered"),
            )
            .where(*in_window)
            .group_by(*keys)
        )
        waits = (
            select(*keys, func.floor(wait).label("w"), func.count().label("n"))
            .where(*in_window, handled)
            .group_by(*keys, func.floor(wait))
        )
        # two connections, two scans at once: the figures and the wait histogram do not wait for
        # each other (about a third off the time of a day of a busy centre, bench/kpis.py)
        groups, histogram = await asyncio.gather(self._all(sums), self._all(waits))
        return _groups(request, groups, histogram, ends)

    async def _all(self, stmt: Any) -> Sequence[Any]:
        """The statement's rows. On SQLite, in one trip to the connection's thread.

        Why: through SQLAlchemy's aiosqlite adapter a SELECT is a cursor opened, executed, fetched
        and closed, and a rollback when the connection goes back: five trips, each a queue put, a
        thread wake-up and a loop wake-up. The wallboard's KPIs run nine of these every 5 s
        on every node, a third of an idle controller's CPU (bench/README.md). The statement is
        compiled once (:func:`_sqlite_query`), its rows carry the same names.
        """
        if self.engine.dialect.name == "sqlite" and (query := _sqlite_query(stmt, self.engine.dialect)) is not None:
            async with self.engine.connect() as conn:
                driver = (await conn.get_raw_connection()).driver_connection
                rows = await driver.execute_fetchall(query.sql, query.params)  # type: ignore[union-attr]
            return [query.row(values) for values in rows]
        async with self.engine.connect() as conn:
            return (await conn.execute(stmt)).all()


class _SqliteQuery(NamedTuple):
    sql: str
    params: tuple[Any, ...]
    row: Callable[[Sequence[Any]], Any]


@functools.lru_cache(maxsize=64)  # a statement and its compiled form: tens of kB each
def _sqlite_query(stmt: Any, dialect: Any) -> _SqliteQuery | None:
    """``stmt`` as sqlite3 runs it: its SQL, its parameters in order (through the types' own
    bind processors, as SQLAlchemy binds them) and a row type with its columns' names (attributes
    and ``_mapping``, as SQLAlchemy's rows). None for a statement whose SQL depends on its
    values (an expanding ``IN``): SQLAlchemy runs that one. Kept per statement: the reports'
    statements are themselves kept (``kpi_sums.statements``, :func:`_kept_statement`)."""
    compiled = stmt.compile(dialect=dialect)
    sql = str(compiled)
    if "POSTCOMPILE" in sql or compiled.positiontup is None:
        return None
    processors = compiled._bind_processors
    params = tuple(
        processors[name](compiled.params[name]) if name in processors else compiled.params[name]
        for name in compiled.positiontup
    )
    return _SqliteQuery(sql, params, _row_type(tuple(c.key for c in stmt.selected_columns))._make)


@functools.lru_cache(maxsize=64)
def _row_type(names: tuple[str, ...]) -> Any:
    base = collections.namedtuple("Row", names, rename=True)  # type: ignore[misc]

    class Row(base):
        __slots__ = ()

        @property
        def _mapping(self) -> dict[str, Any]:
            return dict(zip(names, self, strict=True))

    return Row


@functools.lru_cache(maxsize=64)
def _kept_statement(request: ReportRequest) -> Any:
    """The callbacks that kept their place among contacts that started in the request's window,
    per group (``KpiStore._kept``); kept, like ``kpi_sums.statements``: the wallboard asks for the
    same day every 5 s."""
    keys = _group_columns(request)
    where: list[ColumnElement[bool]] = [
        _c.started_at >= request.start,
        _c.started_at < request.end,
        _c.callback_dialled_at.is_not(None),
    ]
    if request.flow is not None:
        where.append(_c.flow == request.flow)
    return select(*keys, _count(_place_kept()).label("kept")).where(*where).group_by(*keys)


def _label(request: ReportRequest, key: Any) -> str:
    if request.by == "interval":
        return interval_label(float(key))
    return str(key)


def _groups(
    request: ReportRequest, groups: Sequence[Any], histogram: Sequence[Any], ends: list[str]
) -> dict[GroupKey, GroupSums]:
    def group_key(k: Any, h: Any) -> GroupKey:
        return (_label(request, k), str(h) if request.split_holdout else None)

    groups = [g._mapping for g in groups]

    waits: dict[GroupKey, dict[int, int]] = defaultdict(dict)
    for h in histogram:
        waits[group_key(h.k, h.h if request.split_holdout else None)][int(h.w)] = int(h.n)
    out: dict[GroupKey, GroupSums] = {}
    for g in groups:
        key = group_key(g["k"], g["h"] if request.split_holdout else None)
        out[key] = GroupSums(
            contacts=int(g["contacts"]),
            offered=int(g["offered"]),
            handled=int(g["handled"]),
            abandoned=int(g["abandoned"]),
            abandon_s=float(g["abandon_s"]),
            wait_s=float(g["wait_s"]),
            within_sl=int(g["within_sl"]),
            handle_s=float(g["handle_s"]),
            handle_n=int(g["handle_n"]),
            contained={end: int(g[f"contained_{end}"]) for end in ends},
            choices=int(g["choices"] or 0),
            first_choices=int(g["first_choices"] or 0),
            to_choice_s=float(g["to_choice_s"]),
            to_choice_n=int(g["to_choice_n"]),
            no_match=int(g["no_match"] or 0),
            no_input=int(g["no_input"] or 0),
            waits=waits.get(key, {}),
            speech_contacts=int(g["speech_contacts"]),
            fell_back=int(g["fell_back"]),
            offered_by_reason={r: int(g[f"reason_{r}"]) for r in OFFER_REASONS},
            left_in_flow=int(g["left_in_flow"]),
            links_sent=int(g["links_sent"]),
            links_opened=int(g["links_opened"]),
            links_claimed=int(g["links_claimed"]),
            links_completed=int(g["links_completed"]),
            callbacks_booked=int(g["callbacks_booked"]),
            callbacks_dialled=int(g["callbacks_dialled"]),
            callback_dials=int(g["callback_dials"] or 0),
            callbacks_answered=int(g["callbacks_answered"]),
            callbacks_failed=int(g["callbacks_failed"]),
            callback_wait_s=float(g["callback_wait_s"]),
            callbacks_kept=int(g["callbacks_kept"]),
            known_contacts=int(g["known_contacts"]),
            repeat_24h=int(g["repeat_24h"]),
            repeat_7d=int(g["repeat_7d"]),
            outbound_calls=int(g["outbound_calls"]),
            outbound_answered=int(g["outbound_answered"]),
            **{name: int(g[name] or 0) for name in TRANSFER_SUMS},
            **{name: int(g[name] or 0) for name in SPEECH_SUMS},
        )
    return out
