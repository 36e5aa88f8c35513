"""Sums per 15 minutes and group, kept by the journey writer, so "today" adds a few thousand rows.

Why: ``contact_facts`` made a report one row per contact instead of ten events, but a busy day is
still a hundred thousand contacts to group on every request (p99 676 ms for a million
interactions all today, bench/kpis.py). Every figure of ``ivr.kpis.figures`` is a ratio of counts
and sums over contacts, and counts and sums add up: so, per 15-minute slot of ``started_at`` and
per group, the writer keeps the very sums a report computes (``kpi_sums``, the columns of
``ivr.kpis.GroupSums``) and the handled contacts' waits by whole second (``kpi_waits``). A report
over whole slots adds up those rows; the rest of its window (the current quarter of an hour, when
"today" ends now) is grouped from ``contact_facts`` as before, and the two add up
(``ivr.store.kpis``).

Layout: a contact is in one row per grouping (``dim``): ``all`` (interval, flow and holdout group
its rows, since every row carries its slot, flow and holdout), ``queue``, ``skill``, ``agent``,
``channel``, ``step`` and ``handoff``. A report reads only its grouping's rows, however many
agents or steps the others have.

How exact: the same figures. Counts are counts; sums of seconds are the same floating-point sums
added in another order (equal to about 1e-12 relative); the 90th percentile wait is defined on
whole seconds anyway. The service level's threshold is a setting, not a stored fact, so
``kpi_waits`` also counts, per whole second, the waits of exactly that second: a wait <= S (S a
whole number of seconds) is every wait below second S and the exact ones at S. A threshold with a
fraction of a second is read from ``contact_facts`` (``ivr.store.kpis``).

Repeat contacts depend on a contact's neighbours, not on the contact alone, so the writer keeps
them as facts (``contact_facts.repeat_24h`` / ``repeat_7d``): when a batch sets or moves a
contact's customer or start, every contact of that customer whose flags it can change (those
starting up to 7 days after it) is recomputed, and its sums move with it.

Why the deltas hold under concurrent writers: a contact's facts change after its first row (queued,
answered, ended later), which moves it between groups, so the writer subtracts the old contribution
and adds the new one in the same transaction as the facts (:class:`SumsWriter`). It locks the
batch's contact rows before reading them (inserting an empty row first for a new contact, so there
is one to lock): no other writer can change a row between the read of its old contribution and
the commit of the new one. Customers whose repeat flags it recomputes are locked too (PostgreSQL
advisory locks, in order), so two nodes writing two contacts of one customer at once see each
other. Locks are taken in a fixed order (contacts by id, customers by id, sums by key); a deadlock
PostgreSQL still finds aborts one batch, which the writer retries. SQLite has one writer at a time
(and the process's write turn, ``ivr.store.turns``): there the writer neither claims nor locks, it
reads the rows; an empty claimed row counted nowhere, exactly as a missing one.

Statements per batch: the merge's ``RETURNING`` gives the merged rows (no read after it), and a
contact whose row came back unchanged moves no sum. A contact's contribution is kept from one
batch to the next (:class:`Contributions`): the row a batch reads is usually the one the last
batch wrote. On SQLite every statement of a batch runs in one trip to the connection's thread
(:meth:`SumsWriter.write_sqlite`, called by ``ivr.store.journeys``).
"""

from __future__ import annotations

import bisect
import functools
import json
import math
import sqlite3
from collections import Counter, defaultdict
from collections.abc import Generator, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

from sqlalchemy import ColumnElement, Table, bindparam, case, func, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.sql.schema import ScalarElementColumnDefault

from ivr.kpis import (
    CONTAINED_ENDS,
    OFFER_REASONS,
    REPEAT_WINDOWS,
    SPEECH_COUNTS,
    TRANSFER_MODES,
    Dimension,
    GroupKey,
    GroupSums,
    facts,
)
from ivr.store.models import KPI_COUNTS, KPI_SECONDS, ContactFactRow, KpiSums, KpiWaits

SLOT_S = 900.0
#: The ``dim`` of the rows a report groups by each dimension.
GROUPING: dict[Dimension, str] = {
    "interval": "all",
    "flow": "all",
    "holdout": "all",
    "queue": "queue",
    "skill": "skill",
    "agent": "agent",
    "channel": "channel",
    "step": "step",
    "handoff": "handoff",
}
GROUPINGS = tuple(sorted(set(GROUPING.values())))
MEASURES = (*KPI_COUNTS, *KPI_SECONDS)
#: GroupSums fields that are not a column of ``kpi_sums``: the histogram is ``kpi_waits``, and
#: ``within_sl`` is counted from it at the requested threshold; ``callbacks_kept`` compares a
#: callback with the contacts that joined its queue after it (``ivr.store.kpis`` counts it from
#: the few contacts with a dialled callback, for the whole window).
NOT_SUMMED = ("waits", "within_sl", "callbacks_kept")
LONGEST_REPEAT = max(REPEAT_WINDOWS.values())
SumKey = tuple[str, float, str, str, str]  # dim, slot, key, flow, holdout
WaitKey = tuple[str, float, str, str, str, int]  # ... and the wait's whole second
_c = ContactFactRow.__table__.c


