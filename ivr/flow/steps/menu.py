"""``menu``: options by key or by voice, reordered by the caller's history, with a spoken read-back
when a voice answer is unsure."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from ivr.flow.commands import Choice, Command, InputResult, Menu, Play, Prompt
from ivr.flow.personalize import (
    DEFAULT_MIN_CONTACTS,
    Ranking,
    file_ranking,
    in_holdout,
    order_from_keys,
    rank_menu,
)
from ivr.flow.steps.base import (
    DTMF_KEYS,
    Goto,
    Outcome,
    ParseContext,
    RetryingStep,
    Runtime,
    Step,
    Wait,
    as_bool,
    quote_hint,
    step_kind,
)


@dataclass(frozen=True)
class MenuOption:
    id: str
    key: str
    label: Prompt
    intents: tuple[str, ...]
    next: str | None
    pin: str | None
    line: int


@step_kind
@dataclass(frozen=True)
class MenuStep(RetryingStep):
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
                odd = next((i for i in intents if not isinstance(i, str)), None) if isinstance(intents, list) else None
                ctx.problem(f"option {option_id}: intents must be a list of names{quote_hint(odd)}", line)
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
        if raw is None or as_bool(raw) is not None:
            return bool(as_bool(raw)), DEFAULT_MIN_CONTACTS
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
    @staticmethod
    def held_out(rt: Runtime) -> bool | None:
        """True: this caller is in the flow's holdout; None: ranking cannot apply anyway (flow
        off, unknown caller), so the caller is in neither group of the comparison."""
        if not rt.flow.personalize or rt.profile is None:
            return None
        return in_holdout(rt.profile.customer_id, rt.flow.name, rt.holdout)

    def rank(self, rt: Runtime) -> Ranking:
        """This caller's order and keys for this menu, or the file's with the reason why not."""
        if not rt.flow.personalize:
            return file_ranking(self.options, f"personalization is off for flow {rt.flow.name}")
        if rt.profile is None:
            return file_ranking(self.options, "unknown caller: no history")
        if self.held_out(rt):
            return file_ranking(self.options, f"holdout: this caller hears flow {rt.flow.name} in the file's order")
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
            record = {**ranking.record(), "flow": rt.flow.name, "holdout": self.held_out(rt)}
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
        return target is None or target.hands_off_to() != rt.journey.channel

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
            label=option.label.text,  # the words the menu says it in: the timeline reads them
            key=key,
            position=position,
            mode=result.mode,
            utterance=result.utterance,
            confidence=result.confidence,
        )
        rt.journey.chosen = {"step": self.name, "option": option.id, "label": option.label.text, "mode": result.mode}
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
    if result.reason:
        heard["reason"] = result.reason
    rt.journey.recognition = heard
    rt.record("intent_recognised", **{k: v for k, v in heard.items() if k != "step"})
