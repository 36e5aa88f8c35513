"""``invoke``: run another flow as a sub-flow and come back to ``next`` when it returns."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ivr.flow.steps.base import EnterFlow, Outcome, ParseContext, Runtime, Step, step_kind


@step_kind
@dataclass(frozen=True)
class InvokeStep(Step):
    KIND = "invoke"
    flow: str = ""

    @classmethod
    def parse(cls, name: str, body: Any, next_: str | None, ctx: ParseContext) -> Step | None:
        flow = body if isinstance(body, str) else (body.get("flow") if isinstance(body, Mapping) else None)
        if not isinstance(flow, str) or not flow:
            ctx.problem("invoke needs the name of a flow: invoke: verify_identity", ctx.line)
            return None
        return cls(name, ctx.line, next_, flow)

    def flows_used(self) -> list[tuple[str, int]]:
        return [(self.flow, self.line)]

    def enter(self, rt: Runtime) -> Outcome:
        return EnterFlow(self.flow, None, returns=True, return_to=self.next)