# ----------------------------------------------------------------------- a contact's contribution
def slot_of(at: float) -> float:
    """The start of the 15-minute slot ``at`` falls in: the greatest multiple of 900 <= ``at``,
    exactly (a window on slot boundaries then takes the same contacts as ``started_at >= start``)."""
    slot = math.floor(at / SLOT_S) * SLOT_S
    if slot > at:
        slot -= SLOT_S
    elif slot + SLOT_S <= at:
        slot += SLOT_S
    return float(slot)


def _label(value: Any) -> str:
    return "-" if value is None else str(value)


def group_keys(row: Mapping[str, Any]) -> dict[str, str]:
    """A contact row's key along each grouping: the labels the SQL of ``ivr.store.kpis`` gives
    (``coalesce(queue, '-')``, ``flow/step``, ``from>to``)."""
    return {
        "all": "-",
        "queue": _label(row["queue"]),
        "skill": _label(row["skill"]),
        "agent": _label(row["agent_id"] if row["agent_id"] is not None else row["outbound_agent"]),
        "channel": _label(row["channel"]),
        "step": f"{_label(row['flow'])}/{_label(row['ended_step'])}",
        "handoff": "-" if row["sent_at"] is None else f"{_label(row['sent_from'])}>{_label(row['sent_to'])}",
    }


def holdout_of(row: Mapping[str, Any]) -> str:
    return {1: "holdout", 0: "personalized"}.get(row["holdout"], "-")


def measures(journey_id: str, row: Mapping[str, Any]) -> dict[str, float]:
    """One contact's non-zero columns of ``kpi_sums``: ``flatten(sums_of([contact]))`` without its
    zeros, with the repeat flags the row keeps, computed for the one contact directly.

    Why not ``sums_of`` itself: for one contact, its forty lists of one item, two Counters and a
    GroupSums were most of the journey writer's CPU once the writer's statements were one trip
    (bench/README.md). ``sums_of`` stays the definition: tests/unit/store/test_kpi_sums.py holds
    this to it, key by key and value by value, over thousands of contacts.
    """
    c = facts(journey_id, row)
    out: dict[str, float] = {"contacts": 1}

    def count(name: str, value: float) -> None:
        if value:
            out[name] = value

    offered = c.queued_at is not None
    wait = c.wait  # None unless handled
    abandon = c.time_to_abandon
    handle = c.handle_time if wait is not None else None
    to_choice = c.time_to_choice
    if offered:
        out["offered"] = 1
        reason = str(c.offer_reason)
        if reason in _REASONS:
            out[f"reason_{reason}"] = 1
    if wait is not None:
        out["handled"] = 1
        count("wait_s", wait)
        if handle is not None:
            out["handle_n"] = 1
            count("handle_s", handle)
    if abandon is not None:
        out["abandoned"] = 1
        count("abandon_s", abandon)
    if to_choice is not None:
        out["to_choice_n"] = 1
        count("to_choice_s", to_choice)
    if c.contained:
        out[f"contained_{c.ended}"] = 1
    for name in _COUNTED:
        count(name, getattr(c, name))
    callback_wait = c.callback_wait
    if callback_wait is not None:
        count("callback_wait_s", callback_wait)
    if c.callback_at is not None:
        count("callback_dials", c.callback_dials)
    booked = c.callback_at is not None
    flags = (  # the contact is one of the group's "1 for each contact that ..." counts
        ("speech_contacts", c.spoke),
        ("fell_back", c.fell_back_to_keys),
        ("left_in_flow", c.left_in_flow),
        ("links_sent", c.sent),
        ("links_opened", c.opened),
        ("links_claimed", c.claimed),
        ("links_completed", c.completed_after_claim),
        ("callbacks_booked", booked),
        ("callbacks_dialled", booked and c.callback_dials > 0),
        ("callbacks_failed", booked and c.callback_failed_at is not None),
        ("callbacks_answered", callback_wait is not None),
        ("known_contacts", c.customer_id is not None),
        ("repeat_24h", row["repeat_24h"]),
        ("repeat_7d", row["repeat_7d"]),
        ("outbound_calls", c.outbound),
        ("outbound_answered", c.outbound_answered),
    )
    for name, on in flags:
        if on:
            out[name] = 1
    return out


#: The counts a contact adds as they are (``sums_of`` sums each over its group).
_COUNTED = (
    "choices",
    "first_choices",
    "no_match",
    "no_input",
    *(name for name in SPEECH_COUNTS if name != "key_choices"),
    *(f"agent_transfers_{mode}" for mode in TRANSFER_MODES),
)
_REASONS = frozenset(OFFER_REASONS)


