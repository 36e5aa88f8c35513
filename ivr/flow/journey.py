"""A journey: one customer's progress through a flow, on any channel, as plain data.

Why plain data: it is saved after every step and may be resumed hours later on another channel
(SMS, chat) or another node. ``to_dict``/``from_dict`` are the only way it crosses a process.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, Protocol


class FlowRef(Protocol):
    """What a new journey needs of its flow (``ivr.flow.model.Flow`` is one)."""

    @property
    def name(self) -> str: ...

    @property
    def version(self) -> str: ...


REDACTED = "[redacted]"
JourneyStatus = Literal["active", "queued", "completed", "abandoned", "failed", "handed_off"]


def new_journey_id(now: float | None = None) -> str:
    """32 hex digits, as a UUID's: the milliseconds since 1970 (12 digits), then 80 random bits.

    Why time first: every index keyed by a journey's id (the journeys, their contact rows, their
    interactions) takes the new ids of a batch next to each other, on the last pages of its
    B-tree, where a random id (uuid4) wrote one page per row anywhere in a table that no cache
    holds once it is large: the journey writer's CPU grew with the database (bench/README.md).
    The 80 random bits keep ids unguessable and unique (nothing grants access by an id anyway:
    links carry their own signed tokens)."""
    millis = int((time.time() if now is None else now) * 1000)
    return f"{millis:012x}{secrets.token_hex(10)}"


def _plain(value: Any) -> Any:
    """Deep copy of JSON-shaped data (dicts, lists, tuples as lists, scalars); a dataclass as a dict."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "__dataclass_fields__"):
        return asdict(value)
    return value


@dataclass
class Frame:
    """Where to come back to when an invoked sub-flow returns."""

    flow: str
    version: str
    return_to: str | None


@dataclass
class Waiting:
    """What a journey waits for, and at which step: ``input`` (an answer to the step's question),
    ``continue`` (the channel to finish saying what the step said) or ``result`` (the channel's
    answer from a service it ran for the step: a queue estimate, a booked callback, a transfer).

    Why it is saved with the journey: the machine that receives the answer may not be the one
    that asked (a chat reply, a page reload, another node), and it must know without a channel
    telling it what the journey is waiting for.
    """

    step: str
    expect: Literal["input", "continue", "result"]


@dataclass
class Journey:
    """Everything known about one customer's progress through a flow, on any channel."""

    id: str
    flow: str
    version: str
    channel: str
    step: str | None = None
    status: JourneyStatus = "active"
    caller: str | None = None
    customer_id: str | None = None
    customer: dict[str, Any] = field(default_factory=dict)
    slots: dict[str, str] = field(default_factory=dict)
    secret_slots: list[str] = field(default_factory=list)  # never persisted in clear, never carried
    path: list[str] = field(default_factory=list)
    stack: list[Frame] = field(default_factory=list)
    attempts: int = 0
    intent: str | None = None
    outcome: dict[str, Any] = field(default_factory=dict)
    refs: dict[str, str] = field(default_factory=dict)  # channel references: call uniqueid, DNIS, ...
    # Personalized menus, by step name. ``menu_keys``: key -> option id as last spoken, the mapping
    # input is matched against (also after a resume on another channel). ``personalization``: why
    # the menu came out in that order ({order, keys, reason, reordered, scores, flow}), for audit.
    menu_keys: dict[str, dict[str, str]] = field(default_factory=dict)
    personalization: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Speech. ``recognition``: the last thing the caller said and what it was taken to mean
    # ({step, utterance, intent, option, confidence, status}), for the agent. ``confirming``: a
    # low-confidence answer waiting for the caller's yes/no ({step, option, utterance, intent,
    # confidence}); any channel can render and answer the confirmation.
    recognition: dict[str, Any] = field(default_factory=dict)
    # The last menu option taken, by key, voice or text ({step, option, label, mode}): why the
    # caller is here, in the flow's own words, for the agent's card and the wallboard. (Kept apart
    # from ``recognition``, which only speech sets: a keyed choice never touched it.)
    chosen: dict[str, Any] = field(default_factory=dict)
    confirming: dict[str, Any] | None = None
    # A queue step waiting for the caller's answer to a callback offer, or for the booking:
    # {step, queue, position, eta_s}; any channel can render and answer the offer.
    queue_wait: dict[str, Any] | None = None
    #: None: the journey waits for nothing (new, ended, left by the caller, or handed off)
    waiting: Waiting | None = None
    started_at: float = field(default_factory=time.time)
    updated_at: float = field(default_factory=time.time)

    @classmethod
    def new(cls, flow: FlowRef, channel: str, caller: str | None = None) -> Journey:
        return cls(id=new_journey_id(), flow=flow.name, version=flow.version, channel=channel, caller=caller)

    def to_dict(self) -> dict[str, Any]:
        """A deep, independent copy as plain data (JSON types only), field for field.

        Why not ``dataclasses.asdict``: the journey writer snapshots every journey saved since
        its last commit, several times a call; ``asdict`` inspects every nested value for
        dataclasses and was the largest cost in the controller's profile (12% of its CPU on
        menu calls). Only ``stack`` holds dataclasses; everything else is JSON-shaped already.
        ``test_to_dict_equals_asdict`` keeps the two equal, so a new field cannot be forgotten.
        """
        return {
            "id": self.id,
            "flow": self.flow,
            "version": self.version,
            "channel": self.channel,
            "step": self.step,
            "status": self.status,
            "caller": self.caller,
            "customer_id": self.customer_id,
            "customer": _plain(self.customer),
            "slots": dict(self.slots),
            "secret_slots": list(self.secret_slots),
            "path": list(self.path),
            "stack": [{"flow": f.flow, "version": f.version, "return_to": f.return_to} for f in self.stack],
            "attempts": self.attempts,
            "intent": self.intent,
            "outcome": _plain(self.outcome),
            "refs": dict(self.refs),
            "menu_keys": {step: dict(keys) for step, keys in self.menu_keys.items()},
            "personalization": _plain(self.personalization),
            "recognition": _plain(self.recognition),
            "chosen": _plain(self.chosen),
            "confirming": _plain(self.confirming),
            "queue_wait": _plain(self.queue_wait),
            "waiting": {"step": self.waiting.step, "expect": self.waiting.expect} if self.waiting else None,
            "started_at": self.started_at,
            "updated_at": self.updated_at,
        }

    def persisted(self) -> dict[str, Any]:
        """What may be written down: secret slots (a PIN) are redacted, so they live only in memory."""
        data = self.to_dict()
        for name in self.secret_slots:
            if name in data["slots"]:
                data["slots"][name] = REDACTED
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Journey:
        """The journey as ``to_dict`` wrote it, also from before the waiting state was saved.

        A journey saved without ``waiting`` that is active at a step was waiting there for an
        answer: it rests at a step only at a question (chat, SMS) or when the caller left (then
        it is no longer active).
        """
        data = dict(data)
        data["stack"] = [Frame(**f) for f in data.get("stack", [])]
        if "waiting" not in data:
            active_at = data.get("step") if data.get("status", "active") == "active" else None
            data["waiting"] = Waiting(active_at, "input") if active_at else None
        elif data["waiting"] is not None:
            data["waiting"] = Waiting(**data["waiting"])
        return cls(**data)


@dataclass(frozen=True)
class Interaction:
    """One entry for the append-only interaction log (step entered, option chosen, ...)."""

    kind: str
    step: str | None
    data: dict[str, Any]
    at: float
