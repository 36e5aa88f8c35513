"""``return``: end an invoked sub-flow; the caller goes back to the invoking flow."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ivr.flow.steps.base import Outcome, ParseContext, Return, Runtime, Step, step_kind


@step_kind
@dataclass(frozen=True)
class ReturnStep(Step):
    KIND = "return"
    FLOWS_ON = False

    @classmethod
    def parse(cls, name: str, body: Any, next_: str | None, ctx: ParseContext) -> Step | None:
        return cls(name, ctx.line, None)

    def enter(self, rt: Runtime) -> Outcome:
        return Return()