#: GroupSums' fields that ``flatten`` copies, in order (``dataclasses.fields`` once, not per contact:
#: the journey writer flattens every contact of every batch twice, its old row and its new one)
_FLATTENED = tuple(f.name for f in fields(GroupSums) if f.name not in NOT_SUMMED)


def flatten(sums: GroupSums) -> dict[str, float]:
    """GroupSums as the columns of ``kpi_sums`` (its mappings one column per key)."""
    out: dict[str, float] = {}
    for name in _FLATTENED:
        value = getattr(sums, name)
        if name == "contained":
            out.update({f"contained_{end}": value.get(end, 0) for end in CONTAINED_ENDS})
        elif name == "offered_by_reason":
            out.update({f"reason_{r}": value.get(r, 0) for r in OFFER_REASONS})
        else:
            out[name] = value
    return out


def unflatten(row: Mapping[str, Any], waits: Mapping[int, tuple[int, int]], service_level_s: int) -> GroupSums:
    """A group's summed columns and its waits ``second -> (n, n_whole)`` as GroupSums, with
    ``within_sl`` at a whole-second threshold."""
    within = sum(n for s, (n, _) in waits.items() if s < service_level_s)
    within += waits.get(service_level_s, (0, 0))[1]
    plain = {f.name for f in fields(GroupSums)} - {"contained", "offered_by_reason", *NOT_SUMMED}
    values: dict[str, Any] = {
        name: float(row[name] or 0) if name in KPI_SECONDS else int(row[name] or 0) for name in plain
    }
    return GroupSums(
        **values,
        contained={end: int(row[f"contained_{end}"] or 0) for end in sorted(CONTAINED_ENDS)},
        offered_by_reason={r: int(row[f"reason_{r}"] or 0) for r in OFFER_REASONS},
        waits={s: n for s, (n, _) in waits.items() if n},
        within_sl=within,
    )


def add(a: GroupSums, b: GroupSums) -> GroupSums:
    """Two groups' sums as one (the sums part of a window and the part read from contacts)."""
    merged: dict[str, Any] = {}
    for f in fields(GroupSums):
        x, y = getattr(a, f.name), getattr(b, f.name)
        merged[f.name] = dict(Counter(x) + Counter(y)) if isinstance(x, Mapping) else x + y
    return GroupSums(**merged)


@dataclass(frozen=True)
class Contribution:
    """One contact row's part of the sums: its non-zero measures, the groups it is in, and its
    wait's whole second (``second``, and ``whole`` 1 if the wait is exactly that) if handled."""

    counted: dict[str, float]
    groups: tuple[tuple[str, float, str, str, str], ...]
    second: int | None
    whole: int


def contribution(journey_id: str, row: Mapping[str, Any]) -> Contribution:
    """What one started contact row adds to the sums (``Deltas.add`` adds or takes it away)."""
    counted = measures(journey_id, row)
    slot, flow, held = slot_of(row["started_at"]), row["flow"] or "", holdout_of(row)
    second: int | None = None
    whole = 0
    if counted.get("handled"):
        wait = row["answered_at"] - row["queued_at"]
        second = math.floor(wait)
        whole = int(wait == second)
    groups = tuple((dim, slot, key, flow, held) for dim, key in group_keys(row).items())
    return Contribution(counted, groups, second, whole)


class Contributions:
    """The last contribution computed for each of the latest ``size`` contacts, by journey id,
    with the row it came from (about 2 kB each: 4,096 contacts in progress on one node are a few
    MB, well beyond what two cores serve at once).

    Why: a contact in one batch is usually in the next one too, and the row the next batch reads
    before its merge is the very row this batch wrote, so its contribution (``ivr.kpis.facts`` and
    :func:`measures`, once most of the journey writer's CPU, bench/README.md) is known. A hit
    needs the whole row equal, so a row another node changed in between is computed again.
    """

    def __init__(self, size: int = 4096) -> None:
        self.size = size
        self._known: dict[str, tuple[tuple[str, ...], tuple[Any, ...], Contribution]] = {}
        self._names: dict[tuple[str, ...], tuple[str, ...]] = {}
        self.hits = 0

    def of(self, journey_id: str, row: Mapping[str, Any]) -> Contribution:
        names = tuple(row)
        names = self._names.setdefault(names, names)  # one copy of each column list, compared by identity
        values = tuple(row.values())
        known = self._known.pop(journey_id, None)  # popped: put back as the newest
        if known is not None and known[0] is names and known[1] == values:
            self.hits += 1
            made = known[2]
        else:
            made = contribution(journey_id, row)
        self._known[journey_id] = (names, values, made)
        if len(self._known) > self.size:
            del self._known[next(iter(self._known))]  # the contact seen longest ago
        return made


