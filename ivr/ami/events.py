"""AMI messages -> typed events. Pure: no I/O, no panoramisk; tested with recorded transcripts.

Why typed events: app_queue's events carry 20+ headers with inconsistent names between Asterisk
versions (``Interface``/``Location``/``StateInterface``, ``Uniqueid`` vs ``DestUniqueid``), and the
journey id arrives as ``ChanVariable: IVR_JOURNEY_ID=...`` lines (manager.conf ``channelvars``).
One module knows those details; the ACD sees ``AgentCalled(queue=..., agent=..., journey_id=...)``.

Input is a message as a mapping of header -> value, where a repeated header (ChanVariable) is a
list of values, exactly what :func:`parse_transcript` and panoramisk's ``Message`` produce.
Events this product does not consume parse to ``None``; a consumed event with a missing header
raises :class:`AmiEventError` (the peer sent something we do not understand: log it, go on).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from ivr.agi import variables as var
from ivr.errors import IvrError

Headers = Mapping[str, Any]


class AmiEventError(IvrError):
    """A consumed AMI event lacks a header we need, or has a value we cannot read."""


def _get(msg: Headers, *names: str, default: str | None = None) -> str:
    for name in names:
        value = msg.get(name)
        if isinstance(value, list):
            value = value[-1] if value else None
        if value is not None:
            return str(value)
    if default is not None:
        return default
    raise AmiEventError(f"{msg.get('Event', '?')}: no {'/'.join(names)} header")


def _int(msg: Headers, *names: str, default: int | None = None) -> int:
    raw = _get(msg, *names, default=None if default is None else str(default))
    try:
        return int(raw)
    except ValueError:
        raise AmiEventError(f"{msg.get('Event', '?')}: {names[0]} is not a number: {raw!r}") from None


def _bool(msg: Headers, name: str) -> bool:
    return _get(msg, name, default="0").strip().lower() in ("1", "yes", "true")


def channel_variables(msg: Headers, header: str = "ChanVariable") -> dict[str, str]:
    """``ChanVariable: NAME=value`` lines (one or many) as a dict."""
    raw = msg.get(header)
    if raw is None:
        return {}
    items = raw if isinstance(raw, list) else [raw]
    out: dict[str, str] = {}
    for item in items:
        name, sep, value = str(item).partition("=")
        if sep:
            out[name.strip()] = value
    return out


def _channel(msg: Headers, prefix: str = "") -> Channel:
    variables = channel_variables(msg, f"{prefix}ChanVariable")
    return Channel(
        name=_get(msg, f"{prefix}Channel", default=""),
        uniqueid=_get(msg, f"{prefix}Uniqueid", default=""),
        linkedid=_get(msg, f"{prefix}Linkedid", default=""),
        callerid=_get(msg, f"{prefix}CallerIDNum", default=""),
        caller_name=_get(msg, f"{prefix}CallerIDName", default=""),
        variables=variables,
    )


@dataclass(frozen=True)
class Channel:
    name: str
    uniqueid: str
    linkedid: str = ""
    callerid: str = ""
    caller_name: str = ""
    variables: dict[str, str] = field(default_factory=dict)

    @property
    def journey_id(self) -> str | None:
        return self.variables.get(var.JOURNEY_ID) or None


@dataclass(frozen=True)
class AmiEvent:
    """Base of every typed event. ``timestamp``: Asterisk's (manager.conf timestampevents), or 0."""

    timestamp: float


@dataclass(frozen=True)
class FullyBooted(AmiEvent):
    uptime: int


@dataclass(frozen=True)
class Shutdown(AmiEvent):
    restart: bool


@dataclass(frozen=True)
class QueueCallerJoin(AmiEvent):
    queue: str
    caller: Channel
    position: int
    count: int


@dataclass(frozen=True)
class QueueCallerLeave(AmiEvent):
    queue: str
    caller: Channel
    position: int
    count: int


@dataclass(frozen=True)
class QueueCallerAbandon(AmiEvent):
    queue: str
    caller: Channel
    position: int
    original_position: int
    hold_time: int


@dataclass(frozen=True)
class AgentCalled(AmiEvent):
    """app_queue rings a member. ``interface`` is the member (PJSIP/agent1001); ``caller`` the waiting call."""

    queue: str
    interface: str
    member_name: str
    caller: Channel
    agent_channel: Channel


