"""``queue``: hand the caller to an ACD queue, with the skill, priority and journey variables
the routing rules pick from the journey; before that, tell them their place and wait, and past a
threshold offer a callback that keeps their place.

Why the announcement and the offer are part of the step and not of a channel: they are steps the
caller hears, so they are recorded with the machine's clock, appear in ``journey.path`` and run on
every channel that can render them. The live facts come in as events: the step asks for the
estimate (``EstimateWait`` -> ``QueueEstimate``) and for the booking (``BookCallback`` ->
``CallbackBooked``); the channel runs the queue desk and the engine never awaits it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Any, ClassVar

from ivr.agi import variables as var
from ivr.errors import FlowError
from ivr.flow.commands import (
    CALLBACK_BOOKED_PROMPT,
    CALLBACK_OFFER_PROMPT,
    AnnounceQueue,
    BookCallback,
    CallbackBooked,
    Choice,
    Command,
    EstimateWait,
    Hangup,
    InputResult,
    Menu,
    Play,
    Prompt,
    Queue,
    QueueEstimate,
    ServiceResult,
)
from ivr.flow.hours import calendar_for
from ivr.flow.steps.base import SLOT_NAME, End, Outcome, ParseContext, Runtime, Step, Wait, step_kind
from ivr.routing.rules import RouteDecision, RoutingFacts, route

#: The callback offer: its prompt says the keys; text channels show these labels beside them.
CALLBACK_OPTION = "callback"
HOLD_OPTION = "hold"
CALLBACK_CHOICES = (
    Choice("1", CALLBACK_OPTION, Prompt("call me back"), (CALLBACK_OPTION,)),
    Choice("2", HOLD_OPTION, Prompt("keep holding"), (HOLD_OPTION,)),
)
#: Seconds the caller has to answer the offer (no answer: they keep holding).
OFFER_TIMEOUT = 5.0
#: The sub-step the caller is in while the offer waits for an answer (in ``journey.path``).
OFFER_SUBSTEP = "callback_offer"


@step_kind
@dataclass(frozen=True)
class QueueStep(Step):
    KIND = "queue"
    FLOWS_ON = False
    queue: str = "main"
    skill: str | None = None
    priority: int = 0
    timeout: int = 600
    carry: tuple[str, ...] = ()
    prompt: Prompt | None = None
    #: say the caller's position and estimated wait when no agent is free
    announce: bool = True
    #: offer a callback from this estimated wait on (seconds); None: the desk's
    #: ``callbacks.offer_after``
    callback_after: float | None = None
    #: False: never offer a callback here (``callback_after: false``)
    callbacks: bool = True

    _KEYS: ClassVar[set[str]] = {
        "name",
        "skill",
        "priority",
        "timeout",
        "carry",
        "prompt",
        "announce",
        "callback_after",
    }

    @classmethod
    def parse(cls, name: str, body: Any, next_: str | None, ctx: ParseContext) -> Step | None:
        body = ctx.mapping(body, ctx.line, "queue", cls._KEYS)
        skill = body.get("skill")
        queue = body.get("name") or skill or "main"
        if not isinstance(queue, str) or not re.fullmatch(r"[A-Za-z0-9_-]+", queue):
            ctx.problem("queue name must be letters, digits, '-' or '_'", ctx.line_of(body, "name"))
            queue = "main"
        elif queue == "general":  # queues.conf's [general] holds global settings, not a queue
            ctx.problem("'general' cannot be a queue name in Asterisk (use e.g. 'main')", ctx.line_of(body, "name"))
        carry = body.get("carry", [])
        if not isinstance(carry, list) or not all(isinstance(c, str) and SLOT_NAME.match(c) for c in carry):
            ctx.problem("carry is a list of slot names", ctx.line_of(body, "carry"))
            carry = []
        prompt = ctx.prompt(body["prompt"], ctx.line_of(body, "prompt")) if "prompt" in body else None
        raw_after = body.get("callback_after")
        callbacks, callback_after = True, None
        if raw_after is False:
            callbacks = False
        elif raw_after is not None:
            line = ctx.line_of(body, "callback_after")
            if raw_after is True:
                ctx.problem("callback_after must be a number of seconds from 0 to 86400, or false", line)
            else:
                callback_after = ctx.number(raw_after, line, "callback_after", 0.0, 0.0, 86400.0)
        return cls(
            name,
            ctx.line,
            None,
            queue=queue,
            skill=str(skill) if skill else None,
            priority=ctx.integer(body.get("priority"), ctx.line_of(body, "priority"), "priority", 0, 0, 100),
            timeout=ctx.integer(body.get("timeout"), ctx.line_of(body, "timeout"), "timeout", 600, 5, 86400),
            carry=tuple(carry),
            prompt=prompt,
            announce=ctx.boolean(body.get("announce"), ctx.line_of(body, "announce"), "announce", True),
            callback_after=callback_after,
            callbacks=callbacks,
        )

    def prompts(self) -> list[Prompt]:
        return [self.prompt] if self.prompt else []

    # ------------------------------------------------------------------------------ behaviour
    def enter(self, rt: Runtime) -> Outcome:
        rt.journey.queue_wait = None  # an offer left pending by an earlier visit is stale
        commands: list[Command] = [Play(self.name, self.prompt)] if self.prompt else []
        if not self.announce and not self.callbacks:
            return self._join(rt, commands)
        decision = self._decide(rt)
        commands.append(EstimateWait(self.name, decision.queue, self._skill(decision)))
        return Wait(commands, "result")

    def on_result(self, rt: Runtime, result: ServiceResult) -> Outcome:
        if isinstance(result, QueueEstimate):
            return self._estimated(rt, result)
        if isinstance(result, CallbackBooked):
            return self._booked(rt, result)
        raise FlowError(f"queue step {self.name} got {type(result).__name__}")

    def _estimated(self, rt: Runtime, estimate: QueueEstimate) -> Outcome:
        if estimate.wait_s <= 0:
            return self._join(rt, [])  # an agent is free (or nothing is known): straight through
        threshold = self.callback_after if self.callback_after is not None else estimate.callback_after
        offered = (
            self.callbacks
            and estimate.can_book
            and threshold is not None
            and threshold >= 0
            and estimate.wait_s >= threshold
            and rt.journey.caller is not None
        )
        facts = {"position": estimate.position, "eta_s": estimate.wait_s, "callback_offered": offered}
        commands: list[Command] = []
        if self.announce:
            minutes = max(1, round(estimate.wait_s / 60))
            commands.append(AnnounceQueue(self.name, estimate.position, minutes))
            rt.record("queue_announced", **facts)
        else:
            rt.record("queue_estimated", **facts)
        if not offered:
            return self._join(rt, commands)
        j = rt.journey
        j.queue_wait = {"step": self.name, "position": estimate.position, "eta_s": estimate.wait_s}
        j.path.append(f"{self.name}/{OFFER_SUBSTEP}")
        return Wait([*commands, self.offer()], "input")

    def offer(self) -> Menu:
        """The callback offer as a yes/no menu: its prompt says the keys."""
        return Menu(
            self.name, CALLBACK_OFFER_PROMPT, CALLBACK_CHOICES, OFFER_TIMEOUT, 1, speech=False, speak_choices=False
        )

    def question(self, rt: Runtime) -> Command | None:
        """The question this step is waiting at, if any (the callback offer)."""
        pending = rt.journey.queue_wait
        return self.offer() if pending is not None and pending.get("step") == self.name else None

    def on_input(self, rt: Runtime, result: InputResult) -> Outcome:
        said = result.utterance.strip()
        yes = result.status == "match" and (
            CALLBACK_OPTION in (result.interpretation, result.intent) or (result.mode != "speech" and said == "1")
        )
        if not yes:  # "2", another key, silence: they keep holding
            rt.journey.queue_wait = None
            rt.record("callback_declined", status=result.status, mode=result.mode)
            return self._join(rt, [])
        return Wait([BookCallback(self.name, self._queue_command(rt, self._decide(rt)))], "result")

    def _booked(self, rt: Runtime, booked: CallbackBooked) -> Outcome:
        pending, rt.journey.queue_wait = rt.journey.queue_wait or {}, None
        if booked.ticket is None:  # one open callback per customer: they keep holding instead
            rt.record("callback_refused", why=booked.why or "refused")
            return self._join(rt, [])
        decision = self._decide(rt)
        rt.record(
            "callback_requested",
            ticket=booked.ticket,
            queue=decision.queue,
            position=pending.get("position"),
            eta_s=pending.get("eta_s"),
        )
        rt.journey.outcome = {**self._outcome(rt, decision), "callback": booked.ticket}
        return End([Play(self.name, CALLBACK_BOOKED_PROMPT), Hangup(self.name, "callback booked")], "queued")

    # ------------------------------------------------------------------------------ joining
    def _decide(self, rt: Runtime) -> RouteDecision:
        """Queue, skill and priority from the journey (intent, tier, language), pure.

        Whether the line is open comes from the flow's calendar for the queue the call goes to (no
        calendar: always open), so the decision and the agent's screen pop say after_hours.
        """
        j = rt.journey
        facts = RoutingFacts(
            queue=self.queue,
            skill=self.skill,
            priority=self.priority,
            intent=j.intent,
            confidence=float((j.recognition or {}).get("confidence") or 1.0),
            tier=(j.customer or {}).get("tier"),
            language=(j.customer or {}).get("language"),
        )
        decision = route(facts, rt.routing)
        calendar = calendar_for(rt.flow.hours, decision.queue, self._skill(decision))
        if calendar is not None and not calendar.is_open(rt.now()):
            decision = route(replace(facts, is_open=False), rt.routing)
        return decision

    def _skill(self, decision: RouteDecision) -> str | None:
        return self.skill or (decision.skill if decision.queue != "main" else None)

    def _outcome(self, rt: Runtime, decision: RouteDecision) -> dict[str, Any]:
        return {
            "queue": decision.queue,
            "skill": self._skill(decision),
            "priority": decision.priority,
            "routing": decision.to_dict(),
        }

    def _queue_command(self, rt: Runtime, decision: RouteDecision) -> Queue:
        j = rt.journey
        skill = self._skill(decision)
        variables = {
            var.JOURNEY_ID: j.id,
            var.FLOW: j.flow,
            var.STEP: self.name,
            var.PATH: ">".join(j.path),
            var.INTENT: j.intent or "",
            var.SKILL: skill or "",
        }
        for slot in self.carry:
            if slot in j.slots and slot not in j.secret_slots:
                variables[var.slot(slot)] = j.slots[slot]
        return Queue(self.name, decision.queue, skill, decision.priority, self.timeout, variables)

    def _join(self, rt: Runtime, commands: list[Command]) -> Outcome:
        decision = self._decide(rt)
        rt.journey.outcome = self._outcome(rt, decision)
        rt.record(
            "queued",
            queue=decision.queue,
            skill=self._skill(decision),
            priority=decision.priority,
            intent=rt.journey.intent,  # KPIs: "agent" means the caller asked for one
        )
        return End([*commands, self._queue_command(rt, decision)], "queued")
