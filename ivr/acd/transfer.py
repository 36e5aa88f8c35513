"""Agent transfers, the pure part: what a target is, where a caller re-enters a queue, and the
context the receiving agent's card carries. Nothing here sends or awaits anything.

Why pure: every decision a transfer makes (is the target real, is the number dialable, at which
position does the caller re-enter a queue, what does the next agent read) is tested with literal
inputs; :mod:`ivr.acd.transfers` only turns these decisions into AMI actions and bus messages.

Kinds of target::

    agent   another logged-in agent, by user name (their phone rings, their desktop pops the card)
    queue   a skill queue of queues.conf (app_queue offers the caller to its agents)
    number  an external number, dialled through the trunk with the configured caller id

Modes: ``blind`` (the caller goes to the target at once, the agent is free) and ``consult``
(the agent talks to the target first while the caller hears music on hold, then completes or
cancels).

A caller transferred into a queue keeps their original wait: app_queue has no "entered at"
input, and raising ``QUEUE_PRIO`` would put them ahead of callers of their priority who waited
longer. So the priority is left as the IVR set it (the channel still carries ``QUEUE_PRIO``) and
Queue()'s ``position`` argument puts them behind exactly the callers of the target queue who first
joined a queue before they did (:func:`queue_position`); app_queue still orders by priority first.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, get_args

TargetKind = Literal["agent", "queue", "number"]
Mode = Literal["blind", "consult"]
KINDS: tuple[str, ...] = get_args(TargetKind)
MODES: tuple[str, ...] = get_args(Mode)
#: what the receiving agent reads from the transferring agent (the rest of a longer note is cut)
MAX_NOTE = 1000
#: E.164 with or without "+", or a national number: 3 to 15 digits, nothing else
_NUMBER = re.compile(r"^\+?[0-9]{3,15}$")
#: queue names as queues.conf spells them (and what the dialplan may safely receive)
_QUEUE = re.compile(r"^[A-Za-z0-9_-]{1,40}$")
_USERNAME = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")
_SEPARATORS = re.compile(r"[\s().-]")


class TransferRefused(ValueError):
    """The transfer cannot be made (unknown target, malformed number, not the agent's call, ...).
    The message is for the agent's screen; the caller stays connected where they were."""


@dataclass(frozen=True)
class Target:
    kind: TargetKind
    value: str

    @property
    def label(self) -> str:
        return {"agent": "agent", "queue": "queue", "number": "number"}[self.kind] + f" {self.value}"

    def to_dict(self) -> dict[str, str]:
        return {"kind": self.kind, "value": self.value}


def parse_target(kind: object, value: object) -> Target:
    """A target as the desktop sends it, checked for shape (whether it exists is the ACD's
    question). A number may be written with spaces, dots, dashes and brackets; they are dropped."""
    if kind not in KINDS:
        raise TransferRefused(f"transfer target must be one of {', '.join(KINDS)}")
    if not isinstance(value, str) or not value.strip():
        raise TransferRefused(f"name the {kind} to transfer to")
    text = value.strip()
    if kind == "number":
        digits = _SEPARATORS.sub("", text)
        if not _NUMBER.match(digits):
            raise TransferRefused(f"{text[:40]!r} is not a phone number (3 to 15 digits, an optional leading +)")
        return Target("number", digits)
    if kind == "queue":
        if not _QUEUE.match(text):
            raise TransferRefused(f"{text[:40]!r} is not a queue name")
        return Target("queue", text)
    if not _USERNAME.match(text):
        raise TransferRefused(f"{text[:40]!r} is not an agent's user name")
    return Target("agent", text)


def parse_mode(mode: object) -> Mode:
    if mode == "blind":
        return "blind"
    if mode == "consult":
        return "consult"
    raise TransferRefused(f"transfer mode must be one of {', '.join(MODES)}")


def dial_string(template: str, number: str) -> str:
    """``transfer.dial`` with the number in it; the number was checked by :func:`parse_target`."""
    if not _NUMBER.match(number):
        raise TransferRefused(f"{number!r} is not a phone number")
    return template.replace("{number}", number)


def queue_position(joined_at: float, waiting: Iterable[Mapping[str, Any]], queue: str) -> int:
    """Queue()'s ``position`` for a caller who first joined a queue at ``joined_at``: behind every
    caller waiting in ``queue`` who first joined earlier (or at the same instant), ahead of the
    rest. ``waiting``: {"queue", "joined_at", "first_joined_at"?} per waiting caller. 0 (app_queue's
    "at the end") when the original time is unknown."""
    if joined_at <= 0:
        return 0
    ahead = 0
    for call in waiting:
        if call.get("queue") != queue:
            continue
        theirs = float(call.get("first_joined_at") or call.get("joined_at") or 0.0)
        if theirs and theirs <= joined_at:
            ahead += 1
    return ahead + 1


@dataclass(frozen=True)
class TransferContext:
    """What travels with a transferred caller to the next agent's card and to the timeline."""

    transfer_id: str
    mode: Mode
    target: Target
    by_agent_id: str
    by_name: str
    note: str
    at: float
    #: the caller's first queue join (their original wait), 0 if unknown
    first_joined_at: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.transfer_id,
            "mode": self.mode,
            "target": self.target.to_dict(),
            "by": {"agent_id": self.by_agent_id, "name": self.by_name},
            "note": self.note,
            "at": self.at,
            "first_joined_at": self.first_joined_at or None,
        }


def clean_note(note: object) -> str:
    if note is None:
        return ""
    if not isinstance(note, str):
        raise TransferRefused("the note must be text")
    return note.strip()[:MAX_NOTE]


def carried_pop(pop: Mapping[str, Any], context: TransferContext | None) -> dict[str, Any]:
    """The card the receiving agent gets: the same card, plus who transferred it and their note.
    The original wait is counted from the caller's first queue join, not from the transfer."""
    out = dict(pop)
    if context is None:
        return out
    out["transfer"] = context.to_dict()
    called = float(out.get("called_at") or 0.0)
    if context.first_joined_at and called:
        out["waited_s"] = round(max(0.0, called - context.first_joined_at), 1)
    return out


def timeline_data(context: TransferContext, outcome: str, **extra: Any) -> dict[str, Any]:
    """The ``agent_transfer`` interaction's data: one entry per transfer, with its outcome
    (``transferred`` for a blind one handed over, ``completed`` / ``cancelled`` /
    ``caller_hung_up`` / ``target_failed`` for a consult)."""
    return {
        "transfer_id": context.transfer_id,
        "mode": context.mode,
        "target_kind": context.target.kind,
        "target": context.target.value,
        "agent_id": context.by_agent_id,
        "agent": context.by_name,
        "note": context.note,
        "outcome": outcome,
        **extra,
    }
