"""Reads and short writes on the event loop's thread step aside instead of waiting or failing.

Real SQLite files in WAL mode, as ``make_engine`` leaves them; another connection plays another
process (or the threaded path) holding locks.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from ivr.store.loop_reads import LoopReader, LoopWriter

#: A statement that would run for minutes: only an interruption ends it.
ENDLESS = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1000000000) SELECT count(*) FROM n"


#: Rows one at a time up to ``:upto``: the first comes at once, the rest while they are fetched.
COUNTING = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < :upto) SELECT i FROM n"


@pytest.fixture
def database(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "ivr.sqlite3"
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE t (k TEXT PRIMARY KEY, v INTEGER NOT NULL)")
    conn.execute("INSERT INTO t VALUES ('a', 1)")
    conn.close()
    yield path


#: for tests of what a statement does, not of its budget: a preempted process must not step aside
ROOMY = 10.0


def other(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(path, timeout=0, isolation_level=None)


def test_a_read_gives_the_rows_and_sees_what_others_committed(database: Path) -> None:
    reader = LoopReader(str(database), budget=ROOMY)
    assert reader.fetchall("SELECT k, v FROM t WHERE k = :k", {"k": "a"}) == [("a", 1)]
    writer = other(database)
    writer.execute("INSERT INTO t VALUES ('b', 2)")
    assert reader.fetchall("SELECT count(*) FROM t", {}) == [(2,)]
    writer.execute("BEGIN IMMEDIATE")  # a writer mid-transaction does not hold readers up (WAL)
    writer.execute("INSERT INTO t VALUES ('c', 3)")
    assert reader.fetchall("SELECT count(*) FROM t", {}) == [(2,)]
    writer.execute("COMMIT")
    assert reader.fetchall("SELECT count(*) FROM t", {}) == [(3,)]
    assert (reader.served, reader.stepped_aside) == (4, 0)
    writer.close()
    reader.close()


def test_a_read_over_its_budget_is_interrupted_and_steps_aside(database: Path) -> None:
    reader = LoopReader(str(database))
    assert reader.fetchall(ENDLESS, {}) is None
    assert reader.stepped_aside == 1
    assert reader.fetchall("SELECT v FROM t", {}) == [(1,)]  # the connection is still good
    reader.close()


def test_a_reader_cannot_write_and_never_creates_a_database(database: Path, tmp_path: Path) -> None:
    reader = LoopReader(str(database), budget=ROOMY)
    assert reader.fetchall("UPDATE t SET v = 9", {}) is None  # query_only
    assert other(database).execute("SELECT v FROM t").fetchall() == [(1,)]
    missing = tmp_path / "missing.sqlite3"
    late = LoopReader(str(missing), budget=ROOMY)
    assert late.fetchall("SELECT 1", {}) is None
    assert not missing.exists()
    sqlite3.connect(missing).close()  # the file appears (the schema's migration ran) ...
    assert late.fetchall("SELECT 1", {}) is None  # ... and is opened only after the retry delay
    late._retry_open_at = 0.0  # that delay passed
    assert late.fetchall("SELECT 1", {}) == [(1,)]
    late.close()
    reader.close()


def test_a_write_commits_what_keep_accepts_and_rolls_back_the_rest(database: Path) -> None:
    writer = LoopWriter(str(database), budget=ROOMY)
    insert = "INSERT INTO t VALUES (:k, :v) ON CONFLICT (k) DO NOTHING"
    assert writer.write([(insert, {"k": "b", "v": 2}), (insert, {"k": "c", "v": 3})]) is True
    assert writer.write([(insert, {"k": "d", "v": 4}), (insert, {"k": "a", "v": 5})], keep=all) is False  # 'a' taken
    rows = other(database).execute("SELECT k, v FROM t ORDER BY k").fetchall()
    assert rows == [("a", 1), ("b", 2), ("c", 3)]  # no 'd': its transaction was rolled back
    check = other(database)
    check.execute("BEGIN IMMEDIATE")  # the writer holds no lock after either
    check.execute("ROLLBACK")
    writer.close()


def test_a_write_steps_aside_at_once_when_another_process_holds_the_lock(database: Path) -> None:
    holder = other(database)
    holder.execute("BEGIN IMMEDIATE")
    writer = LoopWriter(str(database), budget=ROOMY)
    assert writer.write([("INSERT INTO t VALUES ('b', 2)", {})]) is None
    assert writer.stepped_aside == 1
    holder.execute("ROLLBACK")
    assert writer.write([("INSERT INTO t VALUES ('b', 2)", {})]) is True
    holder.close()
    writer.close()


def test_a_failed_write_leaves_nothing_and_no_lock(database: Path) -> None:
    writer = LoopWriter(str(database), budget=ROOMY)
    statements: list[tuple[str, dict[str, object]]] = [
        ("INSERT INTO t VALUES ('b', 2)", {}),
        ("INSERT INTO t VALUES ('c', NULL)", {}),  # v is NOT NULL
    ]
    assert writer.write(statements) is None
    assert other(database).execute("SELECT k FROM t ORDER BY k").fetchall() == [("a",)]
    slow = LoopWriter(str(database))
    assert slow.write([("INSERT INTO t VALUES ('b', 2)", {}), (ENDLESS, {})]) is None  # interrupted
    assert other(database).execute("SELECT k FROM t ORDER BY k").fetchall() == [("a",)]
    check = other(database)
    check.execute("BEGIN IMMEDIATE")
    check.execute("ROLLBACK")
    writer.close()
    slow.close()


def test_a_writer_commits_without_checkpointing_and_with_foreign_keys_on(database: Path) -> None:
    """Its commits append to the WAL and leave checkpoints (and their fsync) to the engine's
    connections, off the loop; foreign keys hold as on the engine's connections."""
    setup = other(database)
    setup.execute("CREATE TABLE child (k TEXT NOT NULL REFERENCES t (k))")
    setup.close()
    writer = LoopWriter(str(database), budget=ROOMY)  # 1,500 commits: one preempted must not step aside
    assert writer.write([("INSERT INTO child VALUES ('nobody')", {})]) is None
    for n in range(1500):  # past the default auto-checkpoint of 1,000 pages
        assert writer.write([("INSERT INTO t VALUES (:k, :v)", {"k": f"k{n}", "v": n})]) is True
    _busy, frames, _done = other(database).execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
    assert frames >= 1500  # every commit still in the WAL: none of them checkpointed it
    writer.close()


def test_a_read_interrupted_while_its_rows_are_fetched_leaves_its_statement_reusable(database: Path) -> None:
    """On Python 3.11 a statement that fails after its first row stays marked in use in sqlite3's
    statement cache, and every later read of the same SQL prepared a new statement (a caller's
    lookup: 50 -> 250 us for the rest of the process's life). SQLite's own list of the
    connection's statements (``sqlite_stmt``) shows whether the cached one is run again."""
    reader = LoopReader(str(database), budget=ROOMY)
    assert reader.fetchall(COUNTING, {"upto": 3}) == [(1,), (2,), (3,)]
    reader.budget = 0.05  # the first row at once, then 50 ms of fetching until it is interrupted
    assert reader.fetchall(COUNTING, {"upto": 10**9}) is None
    reader.budget = ROOMY
    assert reader.stepped_aside == 1
    for _ in range(5):
        assert reader.fetchall(COUNTING, {"upto": 3}) == [(1,), (2,), (3,)]
    runs = reader.fetchall("SELECT run FROM sqlite_stmt WHERE sql = :sql", {"sql": COUNTING})
    assert runs == [(5,)]  # one statement, run again each time
    reader.close()
