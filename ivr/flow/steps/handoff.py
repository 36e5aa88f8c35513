"""``handoff``: continue the journey on another channel (a link by SMS to the web chat)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from ivr.flow.commands import Command, Handoff, HandoffResult, Hangup, Play, Prompt
from ivr.flow.steps.base import End, Goto, Outcome, ParseContext, Runtime, Step, Wait, step_kind


@step_kind
@dataclass(frozen=True)
class HandoffStep(Step):
    """Continue the journey on another channel, at ``resume`` (default ``next``), with nothing
    the customer entered asked again.

    ``channel: chat`` texts a one-time link to the web chat (the only channel so far).
    When the gateway accepted the message the customer hears ``say`` and this channel ends
    (journey ``handed_off``); when it could not be sent they hear ``failed`` and the flow goes on
    here, at ``on_failure`` (default: the flow's ``on_failure``, else ``resume``).
    """

    KIND = "handoff"
    channel: Literal["chat", "sms"] = "chat"
    resume: str = ""
    message: Prompt | None = None
    prompt: Prompt | None = None
    failed: Prompt | None = None
    on_failure: str | None = None

    _KEYS: ClassVar[set[str]] = {"channel", "resume", "message", "say", "failed", "on_failure"}
    DEFAULT_SAY: ClassVar[str] = "We have sent you a text message with a link to continue. Goodbye."
    DEFAULT_FAILED: ClassVar[str] = "Sorry, we cannot send you a text message right now."

    @classmethod
    def parse(cls, name: str, body: Any, next_: str | None, ctx: ParseContext) -> Step | None:
        body = ctx.mapping(body if body is not None else {}, ctx.line, "handoff", cls._KEYS)
        channel = body.get("channel", "chat")
        if channel != "chat":
            ctx.problem("handoff channel must be chat (a link by SMS to the web chat)", ctx.line_of(body, "channel"))
            channel = "chat"
        resume = ctx.target(body.get("resume"), ctx.line_of(body, "resume"), "resume") or next_
        if resume is None:
            ctx.problem("handoff needs the step to continue at: resume (or next)", ctx.line)
            return None

        def text(key: str, default: str | None) -> Prompt | None:
            if key in body:
                return ctx.prompt(body[key], ctx.line_of(body, key), key)
            return Prompt(default) if default else None

        return cls(
            name,
            ctx.line,
            next_,
            channel=channel,
            resume=resume,
            message=text("message", None),
            prompt=text("say", cls.DEFAULT_SAY),
            failed=text("failed", cls.DEFAULT_FAILED),
            on_failure=ctx.target(body.get("on_failure"), ctx.line_of(body, "on_failure"), "on_failure"),
        )

    def targets(self) -> list[tuple[str, int]]:
        out = [(self.resume, self.line)]
        if self.on_failure:
            out.append((self.on_failure, self.line))
        return out

    def prompts(self) -> list[Prompt]:
        return [p for p in (self.prompt, self.failed) if p]

    def hands_off_to(self) -> str | None:
        return self.channel

    def enter(self, rt: Runtime) -> Outcome:
        # "input": the step waits for what the channel answers to the hand-off (a HandoffResult)
        return Wait([Handoff(self.name, self.channel, self.resume, self.message)], "input")

    def on_handoff(self, rt: Runtime, result: HandoffResult) -> Outcome:
        if result.sent:
            rt.record("handed_off", to=self.channel, resume=self.resume, via=result.detail)
            rt.journey.step = self.resume  # where any channel picks the journey up
            commands: list[Command] = [Play(self.name, self.prompt)] if self.prompt else []
            commands.append(Hangup(self.name, "handoff"))
            return End(commands, "handed_off")
        rt.record("handoff_failed", to=self.channel, reason=result.detail)
        return Wait([Play(self.name, self.failed)] if self.failed else [], "continue")

    def on_continue(self, rt: Runtime) -> Outcome:
        return Goto(self.on_failure or rt.flow.on_failure or self.resume)
