"""``say``: words the caller hears, then on to ``next``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ivr.flow.commands import Play, Prompt
from ivr.flow.steps.base import Outcome, ParseContext, Runtime, Step, Wait, step_kind


@step_kind
@dataclass(frozen=True)
class SayStep(Step):
    KIND = "say"
    prompt: Prompt = Prompt("")

    @classmethod
    def parse(cls, name: str, body: Any, next_: str | None, ctx: ParseContext) -> Step | None:
        prompt = ctx.prompt(body, ctx.line, "text to say")
        return cls(name, ctx.line, next_, prompt) if prompt else None

    def prompts(self) -> list[Prompt]:
        return [self.prompt]

    def enter(self, rt: Runtime) -> Outcome:
        return Wait([Play(self.name, self.prompt)], "continue")
