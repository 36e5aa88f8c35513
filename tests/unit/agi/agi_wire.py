"""Literal bytes and small drivers shared by the AGI tests.

Why a module and not conftest: test modules cannot import from conftest. pytest imports this
tree as the namespace package ``tests.unit.agi`` (rootdir-relative names, no ``__init__.py``), so
``from tests.unit.agi.agi_wire import ...`` works.
"""

from __future__ import annotations

import itertools

from ivr.agi.protocol import NEED_DATA, AgiConnection, AgiEnvironment, Closed, ConnectionState, Event
from ivr.errors import RemoteProtocolError

#: What ``replay`` returns: the events, ending with Closed or an "error: ..." string.
Outcome = list[Event | str]

#: The environment block res_agi.c writes for ``AGI(agi://127.0.0.1:4573/inbound?flow=x,one,two)``
#: (FastAGI first sends agi_network and agi_network_script, then setup_env's lines, then "\n").
ENV_BYTES = (
    b"agi_network: yes\n"
    b"agi_network_script: inbound?flow=x\n"
    b"agi_request: agi://127.0.0.1:4573/inbound?flow=x\n"
    b"agi_channel: PJSIP/trunk-00000001\n"
    b"agi_language: en\n"
    b"agi_type: PJSIP\n"
    b"agi_uniqueid: 1732560000.12\n"
    b"agi_version: 22.1.0\n"
    b"agi_callerid: 5551234\n"
    b"agi_calleridname: Jane Caller\n"
    b"agi_callingpres: 0\n"
    b"agi_callingani2: 0\n"
    b"agi_callington: 0\n"
    b"agi_callingtns: 0\n"
    b"agi_dnid: 8005550100\n"
    b"agi_rdnis: unknown\n"
    b"agi_context: from-trunk\n"
    b"agi_extension: 8005550100\n"
    b"agi_priority: 2\n"
    b"agi_enhanced: 0.0\n"
    b"agi_accountcode: \n"
    b"agi_threadid: 139872265926336\n"
    b"agi_arg_1: one\n"
    b"agi_arg_2: two words\n"
    b"\n"
)


def env_for(route: str, uniqueid: str = "1732560000.12") -> bytes:
    """A minimal but realistic environment for ``agi://127.0.0.1:4573/<route>``."""
    return (
        f"agi_network: yes\n"
        f"agi_network_script: {route}\n"
        f"agi_request: agi://127.0.0.1:4573/{route}\n"
        f"agi_channel: PJSIP/trunk-00000001\n"
        f"agi_language: en\n"
        f"agi_type: PJSIP\n"
        f"agi_uniqueid: {uniqueid}\n"
        f"agi_version: 22.1.0\n"
        f"agi_callerid: 5551234\n"
        f"agi_context: from-trunk\n"
        f"agi_extension: s\n"
        f"agi_priority: 1\n"
        f"\n"
    ).encode()


def drain(conn: AgiConnection) -> list[Event]:
    """Every event currently available (stops at NEED_DATA or after Closed)."""
    events: list[Event] = []
    while True:
        event = conn.next_event()
        if event is NEED_DATA:
            return events
        assert not isinstance(event, type)
        events.append(event)
        if isinstance(event, Closed):
            return events


def idle_connection() -> AgiConnection:
    """A connection that has read ENV_BYTES and is IDLE."""
    conn = AgiConnection()
    conn.receive_data(ENV_BYTES)
    event = conn.next_event()
    assert isinstance(event, AgiEnvironment)
    return conn


def replay(chunks: list[bytes], *, prefix: bytes = b"") -> Outcome:
    """Feed ``prefix`` + chunks then EOF, sending a command whenever the connection is idle."""
    conn = AgiConnection()
    out: Outcome = []
    data = [prefix, *chunks] if prefix else list(chunks)
    for chunk in [*data, b""]:
        conn.receive_data(chunk)
        # Each next_event consumes at least one line or returns, so this bound is generous.
        budget = chunk.count(b"\n") + len(conn._buffer) + 5
        while True:
            budget -= 1
            assert budget >= 0, "next_event looped without consuming input"
            try:
                event = conn.next_event()
            except RemoteProtocolError as exc:
                assert conn.state is ConnectionState.ERROR
                out.append(f"error: {exc}")
                return out
            if event is NEED_DATA:
                assert chunk, "NEED_DATA after EOF"
                break
            assert not isinstance(event, type)
            out.append(event)
            if isinstance(event, Closed):
                assert conn.state is ConnectionState.CLOSED
                return out
            if conn.state is ConnectionState.IDLE:
                conn.send_command("NOOP")
    raise AssertionError("EOF did not end in Closed")


def chunked(data: bytes, cuts: list[int]) -> list[bytes]:
    """``data`` cut at the given offsets (taken modulo its length; duplicates ignored)."""
    points = sorted({c % (len(data) + 1) for c in cuts})
    edges = [0, *points, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(edges) if b > a]
