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
    OFFER_ACCEPT_KEY,
    REDACTED,
    Ask,
    Choice,
    Command,
    Fallback,
    Flow,
    Handoff,
    Hangup,
    InputResult,
    Journey,
    JourneyStatus,
    Menu,
    Play,
    Prompt,
    Queue,
)
from ivr.flow.personalize import (
    DEFAULT_MIN_CONTACTS,
    Ranking,
    file_ranking,
    order_from_keys,
    rank_menu,
)
from ivr.flow.profile import CallerProfile, KnownSlot
from ivr.routing.rules import RoutingFacts, route

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
    #: what the store knew about the caller at the start (None: unknown caller, or no store)
    profile: CallerProfile | None
    #: seconds after which a past menu choice weighs half as much (menu ranking)
    half_life: float
    #: True only while a resumed journey re-enters the step it was saved at
    resuming: bool

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

    def boolean(self, value: Any, line: int, what: str, default: bool = False) -> bool:
        if value is None:
            return default
        if not isinstance(value, bool):
            self.problem(f"{what} must be true or false", line)
            return default
        return value

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
    min_contacts: int = DEFAULT_MIN_CONTACTS
    speech: bool = True  # callers may answer by voice where the channel has a recognizer
    confirm_below: float = 0.0  # a spoken answer with a lower confidence is read back for a yes/no

    _KEYS: ClassVar[set[str]] = {
        "prompt",
        "options",
        "tries",
        "timeout",
        "invalid",
        "noinput",
        "on_failure",
        "personalize",
        "speech",
        "confirm_below",
    }
    _OPTION_KEYS: ClassVar[set[str]] = {"dtmf", "say", "intents", "next", "pin"}
    _PERSONALIZE_KEYS: ClassVar[set[str]] = {"min_contacts"}

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
        cls._check_pins(options, ctx)
        personalize, min_contacts = cls._parse_personalize(body, ctx)
        if prompt is None:
            return None
        return cls(
            name,
            ctx.line,
            next_,
            **cls.parse_retry(body, ctx),
            prompt=prompt,
            options=tuple(options),
            personalize=personalize,
            min_contacts=min_contacts,
            speech=ctx.boolean(body.get("speech"), ctx.line_of(body, "speech"), "speech", True),
            confirm_below=ctx.number(
                body.get("confirm_below"), ctx.line_of(body, "confirm_below"), "confirm_below", 0.0, 0.0, 1.0
            ),
        )

    @staticmethod
    def _check_pins(options: list[MenuOption], ctx: ParseContext) -> None:
        """Pinned options must already sit where they are pinned: the file's order is the default."""
        pins = [o.pin or "" for o in options]
        for i, option in enumerate(options):
            if option.pin == "first" and any(p != "first" for p in pins[:i]):
                ctx.problem(f"option {option.id} is pinned first: list it before the unpinned options", option.line)
            if option.pin == "last" and any(p != "last" for p in pins[i + 1 :]):
                ctx.problem(f"option {option.id} is pinned last: list it after the unpinned options", option.line)

    @classmethod
    def _parse_personalize(cls, body: Mapping[str, Any], ctx: ParseContext) -> tuple[bool, int]:
        """``personalize: true | false | {min_contacts: N}``."""
        raw = body.get("personalize")
        line = ctx.line_of(body, "personalize")
        if raw is None or isinstance(raw, bool):
            return bool(raw), DEFAULT_MIN_CONTACTS
        if not isinstance(raw, Mapping):
            ctx.problem("personalize must be true, false or {min_contacts: N}", line)
            return False, DEFAULT_MIN_CONTACTS
        raw = ctx.mapping(raw, line, "personalize", cls._PERSONALIZE_KEYS)
        min_contacts = ctx.integer(
            raw.get("min_contacts"), ctx.line_of(raw, "min_contacts"), "min_contacts", DEFAULT_MIN_CONTACTS, 0, 10000
        )
        return True, min_contacts

    def targets(self) -> list[tuple[str, int]]:
        return super().targets() + [(o.next, o.line) for o in self.options if o.next]

    def prompts(self) -> list[Prompt]:
        return [self.prompt, *super().prompts(), *(o.label for o in self.options)]

    # ------------------------------------------------------------------------- personalization
    def rank(self, rt: Runtime) -> Ranking:
        """This caller's order and keys for this menu, or the file's with the reason why not."""
        if not rt.flow.personalize:
            return file_ranking(self.options, f"personalization is off for flow {rt.flow.name}")
        if rt.profile is None:
            return file_ranking(self.options, "unknown caller: no history")
        return rank_menu(
            self.options,
            rt.profile.option_stats(rt.flow.name, self.name),
            now=rt.now().timestamp(),
            half_life=rt.half_life,
            contacts=rt.profile.contacts,
            min_contacts=self.min_contacts,
        )

    def enter(self, rt: Runtime) -> Outcome:
        rt.journey.confirming = None  # a read-back left pending by an earlier visit is stale
        keys = rt.journey.menu_keys
        if self.personalize and not (rt.resuming and self.name in keys):
            ranking = self.rank(rt)
            keys[self.name] = ranking.key_map()
            record = {**ranking.record(), "flow": rt.flow.name}
            rt.journey.personalization[self.name] = record
            rt.record("menu_personalized", **record)
        elif not self.personalize:
            keys.pop(self.name, None)  # a same-named menu of another flow left its keys here
        return Wait([self.render(rt)], "input")

    def spoken(self, rt: Runtime) -> list[tuple[str, MenuOption]]:
        """(key, option) in the order the caller hears them: the journey's saved keys, else the file's."""
        key_map = rt.journey.menu_keys.get(self.name) if self.personalize else None
        if not key_map:
            return [(o.key, o) for o in self.options if self._offered(rt, o)]
        key_of = {option: key for key, option in key_map.items()}
        return [(key_of[o.id], o) for o in order_from_keys(self.options, key_map) if self._offered(rt, o)]

    @staticmethod
    def _offered(rt: Runtime, option: MenuOption) -> bool:
        """ "Continue by text message" is not offered to a customer already chatting."""
        target = rt.flow.steps.get(option.next) if option.next else None
        return not (isinstance(target, HandoffStep) and target.channel == rt.journey.channel)

    def render(self, rt: Runtime) -> Command:
        choices = tuple(Choice(key, o.id, o.label, o.intents) for key, o in self.spoken(rt))
        return Menu(self.name, self.prompt, choices, self.timeout, rt.journey.attempts + 1, speech=self.speech)

    def match(self, result: InputResult, spoken: list[tuple[str, MenuOption]] | None = None) -> MenuOption | None:
        """The option this input means; keys are matched against what was spoken (``spoken``)."""
        if result.status != "match":
            return None
        by_id = {o.id: o for o in self.options}
        if result.interpretation in by_id:
            return by_id[result.interpretation]
        if result.mode in ("dtmf", "text"):
            for key, option in spoken if spoken is not None else [(o.key, o) for o in self.options]:
                if result.utterance.strip() == key:
                    return option
        if result.interpretation:
            for option in self.options:
                if result.interpretation in option.intents:
                    return option
        return None

    def on_input(self, rt: Runtime, result: InputResult) -> Outcome:
        confirmed = False
        pending, rt.journey.confirming = rt.journey.confirming, None
        if pending is not None and pending.get("step") == self.name:
            answer = confirmation_answer(rt, result, pending)
            if answer is None:  # "no", silence or anything but yes: ask the menu again
                return self.retry(rt, InputResult("nomatch", result.mode, result.utterance), "confirm_no")
            result, confirmed = answer, True
        spoken = self.spoken(rt)
        option = self.match(result, spoken)
        if result.mode == "speech" and not confirmed:
            recognised(rt, self.name, result, option.id if option else None)
        if option is None:
            return self.retry(rt, result, "invalid")
        if result.mode == "speech" and not confirmed and result.confidence < self.confirm_below:
            return self.read_back(rt, option, result)
        position, key = next(((i, k) for i, (k, o) in enumerate(spoken, 1) if o is option), (0, option.key))
        rt.record(
            "option_chosen",
            flow=rt.flow.name,
            option=option.id,
            key=key,
            position=position,
            mode=result.mode,
            utterance=result.utterance,
            confidence=result.confidence,
        )
        if option.intents:
            said = result.intent or result.interpretation
            rt.journey.intent = said if said in option.intents else option.intents[0]
        return Goto(option.next)

    def read_back(self, rt: Runtime, option: MenuOption, result: InputResult) -> Outcome:
        """ "Did you say" <label> "Is that right?" with a yes (1) / no (2) menu, on any channel."""
        rt.journey.confirming = {
            "step": self.name,
            "option": option.id,
            "utterance": result.utterance,
            "intent": result.intent,
            "confidence": result.confidence,
        }
        rt.record("confirmation_asked", option=option.id, confidence=result.confidence, below=self.confirm_below)
        choices = (
            Choice("1", CONFIRM_YES, rt.text("yes"), (CONFIRM_YES,)),
            Choice("2", CONFIRM_NO, rt.text("no"), (CONFIRM_NO,)),
        )
        question = Menu(
            self.name, rt.text("confirm_question"), choices, self.timeout, rt.journey.attempts + 1, self.speech
        )
        return Wait([Play(self.name, rt.text("confirm")), Play(self.name, option.label), question], "input")


