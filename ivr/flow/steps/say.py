"""``say``: words the caller hears, then on to ``next``.

The text may speak where the caller is in their journey through placeholders:
``You called about {journey.unfinished.reason_label} {journey.unfinished.ago}.`` Only what has
audio already can be spoken: ``reason_label`` (a menu option's own words, built with its menu)
and ``ago`` (a phrase from ``ivr.flow.stages.AGO_PHRASES``, built with the system prompts); the
rest of the text is built as fragments, so a call never waits for speech synthesis. A
placeholder with no value (no such contact) is left out; guard the step with a ``branch``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from ivr.flow.commands import Play, Prompt
from ivr.flow.stages import JOURNEY_ATTRS
from ivr.flow.steps.base import Outcome, ParseContext, Runtime, Step, Wait, step_kind

PLACEHOLDER = re.compile(r"\{([^{}]*)\}")
#: What a placeholder may speak (see the module docstring).
SPOKEN = frozenset({"reason_label", "ago"})
_WORDS = re.compile(r"\w")


def placeholder_problem(name: str) -> str | None:
    """Why ``{name}`` cannot be spoken, or None when it can."""
    parts = name.strip().split(".")
    if len(parts) != 3 or parts[0] != "journey":
        return f"unknown placeholder {{{name}}}: use e.g. {{journey.last_contact.ago}}"
    attrs = JOURNEY_ATTRS.get(parts[1])
    if attrs is None:
        spoken = sorted(k for k, v in JOURNEY_ATTRS.items() if v)
        return f"placeholder {{{name}}}: journey.{parts[1]} cannot be spoken (use one of {', '.join(spoken)})"
    if parts[2] not in attrs or parts[2] not in SPOKEN:
        return f"placeholder {{{name}}}: only {', '.join(sorted(SPOKEN))} can be spoken"
    return None


@step_kind
@dataclass(frozen=True)
class SayStep(Step):
    KIND = "say"
    prompt: Prompt = Prompt("")
    #: the text cut at its placeholders: (False, words) and (True, "journey.x.y"), in order
    template: tuple[tuple[bool, str], ...] = ()

    @classmethod
    def parse(cls, name: str, body: Any, next_: str | None, ctx: ParseContext) -> Step | None:
        prompt = ctx.prompt(body, ctx.line, "text to say")
        if not prompt:
            return None
        pieces: list[tuple[bool, str]] = []
        at = 0
        for found in PLACEHOLDER.finditer(prompt.text):
            problem = placeholder_problem(found[1])
            if problem:
                ctx.problem(problem, ctx.line)
                return None
            pieces += [(False, prompt.text[at : found.start()]), (True, found[1].strip())]
            at = found.end()
        if pieces and prompt.audio:
            ctx.problem("a text with placeholders is spoken in fragments: it cannot have one audio file")
            return None
        template = tuple([*pieces, (False, prompt.text[at:])]) if pieces else ()
        return cls(name, ctx.line, next_, prompt, template)

    def prompts(self) -> list[Prompt]:
        if not self.template:
            return [self.prompt]
        return [Prompt(text.strip()) for placeholder, text in self.template if not placeholder and _WORDS.search(text)]

    def enter(self, rt: Runtime) -> Outcome:
        if not self.template:
            return Wait([Play(self.name, self.prompt)], "continue")
        stage = rt.scope().journey
        words: list[str] = []
        parts: list[Prompt] = []
        for placeholder, text in self.template:
            if placeholder:
                _, part, attr = text.split(".")
                value = getattr(stage.attribute(part), attr, None)
                text = value if isinstance(value, str) else ""
            words.append(text)
            if _WORDS.search(text):
                parts.append(Prompt(text.strip()))
        sentence = " ".join("".join(words).split()).replace(" .", ".").replace(" ,", ",")
        return Wait([Play(self.name, Prompt(sentence), tuple(parts))], "continue")
