"""The lab lock: a child run by a lock holder (a test session running the demo) must not wait for
the lock its parent holds, or the two wait for each other forever."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from lab.lock import HELD_BY_PARENT, lab_session_lock


def _try_in_thread(path: Path) -> bool:
    """Enter the lock from another thread (another open file: flock blocks it); True if it got in."""
    entered = threading.Event()

    def enter() -> None:
        with lab_session_lock(path):
            entered.set()

    thread = threading.Thread(target=enter, daemon=True)
    thread.start()
    return entered.wait(2)


def test_a_second_user_waits_while_the_lock_is_held(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(HELD_BY_PARENT, raising=False)
    path = tmp_path / "session.lock"
    with lab_session_lock(path):
        assert not _try_in_thread(path)
    # released: the waiting thread gets in now (and ends)


def test_a_child_of_the_holder_does_not_wait(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "session.lock"
    with lab_session_lock(path):
        monkeypatch.setenv(HELD_BY_PARENT, "1")
        assert _try_in_thread(path)
