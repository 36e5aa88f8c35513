"""Which queue, skill and priority a contact goes to, from its journey. Pure; no I/O, no clock.

The inputs are plain facts (:class:`RoutingFacts`: what the flow's queue step asked for, the
recognised intent, the customer's tier and language, whether the line is open); the output is a
:class:`RouteDecision` with the reasons, which the screen pop shows the agent ("routed to billing:
intent billing (0.91); priority 5+3 for tier gold").

Rules, in order:

1. **Skill.** A queue step that names a skill, or a queue other than ``main``, keeps it (the flow
   author decided). A step without one (``queue: {name: main}``, the failure path) takes the skill of the recognised
   intent (``intent_skills``: billing/pay -> billing, outage -> outage, ...) when the recogniser was
   confident enough (``min_confidence``); otherwise the catch-all queue ``main``.
2. **Language.** A caller whose language is not the centre's default goes to ``<skill>-<lang>``
   when that queue exists (``queues``), else stays in the skill queue (the reason says so).
3. **Priority** (app_queue's QUEUE_PRIO: higher is answered first) = the step's priority + the
   tier's boost (``tier_boost``), capped at ``max_priority``. Callbacks get no boost: a callback
   never overtakes a caller who is still holding (see ``ivr.acd.callbacks``).
4. **Hours.** When the line is closed the decision says ``after_hours``: the queue step offers a
   callback scheduled for opening time instead of queueing. The queue step knows whether the line
   is open from the flow's calendar for that queue (:func:`ivr.flow.hours.calendar_for`).

The queues and the intent -> skill table are configuration (``routing.queues``,
``routing.intent_skills``): the composition root builds :class:`RoutingRules` from them and passes
them to every flow machine; :mod:`ivr.routing.queues_conf` checks them against Asterisk's queues.conf.

The widening rule (how the agent pool grows as a caller waits) lives in :mod:`ivr.routing.widening`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from ivr.config import RoutingSettings

DEFAULT_TIER_BOOST: Mapping[str, int] = {"gold": 2, "platinum": 4, "vip": 4}
CATCH_ALL = "main"


@dataclass(frozen=True)
class RoutingRules:
    """The centre's routing table. Defaults are those of the settings (``ivr config show``); the
    running service builds its rules from the resolved configuration (:meth:`from_settings`)."""

    intent_skills: Mapping[str, str] = field(default_factory=lambda: dict(RoutingSettings.intent_skills.default))
    tier_boost: Mapping[str, int] = field(default_factory=lambda: dict(DEFAULT_TIER_BOOST))
    queues: frozenset[str] = field(default_factory=lambda: frozenset(RoutingSettings.queues.default))
    default_language: str = "en"
    min_confidence: float = 0.5
    max_priority: int = 10

    @classmethod
    def from_settings(cls, settings: RoutingSettings) -> RoutingRules:
        return cls(intent_skills=dict(settings.intent_skills), queues=frozenset(settings.queues))


@dataclass(frozen=True)
class RoutingFacts:
    queue: str | None = None  # what the queue step named (None: nothing)
    skill: str | None = None  # the step's explicit skill
    priority: int = 0  # the step's priority
    intent: str | None = None
    confidence: float = 1.0
    tier: str | None = None
    language: str | None = None
    is_open: bool = True
    callback: bool = False


@dataclass(frozen=True)
class RouteDecision:
    queue: str
    skill: str
    priority: int
    reasons: tuple[str, ...]
    after_hours: bool = False

    def to_dict(self) -> dict[str, object]:
        return {
            "queue": self.queue,
            "skill": self.skill,
            "priority": self.priority,
            "reasons": list(self.reasons),
            "after_hours": self.after_hours,
        }


def route(facts: RoutingFacts, rules: RoutingRules = RoutingRules()) -> RouteDecision:
    reasons: list[str] = []
    if facts.skill:
        skill = facts.skill
        queue = facts.queue or facts.skill
        reasons.append(f"flow step asks for skill {skill}")
    elif facts.queue and facts.queue != CATCH_ALL:
        queue = skill = facts.queue
        reasons.append(f"flow step names queue {queue}")
    elif facts.intent and facts.intent in rules.intent_skills and facts.confidence >= rules.min_confidence:
        skill = rules.intent_skills[facts.intent]
        queue = skill if skill in rules.queues else (facts.queue or CATCH_ALL)
        reasons.append(f"intent {facts.intent} ({facts.confidence:.2f}) -> skill {skill}")
    else:
        queue = facts.queue or CATCH_ALL
        skill = queue
        if facts.intent and facts.confidence < rules.min_confidence:
            reasons.append(f"intent {facts.intent} too uncertain ({facts.confidence:.2f}) -> {queue}")
        else:
            reasons.append(f"no skill from the journey -> {queue}")

    language = (facts.language or rules.default_language).lower()
    if language != rules.default_language:
        localized = f"{queue}-{language}"
        if localized in rules.queues:
            queue = localized
            reasons.append(f"language {language} -> {localized}")
        else:
            reasons.append(f"language {language}: no {localized} queue, staying in {queue}")

    priority = facts.priority
    boost = 0 if facts.callback else rules.tier_boost.get((facts.tier or "").lower(), 0)
    if boost:
        reasons.append(f"priority {facts.priority}+{boost} for tier {facts.tier}")
    priority = max(0, min(rules.max_priority, priority + boost))
    if not facts.is_open:
        reasons.append("line closed: callback at opening time")
    return RouteDecision(queue, skill, priority, tuple(reasons), after_hours=not facts.is_open)
