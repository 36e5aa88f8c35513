"""SQLite's writers of one process take turns; PostgreSQL's do not queue here.

Why: SQLite has one write lock per database file. A writer that finds it taken sleeps in
SQLite's busy handler (1, 2, 5 ... 100 ms at a time, up to the 30 s busy timeout) on a thread of
its own while holding a pooled connection, and wakes up on its own schedule, not when the lock is
free. With every kind of writer on the call and ACD paths (the journey writer's batches, first
callers' creations, lease renewals, callback tickets, continuation links, agents' sessions,
flow versions) sleeping there at once, a batch took seconds, the sleepers held the pool that
the callers' lookups need, and a lease renewal could wait longer than the lease
(bench/README.md). Waiting here instead hands the lock over the moment the previous writer
commits, in arrival order, and holds no connection while waiting.

The turn is per database file, not per engine: two engines on one file (a second store, a test,
``ivr`` commands run in the controller's process) still share SQLite's one lock. It is not
re-entrant: a writer holding the turn must not call another writer (none does); a task that asks
for the turn it holds gets a ``RuntimeError`` at once instead of waiting for itself forever (a
silent hang of every writer, and of shutdown behind them).

An *urgent* writer (the ACD lease's renewal: the leader steps down when it has not renewed within
its margin, and gives each attempt one ``renew_every``) goes before every writer already
waiting, behind only the one that holds the turn: in a burst of first callers it would otherwise
wait for all of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from collections import deque
from collections.abc import AsyncIterator
from pathlib import Path
from types import TracebackType

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine


class Turn:
    """One writer at a time, first come first served, urgent writers first.

    The turn is handed straight to the next waiter on release (it never looks free in between),
    so a writer arriving meanwhile cannot overtake the queue.
    """

    def __init__(self) -> None:
        self._held = False
        self._urgent: deque[asyncio.Future[None]] = deque()
        self._normal: deque[asyncio.Future[None]] = deque()
        #: the task holding the turn (None while it is being handed over), to refuse it a second one
        self._holder: asyncio.Task[object] | None = None

    @property
    def held(self) -> bool:
        return self._held

    @property
    def free(self) -> bool:
        """Nobody holds the turn and nobody waits for it: a writer that does not ``await`` until
        its commit may write without taking it."""
        return not self._held and not self.waiting

    @property
    def waiting(self) -> int:
        return sum(not f.done() for f in (*self._urgent, *self._normal))

    async def acquire(self, *, urgent: bool = False) -> None:
        me = asyncio.current_task()
        if self._held and me is not None and self._holder is me:
            raise RuntimeError("this task already holds the SQLite write turn: a nested writer would wait for itself")
        if not self._held and not self.waiting:
            self._held, self._holder = True, me
            return
        waiter = asyncio.get_running_loop().create_future()
        (self._urgent if urgent else self._normal).append(waiter)
        try:
            await waiter
            self._holder = me
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():  # handed the turn as we were cancelled
                self.release()
            raise
        finally:
            for queue in (self._urgent, self._normal):
                with contextlib.suppress(ValueError):
                    queue.remove(waiter)

    def release(self) -> None:
        self._holder = None
        for queue in (self._urgent, self._normal):
            while queue:
                waiter = queue.popleft()
                if not waiter.done():
                    waiter.set_result(None)  # still held: now by that waiter
                    return
        self._held = False

    def __call__(self, *, urgent: bool = False) -> contextlib.AbstractAsyncContextManager[None]:
        return _Holding(self, urgent)


class _Holding:
    def __init__(self, turn: Turn, urgent: bool) -> None:
        self._turn, self._urgent = turn, urgent

    async def __aenter__(self) -> None:
        await self._turn.acquire(urgent=self._urgent)

    async def __aexit__(
        self, _type: type[BaseException] | None, _exc: BaseException | None, _tb: TracebackType | None
    ) -> None:
        self._turn.release()


#: database file -> (the loop its turn belongs to, weakly: a closed loop is not kept alive, the turn)
_TURNS: dict[str, tuple[weakref.ref[asyncio.AbstractEventLoop], Turn]] = {}


def _database(engine: AsyncEngine) -> str:
    """The key of an SQLite engine's turn: its file's resolved path (an in-memory database is
    private to its connection, so it gets the engine's own turn)."""
    name = engine.url.database or ""
    if name in ("", ":memory:") or name.startswith("file:"):
        return f"{name}@{id(engine.sync_engine)}"
    resolved = _RESOLVED.get(name)
    if resolved is None:  # resolve() is a few lstat calls: once per file, not once per write
        resolved = _RESOLVED[name] = str(Path(name).resolve())
    return resolved


#: database file name as the engine's URL gives it -> its resolved path (see _database)
_RESOLVED: dict[str, str] = {}


def turn_of(engine: AsyncEngine) -> Turn | None:
    """This SQLite database's turn in this event loop; None on PostgreSQL (its writers lock rows,
    not the database, and must not queue behind each other in the process)."""
    if engine.dialect.name != "sqlite":
        return None
    loop = asyncio.get_running_loop()
    key = _database(engine)
    held = _TURNS.get(key)
    if held is None or held[0]() is not loop:  # its futures belong to one loop (tests run several)
        held = _TURNS[key] = (weakref.ref(loop), Turn())
    return held[1]


def write_turn(engine: AsyncEngine, *, urgent: bool = False) -> contextlib.AbstractAsyncContextManager[None]:
    """Hold this around a write transaction: on SQLite, one writer of this process at a time."""
    turn = turn_of(engine)
    return contextlib.nullcontext() if turn is None else turn(urgent=urgent)


@contextlib.asynccontextmanager
async def writing(engine: AsyncEngine, *, urgent: bool = False) -> AsyncIterator[AsyncConnection]:
    """``engine.begin()`` in this database's write turn: the one way stores open a write
    transaction. The connection is checked out only once the turn is ours."""
    async with write_turn(engine, urgent=urgent), engine.begin() as conn:
        yield conn
