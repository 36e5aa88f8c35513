"""Who is calling, and what the company remembers about them. With ``journeys.py``, the only code
here that knows SQL.

The call path (``CallerProfiles.load``) costs ONE statement for a known caller: the customer row,
their option statistics, their known slots, their number of past journeys, their latest few
journeys, their open callback ticket and their unused continuation link (what the journey stages
of ``ivr.flow.stages`` are computed from) come back as the rows of a single ``UNION ALL`` keyed by a CTE that resolves the phone number (see ``PROFILE_SQL``).
It runs on an autocommit connection, so the driver sends no BEGIN/ROLLBACK around it, from a pool
that does not ping on checkout: one round trip. An unknown number costs that statement plus one
short transaction creating an unverified customer, so their history starts accruing at once.

A database that is down or slow must not cost the call: ``CallerProfiles.load`` bounds the wait,
logs, and lets the call go on as an unknown caller.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import sqlite3
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, NamedTuple, cast

from sqlalchemy import Row, Table, TextClause, delete, insert, select, text, tuple_
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ivr.errors import StoreError
from ivr.flow.profile import CallerProfile, KnownSlot, OpenCallback, OpenContinuation, OptionStat, PastContact
from ivr.store.loop_reads import LoopReader, LoopWriter, sqlite_file
from ivr.store.models import CustomerIdentityRow, CustomerRow, InteractionRow
from ivr.store.phones import to_e164
from ivr.store.turns import turn_of, write_turn, writing

log = logging.getLogger(__name__)
IdentityKind = Literal["phone", "email", "crm"]

#: ``contacts`` counts at most this many past journeys: enough for any min-contacts guardrail, and a
#: test line with 10,000 calls costs no more to look up than a regular customer.
CONTACTS_CAP = 1000

#: How many of the customer's latest journeys the profile carries (``CallerProfile.recent``): the
#: journey stages look at the last contact and at an unfinished one among the latest few.
RECENT_CONTACTS = 3
#: ... and only those of the last week: a stage is about where the caller is now, and the bound
#: lets PostgreSQL read the newest rows off the index even for a caller with thousands of journeys
#: (its plan for "this customer, newest three" otherwise sorts them all: 2,000 journeys, 19 ms ->
#: 0.1 ms).
RECENT_DAYS = 7

# The caller's profile in one statement. Every branch has the same twelve columns; ``part`` says
# which kind of row it is. ``who`` is the customer id, resolved from the phone number (or given).
# ``data->>'intent'`` reads the same on SQLite (3.38+) and PostgreSQL (a JSON column). PostgreSQL
# types a bare NULL inside a subquery as text, hence the casts in the two limited branches. Those
# two compare with ``(SELECT id FROM who)``, not a join: an equality with one value lets both
# databases read the newest rows straight off the (customer_id, time) index instead of sorting
# every journey of a busy caller (SQLite, 2,000 journeys: 45 ms -> a few ms).
_PROFILE_BODY = f"""
SELECT 'customer' AS part, c.id AS customer_id, c.display_name AS a, c.email AS b, c.crm_id AS c,
       c.tier AS d, c.language AS e, CAST(NULL AS VARCHAR(64)) AS f,
       (SELECT count(*) FROM (SELECT 1 FROM journeys j WHERE j.customer_id = c.id LIMIT {CONTACTS_CAP}) AS past) AS n,
       CAST(NULL AS FLOAT) AS x, CAST(NULL AS FLOAT) AS y, c.verified AS flag
  FROM customers c JOIN who ON c.id = who.id
UNION ALL
SELECT 'option', o.customer_id, o.flow, o.step, o.option, NULL, NULL, NULL, o.count, o.score, o.last_at, NULL
  FROM option_stats o JOIN who ON o.customer_id = who.id
UNION ALL
SELECT 'slot', s.customer_id, s.slot, s.value, s.channel, NULL, NULL, NULL, NULL, s.at, NULL, NULL
  FROM customer_slots s JOIN who ON s.customer_id = who.id
UNION ALL
SELECT * FROM (
  SELECT 'journey' AS part, j.customer_id, j.flow, j.step, j.status, j.channel, j.id, j.data->>'intent',
         CAST(NULL AS BIGINT), j.started_at, j.updated_at, CAST(NULL AS BOOLEAN)
    FROM journeys j WHERE j.customer_id = (SELECT id FROM who) AND j.updated_at > :since
   ORDER BY j.updated_at DESC LIMIT {RECENT_CONTACTS}) AS recent
