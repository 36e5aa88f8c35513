"""Step kinds, registered by name: how each is read from a flow file and how it behaves.

Why each kind carries both its parser and its behaviour: adding a kind is one class here plus a
line in ``STEP_KINDS``; the loader, ``ivr check``, the prompt builder and the machine all learn it
from that class. Behaviour is pure: a step looks at the journey through ``Runtime`` and answers
with an ``Outcome``; the machine applies it. No step ever awaits.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar, Literal, Protocol

from ivr.flow.conditions import Condition, ConditionError, ConditionScope, parse_condition
from ivr.flow.model import (
    Ask,
    Choice,
    Command,
    Fallback,
    Flow,
    Hangup,
    InputResult,
    Journey,
    JourneyStatus,
    Menu,
    Play,
    Prompt,
    Queue,
)

SLOT_NAME = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
DTMF_KEYS = frozenset("0123456789*#")


# -------------------------------------------------------------------------------------- outcomes
@dataclass(frozen=True)
class Goto:
    """Enter ``target`` next; ``None`` means the end of this flow (return, or complete)."""

    target: str | None


@dataclass(frozen=True)
class Wait:
    commands: list[Command]
    expect: Literal["continue", "input"]


@dataclass(frozen=True)
class End:
    commands: list[Command]
    status: JourneyStatus


@dataclass(frozen=True)
class EnterFlow:
    flow: str
    step: str | None
    returns: bool
    return_to: str | None = None


@dataclass(frozen=True)
class Return:
    pass


Outcome = Goto | Wait | End | EnterFlow | Return


class Runtime(Protocol):
    """What a step may see and do while it runs (implemented by the machine)."""

    journey: Journey
    flow: Flow

    def now(self) -> datetime: ...
    def scope(self) -> ConditionScope: ...
    def record(self, kind: str, /, **data: Any) -> None: ...
    def text(self, key: str) -> Prompt: ...


# ------------------------------------------------------------------------------ parsing support
class ParseContext:
    """Collects problems for one step instead of stopping at the first, so ``ivr check`` lists all."""

    def __init__(self, step: str, line: int, report: Callable[[int, str, str], None], hours: frozenset[str]):
        self.step = step
        self.line = line
        self._report = report
        self.hours = hours

    def problem(self, message: str, line: int | None = None) -> None:
        self._report(line or self.line, self.step, message)

    def line_of(self, mapping: Any, key: str) -> int:
        lines = getattr(mapping, "key_lines", None)
        if lines and key in lines:
            return int(lines[key])
        return self.line

    def prompt(self, value: Any, line: int, what: str = "prompt") -> Prompt | None:
        if isinstance(value, str) and value.strip():
            return Prompt(" ".join(value.split()))
        if isinstance(value, Mapping) and isinstance(value.get("text"), str) and value["text"].strip():
            audio = value.get("audio")
            return Prompt(" ".join(value["text"].split()), str(audio) if audio else None)
        self.problem(f"missing {what}: give the words to say (text)", line)
        return None

    def target(self, value: Any, line: int, what: str = "next") -> str | None:
        if value is None:
            return None
        if isinstance(value, str) and value:
            return value
        self.problem(f"{what} must be a step name", line)
        return None

    def integer(self, value: Any, line: int, what: str, default: int, low: int, high: int) -> int:
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            self.problem(f"{what} must be a whole number from {low} to {high}", line)
            return default
        return value

    def number(self, value: Any, line: int, what: str, default: float, low: float, high: float) -> float:
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
            self.problem(f"{what} must be a number from {low} to {high}", line)
            return default
        return float(value)

    def mapping(self, value: Any, line: int, kind: str, allowed: set[str]) -> Mapping[str, Any]:
        if not isinstance(value, Mapping):
            self.problem(f"'{kind}' takes a mapping of settings", line)
            return {}
        for key in value:
            if key not in allowed:
                self.problem(
                    f"unknown key {key!r} in {kind} (allowed: {', '.join(sorted(allowed))})", self.line_of(value, key)
                )
        return value


# ------------------------------------------------------------------------------------ the kinds
@dataclass(frozen=True)
class Step:
    KIND: ClassVar[str] = ""
    #: does this kind continue to ``next`` (so a missing next means "end of flow")?
    FLOWS_ON: ClassVar[bool] = True

    name: str
    line: int
    next: str | None

    @classmethod
    def parse(cls, name: str, body: Any, next_: str | None, ctx: ParseContext) -> Step | None:
        raise NotImplementedError

    def targets(self) -> list[tuple[str, int]]:
        """Step names this step can go to (for dangling and unreachable checks)."""
        return [(self.next, self.line)] if self.next else []

    def flows_used(self) -> list[tuple[str, int]]:
        return []

    def prompts(self) -> list[Prompt]:
        return []

    def enter(self, rt: Runtime) -> Outcome:
        raise NotImplementedError

    def on_continue(self, rt: Runtime) -> Outcome:
        return Goto(self.next)

    def on_input(self, rt: Runtime, result: InputResult) -> Outcome:
        raise NotImplementedError(f"{self.KIND} step {self.name} takes no input")


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


@dataclass(frozen=True)
class _Retrying(Step):
    """Shared retry rules of menu and ask: tries, invalid and no-input prompts, on_failure."""

    tries: int = 3
    timeout: float = 5.0
    invalid: Prompt | None = None
    noinput: Prompt | None = None
    on_failure: str | None = None

    def targets(self) -> list[tuple[str, int]]:
        out = super().targets()
        if self.on_failure:
            out.append((self.on_failure, self.line))
        return out

    def prompts(self) -> list[Prompt]:
        return [p for p in (self.invalid, self.noinput) if p]

    def retry(self, rt: Runtime, result: InputResult, invalid_key: str) -> Outcome:
        rt.journey.attempts += 1
        rt.record("input_rejected", status=result.status, mode=result.mode, attempt=rt.journey.attempts)
        if rt.journey.attempts >= self.tries:
            rt.record("tries_exhausted", tries=self.tries)
            target = self.on_failure or rt.flow.on_failure
            if target:
                return Goto(target)
            return End([Play(self.name, rt.text("failure")), Fallback(self.name, "tries exhausted")], "queued")
        if result.status == "noinput":
            sorry = self.noinput or rt.text("noinput")
        else:
            sorry = self.invalid or rt.text(invalid_key)
        return Wait([Play(self.name, sorry), self.render(rt)], "input")

    def render(self, rt: Runtime) -> Command:
        raise NotImplementedError

    def enter(self, rt: Runtime) -> Outcome:
        return Wait([self.render(rt)], "input")

    @staticmethod
    def parse_retry(body: Mapping[str, Any], ctx: ParseContext) -> dict[str, Any]:
        out: dict[str, Any] = {
            "tries": ctx.integer(body.get("tries"), ctx.line_of(body, "tries"), "tries", 3, 1, 10),
            "timeout": ctx.number(body.get("timeout"), ctx.line_of(body, "timeout"), "timeout", 5.0, 0.5, 60),
            "on_failure": ctx.target(body.get("on_failure"), ctx.line_of(body, "on_failure"), "on_failure"),
        }
        for key in ("invalid", "noinput"):
            out[key] = ctx.prompt(body[key], ctx.line_of(body, key), key) if key in body else None
        return out


@dataclass(frozen=True)
class MenuOption:
    id: str
    key: str
    label: Prompt
    intents: tuple[str, ...]
    next: str | None
    pin: str | None
    line: int


@dataclass(frozen=True)
class MenuStep(_Retrying):
    KIND = "menu"
    prompt: Prompt = Prompt("")
    options: tuple[MenuOption, ...] = ()
    personalize: bool = False

    _KEYS: ClassVar[set[str]] = {
        "prompt",
        "options",
        "tries",
        "timeout",
        "invalid",
        "noinput",
        "on_failure",
        "personalize",
    }
    _OPTION_KEYS: ClassVar[set[str]] = {"dtmf", "say", "intents", "next", "pin"}

    @classmethod
    def parse(cls, name: str, body: Any, next_: str | None, ctx: ParseContext) -> Step | None:
        body = ctx.mapping(body, ctx.line, "menu", cls._KEYS)
        prompt = ctx.prompt(body.get("prompt"), ctx.line_of(body, "prompt"))
        raw_options = body.get("options")
        options: list[MenuOption] = []
        if not isinstance(raw_options, Mapping) or not raw_options:
            ctx.problem("a menu needs options: a mapping of option id to {dtmf, say, next}", ctx.line)
            raw_options = {}
        seen_keys: dict[str, str] = {}
        for option_id, spec in raw_options.items():
            line = ctx.line_of(raw_options, option_id)
            spec = ctx.mapping(spec, line, f"option {option_id}", cls._OPTION_KEYS)
            key = str(spec.get("dtmf", "")).strip()
            if key not in DTMF_KEYS:
                ctx.problem(f"option {option_id}: dtmf must be one key 0-9, * or #", line)
            elif key in seen_keys:
                ctx.problem(f"duplicate DTMF key {key!r}: options {seen_keys[key]} and {option_id}", line)
            else:
                seen_keys[key] = str(option_id)
            label = ctx.prompt(spec.get("say"), line, f"'say' for option {option_id}")
            intents = spec.get("intents", [])
            if not isinstance(intents, list) or not all(isinstance(i, str) for i in intents):
                ctx.problem(f"option {option_id}: intents must be a list of names", line)
                intents = []
            pin = spec.get("pin")
            if pin not in (None, "first", "last"):
                ctx.problem(f"option {option_id}: pin must be 'first' or 'last'", line)
                pin = None
            target = ctx.target(spec.get("next"), line, f"next of option {option_id}")
            if target is None:
                ctx.problem(f"option {option_id} has no next step", line)
            options.append(
                MenuOption(str(option_id), key, label or Prompt(str(option_id)), tuple(intents), target, pin, line)
            )
        if prompt is None:
            return None
        return cls(
            name,
            ctx.line,
            next_,
            **cls.parse_retry(body, ctx),
            prompt=prompt,
            options=tuple(options),
            personalize=bool(body.get("personalize", False)),
        )

    def targets(self) -> list[tuple[str, int]]:
        return super().targets() + [(o.next, o.line) for o in self.options if o.next]

    def prompts(self) -> list[Prompt]:
        return [self.prompt, *super().prompts(), *(o.label for o in self.options)]

    def render(self, rt: Runtime) -> Command:
        choices = tuple(Choice(o.key, o.id, o.label, o.intents) for o in self.options)
        return Menu(self.name, self.prompt, choices, self.timeout, rt.journey.attempts + 1)

    def match(self, result: InputResult) -> MenuOption | None:
        if result.status != "match":
            return None
        by_id = {o.id: o for o in self.options}
        if result.interpretation in by_id:
            return by_id[result.interpretation]
        if result.mode in ("dtmf", "text"):
            for option in self.options:
                if result.utterance.strip() == option.key:
                    return option
        if result.interpretation:
            for option in self.options:
                if result.interpretation in option.intents:
                    return option
        return None

    def on_input(self, rt: Runtime, result: InputResult) -> Outcome:
        option = self.match(result)
        if option is None:
            return self.retry(rt, result, "invalid")
        rt.record(
            "option_chosen",
            option=option.id,
            key=option.key,
            mode=result.mode,
            utterance=result.utterance,
            confidence=result.confidence,
        )
        if option.intents:
            rt.journey.intent = result.interpretation if result.interpretation in option.intents else option.intents[0]
        return Goto(option.next)


@dataclass(frozen=True)
class AskStep(_Retrying):
    KIND = "ask"
    prompt: Prompt = Prompt("")
    slot: str = ""
    min_digits: int = 1
    max_digits: int = 20
    pattern: re.Pattern[str] | None = None
    prefill: bool = False
    secret: bool = False

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
        if prompt is None:
            return None
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
            prefill=bool(body.get("prefill", False)),
            secret=bool(body.get("secret", False)),
        )

    def prompts(self) -> list[Prompt]:
        return [self.prompt, *super().prompts()]

    def render(self, rt: Runtime) -> Command:
        return Ask(
            self.name, self.prompt, self.slot, self.min_digits, self.max_digits, self.timeout, rt.journey.attempts + 1
        )

    def valid(self, value: str) -> bool:
        if not value.isdigit() or not self.min_digits <= len(value) <= self.max_digits:
            return False
        return self.pattern is None or self.pattern.fullmatch(value) is not None

    def on_input(self, rt: Runtime, result: InputResult) -> Outcome:
        value = result.utterance.strip()
        if result.status != "match" or not self.valid(value):
            return self.retry(rt, result, "invalid_digits")
        rt.journey.slots[self.slot] = value
        if self.secret and self.slot not in rt.journey.secret_slots:
            rt.journey.secret_slots.append(self.slot)
        rt.record("slot_filled", slot=self.slot, mode=result.mode, length=len(value))
        return Goto(self.next)


@dataclass(frozen=True)
class BranchStep(Step):
    KIND = "branch"
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
        variables = {
            "IVR_JOURNEY_ID": j.id,
            "IVR_FLOW": j.flow,
            "IVR_STEP": self.name,
            "IVR_PATH": ">".join(j.path),
            "IVR_INTENT": j.intent or "",
            "IVR_SKILL": self.skill or "",
        }
        for slot in self.carry:
            if slot in j.slots and slot not in j.secret_slots:
                variables[f"IVR_SLOT_{slot.upper()}"] = j.slots[slot]
        j.outcome = {"queue": self.queue, "skill": self.skill, "priority": self.priority}
        rt.record("queued", queue=self.queue, skill=self.skill, priority=self.priority)
        commands: list[Command] = [Play(self.name, self.prompt)] if self.prompt else []
        commands.append(Queue(self.name, self.queue, self.skill, self.priority, self.timeout, variables))
        return End(commands, "queued")


@dataclass(frozen=True)
class GotoStep(Step):
    KIND = "goto"
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


@dataclass(frozen=True)
class ReturnStep(Step):
    KIND = "return"
    FLOWS_ON = False

    @classmethod
    def parse(cls, name: str, body: Any, next_: str | None, ctx: ParseContext) -> Step | None:
        return cls(name, ctx.line, None)

    def enter(self, rt: Runtime) -> Outcome:
        return Return()


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


STEP_KINDS: dict[str, type[Step]] = {
    kind.KIND: kind
    for kind in (SayStep, MenuStep, AskStep, BranchStep, QueueStep, GotoStep, InvokeStep, ReturnStep, HangupStep)
}
#: Keys every step may carry besides its kind.
COMMON_KEYS = frozenset({"next", "description"})