@dataclass
class Deltas:
    """What a batch changes in ``kpi_sums`` and ``kpi_waits``: contributions added and taken away."""

    sums: dict[SumKey, dict[str, float]] = field(default_factory=dict)
    waits: dict[WaitKey, list[int]] = field(default_factory=dict)
    known: Contributions | None = None

    def add(self, journey_id: str, row: Mapping[str, Any] | None, sign: int) -> None:
        """Add (``sign`` 1) or take away (-1) one contact row's contribution; a row that has not
        started counts nowhere, as in a report."""
        part = self._part(journey_id, row)
        if part is not None:
            self._apply(part, sign)

    def move(self, journey_id: str, old: Mapping[str, Any] | None, new: Mapping[str, Any] | None) -> None:
        """Take ``old``'s contribution away and add ``new``'s: ``add(old, -1)`` then ``add(new, 1)``.

        Why not just those two: a contact in its next batch is usually in the same groups as
        before, with two or three measures changed (an end, a choice). Then each group gets only
        the difference, in one pass, instead of every measure taken away and added again in two
        (that pair was the largest part of the fold's Python, bench/README.md)."""
        before, after = self._part(journey_id, old), self._part(journey_id, new)
        if before is None or after is None or before.groups != after.groups:
            if before is not None:
                self._apply(before, -1)
            if after is not None:
                self._apply(after, 1)
            return
        was = before.counted
        changed = {name: value - was.get(name, 0) for name, value in after.counted.items()}
        for name, value in was.items():
            changed.setdefault(name, -value)
        changed = {name: value for name, value in changed.items() if value}
        waits_moved = (before.second, before.whole) != (after.second, after.whole)
        for group in after.groups:
            if changed:
                acc = self.sums.get(group)
                if acc is None:
                    acc = self.sums[group] = dict.fromkeys(MEASURES, 0)
                for name, value in changed.items():
                    acc[name] += value
            if waits_moved:
                for part, sign in ((before, -1), (after, 1)):
                    if part.second is not None:
                        entry = self.waits.setdefault((*group, part.second), [0, 0])
                        entry[0] += sign
                        entry[1] += sign * part.whole

    def _part(self, journey_id: str, row: Mapping[str, Any] | None) -> Contribution | None:
        if row is None or row["started_at"] is None:
            return None
        return self.known.of(journey_id, row) if self.known is not None else contribution(journey_id, row)

    def _apply(self, part: Contribution, sign: int) -> None:
        counted, second, whole = part.counted, part.second, part.whole
        for group in part.groups:
            acc = self.sums.get(group)
            if acc is None:  # not setdefault: that built a dict of every measure per group and contact
                acc = self.sums[group] = dict.fromkeys(MEASURES, 0)
            for name, value in counted.items():
                acc[name] += sign * value
            if second is not None:
                entry = self.waits.setdefault((*group, second), [0, 0])
                entry[0] += sign
                entry[1] += sign * whole

    def sum_rows(self) -> list[dict[str, Any]]:
        """Rows to add, in key order (the lock order), without the ones that change nothing."""
        return [
            {"dim": k[0], "slot": k[1], "key": k[2], "flow": k[3], "holdout": k[4], **values}
            for k, values in sorted(self.sums.items())
            if any(values.values())
        ]

    def wait_rows(self) -> list[dict[str, Any]]:
        return [
            {
                "dim": k[0],
                "slot": k[1],
                "key": k[2],
                "flow": k[3],
                "holdout": k[4],
                "second": k[5],
                "n": n,
                "n_whole": w,
            }
            for k, (n, w) in sorted(self.waits.items())
            if n or w
        ]


def repeat_flags(starts: Sequence[float], at: float) -> tuple[int, int]:
    """``repeat_24h``, ``repeat_7d`` of a contact started ``at``, given the sorted start times of its
    customer's contacts: another one started in the window before it (``ivr.kpis.mark_repeats``)."""
    below = bisect.bisect_left(starts, at)  # starts[:below] < at

    def within(window: float) -> int:
        return int(below > 0 and starts[below - 1] >= at - window)

    return within(REPEAT_WINDOWS["repeat_24h"]), within(REPEAT_WINDOWS["repeat_7d"])


# ----------------------------------------------------------------------------------- writing
@dataclass(frozen=True, slots=True)
class Step:
    """One statement the fold needs run: which of the writer's statements (``SumsWriter.statements``),
    with what (a dict, or a list of dicts run as one executemany); ``returns``: its rows are sent
    back into the fold, as dicts (``None`` is sent for the others)."""

    name: str
    params: dict[str, Any] | list[dict[str, Any]]
    returns: bool = False


Fold = Generator[Step, list[dict[str, Any]] | None, None]


def _rows(result: Any) -> list[dict[str, Any]]:
    """A SQLAlchemy result's rows as dicts, the column names taken once (``dict(row._mapping)``
    builds a key view per row: it was a tenth of the journey writer's CPU, bench/README.md)."""
    names = tuple(result.keys())
    return [dict(zip(names, row, strict=True)) for row in result]


