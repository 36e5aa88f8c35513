"""Fixtures for the AGI tests; the literal bytes live in agi_wire.py."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping

import pytest
import uvloop

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


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> Mapping[str, Callable[[], asyncio.AbstractEventLoop]]:
    """The server's socket tests run on both loops: ``ivr serve`` runs on uvloop, whose
    transports are not asyncio's classes, and everything else on asyncio's own."""
    if item.path.name == "test_agi_server.py":
        return {"asyncio": asyncio.new_event_loop, "uvloop": uvloop.new_event_loop}
    return {"asyncio": asyncio.new_event_loop}