UNION ALL
SELECT 'callback', b.customer_id, b.id, b.queue, b.status, b.skill, b.journey_id, NULL, b.attempts, b.ticket_at,
       NULL, NULL
  FROM callbacks b JOIN who ON b.open_customer = who.id
UNION ALL
SELECT * FROM (
  SELECT 'continuation' AS part, k.customer_id, k.channel, k.step, j.flow, CAST(NULL AS VARCHAR(64)), k.journey_id,
         CAST(NULL AS VARCHAR(64)), CAST(NULL AS BIGINT), k.created_at, k.expires_at, CAST(NULL AS BOOLEAN)
    FROM continuations k JOIN journeys j ON j.id = k.journey_id
   WHERE k.customer_id = (SELECT id FROM who) AND k.created_at > :since AND k.claimed_at IS NULL
     AND j.status = 'handed_off'
   ORDER BY k.created_at DESC LIMIT 1) AS link
"""
PROFILE_BY_PHONE_SQL = (
    "WITH who AS (SELECT customer_id AS id FROM customer_identities WHERE kind = 'phone' AND value = :key)"
    + _PROFILE_BODY
)
PROFILE_BY_ID_SQL = "WITH who AS (SELECT CAST(:key AS VARCHAR(32)) AS id)" + _PROFILE_BODY
_PROFILE_BY_PHONE = text(PROFILE_BY_PHONE_SQL)
_PROFILE_BY_ID = text(PROFILE_BY_ID_SQL)
#: One row by its primary key: also the benchmark's baseline for the profile statement.
FIND_SQL = "SELECT customer_id FROM customer_identities WHERE kind = :kind AND value = :value"
_FIND = text(FIND_SQL)
#: A first call's two INSERTs on SQLite (``CustomerStore._create_on_sqlite``), sqlite3's named style.
_INSERT_CUSTOMER_SQL = (
    "INSERT INTO customers (id, display_name, email, crm_id, tier, language, verified, created_at, updated_at) "
    "VALUES (:id, :display_name, :email, :crm_id, :tier, :language, :verified, :created_at, :updated_at)"
)
_INSERT_IDENTITY_SQL = (
    "INSERT INTO customer_identities (kind, value, customer_id, created_at) "
    "VALUES (:kind, :value, :customer_id, :created_at) ON CONFLICT (kind, value) DO NOTHING"
)


class ProfileRow(NamedTuple):
    """One row of the profile statement (its twelve columns, by the names the SQL gives them)."""

    part: str
    customer_id: str
    a: Any
    b: Any
    c: Any
    d: Any
    e: Any
    f: Any
    n: Any
    x: Any
    y: Any
    flag: Any


def profile_from_rows(rows: Sequence[Row[Any]] | Sequence[ProfileRow]) -> CallerProfile | None:
    """Build the profile from the statement's rows (pure); None when there is no customer row."""
    customer = None
    options: list[OptionStat] = []
    slots: list[KnownSlot] = []
    recent: list[PastContact] = []
    callback: OpenCallback | None = None
    continuation: OpenContinuation | None = None
    for r in rows:
        if r.part == "customer":
            customer = r
        elif r.part == "option":
            options.append(OptionStat(r.a, r.b, r.c, int(r.n), float(r.x), float(r.y)))
        elif r.part == "slot":
            slots.append(KnownSlot(r.a, r.b, r.c, float(r.x)))
        elif r.part == "journey":
            recent.append(PastContact(r.e, r.a, r.d, r.c, r.b, r.f, float(r.x), float(r.y)))
        elif r.part == "callback":
            callback = OpenCallback(r.a, r.b, r.d, r.c, float(r.x), r.e)
        elif r.part == "continuation":
            continuation = OpenContinuation(r.e, r.c, r.a, r.b, float(r.x), float(r.y))
    if customer is None:
        return None
    fields = {
        k: v
        for k, v in (
            ("name", customer.a),
            ("email", customer.b),
            ("crm_id", customer.c),
            ("tier", customer.d),
            ("language", customer.e),
        )
        if v is not None
    }
    options.sort(key=lambda o: (o.flow, o.step, -o.score, o.option))
    slots.sort(key=lambda s: s.name)
    return CallerProfile(
        customer_id=customer.customer_id,
        fields=fields,
        contacts=int(customer.n or 0),
        options=tuple(options),
        slots=tuple(slots),
        verified=bool(customer.flag),
        recent=tuple(sorted(recent, key=lambda p: -p.updated_at)),
        callback=callback,
        continuation=continuation,
    )