def _by_journey(rows: list[dict[str, Any]] | None) -> dict[str, dict[str, Any]]:
    return {r["journey_id"]: r for r in rows or ()}


class SumsWriter:
    """Folds a batch's contact rows into ``contact_facts`` and their deltas into the sums, inside
    the writer's transaction (see the module docstring for the locking).

    The fold itself (:meth:`fold`) does no I/O: it yields each statement it needs as a
    :class:`Step` and is sent the rows back. Two drivers run it: :meth:`write` through SQLAlchemy
    (PostgreSQL, and SQLite where a test asks for it), and :meth:`write_sqlite` on sqlite3's own
    connection inside the journey writer's one trip to it (``ivr.store.journeys``), with each
    statement's SQL compiled once. Why two: on SQLite, SQLAlchemy's per-statement and per-row
    work and one trip to aiosqlite's thread per statement were most of the writer's CPU
    (bench/README.md); the fold, which decides what the sums are, is the same code for both.
    """

    def __init__(self, dialect: str, upsert: Any, chunk: int) -> None:
        insert: Any = postgresql.insert if dialect == "postgresql" else sqlite.insert
        self.postgresql = dialect == "postgresql"
        #: SQLite: a contact with no row yet is a plain INSERT (``fold``); off, it is merged as the others
        self.insert_new = not self.postgresql
        self.chunk = chunk
        self.contributions = Contributions()
        ids: Any = bindparam("ids", expanding=True)
        stmt = insert(KpiSums)
        sums = stmt.on_conflict_do_update(
            index_elements=list(KpiSums.primary_key.columns),
            set_={m: KpiSums.c[m] + stmt.excluded[m] for m in MEASURES},
        )
        stmt = insert(KpiWaits)
        waits = stmt.on_conflict_do_update(
            index_elements=list(KpiWaits.primary_key.columns),
            set_={"n": KpiWaits.c.n + stmt.excluded.n, "n_whole": KpiWaits.c.n_whole + stmt.excluded.n_whole},
        )
        #: name -> statement, for :meth:`write`
        self.statements: dict[str, Any] = {
            # the merged rows come back from the upsert itself (RETURNING: SQLite >= 3.35, bookworm
            # has 3.40; PostgreSQL): before, a read after it fetched them, one statement per batch more
            "upsert": upsert.returning(*_c),
            # a contact with no row yet, on SQLite (``fold``): its merged row is itself, complete
            "insert": insert(ContactFactRow.__table__),
            "claim": insert(ContactFactRow.__table__).on_conflict_do_nothing(index_elements=[_c.journey_id]),
            "locked": select(ContactFactRow.__table__)
            .where(_c.journey_id.in_(ids))
            .order_by(_c.journey_id)
            .with_for_update(),
            "read": select(ContactFactRow.__table__).where(_c.journey_id.in_(ids)),
            "repeat_locks": text(
                "SELECT count(pg_advisory_xact_lock(hashtextextended('kpi-repeats/' || c, 0)))"
                " FROM (SELECT unnest(CAST(:ids AS text[])) AS c ORDER BY 1) AS customers"
            ),
            # only what the flags need: a customer's contacts over two weeks can be many rows
            "repeats": select(_c.journey_id, _c.customer_id, _c.started_at, _c.repeat_24h, _c.repeat_7d)
            .where(
                _c.customer_id.in_(bindparam("ids", expanding=True)),
                _c.started_at >= bindparam("low"),
                _c.started_at <= bindparam("high"),
            )
            .order_by(_c.journey_id)
            .with_for_update(),
            "flags": update(ContactFactRow)
            .where(_c.journey_id == bindparam("jid"))
            .values(repeat_24h=bindparam("r24"), repeat_7d=bindparam("r7")),
            "sums": sums,
            "waits": waits,
        }
        self._sqlite: tuple[dict[str, str], dict[str, _Positional]] | None = None

    def _chunks(self, items: Sequence[Any]) -> Iterable[Sequence[Any]]:
        for start in range(0, len(items), self.chunk):
            yield items[start : start + self.chunk]

    # -------------------------------------------------------------------------------- drivers
    async def write(self, conn: Any, contacts: Sequence[dict[str, Any]]) -> None:
        """Merge ``contacts`` (``ivr.store.kpis.contact_rows``) and move the sums by what changed,
        on a SQLAlchemy connection."""
        if not contacts:
            return
        fold = self.fold(contacts)
        rows: list[dict[str, Any]] | None = None
        while True:
            try:
                step = fold.send(rows)
            except StopIteration:
                return
            result = await conn.execute(self.statements[step.name], step.params)
            rows = _rows(result) if step.returns else None

    def write_sqlite(self, db: sqlite3.Connection, contacts: Sequence[dict[str, Any]]) -> None:
        """The same on sqlite3's own connection, in its current transaction (the caller's thread
        is the connection's own). Each statement's SQL is compiled once; a list of parameters is
        one ``executemany``, except the merge, whose rows come back one ``RETURNING`` each.

        The statements that take whole rows (the contacts, the sums, the waits) take them as
        tuples in their columns' order, a column a row lacks given its default (``_Positional``):
        a dict of sixty named values per row, built and then bound by name, was a sixth of
        this function's CPU (bench/README.md)."""
        if not contacts:
            return
        compiled, positional = self._sqlite_statements()
        fold = self.fold(contacts)
        rows: list[dict[str, Any]] | None = None
        while True:
            try:
                step = fold.send(rows)
            except StopIteration:
                return
            params = step.params
            rows = None
            if isinstance(params, list) and step.name in positional:
                sql, names, defaults = positional[step.name]
                values = [tuple(map(row.get, names, defaults)) for row in params]
                if step.returns:
                    rows = []
                    for one in values:
                        rows.extend(_sqlite_rows(db.execute(sql, one)))
                else:
                    db.executemany(sql, values)
            elif isinstance(params, list):
                db.executemany(compiled[step.name], params)
            else:
                params = {k: json.dumps(v) if k in _AS_JSON else v for k, v in params.items()}
                cursor = db.execute(compiled[step.name], params)
                rows = _sqlite_rows(cursor) if step.returns else None

    def _sqlite_statements(self) -> tuple[dict[str, str], dict[str, _Positional]]:
        """The SQL for sqlite3: name -> SQL with named parameters, and name -> ``_Positional`` for
        the statements that take whole rows.

        The reads by id take the ids as one JSON array (``json_each``, in SQLite since 3.38;
        bookworm has 3.40): an expanding ``IN`` is new SQL for every number of ids."""
        if self._sqlite is None:
            dialect = sqlite.dialect(paramstyle="named")
            compiled: dict[str, str] = {}
            positional: dict[str, _Positional] = {}
            for name in ("upsert", "insert", "sums", "waits"):
                table = _TABLES[name]
                statement = self.statements[name].compile(
                    dialect=sqlite.dialect(paramstyle="qmark"), column_keys=[c.name for c in table.c]
                )
                names = tuple(statement.positiontup or ())
                if not set(names) <= set(table.c.keys()):  # a bound literal would be given a row's None
                    raise RuntimeError(
                        f"{name}: parameters other than columns: {sorted(set(names) - set(table.c.keys()))}"
                    )
                defaults = _DEFAULTS[name]
                positional[name] = (str(statement), names, tuple(defaults.get(n) for n in names))
            compiled["flags"] = str(self.statements["flags"].compile(dialect=dialect))
            every = ", ".join(c.name for c in _c)
            compiled["read"] = (
                f"SELECT {every} FROM contact_facts WHERE journey_id IN (SELECT value FROM json_each(:ids))"
            )
            compiled["repeats"] = REPEATS_SQLITE
            self._sqlite = compiled, positional
        return self._sqlite

    # ----------------------------------------------------------------------------------- fold
    def fold(self, contacts: Sequence[dict[str, Any]]) -> Fold:
        """Merge ``contacts`` and move the sums by what changed: the statements, in order."""
        ids = sorted({c["journey_id"] for c in contacts})
        before: dict[str, dict[str, Any]] = {}
        if self.postgresql:
            # claim, then lock: a new contact needs a row to lock before its old contribution is read
            for part in self._chunks(ids):
                yield Step("claim", [{"journey_id": j} for j in part])
            for part in self._chunks(ids):
                before.update(_by_journey((yield Step("locked", {"ids": list(part)}, returns=True))))
        else:
            # SQLite: the write turn and the database's one writer already keep every other writer
            # out until the commit; a claimed empty row counts nowhere, exactly as a missing one
            for part in self._chunks(ids):
                before.update(_by_journey((yield Step("read", {"ids": list(part)}, returns=True))))
        ordered = sorted(contacts, key=lambda c: c["journey_id"])
        after: dict[str, dict[str, Any]] = {}
        if self.insert_new:
            # SQLite: a contact with no row (most of a batch: calls that started in it) is a plain
            # INSERT, all at once, and its merged row is itself with the columns' defaults, built
            # here; the merge, one RETURNING per row, was the largest part of the writer's work
            # (bench/README.md). PostgreSQL's claim gave every contact a row already.
            once = Counter(c["journey_id"] for c in contacts)
            fresh = [_complete(c) for c in ordered if c["journey_id"] not in before and once[c["journey_id"]] == 1]
            for rows in self._chunks(fresh):
                yield Step("insert", list(rows))
            after.update(_by_journey(fresh))
            ordered = [c for c in ordered if c["journey_id"] not in after]
        for rows in self._chunks(ordered):
            after.update(_by_journey((yield Step("upsert", list(rows), returns=True))))
        others = yield from self._repeats(before, after)
        deltas = Deltas(known=self.contributions)
        for jid, (old, new) in {**{j: (before.get(j), after[j]) for j in ids}, **others}.items():
            if old == new:  # a contact whose row did not change moves no sum: skip both folds
                continue
            deltas.move(jid, old, new)
        for rows in self._chunks(deltas.sum_rows()):
            yield Step("sums", list(rows))
        for rows in self._chunks(deltas.wait_rows()):
            yield Step("waits", list(rows))

    def _repeats(
        self, before: Mapping[str, Mapping[str, Any]], after: dict[str, dict[str, Any]]
    ) -> Generator[Step, list[dict[str, Any]] | None, dict[str, tuple[dict[str, Any], dict[str, Any]]]]:
        """Recompute the repeat flags a batch can change; patch them into ``after`` (the batch's
        rows) and return the other contacts whose flags changed, as (old row, new row)."""
        moved: dict[str, list[float]] = defaultdict(list)  # customer -> start times that changed
        for jid, new in after.items():
            old = before.get(jid)
            was = (old["customer_id"], old["started_at"]) if old else (None, None)
            if was == (new["customer_id"], new["started_at"]):
                continue
            for customer, at in (was, (new["customer_id"], new["started_at"])):
                if customer is not None and at is not None:
                    moved[customer].append(at)
        if not moved:
            return {}
        customers = sorted(moved)
        if self.postgresql:
            yield Step("repeat_locks", {"ids": customers})
        low = min(min(times) for times in moved.values()) - LONGEST_REPEAT
        high = max(max(times) for times in moved.values()) + LONGEST_REPEAT
        found: dict[str, dict[str, Any]] = {}
        for part in self._chunks(customers):
            # ``spans``: each customer's own stretch, for SQLite's statement (``_sqlite_statements``)
            spans = [[c, min(moved[c]), max(moved[c]) + LONGEST_REPEAT] for c in part]
            params = {"ids": list(part), "low": low, "high": high, "spans": spans}
            found.update(_by_journey((yield Step("repeats", params, True))))
        by_customer: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for row in found.values():
            by_customer[row["customer_id"]].append(row)
        changed: list[dict[str, Any]] = []
        others: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {}
        flagged: dict[str, dict[str, int]] = {}  # contacts outside the batch -> their new flags
        for customer, times in moved.items():
            contacts = by_customer[customer]
            starts = sorted(r["started_at"] for r in contacts)
            first, last = min(times), max(times) + LONGEST_REPEAT
            for row in contacts:
                if not first <= row["started_at"] <= last:
                    continue
                r24, r7 = repeat_flags(starts, row["started_at"])
                if (r24, r7) == (row["repeat_24h"], row["repeat_7d"]):
                    continue
                jid = row["journey_id"]
                changed.append({"jid": jid, "r24": r24, "r7": r7})
                if jid in after:
                    after[jid].update(repeat_24h=r24, repeat_7d=r7)
                else:
                    flagged[jid] = {"repeat_24h": r24, "repeat_7d": r7}
        read = "locked" if self.postgresql else "read"
        for part in self._chunks(sorted(flagged)):  # their whole rows, for their groups
            for jid, full in _by_journey((yield Step(read, {"ids": list(part)}, returns=True))).items():
                others[jid] = (full, {**full, **flagged[jid]})
        for rows in self._chunks(sorted(changed, key=lambda r: r["jid"])):
            yield Step("flags", list(rows))
        return others


