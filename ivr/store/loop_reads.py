"""Short SQLite reads and writes on the event loop's own thread, for as long as they stay short.

Why: a known caller's profile statement costs SQLite about 10 us, and the trip to aiosqlite's
thread around it about 280 us of the controller's CPU: a queue put, the thread's wake-up, the
rows handed back through the loop's self-pipe, SQLAlchemy's pool check-out and return. That trip
was the largest single item of a short call's CPU (bench/README.md). A read on the loop's thread
is only acceptable while it cannot stall the other calls, so this one never waits:

* no busy timeout: a lock (a writer in another process, a WAL recovery) is ``SQLITE_BUSY`` at once;
* a progress handler interrupts a statement that runs past ``budget`` (a caller with thousands of
  journeys, a cold page cache);
* ``query_only``: it cannot write, whatever statement it is given.

Any of these, or any other error, makes :meth:`LoopReader.fetchall` answer None, and the caller
takes the threaded path, which owns the timeouts, the retries and the error messages. So a read
here is an optimisation that can always step aside, never a second way to fail.

:class:`LoopWriter` does the same for a short transaction (a first caller's customer row and
identity: about 50 us of SQLite against 600 us through aiosqlite; the ACD lease's renewal). It is
used only inside the process's write turn (``ivr.store.turns``), or while that turn is free with
no ``await`` until the commit, so no writer of this process holds SQLite's lock;
another process's writer makes it step aside at once, and a step aside rolls back first: the
threaded path then does the whole transaction again. Its connection has the engine's durability
(``synchronous = NORMAL``, so a commit appends to the WAL without an fsync) and never runs a
checkpoint (the engine's connections do, off the loop).

WAL (``make_engine``) is what makes this sound: readers never block the writer and never wait for
it, and a statement in autocommit mode sees every transaction committed before it began, as a
pooled connection does.
"""

from __future__ import annotations

import logging
import sqlite3
import time
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

log = logging.getLogger(__name__)
_T = TypeVar("_T")


def sqlite_file(url_database: str | None, dialect: str) -> str | None:
    """The database file a loop connection may open: an SQLite file, not a memory database
    (private to its connection) nor a ``file:`` URI (its options are the engine's)."""
    name = url_database or ""
    if dialect != "sqlite" or name in ("", ":memory:") or name.startswith("file:"):
        return None
    return name


#: The longest a read may hold the event loop: a tenth of the loop-lag budget of 5 ms p99.
DEFAULT_BUDGET_S = 0.0005
#: SQLite VM instructions between two checks of the clock (a caller's profile is a few thousand).
CHECK_EVERY = 500
#: At most one log line per this many seconds about reads that stepped aside (with their count).
LOG_EVERY = 60.0


