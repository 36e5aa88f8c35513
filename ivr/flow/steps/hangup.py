"""``hangup``: an optional goodbye, then the call (or conversation) ends: the journey is completed."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ivr.flow.commands import Command, Hangup, Play, Prompt
from ivr.flow.steps.base import End, Outcome, ParseContext, Runtime, Step, step_kind


@step_kind
@dataclass(frozen=True)
class HangupStep(Step):
    KIND = "hangup"
    FLOWS_ON = False
    prompt: Prompt | None = None

    @classmethod
    def parse(cls, name: str, body: Any, next_: str | None, ctx: ParseContext) -> Step | None:
        prompt = None
        if isinstance(body, str) or (isinstance(body, Mapping) and "text" in body):
            prompt = ctx.prompt(body, ctx.line, "goodbye text")
        elif isinstance(body, Mapping) and body:
            body = ctx.mapping(body, ctx.line, "hangup", {"prompt"})
            if "prompt" in body:
                prompt = ctx.prompt(body["prompt"], ctx.line_of(body, "prompt"))
        return cls(name, ctx.line, None, prompt)

    def prompts(self) -> list[Prompt]:
        return [self.prompt] if self.prompt else []

    def enter(self, rt: Runtime) -> Outcome:
        commands: list[Command] = [Play(self.name, self.prompt)] if self.prompt else []
        commands.append(Hangup(self.name, "flow"))
        return End(commands, "completed")