#: the table each insert of :meth:`SumsWriter.write_sqlite` writes, and its columns' scalar defaults
#: (SQLAlchemy fills a column a row leaves out with its default: the repeat flags' 0)
_TABLES: dict[str, Table] = {
    "upsert": ContactFactRow.__table__,  # type: ignore[dict-item]
    "insert": ContactFactRow.__table__,  # type: ignore[dict-item]
    "sums": KpiSums,
    "waits": KpiWaits,
}
_DEFAULTS: dict[str, dict[str, Any]] = {
    name: {c.name: c.default.arg for c in table.c if isinstance(c.default, ScalarElementColumnDefault)}
    for name, table in _TABLES.items()
}


#: a statement ``write_sqlite`` runs with positional parameters: its SQL, the columns its ``?`` stand
#: for in order, and each one's default (the value of a column a row lacks)
_Positional = tuple[str, tuple[str, ...], tuple[Any, ...]]
#: the contact row's columns and their defaults, in the same order
_CONTACT_COLUMNS = tuple(c.name for c in ContactFactRow.__table__.c)
_CONTACT_DEFAULTS = tuple(_DEFAULTS["insert"].get(name) for name in _CONTACT_COLUMNS)


def _complete(contact: Mapping[str, Any]) -> dict[str, Any]:
    """A contact row as its INSERT stores it: every column, the default where it has none."""
    return dict(zip(_CONTACT_COLUMNS, map(contact.get, _CONTACT_COLUMNS, _CONTACT_DEFAULTS), strict=True))


