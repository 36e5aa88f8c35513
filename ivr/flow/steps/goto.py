"""``goto``: jump to a step of this flow, or into another flow for good."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ivr.flow.steps.base import EnterFlow, Goto, Outcome, ParseContext, Runtime, Step, step_kind


@step_kind
@dataclass(frozen=True)
class GotoStep(Step):
    KIND = "goto"
    WAITS = False
    FLOWS_ON = False
    flow: str | None = None
    target: str | None = None

    @classmethod
    def parse(cls, name: str, body: Any, next_: str | None, ctx: ParseContext) -> Step | None:
        if isinstance(body, str) and body:
            return cls(name, ctx.line, None, None, body)
        body = ctx.mapping(body, ctx.line, "goto", {"flow", "step"})
        flow, step = body.get("flow"), body.get("step")
        if not flow and not step:
            ctx.problem("goto needs a step name, or {flow: <name>, step: <optional step>}", ctx.line)
            return None
        return cls(name, ctx.line, None, str(flow) if flow else None, str(step) if step else None)

    def targets(self) -> list[tuple[str, int]]:
        return [(self.target, self.line)] if self.target and not self.flow else []

    def flows_used(self) -> list[tuple[str, int]]:
        return [(self.flow, self.line)] if self.flow else []

    def enter(self, rt: Runtime) -> Outcome:
        if self.flow:
            return EnterFlow(self.flow, self.target, returns=False)
        return Goto(self.target)