@dataclass(frozen=True)
class AgentRingNoAnswer(AmiEvent):
    queue: str
    interface: str
    caller: Channel
    ring_time: int


@dataclass(frozen=True)
class AgentConnect(AmiEvent):
    queue: str
    interface: str
    caller: Channel
    agent_channel: Channel
    hold_time: int
    ring_time: int


@dataclass(frozen=True)
class AgentComplete(AmiEvent):
    queue: str
    interface: str
    caller: Channel
    hold_time: int
    talk_time: int
    reason: str


@dataclass(frozen=True)
class QueueMember(AmiEvent):
    """One member's state: QueueMemberStatus/Added/Removed/Pause events and QueueStatus's QueueMember."""

    kind: str  # status | added | removed | pause | listed
    queue: str
    interface: str
    name: str
    penalty: int
    paused: bool
    reason: str
    status: int  # AST_DEVICE_*: 1 not in use, 2 in use, 3 busy, 4 invalid, 5 unavailable, 6 ringing ...
    in_call: bool
    calls_taken: int


@dataclass(frozen=True)
class QueueParams(AmiEvent):
    queue: str
    calls: int
    hold_time: int
    talk_time: int
    completed: int
    abandoned: int


@dataclass(frozen=True)
class QueueEntry(AmiEvent):
    queue: str
    position: int
    caller: Channel
    wait: int


@dataclass(frozen=True)
class Hangup(AmiEvent):
    channel: Channel
    cause: int
    cause_text: str


@dataclass(frozen=True)
class UserEvent(AmiEvent):
    """``UserEvent(<name>,Key: value,...)`` from the dialplan, on the channel that ran it.
    ``fields``: the headers the dialplan wrote (Asterisk's own channel headers left out)."""

    name: str
    channel: Channel
    fields: dict[str, str]


@dataclass(frozen=True)
class DialEnd(AmiEvent):
    """A Dial() from ``channel`` to ``dest`` ended (also app_queue ringing an agent): ``status`` is
    Asterisk's DIALSTATUS (ANSWER, BUSY, NOANSWER, CONGESTION, CHANUNAVAIL, CANCEL)."""

    channel: Channel
    dest: Channel
    status: str


@dataclass(frozen=True)
class OriginateResponse(AmiEvent):
    action_id: str
    response: str  # Success | Failure
    channel: str
    uniqueid: str
    reason: int


#: headers Asterisk puts on every channel event (not a UserEvent's own fields)
_CHANNEL_HEADERS = (
    "Channel",
    "ChannelState",
    "CallerID",
    "ConnectedLine",
    "Language",
    "AccountCode",
    "Context",
    "Exten",
    "Priority",
    "Uniqueid",
    "Linkedid",
    "ChanVariable",
)


def _ts(msg: Headers) -> float:
    try:
        return float(_get(msg, "Timestamp", default="0"))
    except ValueError:
        return 0.0


def _member(msg: Headers, kind: str, ts: float) -> QueueMember:
    interface = _get(msg, "Interface", "Location", "StateInterface")
    return QueueMember(
        ts,
        kind=kind,
        queue=_get(msg, "Queue"),
        interface=interface,
        name=_get(msg, "MemberName", "Name", default=interface),
        penalty=_int(msg, "Penalty", default=0),
        paused=_bool(msg, "Paused"),
        reason=_get(msg, "PausedReason", "Reason", default=""),
        status=_int(msg, "Status", default=0),
        in_call=_bool(msg, "InCall"),
        calls_taken=_int(msg, "CallsTaken", default=0),
    )