#: the parameters SQLite's statements take as one JSON array (``json_each``)
_AS_JSON = frozenset({"ids", "spans"})

#: SQLite's read for the repeat flags: per customer ``[id, first, last]`` of ``spans``, its contacts
#: started from ``first`` to ``last`` (the ones whose flags may change) and the one contact started
#: last before ``first`` within the longest window. Why only that one: a contact's flags say whether
#: *another* contact started in the window before it (:func:`repeat_flags`), and for every contact
#: from ``first`` on, the latest start before ``first`` is the nearest of all the earlier ones. The
#: window read before took every contact of the customer over the two weeks around the batch: a
#: caller who calls many times a week (a switchboard, a test number, the benchmark's callers) made
#: every batch read and convert all of them: a quarter of the KPI part's CPU per call for callers
#: with a few dozen contacts (bench/README.md), growing with each. Both lookups are ranges of
#: ``ix_contact_facts_customer_started``.
REPEATS_SQLITE = f"""
SELECT f.journey_id, f.customer_id, f.started_at, f.repeat_24h, f.repeat_7d
  FROM json_each(:spans) AS s
  JOIN contact_facts AS f
    ON f.customer_id = s.value ->> 0 AND f.started_at >= s.value ->> 1 AND f.started_at <= s.value ->> 2
UNION ALL
SELECT f.journey_id, f.customer_id, f.started_at, f.repeat_24h, f.repeat_7d
  FROM json_each(:spans) AS s
  JOIN contact_facts AS f
    ON f.journey_id = (
      SELECT p.journey_id FROM contact_facts AS p
       WHERE p.customer_id = s.value ->> 0 AND p.started_at < s.value ->> 1
         AND p.started_at >= (s.value ->> 1) - {LONGEST_REPEAT!r}
       ORDER BY p.started_at DESC LIMIT 1)
"""