# ------------------------------------------------------------------------------------ timeline
@dataclass(frozen=True)
class Cursor:
    """Position in a timeline: entries strictly older than (at, id). Opaque to API clients."""

    at: float
    id: int

    def encode(self) -> str:
        raw = json.dumps([self.at, self.id], separators=(",", ":")).encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def decode(cls, token: str) -> Cursor:
        try:
            at, id_ = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
            return cls(float(at), int(id_))
        except (ValueError, TypeError, binascii.Error) as exc:
            raise ValueError(f"bad cursor {token!r}") from exc


@dataclass(frozen=True)
class TimelinePage:
    entries: list[dict[str, Any]]
    next: Cursor | None  # None: this is the oldest page


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class _IdentityTaken(Exception):
    """Another caller created this identity first (concurrent first calls from one number)."""


# ------------------------------------------------------------------------------------ the store
class CustomerStore:
    def __init__(self, engine: AsyncEngine, *, country_code: str = "") -> None:
        self.engine = engine
        self.country_code = country_code
        # Reads run in autocommit: no BEGIN / ROLLBACK round trips around a single SELECT. Not on
        # SQLite: its driver never opens a transaction for a SELECT anyway, and switching an
        # aiosqlite connection to autocommit and back costs two hops to its thread per lookup
        # (bench/README.md: half the CPU of a lookup, which starved calls under load).
        self._read = (
            engine if engine.dialect.name == "sqlite" else engine.execution_options(isolation_level="AUTOCOMMIT")
        )
        self._insert = postgresql.insert if engine.dialect.name == "postgresql" else sqlite.insert
        self._sqlite = engine.dialect.name == "sqlite"
        #: the profile statement on the loop's thread while it is quick (SQLite files only)
        self.loop_reads: LoopReader | None = None
        #: a first caller's creation on the loop's thread while it is quick (SQLite files only)
        self.loop_writes: LoopWriter | None = None
        database = sqlite_file(engine.url.database, engine.dialect.name)
        if database is not None:
            self.loop_reads = LoopReader(database)
            self.loop_writes = LoopWriter(database)
        # A first call's two INSERTs, built once and run with parameters. Why: a statement built
        # per call with its values inline (``insert(CustomerRow).values(...)``) went through the
        # ORM's DML path and a cache key over every value on every creation: a fifth of the
        # controller's CPU under load with a first call in five (bench/README.md).
        self._new_customer = insert(cast(Table, CustomerRow.__table__))
        self._new_identity = self._insert(cast(Table, CustomerIdentityRow.__table__)).on_conflict_do_nothing(
            index_elements=[CustomerIdentityRow.kind, CustomerIdentityRow.value]
        )

    def phone(self, raw: str) -> str:
        value = to_e164(raw, self.country_code)
        if value is None:
            raise StoreError(f"not a phone number: {raw!r}")
        return value

    async def _fetch(self, statement: Any, params: dict[str, Any] | None = None) -> Sequence[Row[Any]]:
        """One statement on a pooled connection; a connection that died in the pool is retried once."""
        for attempt in (1, 2):
            try:
                async with self._read.connect() as conn:
                    return (await conn.execute(statement, params or {})).all()
            except DBAPIError as exc:
                if attempt == 2 or not exc.connection_invalidated:
                    raise
                log.warning("database connection was lost; retrying once: %s", exc.orig)
        raise AssertionError("unreachable")

    def close(self) -> None:
        """Close what the store holds beside the engine (whose owner disposes of it)."""
        for loop_connection in (self.loop_reads, self.loop_writes):
            if loop_connection is not None:
                loop_connection.close()

    async def _fetch_profile(
        self, statement: TextClause, params: dict[str, Any], *, on_loop: bool = True
    ) -> Sequence[Any]:
        """The profile statement's rows. On SQLite, on the loop's thread when that is quick
        (:mod:`ivr.store.loop_reads`), else in one trip to the connection's thread.

        Why one trip: through SQLAlchemy's aiosqlite adapter a SELECT is four trips between the event
        loop and the connection's thread (open a cursor, execute, fetch, close), each a queue
        put, a thread wake-up and a loop wake-up; aiosqlite's ``execute_fetchall`` does the
        same work in one. The statement is plain text with named parameters, which sqlite3 binds
        as SQLAlchemy would, and its columns are known (:class:`ProfileRow`). A failure is
        sqlite3's own error, which the caller treats like any other (an unknown caller).
        PostgreSQL keeps SQLAlchemy's path (asyncpg is one round trip already).
        """
        if not self._sqlite:
            return await self._fetch(statement, params)
        if on_loop and (rows := self._profile_rows_on_loop(statement, params)) is not None:
            return rows
        async with self._read.connect() as conn:
            driver = (await conn.get_raw_connection()).driver_connection
            rows = await driver.execute_fetchall(statement.text, params)  # type: ignore[union-attr]
        return [ProfileRow._make(row) for row in rows]

    def _profile_rows_on_loop(self, statement: TextClause, params: dict[str, Any]) -> list[ProfileRow] | None:
        """The profile statement's rows read on the loop's thread; None when that steps aside."""
        if self.loop_reads is None:
            return None
        rows = self.loop_reads.fetchall(statement.text, params)
        return None if rows is None else [ProfileRow._make(row) for row in rows]

    def _profile_query(self, phone: str | None, customer_id: str | None) -> tuple[TextClause, dict[str, Any]]:
        if (phone is None) == (customer_id is None):
            raise ValueError("give exactly one of phone or customer_id")
        statement: TextClause = _PROFILE_BY_PHONE if phone is not None else _PROFILE_BY_ID
        key = self.phone(phone) if phone is not None else customer_id
        return statement, {"key": key, "since": time.time() - RECENT_DAYS * 86400}

    # ------------------------------------------------------------------------------ call path
    async def load_profile(
        self, *, phone: str | None = None, customer_id: str | None = None, on_loop: bool = True
    ) -> CallerProfile | None:
        """Everything the call needs about this customer, in one statement; None if unknown.
        ``on_loop=False``: straight to the database's thread (a read on the loop just stepped aside)."""
        statement, params = self._profile_query(phone, customer_id)
        return profile_from_rows(await self._fetch_profile(statement, params, on_loop=on_loop))

    def profile_now(self, phone: str) -> tuple[bool, CallerProfile | None]:
        """The caller's profile read at once on the loop's thread: ``(True, profile)``, the
        profile None for an unknown number; ``(False, None)`` when that read steps aside (then
        :meth:`load_profile` answers).

        Why: nearly every call's lookup is then done without a timeout, a task switch or a trip
        to the database's thread: about 20 us of CPU where the awaited path costs several times
        that."""
        rows = self._profile_rows_on_loop(*self._profile_query(phone, None))
        return (False, None) if rows is None else (True, profile_from_rows(rows))

    async def find(self, kind: IdentityKind, value: str) -> str | None:
        """The customer id an identity belongs to (the benchmark's baseline: one indexed row)."""
        rows = await self._fetch(_FIND, {"kind": kind, "value": self._normalise(kind, value)})
        return str(rows[0][0]) if rows else None

    async def identify(self, phone: str) -> str:
        """The customer this number belongs to; an unknown number gets a new unverified customer."""
        value = self.phone(phone)
        found = await self.find("phone", value)
        if found:
            return found
        try:
            return await self.create(phones=[value])
        except _IdentityTaken:
            found = await self.find("phone", value)
            if found is None:  # created and deleted in between: vanishingly rare, not worth a loop
                raise StoreError(f"could not identify {value}") from None
            return found

    # ------------------------------------------------------------------------------ admin
    def _normalise(self, kind: IdentityKind, value: str) -> str:
        if kind == "phone":
            return self.phone(value)
        if kind == "email":
            return value.strip().lower()
        return value.strip()

    async def create(
        self,
        *,
        name: str | None = None,
        email: str | None = None,
        crm_id: str | None = None,
        tier: str | None = None,
        language: str | None = None,
        verified: bool = False,
        phones: Sequence[str] = (),
    ) -> str:
        """A new customer with its identities, in one transaction."""
        row, identities = self._new_customer_rows(
            name=name, email=email, crm_id=crm_id, tier=tier, language=language, verified=verified, phones=phones
        )
        customer_id: str = row["id"]
        now: float = row["created_at"]
        if self._sqlite:
            await self._create_on_sqlite(row, identities)
            return customer_id
        try:
            async with writing(self.engine) as conn:
                await conn.execute(self._new_customer, row)
                for kind, value in identities:
                    await self._add_identity(conn, customer_id, kind, value, now)
        except IntegrityError as exc:  # a CRM id that another customer has
            raise StoreError(f"cannot create customer: {exc.orig}") from None
        return customer_id

    def create_now(self, phone: str) -> str | None:
        """A new customer with this phone number, created at once on the loop's thread: its id, or
        None when that cannot be done at once (not SQLite, another writer of this process holds
        or waits for the turn, the loop's write steps aside, the number was just taken by another
        process): then :meth:`create` does it (and answers for a taken number).

        Why: a first caller's creation otherwise costs a task of its own, a timeout and the
        write turn's bookkeeping around the very same short transaction (bench/README.md). With
        the turn free and no ``await`` between the look at it and the commit, no writer of this
        process can come between."""
        turn = turn_of(self.engine) if self._sqlite else None
        if self.loop_writes is None or turn is None or not turn.free:
            return None
        row, identities = self._new_customer_rows(phones=[phone])
        written = self.loop_writes.write(self._creation_statements(row, identities), keep=lambda counts: all(counts))
        return row["id"] if written else None

    def _new_customer_rows(
        self,
        *,
        name: str | None = None,
        email: str | None = None,
        crm_id: str | None = None,
        tier: str | None = None,
        language: str | None = None,
        verified: bool = False,
        phones: Sequence[str] = (),
    ) -> tuple[dict[str, Any], list[tuple[IdentityKind, str]]]:
        """A new customer's row (a new id, now) and its identities, normalised."""
        now = time.time()
        identities: list[tuple[IdentityKind, str]] = [("phone", self.phone(p)) for p in phones]
        if email:
            identities.append(("email", self._normalise("email", email)))
        if crm_id:
            identities.append(("crm", crm_id.strip()))
        row = {
            "id": uuid.uuid4().hex,
            "display_name": name,
            "email": email.strip() if email else None,
            "crm_id": crm_id,
            "tier": tier,
            "language": language,
            "verified": verified,
            "created_at": now,
            "updated_at": now,
        }
        return row, identities

    @staticmethod
    def _creation_statements(
        row: dict[str, Any], identities: Sequence[tuple[str, str]]
    ) -> list[tuple[str, dict[str, Any]]]:
        return [(_INSERT_CUSTOMER_SQL, row)] + [
            (
                _INSERT_IDENTITY_SQL,
                {"kind": kind, "value": value, "customer_id": row["id"], "created_at": row["created_at"]},
            )
            for kind, value in identities
        ]

    async def _create_on_sqlite(self, row: dict[str, Any], identities: Sequence[tuple[str, str]]) -> None:
        """The customer's INSERT, its identities' and the commit, in the process's write turn.

        First on the loop's own thread, while that is quick (:class:`~ivr.store.loop_reads.LoopWriter`:
        a tenth of the CPU of the trips below). A step aside there wrote nothing, and
        :meth:`_create_in_thread` does the whole transaction again (and gives its errors).
        """
        statements = self._creation_statements(row, identities)
        async with write_turn(self.engine):
            if self.loop_writes is not None:
                written = self.loop_writes.write(statements, keep=lambda counts: all(counts))
                if written is not None:
                    if not written:  # an identity insert changed nothing: that number is taken
                        raise _IdentityTaken("one of the new customer's identities already belongs to a customer")
                    return
            await self._create_in_thread(statements)

    async def _create_in_thread(self, statements: Sequence[tuple[str, dict[str, Any]]]) -> None:
        """``_create_on_sqlite``'s statements in one transaction, one trip to the thread each.

        Why: through SQLAlchemy's aiosqlite adapter each statement is three trips (open a cursor,
        execute, close it), so a first call's creation took seven, each a queue put, a thread
        wake-up and a loop wake-up, plus the adapter's Python per statement; aiosqlite's own
        ``execute`` is one. A failure leaves the transaction open on the connection, and the
        pool rolls it back when the connection comes back (``make_engine``). Not ``writing``:
        its ``begin()`` would add a commit of its own, a trip for nothing.
        """
        async with self.engine.connect() as conn:
            driver = (await conn.get_raw_connection()).driver_connection
            try:
                for sql, params in statements:
                    if (await driver.execute(sql, params)).rowcount == 0:  # type: ignore[union-attr]
                        raise _IdentityTaken(
                            f"{params.get('kind')} {params.get('value')} already belongs to a customer"
                        )
                await driver.commit()  # type: ignore[union-attr]
            except sqlite3.IntegrityError as exc:  # a CRM id that another customer has
                raise StoreError(f"cannot create customer: {exc}") from None

    async def _add_identity(self, conn: AsyncConnection, customer_id: str, kind: str, value: str, now: float) -> None:
        params = {"kind": kind, "value": value, "customer_id": customer_id, "created_at": now}
        if (await conn.execute(self._new_identity, params)).rowcount == 0:
            raise _IdentityTaken(f"{kind} {value} already belongs to a customer")

    async def add_identity(self, customer_id: str, kind: IdentityKind, value: str) -> None:
        normalised = self._normalise(kind, value)
        try:
            async with writing(self.engine) as conn:
                await self._add_identity(conn, customer_id, kind, normalised, time.time())
        except _IdentityTaken as exc:
            raise StoreError(str(exc)) from None

    async def delete(self, customer_id: str) -> bool:
        """Forget a customer: identities, statistics and known slots go with it (the log stays)."""
        async with writing(self.engine) as conn:
            result = await conn.execute(delete(CustomerRow).where(CustomerRow.id == customer_id))
        return bool(result.rowcount)

    async def get(self, customer_id: str) -> dict[str, Any] | None:
        """The customer's own fields and identities (for the API and the CLI, not the call path)."""
        c, ident = CustomerRow.__table__.c, CustomerIdentityRow.__table__.c
        rows = await self._fetch(
            select(c.id, c.display_name, c.email, c.crm_id, c.tier, c.language, c.verified, c.created_at)
            .add_columns(ident.kind, ident.value)
            .outerjoin(CustomerIdentityRow, ident.customer_id == c.id)
            .where(c.id == customer_id)
            .order_by(ident.kind, ident.value)
        )
        if not rows:
            return None
        first = rows[0]
        return {
            "id": first.id,
            "name": first.display_name,
            "email": first.email,
            "crm_id": first.crm_id,
            "tier": first.tier,
            "language": first.language,
            "verified": bool(first.verified),
            "created_at": iso(first.created_at),
            "identities": [{"kind": r.kind, "value": r.value} for r in rows if r.kind is not None],
        }

    # ------------------------------------------------------------------------------ timeline
    async def timeline(self, customer_id: str, *, limit: int = 50, before: Cursor | None = None) -> TimelinePage:
        """Every interaction of this customer on every channel, newest first, ``limit`` at a time."""
        i = InteractionRow
        query = select(i.id, i.at, i.channel, i.kind, i.journey_id, i.step, i.data).where(i.customer_id == customer_id)
        if before is not None:
            query = query.where(tuple_(i.at, i.id) < tuple_(before.at, before.id))
        rows = await self._fetch(query.order_by(i.at.desc(), i.id.desc()).limit(limit + 1))
        entries = [
            {
                "at": iso(r.at),
                "channel": r.channel,
                "kind": r.kind,
                "journey_id": r.journey_id,
                "step": r.step,
                "data": r.data,
            }
            for r in rows[:limit]
        ]
        more = len(rows) > limit
        return TimelinePage(entries, Cursor(rows[limit - 1].at, rows[limit - 1].id) if more and limit else None)


