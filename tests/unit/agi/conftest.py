"""Fixtures for the AGI tests; the literal bytes live in agi_wire.py."""

from __future__ import annotations

import pytest

from ivr.agi.protocol import AgiConnection
from tests.unit.agi.agi_wire import idle_connection


@pytest.fixture
def idle_conn() -> AgiConnection:
    return idle_connection()


@pytest.fixture
def awaiting_conn() -> AgiConnection:
    conn = idle_connection()
    conn.send_command("NOOP")
    return conn