#: Option ids (and intents) of the yes/no read-back menu.
CONFIRM_YES = "yes"
CONFIRM_NO = "no"


def confirmation_answer(rt: Runtime, result: InputResult, pending: Mapping[str, Any]) -> InputResult | None:
    """The original answer if the caller said yes to the read-back (key 1, "yes"), else None."""
    said = result.utterance.strip().lower()
    yes = result.status == "match" and (
        CONFIRM_YES in (result.interpretation, result.intent) or (result.mode != "speech" and said in ("1", "yes"))
    )
    rt.record("confirmation_answered", option=pending.get("option"), confirmed=yes, mode=result.mode)
    if not yes:
        return None
    return InputResult(
        "match",
        "speech",
        str(pending.get("utterance", "")),
        str(pending.get("option")),
        float(pending.get("confidence", 0.0)),
        intent=pending.get("intent"),
    )


def recognised(rt: Runtime, step: str, result: InputResult, option: str | None) -> None:
    """What a caller said and what it was taken to mean: on the journey and in the interaction log."""
    if result.status == "noinput":
        return
    heard = {
        "step": step,
        "utterance": result.utterance,
        "intent": result.intent,
        "option": option,
        "confidence": result.confidence,
        "status": result.status if option else "nomatch",
    }
    rt.journey.recognition = heard
    rt.record("intent_recognised", **{k: v for k, v in heard.items() if k != "step"})


