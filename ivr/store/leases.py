"""Leases: what only one controller node may do at a time, decided by the shared database.

Why the database and not Redis: every node already depends on it (journeys, agents, callbacks),
and the rows a leader acts on (callback tickets) live there too, so the claim of a ticket can check
the lease in the same statement (:meth:`ivr.store.agents.CallbackStore.claim`). Redis stays
optional (it only carries events).

A lease is one row. :meth:`LeaseStore.acquire` is a single conditional UPDATE: it renews the row
if this holder has it, or takes it if it has expired, and increments ``token`` when it changes
hands; two nodes racing for an expired lease both run it and the database's row lock lets exactly
one match (PostgreSQL re-checks the WHERE clause on the row the winner wrote; SQLite has one
writer). The times are the nodes' wall clocks: nodes must be NTP-synchronised, and a skew adds to
the takeover time (the holder steps down on its own monotonic clock before its lease expires).
On SQLite its writes are urgent in the database's write turn (:mod:`ivr.store.turns`): a renewal
has one ``renew_every`` to land, and must not queue behind a burst of first callers. There the
renewal runs on the event loop's own thread while SQLite's lock is free
(:class:`~ivr.store.loop_reads.LoopWriter`): two renewals a second through aiosqlite and
SQLAlchemy's async engine cost an idle controller about 5 ms of the loop's CPU every second, a
third of all it spent idle (bench/README.md).
"""

from __future__ import annotations

from sqlalchemy import case, insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from ivr.store.loop_reads import LoopWriter, sqlite_file
from ivr.store.models import LeaseRow
from ivr.store.turns import write_turn, writing

#: the ACD's lease: its holder drives the ACD from AMI and dials callbacks
ACD_LEASE = "acd"

#: :meth:`LeaseStore.acquire`'s UPDATE as SQLite text, for the loop's own connection; the same
#: conditions and SET expressions as the SQLAlchemy statement the other paths run
_TAKE_SQL = (
    "UPDATE leases SET token = CASE WHEN holder = :holder THEN token ELSE token + 1 END,"
    " holder = :holder, expires_at = :expires_at"
    " WHERE name = :name AND (holder = :holder OR expires_at <= :now)"
)
_HELD_SQL = "SELECT holder, token FROM leases WHERE name = :name"


class LeaseStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        database = sqlite_file(engine.url.database, engine.dialect.name)
        self.loop_writes: LoopWriter | None = LoopWriter(database) if database is not None else None

    def close(self) -> None:
        """Close the loop's connection (the engine's owner disposes of the engine)."""
        if self.loop_writes is not None:
            self.loop_writes.close()

    async def acquire(self, name: str, holder: str, *, ttl: float, now: float) -> int | None:
        """Renew or take the lease ``name`` for ``ttl`` seconds from ``now``: its fencing token,
        or None while another holder's lease runs.

        On SQLite, first on the loop's thread, in the process's urgent write turn: the UPDATE,
        then the row as it left it, under the same lock (this holder's name on it means the
        UPDATE matched: the token is ours). No row yet, or a step aside (another process holds
        the lock, the budget ran out), and the statements below do it all, with the busy timeout."""
        if self.loop_writes is not None:
            async with write_turn(self.engine, urgent=True):
                params = {"name": name, "holder": holder, "expires_at": now + ttl, "now": now}
                rows = self.loop_writes.write_then_read([(_TAKE_SQL, params)], _HELD_SQL, {"name": name})
            if rows:
                held_by, token = rows[0]
                return int(token) if held_by == holder else None
        take = (
            update(LeaseRow)
            .where(LeaseRow.name == name, or_(LeaseRow.holder == holder, LeaseRow.expires_at <= now))
            # SET expressions read the row as it was: the token grows only when the holder changes
            .values(
                token=case((LeaseRow.holder == holder, LeaseRow.token), else_=LeaseRow.token + 1),
                holder=holder,
                expires_at=now + ttl,
            )
            .returning(LeaseRow.token)
        )
        async with writing(self.engine, urgent=True) as conn:
            token = (await conn.execute(take)).scalar_one_or_none()
        if token is not None:
            return int(token)
        try:
            async with writing(self.engine, urgent=True) as conn:
                await conn.execute(insert(LeaseRow).values(name=name, holder=holder, token=1, expires_at=now + ttl))
        except IntegrityError:  # the row exists (held by another), or another node inserted it first
            return None
        return 1

    async def release(self, name: str, holder: str) -> None:
        """Give the lease up now (a clean shutdown): the next node need not wait for it to expire."""
        async with writing(self.engine, urgent=True) as conn:
            await conn.execute(
                update(LeaseRow).where(LeaseRow.name == name, LeaseRow.holder == holder).values(expires_at=0.0)
            )

    async def holder(self, name: str) -> tuple[str, int, float] | None:
        """(holder, token, expires_at) of the lease, for tests and operators."""
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(LeaseRow.__table__).where(LeaseRow.name == name))).first()
        return None if row is None else (row.holder, int(row.token), float(row.expires_at))