def _sqlite_rows(cursor: sqlite3.Cursor) -> list[dict[str, Any]]:
    names = tuple(d[0] for d in cursor.description)
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


# ----------------------------------------------------------------------------------- reading
def _group_label(table: Table, by: Dimension, interval_s: float) -> ColumnElement[Any]:
    """The key along ``by`` of a ``kpi_sums`` / ``kpi_waits`` row, as ``ivr.store.kpis`` labels it."""
    t = table.c
    if by == "interval":
        return func.floor(t.slot / interval_s) * interval_s
    if by == "flow":
        return case((t.flow == "", "-"), else_=t.flow)
    if by == "holdout":
        return t.holdout
    return t.key


@functools.lru_cache(maxsize=64)
def statements(
    by: Dimension, interval_s: float, split_holdout: bool, start: float, end: float, flow: str | None
) -> tuple[Any, Any]:
    """The two reads of whole slots ``[start, end)``: the summed columns per group (without the
    groups whose contacts all moved elsewhere), and the waits per group and second.

    Kept (a statement is immutable, and runs again as it is): the wallboard asks for the same
    three of them every few seconds all day, and building them cost more of an idle controller's
    CPU than running them (sixty summed columns, their labels and SQLAlchemy's cache key)."""

    def grouped(table: Table, *summed: ColumnElement[Any], per_second: bool) -> Any:
        keys: list[ColumnElement[Any]] = [_group_label(table, by, interval_s).label("k")]
        if split_holdout:
            keys.append(table.c.holdout.label("h"))
        where = [table.c.dim == GROUPING[by], table.c.slot >= start, table.c.slot < end]
        if flow is not None:
            where.append(table.c.flow == flow)
        extra = [table.c.second] if per_second else []
        return select(*keys, *extra, *summed).where(*where).group_by(*keys, *extra)

    sums = grouped(KpiSums, *(func.sum(KpiSums.c[m]).label(m) for m in MEASURES), per_second=False)
    waits = grouped(
        KpiWaits, func.sum(KpiWaits.c.n).label("n"), func.sum(KpiWaits.c.n_whole).label("n_whole"), per_second=True
    )
    return sums.having(func.sum(KpiSums.c.contacts) != 0), waits.having(func.sum(KpiWaits.c.n) != 0)


def groups(
    sums: Sequence[Any],
    waits: Sequence[Any],
    *,
    split_holdout: bool,
    service_level_s: int,
    label: Any,
) -> dict[GroupKey, GroupSums]:
    """The rows of :func:`statements` as each group's sums (``label``: the key as the report shows it)."""

    def key_of(row: Any) -> GroupKey:
        return (label(row.k), str(row.h) if split_holdout else None)

    histogram: dict[GroupKey, dict[int, tuple[int, int]]] = defaultdict(dict)
    for w in waits:
        histogram[key_of(w)][int(w.second)] = (int(w.n), int(w.n_whole))
    return {key_of(g): unflatten(g._mapping, histogram.get(key_of(g), {}), service_level_s) for g in sums}