# ------------------------------------------------------------------------------------ call path
#: Seconds between two log lines about failed caller lookups (the others are counted).
LOG_EVERY = 10.0


class CallerProfiles:
    """The ``profiles`` dependency of the voice channel: caller id -> profile, never fatal.

    A known number costs one statement; an unknown one becomes a new unverified customer (so the
    next call finds their history). Withheld numbers, a database that is down, or one slower than
    ``timeout`` give ``None``: the call goes on as an unknown caller, and the reason is logged.
    """

    def __init__(
        self,
        customers: CustomerStore,
        *,
        timeout: float = 1.0,
        observe_lookup: Callable[[float], None] | None = None,
        observe_create: Callable[[float], None] | None = None,
    ) -> None:
        """``observe_lookup``: told how long each lookup took, failed and timed-out ones too (what
        the caller waited in silence); ``observe_create``: how long creating a new caller took."""
        self.customers = customers
        self.timeout = timeout
        self.failures = 0
        self._observe_lookup = observe_lookup
        self._observe_create = observe_create
        self._logged_at = -float("inf")
        self._unlogged = 0
        #: first-call creations in progress (see _start_creation); awaited by stop()
        self._creations: set[asyncio.Task[str]] = set()

    async def load(self, phone: str | None) -> CallerProfile | None:
        number = to_e164(phone, self.customers.country_code)
        if number is None:
            return None
        started = time.perf_counter()
        try:
            answered, known = self.customers.profile_now(number)
            if known is not None:
                return known
            if answered:  # no such caller: created at once, where that can be done
                creating = time.perf_counter()
                created = self.customers.create_now(number)
                if created is not None:
                    if self._observe_create is not None:
                        self._observe_create(time.perf_counter() - creating)
                    log.info("new caller %s is customer %s", number, created)
                    return CallerProfile(created)
            async with asyncio.timeout(self.timeout):  # no extra task per call, unlike wait_for
                return await self._load(number, unknown=answered)
        except TimeoutError:
            self._failed(f"caller lookup for {number} took over {self.timeout:.1f}s: continuing as an unknown caller")
        except Exception as exc:
            self._failed(f"caller lookup for {number} failed, continuing as an unknown caller: {exc}")
        finally:
            if self._observe_lookup is not None:
                self._observe_lookup(time.perf_counter() - started)
        return None

    def _failed(self, message: str) -> None:
        """Count a failed lookup; log at most one line per ``LOG_EVERY`` seconds.

        Why: lookups fail together (a database down or slow, a node overloaded), and a line per
        call then took a seventh of an overloaded controller's CPU (bench/README.md), slowing the
        very calls that were waiting. The next line says how many were not logged.
        """
        self.failures += 1
        now = time.monotonic()
        if now - self._logged_at < LOG_EVERY:
            self._unlogged += 1
            return
        if self._unlogged:
            message += f" ({self._unlogged} more lookups failed since the last line)"
        log.error("%s", message)
        self._logged_at, self._unlogged = now, 0

    async def _load(self, number: str, *, unknown: bool = False) -> CallerProfile:
        """The profile, creating the customer for a number not seen before. ``unknown``: the read
        on the loop just found none; else it stepped aside, and the database's thread reads."""
        profile = None if unknown else await self.customers.load_profile(phone=number, on_loop=False)
        if profile is not None:
            return profile
        try:
            customer_id = await asyncio.shield(self._start_creation(number))
        except _IdentityTaken:  # the same new number is calling twice at once
            return await self.customers.load_profile(phone=number) or CallerProfile(
                await self.customers.identify(number)
            )
        log.info("new caller %s is customer %s", number, customer_id)
        return CallerProfile(customer_id)

    def _start_creation(self, number: str) -> asyncio.Task[str]:
        """Create the customer in a task of its own, which the call's timeout never cancels.

        Why: cancelling the INSERT mid-transaction (the lookup's timeout firing) left an aiosqlite
        connection holding SQLite's write lock until it was collected, and every other writer (the
        journey writer, the next new callers) then waited out the 30 s busy timeout: calls stuck
        at their first prompt, the opposite of "a slow database means an unknown caller"
        (bench/README.md). Now the call stops waiting and goes on as an unknown caller; the
        creation finishes or fails by itself, so the caller is known next time. :meth:`stop`
        awaits what is left.
        """
        task = asyncio.create_task(self._create(number), name="customer-create")
        self._creations.add(task)
        task.add_done_callback(self._created)
        return task

    async def _create(self, number: str) -> str:
        started = time.perf_counter()
        try:
            return await self.customers.create(phones=[number])
        finally:
            if self._observe_create is not None:
                self._observe_create(time.perf_counter() - started)

    def _created(self, task: asyncio.Task[str]) -> None:
        self._creations.discard(task)
        if task.cancelled():
            return
        exc = task.exception()  # retrieved, also when the call stopped waiting
        if exc is not None and not isinstance(exc, _IdentityTaken):
            log.warning("creating a new caller failed (the next call tries again): %s", exc)

    async def stop(self, grace: float = 2.0) -> None:
        """Let creations in progress finish (at most ``grace`` seconds); leave the rest running.

        Why not cancel them: a cancel does not stop a creation inside the database driver
        (SQLAlchemy's cancel waits for the driver's thread, which waits out SQLite's 30 s busy
        timeout behind a held write lock), and shutdown waited that long. A creation still
        running is logged and left: the caller is created on their next call.
        """
        pending = set(self._creations)
        if not pending:
            return
        _, late = await asyncio.wait(pending, timeout=grace)
        if late:
            log.error("%d new caller(s) not yet created at shutdown: they are created on their next call", len(late))
