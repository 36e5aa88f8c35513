"""The failover bench reads when each callback's INVITE reached the customers' phone from SIPp's
message trace; literal trace text as SIPp 3.7 writes it (``-trace_msg``)."""

from __future__ import annotations

from datetime import datetime

from bench.failover import parse_invites

TRACE = (
    "----------------------------------------------- 2026-12-03 22:02:33.203314\n"
    "UDP message received [514] bytes :\n"
    "\n"
    "INVITE sip:+15557000001@127.0.0.1:15999 SIP/2.0\r\n"
    "Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK-1\r\n"
    "\n"
    "----------------------------------------------- 2026-12-03 22:02:33.204001\n"
    "UDP message sent (300 bytes):\n"
    "\n"
    "SIP/2.0 180 Ringing\r\n"
    "\n"
    "----------------------------------------------- 2026-12-03 22:02:35.500000\n"
    "UDP message received [514] bytes :\n"
    "\n"
    "INVITE sip:+15557000002@127.0.0.1:15999 SIP/2.0\r\n"
)


def test_each_invite_is_timed_by_the_header_before_it_and_replies_are_not_counted() -> None:
    found = parse_invites(TRACE)
    at = datetime(2026, 12, 3, 22, 2, 33, 203314).timestamp()
    assert [number for number, _ in found] == ["+15557000001", "+15557000002"]
    assert abs(found[0][1] - at) < 1e-6
    assert abs(found[1][1] - (at + 2.296686)) < 1e-6


def test_an_empty_trace_has_no_invites() -> None:
    assert parse_invites("") == []