@dataclass(frozen=True)
class AskStep(_Retrying):
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
        # Queue, skill and priority from the journey (intent, tier, language), pure.
        decision = route(
            RoutingFacts(
                queue=self.queue,
                skill=self.skill,
                priority=self.priority,
                intent=j.intent,
                confidence=float((j.recognition or {}).get("confidence") or 1.0),
                tier=(j.customer or {}).get("tier"),
                language=(j.customer or {}).get("language"),
            )
        )
        skill = self.skill or (decision.skill if decision.queue != "main" else None)
        variables = {
            "IVR_JOURNEY_ID": j.id,
            "IVR_FLOW": j.flow,
            "IVR_STEP": self.name,
            "IVR_PATH": ">".join(j.path),
            "IVR_INTENT": j.intent or "",
            "IVR_SKILL": skill or "",
        }
        for slot in self.carry:
            if slot in j.slots and slot not in j.secret_slots:
                variables[f"IVR_SLOT_{slot.upper()}"] = j.slots[slot]
        j.outcome = {
            "queue": decision.queue,
            "skill": skill,
            "priority": decision.priority,
            "routing": decision.to_dict(),
        }
        rt.record("queued", queue=decision.queue, skill=skill, priority=decision.priority)
        commands: list[Command] = [Play(self.name, self.prompt)] if self.prompt else []
        commands.append(Queue(self.name, decision.queue, skill, decision.priority, self.timeout, variables))
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

    def enter(self, rt: Runtime) -> Outcome:
        return Wait([Handoff(self.name, self.channel, self.resume, self.message)], "input")

    def on_input(self, rt: Runtime, result: InputResult) -> Outcome:
        if result.status == "match":
            rt.record("handed_off", to=self.channel, resume=self.resume, via=result.utterance)
            rt.journey.step = self.resume  # where any channel picks the journey up
            commands: list[Command] = [Play(self.name, self.prompt)] if self.prompt else []
            commands.append(Hangup(self.name, "handoff"))
            return End(commands, "handed_off")
        rt.record("handoff_failed", to=self.channel, reason=result.utterance)
        return Wait([Play(self.name, self.failed)] if self.failed else [], "continue")

    def on_continue(self, rt: Runtime) -> Outcome:
        return Goto(self.on_failure or rt.flow.on_failure or self.resume)


STEP_KINDS: dict[str, type[Step]] = {
    kind.KIND: kind
    for kind in (
        SayStep,
        MenuStep,
        AskStep,
        BranchStep,
        QueueStep,
        GotoStep,
        InvokeStep,
        ReturnStep,
        HangupStep,
        HandoffStep,
    )
}
#: Keys every step may carry besides its kind.
COMMON_KEYS = frozenset({"next", "description"})
