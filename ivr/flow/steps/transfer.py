"""``transfer``: blind transfer of the call to an extension or a phone number, with a ring
timeout and a fallback step when nobody answers.

Why the destination is checked so strictly: it ends up inside a dialplan application's
arguments (``Dial(PJSIP/<extension>,<timeout>)`` or the trunk's dial string), where a comma,
a pipe, ``&``, a parenthesis or a newline would add arguments, channels or options. Only a phone
number (digits, an optional leading ``+``) or an extension name (a letter, then letters, digits,
``_`` or ``-``) passes the loader.

The channel answers with ``TransferEnded``: ``answer`` completes the journey (outcome
``transferred``); busy, no answer, congestion or an unreachable destination go to
``on_failure`` (else the flow's ``on_failure``, else the dialplan's safe path). Text channels
cannot transfer a call: they answer ``unsupported`` and the journey takes the same fallback.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, ClassVar

from ivr.errors import FlowError
from ivr.flow.commands import Command, Fallback, Hangup, Play, Prompt, ServiceResult, Transfer, TransferEnded
from ivr.flow.steps.base import End, Goto, Outcome, ParseContext, Runtime, Step, Wait, step_kind

#: A phone number: dialled through the trunk.
TRANSFER_NUMBER = re.compile(r"\+?[0-9]{2,20}")
#: An extension: dialled as its PJSIP endpoint (``agent1001``).
TRANSFER_EXTENSION = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,39}")


@step_kind
@dataclass(frozen=True)
class TransferStep(Step):
    KIND = "transfer"
    FLOWS_ON = False
    to: str = ""
    timeout: int = 30
    prompt: Prompt | None = None
    on_failure: str | None = None

    _KEYS: ClassVar[set[str]] = {"to", "timeout", "prompt", "on_failure"}

    @classmethod
    def parse(cls, name: str, body: Any, next_: str | None, ctx: ParseContext) -> Step | None:
        body = ctx.mapping(body, ctx.line, "transfer", cls._KEYS)
        raw = body.get("to")
        line = ctx.line_of(body, "to")
        to = str(raw) if isinstance(raw, str | int) and not isinstance(raw, bool) else ""
        if not (TRANSFER_NUMBER.fullmatch(to) or TRANSFER_EXTENSION.fullmatch(to)):
            ctx.problem(
                "transfer 'to' must be a phone number (digits, optional leading +) or an extension name "
                f"(a letter, then letters, digits, '_' or '-'), got {raw!r}",
                line,
            )
            return None
        prompt = ctx.prompt(body["prompt"], ctx.line_of(body, "prompt")) if "prompt" in body else None
        return cls(
            name,
            ctx.line,
            None,
            to=to,
            timeout=ctx.integer(body.get("timeout"), ctx.line_of(body, "timeout"), "timeout", 30, 5, 300),
            prompt=prompt,
            on_failure=ctx.target(body.get("on_failure"), ctx.line_of(body, "on_failure"), "on_failure"),
        )

    def targets(self) -> list[tuple[str, int]]:
        return [(self.on_failure, self.line)] if self.on_failure else []

    def prompts(self) -> list[Prompt]:
        return [self.prompt] if self.prompt else []

    def enter(self, rt: Runtime) -> Outcome:
        commands: list[Command] = [Play(self.name, self.prompt)] if self.prompt else []
        commands.append(Transfer(self.name, self.to, self.timeout))
        return Wait(commands, "result")

    def on_result(self, rt: Runtime, result: ServiceResult) -> Outcome:
        if not isinstance(result, TransferEnded):
            raise FlowError(f"transfer step {self.name} got {type(result).__name__}")
        if result.status == "answer":
            rt.record("transferred", to=self.to)
            rt.journey.outcome = {"transferred": self.to}
            return End([Hangup(self.name, "transferred")], "completed")
        rt.record("transfer_failed", to=self.to, status=result.status, detail=result.detail)
        target = self.on_failure or rt.flow.on_failure
        if target:
            return Goto(target)
        return End([Fallback(self.name, f"transfer {result.status}")], "queued")
