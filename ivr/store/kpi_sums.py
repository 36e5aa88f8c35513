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
batch wrote.
"""

from __future__ import annotations

import bisect
import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Any

from sqlalchemy import ColumnElement, Table, bindparam, case, func, select, text, update
from sqlalchemy.dialects import postgresql, sqlite

from ivr.kpis import (
    CONTAINED_ENDS,
    OFFER_REASONS,
    REPEAT_WINDOWS,
    Dimension,
    GroupKey,
    GroupSums,
    facts,
    sums_of,
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
    """One contact's columns of ``kpi_sums``: ``ivr.kpis.sums_of`` of that contact alone, with the
    repeat flags the row keeps."""
    contact = facts(journey_id, row)  # the flags default to False: a copy only when one is set
    if row["repeat_24h"] or row["repeat_7d"]:
        contact = replace(contact, repeat_24h=bool(row["repeat_24h"]), repeat_7d=bool(row["repeat_7d"]))
    return flatten(sums_of([contact]))


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
    counted = {name: value for name, value in measures(journey_id, row).items() if value}
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
    before its merge is the very row this batch wrote, so its contribution (``ivr.kpis.facts``,
    ``sums_of``, ``flatten``: most of the journey writer's CPU, bench/README.md) is known. A hit
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
        if row is None or row["started_at"] is None:
            return
        part = self.known.of(journey_id, row) if self.known is not None else contribution(journey_id, row)
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
def _rows(result: Any) -> dict[str, dict[str, Any]]:
    return {r["journey_id"]: dict(r) for r in result.mappings()}


class SumsWriter:
    """Folds a batch's contact rows into ``contact_facts`` and their deltas into the sums, inside
    the writer's transaction (see the module docstring for the locking)."""

    def __init__(self, dialect: str, upsert: Any, chunk: int) -> None:
        insert: Any = postgresql.insert if dialect == "postgresql" else sqlite.insert
        self.postgresql = dialect == "postgresql"
        self.chunk = chunk
        self.contributions = Contributions()
        # the merged rows come back from the upsert itself (RETURNING: SQLite >= 3.35, bookworm has
        # 3.40; PostgreSQL): before, a read after it fetched them, one statement per batch more
        self.upsert = upsert.returning(*ContactFactRow.__table__.c)
        self.claim = insert(ContactFactRow.__table__).on_conflict_do_nothing(index_elements=[_c.journey_id])
        ids: Any = bindparam("ids", expanding=True)
        self.locked = (
            select(ContactFactRow.__table__).where(_c.journey_id.in_(ids)).order_by(_c.journey_id).with_for_update()
        )
        self.read = select(ContactFactRow.__table__).where(_c.journey_id.in_(ids))
        self.flags = (
            update(ContactFactRow)
            .where(_c.journey_id == bindparam("jid"))
            .values(repeat_24h=bindparam("r24"), repeat_7d=bindparam("r7"))
        )
        stmt = insert(KpiSums)
        self.sums = stmt.on_conflict_do_update(
            index_elements=list(KpiSums.primary_key.columns),
            set_={m: KpiSums.c[m] + stmt.excluded[m] for m in MEASURES},
        )
        stmt = insert(KpiWaits)
        self.waits = stmt.on_conflict_do_update(
            index_elements=list(KpiWaits.primary_key.columns),
            set_={"n": KpiWaits.c.n + stmt.excluded.n, "n_whole": KpiWaits.c.n_whole + stmt.excluded.n_whole},
        )

    def _chunks(self, items: Sequence[Any]) -> Iterable[Sequence[Any]]:
        for start in range(0, len(items), self.chunk):
            yield items[start : start + self.chunk]

    async def write(self, conn: Any, contacts: Sequence[dict[str, Any]]) -> None:
        """Merge ``contacts`` (``ivr.store.kpis.contact_rows``) and move the sums by what changed."""
        if not contacts:
            return
        ids = sorted({c["journey_id"] for c in contacts})
        before: dict[str, dict[str, Any]] = {}
        if self.postgresql:
            # claim, then lock: a new contact needs a row to lock before its old contribution is read
            for part in self._chunks(ids):
                await conn.execute(self.claim, [{"journey_id": j} for j in part])
            for part in self._chunks(ids):
                before.update(_rows(await conn.execute(self.locked, {"ids": list(part)})))
        else:
            # SQLite: the write turn and the database's one writer already keep every other writer
            # out until the commit; a claimed empty row counts nowhere, exactly as a missing one
            for part in self._chunks(ids):
                before.update(_rows(await conn.execute(self.read, {"ids": list(part)})))
        ordered = sorted(contacts, key=lambda c: c["journey_id"])
        after: dict[str, dict[str, Any]] = {}
        for rows in self._chunks(ordered):
            after.update(_rows(await conn.execute(self.upsert, list(rows))))
        others = await self._repeats(conn, before, after)
        deltas = Deltas(known=self.contributions)
        for jid, (old, new) in {**{j: (before.get(j), after[j]) for j in ids}, **others}.items():
            if old == new:  # a contact whose row did not change moves no sum: skip both folds
                continue
            deltas.add(jid, old, -1)
            deltas.add(jid, new, 1)
        for rows in self._chunks(deltas.sum_rows()):
            await conn.execute(self.sums, list(rows))
        for rows in self._chunks(deltas.wait_rows()):
            await conn.execute(self.waits, list(rows))

    async def _repeats(
        self, conn: Any, before: Mapping[str, Mapping[str, Any]], after: dict[str, dict[str, Any]]
    ) -> dict[str, tuple[dict[str, Any], dict[str, Any]]]:
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
            await conn.execute(
                text(
                    "SELECT count(pg_advisory_xact_lock(hashtextextended('kpi-repeats/' || c, 0)))"
                    " FROM (SELECT unnest(CAST(:ids AS text[])) AS c ORDER BY 1) AS customers"
                ),
                {"ids": customers},
            )
        low = min(min(times) for times in moved.values()) - LONGEST_REPEAT
        high = max(max(times) for times in moved.values()) + LONGEST_REPEAT
        # only what the flags need: a customer's contacts over two weeks can be many rows
        stmt = (
            select(_c.journey_id, _c.customer_id, _c.started_at, _c.repeat_24h, _c.repeat_7d)
            .where(_c.customer_id.in_(bindparam("ids", expanding=True)), _c.started_at >= low, _c.started_at <= high)
            .order_by(_c.journey_id)
            .with_for_update()
        )
        found: dict[str, dict[str, Any]] = {}
        for part in self._chunks(customers):
            found.update(_rows(await conn.execute(stmt, {"ids": list(part)})))
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
        for part in self._chunks(sorted(flagged)):  # their whole rows, for their groups
            for jid, full in _rows(await conn.execute(self.locked, {"ids": list(part)})).items():
                others[jid] = (full, {**full, **flagged[jid]})
        for rows in self._chunks(sorted(changed, key=lambda r: r["jid"])):
            await conn.execute(self.flags, list(rows))
        return others


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


def statements(
    by: Dimension, interval_s: float, split_holdout: bool, start: float, end: float, flow: str | None
) -> tuple[Any, Any]:
    """The two reads of whole slots ``[start, end)``: the summed columns per group (without the
    groups whose contacts all moved elsewhere), and the waits per group and second."""

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
