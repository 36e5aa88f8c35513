"""What every step kind shares: the outcomes a step answers with, the runtime it sees, parsing
helpers, the ``Step`` base class and the registry of kinds.

Why steps see the journey through ``Runtime`` and the flow through ``FlowView``: behaviour stays
pure (a step looks, records, and answers with an ``Outcome``; the machine applies it; no step ever
awaits) and this module imports neither the machine nor ``Flow``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar, Literal, Protocol, TypeVar

from ivr.errors import FlowError
from ivr.flow.commands import Command, Fallback, HandoffResult, InputResult, Play, Prompt, ServiceResult
from ivr.flow.conditions import ConditionScope
from ivr.flow.hours import BusinessHours
from ivr.flow.journey import Journey, JourneyStatus
from ivr.flow.profile import CallerProfile
from ivr.routing.rules import RoutingRules

SLOT_NAME = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
DTMF_KEYS = frozenset("0123456789*#")
DURATION = re.compile(r"(\d{1,6})\s*([smhdw])")
DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


# -------------------------------------------------------------------------------------- outcomes
@dataclass(frozen=True)
class Goto:
    """Enter ``target`` next; ``None`` means the end of this flow (return, or complete)."""

    target: str | None


@dataclass(frozen=True)
class Wait:
    commands: list[Command]
    expect: Literal["continue", "input", "result"]


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


class FlowView(Protocol):
    """What a step may read of the flow it runs in (``ivr.flow.model.Flow`` is one).

    A protocol, not ``Flow`` itself: ``Flow`` holds steps, so steps importing it would tie the
    two modules in a circle.
    """

    @property
    def name(self) -> str: ...

    @property
    def steps(self) -> Mapping[str, Step]: ...

    @property
    def on_failure(self) -> str | None: ...

    @property
    def hours(self) -> Mapping[str, BusinessHours]: ...

    @property
    def personalize(self) -> bool: ...


class Runtime(Protocol):
    """What a step may see and do while it runs (implemented by the machine)."""

    journey: Journey
    #: what the store knew about the caller at the start (None: unknown caller, or no store)
    profile: CallerProfile | None
    #: seconds after which a past menu choice weighs half as much (menu ranking)
    half_life: float
    #: share of known callers (by customer, per flow) whose menus keep the file's order
    holdout: float
    #: True only while a resumed journey re-enters the step it was saved at
    resuming: bool
    #: the centre's routing table (from the configuration), for queue steps
    routing: RoutingRules

    @property
    def flow(self) -> FlowView: ...

    def now(self) -> datetime: ...
    def scope(self) -> ConditionScope: ...
    def record(self, kind: str, /, **data: Any) -> None: ...
    def text(self, key: str) -> Prompt: ...


# ------------------------------------------------------------------------------ parsing support
#: YAML 1.1's other words for true and false.
YAML11_BOOLEANS = {"yes": True, "y": True, "on": True, "no": False, "n": False, "off": False}


class BareWord(str):
    """A plain (unquoted) ``yes``, ``no``, ``on``, ``off``, ``y`` or ``n`` in a flow file: text
    wherever a name or words are expected (a yes/no menu's option names), and the boolean the
    admin meant where a setting expects one. Quoted, ``"yes"`` is only text."""

    __slots__ = ()


def as_bool(value: Any) -> bool | None:
    """``true``/``false``, or an unquoted YAML 1.1 boolean word (``yes``, ``off``...); else None."""
    if isinstance(value, bool):
        return value
    if isinstance(value, BareWord):
        return YAML11_BOOLEANS.get(value.lower())
    return None


def quote_hint(value: Any) -> str:
    """The fix for a number or boolean where a name or text was expected: YAML read the word as
    a value, so the admin quotes it (``quote it: "true"``); empty for anything else."""
    if isinstance(value, bool):
        word = "true" if value else "false"
        return f' (YAML reads {word} as a boolean: quote it: "{word}")'
    if isinstance(value, int | float):
        return f' (YAML reads {value} as a number: quote it: "{value}")'
    return ""


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
        text = value.get("text") if isinstance(value, Mapping) else value
        self.problem(f"missing {what}: give the words to say (text){quote_hint(text)}", line)
        return None

    def target(self, value: Any, line: int, what: str = "next") -> str | None:
        if value is None:
            return None
        if isinstance(value, str) and value:
            return value
        self.problem(f"{what} must be a step name{quote_hint(value)}", line)
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

    def boolean(self, value: Any, line: int, what: str, default: bool = False) -> bool:
        if value is None:
            return default
        flag = as_bool(value)
        if flag is None:
            self.problem(f"{what} must be true or false", line)
            return default
        return flag

    def duration(self, value: Any, line: int, what: str) -> float | None:
        """'90d', '12h', '30m', '45s', '2w' -> seconds (None when absent or wrong)."""
        if value is None:
            return None
        match = DURATION.fullmatch(str(value).strip()) if isinstance(value, str) else None
        if match is None or int(match[1]) == 0:
            self.problem(f"{what} must be a duration like 90d, 12h, 30m or 2w", line)
            return None
        return int(match[1]) * DURATION_UNITS[match[2]]

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
    #: False for kinds that only decide and move on at once (branch, goto): a loop made of such
    #: steps alone never waits for the caller, and ``ivr check`` refuses it.
    WAITS: ClassVar[bool] = True

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
        raise FlowError(f"{self.KIND} step {self.name} takes no input, yet got {result!r}")

    def on_handoff(self, rt: Runtime, result: HandoffResult) -> Outcome:
        """What a hand-off's outcome means here; only a step that hands off expects one."""
        raise FlowError(f"{self.KIND} step {self.name} did not hand off, yet got {result!r}")

    def question(self, rt: Runtime) -> Command | None:
        """The question this step waits at, rendered again without entering it and recording
        nothing (a page reload, a reply that comes later); None for a step that asks nothing."""
        return None

    def on_result(self, rt: Runtime, result: ServiceResult) -> Outcome:
        """The answer to a service this step asked the channel for (``Wait(..., "result")``)."""
        raise NotImplementedError(f"{self.KIND} step {self.name} asked for no {type(result).__name__}")

    def hands_off_to(self) -> str | None:
        """The channel this step moves the journey to, if it is a hand-off (menus hide an option
        that would hand a customer off to the channel they are already on)."""
        return None


#: Every step kind by the name used in flow files; filled by ``@step_kind``.
STEP_KINDS: dict[str, type[Step]] = {}
#: Keys every step may carry besides its kind.
COMMON_KEYS = frozenset({"next", "description"})

S = TypeVar("S", bound=type[Step])


def step_kind(cls: S) -> S:
    """Register a step kind under its ``KIND``: the loader, ``ivr check``, the prompt builder and
    the machine learn a new kind from its class alone."""
    if not cls.KIND or cls.KIND in STEP_KINDS:
        raise ValueError(f"step kind {cls.KIND!r} of {cls.__name__} is empty or taken")
    STEP_KINDS[cls.KIND] = cls
    return cls


@dataclass(frozen=True)
class RetryingStep(Step):
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
            # the last input's status says why the caller was sent on (KPIs: queued after silence
            # or after input nothing matched)
            rt.record("tries_exhausted", tries=self.tries, status=result.status)
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

    def question(self, rt: Runtime) -> Command | None:
        return self.render(rt)

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
