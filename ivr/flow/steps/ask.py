"""``ask``: digits into a slot (an account number, a PIN), with a known value offered back (prefill)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, ClassVar

from ivr.flow.commands import OFFER_ACCEPT_KEY, Ask, Command, InputResult, Prompt
from ivr.flow.journey import REDACTED
from ivr.flow.profile import KnownSlot
from ivr.flow.steps.base import SLOT_NAME, Goto, Outcome, ParseContext, RetryingStep, Runtime, Step, Wait, step_kind


@step_kind
@dataclass(frozen=True)
class AskStep(RetryingStep):
    KIND = "ask"
    prompt: Prompt = Prompt("")
    slot: str = ""
    min_digits: int = 1
    max_digits: int = 20
    pattern: re.Pattern[str] | None = None
    prefill: bool = False
    reuse_for: float | None = None  # seconds a known value stays offerable; None: no limit
    prefill_prompt: Prompt | None = None
    secret: bool = False

    #: at most this many trailing digits of a known value are said back, and never more than half
    OFFER_DIGITS: ClassVar[int] = 4

    _KEYS: ClassVar[set[str]] = {
        "prompt",
        "slot",
        "digits",
        "min_digits",
        "max_digits",
        "pattern",
        "tries",
        "timeout",
        "invalid",
        "noinput",
        "on_failure",
        "prefill",
        "reuse_for",
        "prefill_prompt",
        "secret",
    }

    @classmethod
    def parse(cls, name: str, body: Any, next_: str | None, ctx: ParseContext) -> Step | None:
        body = ctx.mapping(body, ctx.line, "ask", cls._KEYS)
        prompt = ctx.prompt(body.get("prompt"), ctx.line_of(body, "prompt"))
        slot = body.get("slot")
        if not isinstance(slot, str) or not SLOT_NAME.match(slot):
            ctx.problem("ask needs a slot: a lower-case name like account_number", ctx.line_of(body, "slot"))
            slot = "slot"
        if "digits" in body:
            exact = ctx.integer(body["digits"], ctx.line_of(body, "digits"), "digits", 4, 1, 30)
            low, high = exact, exact
        else:
            low = ctx.integer(body.get("min_digits"), ctx.line_of(body, "min_digits"), "min_digits", 1, 1, 30)
            high = ctx.integer(body.get("max_digits"), ctx.line_of(body, "max_digits"), "max_digits", 20, 1, 30)
            if high < low:
                ctx.problem("max_digits is smaller than min_digits", ctx.line)
        pattern = None
        if "pattern" in body:
            try:
                pattern = re.compile(str(body["pattern"]))
            except re.error as exc:
                ctx.problem(f"bad pattern: {exc}", ctx.line_of(body, "pattern"))
        secret = ctx.boolean(body.get("secret"), ctx.line_of(body, "secret"), "secret")
        prefill = ctx.boolean(body.get("prefill"), ctx.line_of(body, "prefill"), "prefill")
        reuse_for = ctx.duration(body.get("reuse_for"), ctx.line_of(body, "reuse_for"), "reuse_for")
        prefill_prompt = (
            ctx.prompt(body["prefill_prompt"], ctx.line_of(body, "prefill_prompt"), "prefill_prompt")
            if "prefill_prompt" in body
            else None
        )
        if prefill and secret:
            ctx.problem("a secret slot is never reused: remove prefill or secret", ctx.line_of(body, "prefill"))
        if prefill and low < 2:
            ctx.problem(
                f"prefill needs at least 2 digits (a lone {OFFER_ACCEPT_KEY} accepts the offer): set min_digits",
                ctx.line_of(body, "prefill"),
            )
        if not prefill and ("reuse_for" in body or "prefill_prompt" in body):
            key = "reuse_for" if "reuse_for" in body else "prefill_prompt"
            ctx.problem(f"{key} only applies with prefill: true", ctx.line_of(body, key))
        if prompt is None:
            return None
        if prefill and prefill_prompt is None:
            prefill_prompt = Prompt(f"We have your {slot.replace('_', ' ')} ending in")
        return cls(
            name,
            ctx.line,
            next_,
            **cls.parse_retry(body, ctx),
            prompt=prompt,
            slot=slot,
            min_digits=low,
            max_digits=high,
            pattern=pattern,
            prefill=prefill,
            reuse_for=reuse_for,
            prefill_prompt=prefill_prompt,
            secret=secret,
        )

    def prompts(self) -> list[Prompt]:
        extra = [self.prefill_prompt] if self.prefill and self.prefill_prompt else []
        return [self.prompt, *super().prompts(), *extra]

    # ----------------------------------------------------------------------------------- prefill
    def known(self, rt: Runtime) -> KnownSlot | None:
        """The value this caller gave before that may be offered now, if any.

        Never for a secret slot, never older than ``reuse_for``, and only a value this step
        would accept if typed (a stored value from an older, looser flow is not offered).
        """
        if not self.prefill or self.secret or rt.profile is None or self.slot in rt.journey.secret_slots:
            return None
        known = rt.profile.slot(self.slot)
        if known is None or known.value == REDACTED or not self.valid(known.value):
            return None
        if self.reuse_for is not None and rt.now().timestamp() - known.at > self.reuse_for:
            return None
        return known

    def offer_digits(self, value: str) -> str:
        return value[-min(self.OFFER_DIGITS, len(value) // 2) :]

    def enter(self, rt: Runtime) -> Outcome:
        known = self.known(rt)
        if known is not None:
            rt.record(
                "prefill_offered", slot=self.slot, offer=self.offer_digits(known.value), source_channel=known.channel
            )
        return Wait([self.render(rt)], "input")

    def render(self, rt: Runtime) -> Command:
        known = self.known(rt)
        return Ask(
            self.name,
            self.prompt,
            self.slot,
            self.min_digits,
            self.max_digits,
            self.timeout,
            rt.journey.attempts + 1,
            offer=self.offer_digits(known.value) if known else None,
            offer_prompt=self.prefill_prompt if known else None,
        )

    def valid(self, value: str) -> bool:
        if not value.isdigit() or not self.min_digits <= len(value) <= self.max_digits:
            return False
        return self.pattern is None or self.pattern.fullmatch(value) is not None

    def on_input(self, rt: Runtime, result: InputResult) -> Outcome:
        value = result.utterance.strip()
        known = self.known(rt)
        if known is not None and result.status == "match" and value == OFFER_ACCEPT_KEY:
            rt.journey.slots[self.slot] = known.value
            rt.record(
                "slot_prefilled",
                slot=self.slot,
                mode=result.mode,
                source_channel=known.channel,
                age_s=round(max(0.0, rt.now().timestamp() - known.at)),
            )
            return Goto(self.next)
        if result.status != "match" or not self.valid(value):
            return self.retry(rt, result, "invalid_digits")
        rt.journey.slots[self.slot] = value
        if self.secret and self.slot not in rt.journey.secret_slots:
            rt.journey.secret_slots.append(self.slot)
        data: dict[str, Any] = {"slot": self.slot, "mode": result.mode, "length": len(value)}
        if known is not None:
            data["offer_declined"] = True
        rt.record("slot_filled", **data)
        return Goto(self.next)