def parse(msg: Headers) -> AmiEvent | None:
    """One AMI event message -> a typed event, or None for an event this product does not consume."""
    name = _get(msg, "Event", default="")
    ts = _ts(msg)
    match name:
        case "QueueCallerJoin":
            return QueueCallerJoin(ts, _get(msg, "Queue"), _channel(msg), _int(msg, "Position"), _int(msg, "Count"))
        case "QueueCallerLeave":
            return QueueCallerLeave(ts, _get(msg, "Queue"), _channel(msg), _int(msg, "Position"), _int(msg, "Count"))
        case "QueueCallerAbandon":
            return QueueCallerAbandon(
                ts,
                _get(msg, "Queue"),
                _channel(msg),
                _int(msg, "Position"),
                _int(msg, "OriginalPosition", default=0),
                _int(msg, "HoldTime", default=0),
            )
        case "AgentCalled":
            return AgentCalled(
                ts,
                _get(msg, "Queue"),
                _get(msg, "Interface"),
                _get(msg, "MemberName", default=""),
                _channel(msg),
                _channel(msg, "Dest"),
            )
        case "AgentRingNoAnswer":
            return AgentRingNoAnswer(
                ts, _get(msg, "Queue"), _get(msg, "Interface"), _channel(msg), _int(msg, "RingTime", default=0)
            )
        case "AgentConnect":
            return AgentConnect(
                ts,
                _get(msg, "Queue"),
                _get(msg, "Interface"),
                _channel(msg),
                _channel(msg, "Dest"),
                _int(msg, "HoldTime", default=0),
                _int(msg, "RingTime", default=0),
            )
        case "AgentComplete":
            return AgentComplete(
                ts,
                _get(msg, "Queue"),
                _get(msg, "Interface"),
                _channel(msg),
                _int(msg, "HoldTime", default=0),
                _int(msg, "TalkTime", default=0),
                _get(msg, "Reason", default=""),
            )
        case "QueueMemberStatus":
            return _member(msg, "status", ts)
        case "QueueMemberAdded":
            return _member(msg, "added", ts)
        case "QueueMemberRemoved":
            return _member(msg, "removed", ts)
        case "QueueMemberPause":
            return _member(msg, "pause", ts)
        case "QueueMember":
            return _member(msg, "listed", ts)
        case "QueueParams":
            return QueueParams(
                ts,
                _get(msg, "Queue"),
                _int(msg, "Calls", default=0),
                _int(msg, "Holdtime", "HoldTime", default=0),
                _int(msg, "TalkTime", default=0),
                _int(msg, "Completed", default=0),
                _int(msg, "Abandoned", default=0),
            )
        case "QueueEntry":
            return QueueEntry(
                ts, _get(msg, "Queue"), _int(msg, "Position"), _channel(msg), _int(msg, "Wait", default=0)
            )
        case "Hangup":
            return Hangup(ts, _channel(msg), _int(msg, "Cause", default=0), _get(msg, "Cause-txt", default=""))
        case "DialEnd":
            return DialEnd(ts, _channel(msg), _channel(msg, "Dest"), _get(msg, "DialStatus", default=""))
        case "FullyBooted":
            return FullyBooted(ts, _int(msg, "Uptime", default=0))
        case "Shutdown":
            return Shutdown(ts, _get(msg, "Restart", default="False").lower() == "true")
        case "UserEvent":
            own = {h for h in msg if h.startswith(_CHANNEL_HEADERS)}
            fields = {
                str(k): str(v)
                for k, v in msg.items()
                if k not in own and k not in ("Event", "UserEvent", "Timestamp", "Privilege") and isinstance(v, str)
            }
            return UserEvent(ts, _get(msg, "UserEvent"), _channel(msg), fields)
        case "OriginateResponse":
            return OriginateResponse(
                ts,
                _get(msg, "ActionID", default=""),
                _get(msg, "Response", default=""),
                _get(msg, "Channel", default=""),
                _get(msg, "Uniqueid", default=""),
                _int(msg, "Reason", default=0),
            )
    return None


def parse_transcript(text: str) -> Iterator[dict[str, Any]]:
    """A raw AMI byte stream (as recorded, CRLF or LF) -> messages; a repeated header becomes a list.

    The banner line ("Asterisk Call Manager/...") is skipped. Used by the tests on recorded
    transcripts and by the benchmark; the live client gets the same shape from panoramisk.
    """
    block: dict[str, Any] = {}
    for raw in text.replace("\r\n", "\n").split("\n"):
        line = raw.rstrip("\r")
        if not line:
            if block:
                yield block
                block = {}
            continue
        if line.startswith("Asterisk Call Manager/"):
            continue
        key, sep, value = line.partition(": ")
        if not sep:
            key, sep, value = line.partition(":")
            if not sep:
                continue
        if key in block:
            prev = block[key]
            block[key] = [*prev, value] if isinstance(prev, list) else [prev, value]
        else:
            block[key] = value
    if block:
        yield block
