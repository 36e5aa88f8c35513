"""``branch``: the first case whose condition holds decides the next step (safe expressions, business hours)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ivr.flow.conditions import Condition, ConditionError, parse_condition
from ivr.flow.steps.base import Goto, Outcome, ParseContext, Runtime, Step, step_kind


@step_kind
@dataclass(frozen=True)
class BranchStep(Step):
    KIND = "branch"
    WAITS = False
    cases: tuple[tuple[Condition, str, int], ...] = ()
    otherwise: str | None = None

    @classmethod
    def parse(cls, name: str, body: Any, next_: str | None, ctx: ParseContext) -> Step | None:
        body = ctx.mapping(body, ctx.line, "branch", {"when", "else"})
        cases: list[tuple[Condition, str, int]] = []
        when = body.get("when")
        if not isinstance(when, list) or not when:
            ctx.problem("branch needs 'when': a list of {if: <condition>, next: <step>}", ctx.line)
            when = []
        for case in when:
            line = ctx.line_of(case, "if") if isinstance(case, Mapping) else ctx.line
            if not isinstance(case, Mapping) or set(case) != {"if", "next"}:
                ctx.problem("each case is {if: <condition>, next: <step>}", line)
                continue
            try:
                condition = parse_condition(case["if"], ctx.hours)
            except ConditionError as exc:
                ctx.problem(f"bad condition: {exc}", line)
                continue
            target = ctx.target(case["next"], ctx.line_of(case, "next"))
            if target:
                cases.append((condition, target, line))
        otherwise = ctx.target(body.get("else"), ctx.line_of(body, "else"), "else")
        if otherwise is None and next_ is None:
            ctx.problem("branch needs 'else' (or next) for when no case matches", ctx.line)
        return cls(name, ctx.line, next_, tuple(cases), otherwise or next_)

    def targets(self) -> list[tuple[str, int]]:
        out = [(t, line) for _, t, line in self.cases]
        if self.otherwise:
            out.append((self.otherwise, self.line))
        return out

    def enter(self, rt: Runtime) -> Outcome:
        scope = rt.scope()
        for condition, target, _ in self.cases:
            if condition.evaluate(scope):
                rt.record("branch_taken", condition=condition.source, next=target)
                return Goto(target)
        rt.record("branch_taken", condition="else", next=self.otherwise)
        return Goto(self.otherwise)
