"""``queue``: hand the caller to an ACD queue, with the skill, priority and journey variables
the routing rules pick from the journey."""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Any

from ivr.agi import variables as var
from ivr.flow.commands import Command, Play, Prompt, Queue
from ivr.flow.hours import calendar_for
from ivr.flow.steps.base import SLOT_NAME, End, Outcome, ParseContext, Runtime, Step, step_kind
from ivr.routing.rules import RoutingFacts, route


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

    @classmethod
    def parse(cls, name: str, body: Any, next_: str | None, ctx: ParseContext) -> Step | None:
        body = ctx.mapping(body, ctx.line, "queue", {"name", "skill", "priority", "timeout", "carry", "prompt"})
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
        )

    def prompts(self) -> list[Prompt]:
        return [self.prompt] if self.prompt else []

    def enter(self, rt: Runtime) -> Outcome:
        j = rt.journey
        # Queue, skill and priority from the journey (intent, tier, language), pure.
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
        skill = self.skill or (decision.skill if decision.queue != "main" else None)
        # Whether the line is open: the flow's calendar for the queue the call goes to (no
        # calendar: always open), so the decision and the agent's screen pop say after_hours.
        calendar = calendar_for(rt.flow.hours, decision.queue, skill)
        if calendar is not None and not calendar.is_open(rt.now()):
            decision = route(replace(facts, is_open=False), rt.routing)
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
        j.outcome = {
            "queue": decision.queue,
            "skill": skill,
            "priority": decision.priority,
            "routing": decision.to_dict(),
        }
        rt.record("queued", queue=decision.queue, skill=skill, priority=decision.priority)
        commands: list[Command] = [Play(self.name, self.prompt)] if self.prompt else []
        commands.append(Queue(self.name, decision.queue, skill, decision.priority, self.timeout, variables))
        return End(commands, "queued")
