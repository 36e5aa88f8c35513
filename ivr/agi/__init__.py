"""FastAGI: ``protocol`` (sans-IO bytes <-> events), ``commands`` (builders and quoting),
``server`` (the thin asyncio listener that routes calls to handlers).

The layering follows h11: everything that decides anything about the wire is pure and tested
with literal bytes; the only module that touches sockets is ``server``.
"""

from ivr.agi.protocol import (
    NEED_DATA,
    AgiConnection,
    AgiEnvironment,
    Closed,
    ConnectionState,
    DeadChannel,
    Event,
    HangupNotice,
    InvalidCommand,
    Reply,
    UsageError,
)
from ivr.agi.server import AgiServer, AgiSession, Handler, Router

__all__ = [
    "NEED_DATA",
    "AgiConnection",
    "AgiEnvironment",
    "AgiServer",
    "AgiSession",
    "Closed",
    "ConnectionState",
    "DeadChannel",
    "Event",
    "Handler",
    "HangupNotice",
    "InvalidCommand",
    "Reply",
    "Router",
    "UsageError",
]