class LoopReader:
    """One read-only SQLite connection used on the event loop's thread (see the module doc).

    ``path``: the database file, which must exist (it is never created here). ``stepped_aside``
    counts reads that answered None; ``served`` those that answered rows.
    """

    #: how the connection is set up after it opens (the reader: it cannot write)
    PRAGMAS: tuple[str, ...] = ("PRAGMA query_only = ON",)

    def __init__(self, path: str, *, budget: float = DEFAULT_BUDGET_S) -> None:
        self.path = path
        self.budget = budget
        self.served = 0
        self.stepped_aside = 0
        self._conn: sqlite3.Connection | None = None
        self._deadline = 0.0
        self._retry_open_at = 0.0  # after a failed open: when to try again (monotonic)
        self._logged_at = -float("inf")
        self._unlogged = 0

    def fetchall(self, sql: str, params: Mapping[str, Any] | Sequence[Any]) -> list[Any] | None:
        """The statement's rows, or None when it could not run at once and quickly."""
        conn = self._connection()
        if conn is None:
            return None
        self._deadline = time.perf_counter() + self.budget
        try:
            rows = conn.execute(sql, params).fetchall()
        except sqlite3.Error as exc:  # busy, interrupted, another thread, a closed file ...
            self._step_aside(exc)
            return None
        self.served += 1
        return rows

    def set_trace_callback(self, callback: Callable[[str], object] | None) -> None:
        """sqlite3's statement trace on this connection (what tests count, what a debugger logs)."""
        conn = self._connection()
        if conn is not None:
            conn.set_trace_callback(callback)

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except sqlite3.Error as exc:  # closed from another thread than its own: let it go
                log.debug("loop reader for %s not closed: %s", self.path, exc)

    def _connection(self) -> sqlite3.Connection | None:
        if self._conn is not None or time.monotonic() < self._retry_open_at:
            return self._conn
        uri = f"file:{urllib.parse.quote(self.path)}?mode=rw"  # rw: never creates the file
        conn: sqlite3.Connection | None = None
        try:
            conn = sqlite3.connect(uri, uri=True, timeout=0, isolation_level=None, cached_statements=32)
            conn.execute("PRAGMA busy_timeout = 0")
            for pragma in self.PRAGMAS:
                conn.execute(pragma)
        except sqlite3.Error as exc:  # no file yet, no descriptor left ...: the thread reads meanwhile
            if conn is not None:
                conn.close()
            self._retry_open_at = time.monotonic() + LOG_EVERY
            log.warning(
                "reads of %s stay on the database thread for %gs (cannot open it here: %s)", self.path, LOG_EVERY, exc
            )
            return None
        conn.set_progress_handler(self._overdue, CHECK_EVERY)
        self._conn = conn
        return conn

    def _overdue(self) -> int:
        """SQLite's progress callback: non-zero interrupts the statement."""
        return int(time.perf_counter() > self._deadline)

    def _step_aside(self, exc: sqlite3.Error) -> None:
        """Count (and now and then log) a statement that failed, and close the connection: the
        next read or write opens a new one.

        Why closed: on Python 3.11, a statement that fails while its rows are being fetched (the
        progress handler interrupting a read past its budget, once in a while under load) stays
        marked in use in sqlite3's statement cache (``sqlite3_reset`` gives the step's error
        back, and the cursor drops the statement without clearing the mark), so every later
        ``execute`` of the same SQL prepared a new statement instead: a caller's lookup went
        from about 50 to 250 us of the loop's CPU for the rest of the process's life
        (bench/README.md). A new connection has a clean cache.
        """
        self.close()
        self.stepped_aside += 1
        now = time.monotonic()
        if now - self._logged_at < LOG_EVERY:
            self._unlogged += 1
            return
        more = f" ({self._unlogged} more since the last line)" if self._unlogged else ""
        log.info("a read of %s went to the database thread instead: %s%s", self.path, exc, more)
        self._logged_at, self._unlogged = now, 0


class LoopWriter(LoopReader):
    """One short write transaction at a time on the event loop's thread (see the module doc).

    Only inside the process's write turn for the database, or while that turn is free
    (``Turn.free``) and nothing is awaited until the commit: that is what keeps every other
    writer of this process out of SQLite's lock while it runs.
    """

    PRAGMAS = ("PRAGMA foreign_keys = ON", "PRAGMA synchronous = NORMAL", "PRAGMA wal_autocheckpoint = 0")

    def write(
        self,
        statements: Sequence[tuple[str, Mapping[str, Any]]],
        keep: Callable[[list[int]], bool] = lambda _counts: True,
    ) -> bool | None:
        """Run ``statements`` in one transaction; commit if ``keep`` (given each one's row count)
        says so, else roll back. True: committed; False: rolled back by ``keep``; None: stepped
        aside, nothing written (rolled back): the caller runs the transaction on its thread."""

        def body(conn: sqlite3.Connection) -> tuple[bool, bool]:
            commit = keep([conn.execute(sql, params).rowcount for sql, params in statements])
            return commit, commit

        return self._transaction(body)

    def write_then_read(
        self, statements: Sequence[tuple[str, Mapping[str, Any]]], query: str, params: Mapping[str, Any]
    ) -> list[Any] | None:
        """Run ``statements``, then ``query`` in the same transaction, and commit: the query's rows
        (what the writes left, read under the same lock), or None: stepped aside, nothing written."""

        def body(conn: sqlite3.Connection) -> tuple[bool, list[Any]]:
            for sql, values in statements:
                conn.execute(sql, values)
            return True, conn.execute(query, params).fetchall()

        return self._transaction(body)

    def _transaction(self, body: Callable[[sqlite3.Connection], tuple[bool, _T]]) -> _T | None:
        """``body`` in one ``BEGIN IMMEDIATE`` transaction, committed if its first answer is True;
        its second answer, or None when anything failed (rolled back, and stepped aside)."""
        conn = self._connection()
        if conn is None:
            return None
        self._deadline = time.perf_counter() + self.budget
        try:
            conn.execute("BEGIN IMMEDIATE")  # the lock now, or SQLITE_BUSY now
            try:
                commit, answer = body(conn)
                if not commit:
                    conn.execute("ROLLBACK")
                    return answer
                self._deadline = float("inf")  # a commit that started is not interrupted
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    self._deadline = float("inf")
                    conn.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            self._step_aside(exc)  # closing is a rollback too, and frees the lock
            return None
        self.served += 1
        return answer
