"""What the engine knows about a caller before the first prompt: plain data, loaded in one query.

The store builds it (``ivr.store``), the machine reads it (menu ranking in ``personalize.py``,
prefill in ``ask`` steps). Channel-agnostic: an SMS or chat journey gets the same profile.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class OptionStat:
    """How often and how recently this customer chose one option of one menu, on any channel.

    ``score`` is an exponentially decayed count as of ``last_at`` (each choice adds 1; the total
    halves every ``half_life`` seconds); the ranking decays it to "now" before comparing.
    """

    flow: str
    step: str
    option: str
    count: int
    score: float
    last_at: float


@dataclass(frozen=True)
class KnownSlot:
    """A value the customer already gave (on any channel), reusable by ``prefill``."""

    name: str
    value: str
    channel: str
    at: float


@dataclass(frozen=True)
class PastContact:
    """One of the customer's latest journeys, as the journey stages read it (``ivr.flow.stages``).

    ``status`` is the journey's status when the profile was loaded (``abandoned``: the caller left
    in self-service at ``step``); ``intent`` what they asked for there, if a menu heard it.
    """

    journey_id: str
    flow: str
    channel: str
    status: str
    step: str | None
    intent: str | None
    started_at: float
    updated_at: float


@dataclass(frozen=True)
class OpenCallback:
    """The customer's open callback ticket (one at most): they keep their place in ``queue``."""

    ticket_id: str
    queue: str
    skill: str
    status: str
    ticket_at: float
    journey_id: str


@dataclass(frozen=True)
class OpenContinuation:
    """A link sent to the customer to go on with a journey on another channel, not used yet."""

    journey_id: str
    flow: str
    channel: str
    step: str
    created_at: float
    expires_at: float


@dataclass(frozen=True)
class CallerProfile:
    customer_id: str
    fields: dict[str, Any] = field(default_factory=dict)  # name, tier, language, crm_id, ...
    contacts: int = 0  # past journeys on any channel
    options: tuple[OptionStat, ...] = ()
    slots: tuple[KnownSlot, ...] = ()
    verified: bool = False  # identity verified (not just matched by caller id)
    #: the latest journeys, newest first (at most ``RECENT_CONTACTS`` of the store), for stages
    recent: tuple[PastContact, ...] = ()
    callback: OpenCallback | None = None
    continuation: OpenContinuation | None = None

    def option_stats(self, flow: str, step: str) -> list[OptionStat]:
        return [o for o in self.options if o.flow == flow and o.step == step]

    def slot(self, name: str) -> KnownSlot | None:
        found = [s for s in self.slots if s.name == name]
        return max(found, key=lambda s: s.at) if found else None
