"""Utterance -> option by meaning: the lexical matcher, a sentence-embedding scorer, one decision.

Why both: the lexical matcher (:mod:`ivr.speech.intents`) is fast, explainable and right on the
edges (digits, small talk, Russian), but it only knows the words its tables list: "my lights went
out" or "the app won't let me pay" share no concept with any example. all-MiniLM-L6-v2
(:mod:`ivr.speech.embedding`) places those near "power is out" and "make a payment". It also
places a greeting or a question about something not offered near *some* option, so the decision
is explicit about **out of scope**: besides the options, the scorer knows examples of what callers
say that is no option at all (``[out_of_scope]`` in :file:`intents.toml`, and the intents no option
of this menu claims), and an utterance nearest to those gets no option. No option is better than a
wrong one: the caller is asked again, or hears "billing, is that right?" (the menu's
``confirm_below``) when the confidence is in between.

The decision, in order:

1. Empty, small talk only, or a digit (the lexical rules): the lexical answer, no model run.
2. Not English (Cyrillic letters): the lexical answer; the model is English-only.
3. Otherwise every target (option, unclaimed intent, out of scope) gets the cosine of its nearest
   example; the best, the runner-up (another target) and whether the lexical matcher agrees go
   through a logistic calibration (:data:`CALIBRATION`, fitted on the evaluation set's
   development split by ``bench/intents.py --fit``) that gives the probability the best target
   is right. That probability is the confidence; under :data:`MIN_CONFIDENCE`, or when the best
   target is out of scope, no option.

``IntentMatch.reason`` says which rule decided and why (nearest example, cosine, margin, lexical
verdict), and is saved with the recognition for the agent's card and the timeline.
"""

from __future__ import annotations

import functools
import importlib.resources
import math
import re
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ivr.speech.embedding import Array, SentenceEncoder, default_encoder
from ivr.speech.intents import IntentMatch, IntentMatcher, OptionSpec

__all__ = [
    "CALIBRATION",
    "MIN_CONFIDENCE",
    "OUT_OF_SCOPE",
    "Features",
    "SemanticMatcher",
    "drop_negated",
    "first_request",
    "out_of_scope_examples",
    "paraphrases",
    "tidy",
    "warm_examples",
]

OUT_OF_SCOPE = "out_of_scope"
"""The target name of talk that is no option (its examples: ``[out_of_scope]`` in intents.toml)."""

MIN_CONFIDENCE = 0.5
"""Under this calibrated probability of being right, no option (the menu asks again)."""

CALIBRATION: tuple[float, ...] = (-5.141, 8.906, 6.206, 5.849, -0.539)
"""Logistic weights over :meth:`Features.vector` (bias, cosine, margin, lexical agrees, lexical
score), fitted on the development split with ``bench/intents.py --fit``."""

_CYRILLIC = re.compile(r"[\u0400-\u04ff]")
_CLAUSES = re.compile(
    r"\s*(?:[,;.!?]+|\s-\s|\bbut\b|\bi mean\b|\brather\b|(?<!\w)(?:\u0430|но|точнее)(?!\w))\s*",  # Russian "a": but
    re.IGNORECASE,
)
_NEGATED = re.compile(
    r"^(?:(?:no|nope|oh)\s+)*(?:(?:(?:it|that|this)(?:'?s| is)\s+)?not|(?:it|that|this) isn'?t|never mind)\b"
    r"\s*(?:about|for|the|an?|my)?\s*(?P<what>.*)$"
    r"|^(?:(?:no|nope)\s+)+(?P<fine>.*\b(?:is|'s|are)\s+(?:fine|ok|okay|alright)\b.*)$"
    r"|^(?:нет\s+)?(?:это\s+)?не\s+(?:про|по|насчет|насчёт)?\s*(?P<ru>(?!работает|работают)\w.*)$",
    re.IGNORECASE,
)


def drop_negated(text: str) -> tuple[str, list[str]]:
    """``("an outage", ["not billing"])`` for "not billing, an outage": clauses that say what the
    caller does *not* want are left out, when another clause says what they do. A clause that is
    only "no" is an answer, not a negated request, and stays."""
    clauses = [c for c in _CLAUSES.split(text) if c and c.strip()]
    if len(clauses) < 2:
        return text, []
    kept: list[str] = []
    dropped: list[str] = []
    for clause in clauses:
        m = _NEGATED.match(clause.strip())
        if m and (m.group("what") or m.group("fine") or m.group("ru")):
            dropped.append(clause.strip())
        else:
            kept.append(clause.strip())
    if not dropped or not kept:
        return text, []
    return ", ".join(kept), dropped


_LATER = re.compile(
    r",?\s+(?:and\s+)?(?:then\s+)?(?:maybe|also|after that|afterwards)\b.*$|,?\s+and\s+.*\blater\W*$", re.IGNORECASE
)


def first_request(text: str) -> tuple[str, str]:
    """``("I need to pay first", "and then maybe talk about something else")``: when a caller puts
    a second request after "and maybe", "also", "after that" or "... later", the menu serves the
    first (the second can follow once it is done). A plain "and then" is left alone: it tells a
    story more often ("I heard a bang and then the power went"). One request -> ``(text, "")``."""
    m = _LATER.search(text)
    if m is None or not text[: m.start()].strip():
        return text, ""
    return text[: m.start()].strip(), text[m.start() :].strip(" ,")


_HESITATION = re.compile(r"(?<![\w-])(?:u+m+|u+h+|e+r+m*|h+m+|m{2,})(?![\w-])[,.]?\s*", re.IGNORECASE)
_REPEATED = re.compile(r"\b(\w+(?:'\w+)?(?:\s+\w+(?:'\w+)?){0,2})(?:\s+\1\b)+", re.IGNORECASE)


def tidy(text: str) -> str:
    """What the encoder reads: "uh the the power the power is out" -> "the power is out".

    Hesitations and false starts (a word or a few said twice) carry no meaning but each costs a
    word piece of encoder time, and they pull short answers towards the out-of-scope examples
    ("hmm", "let me think"). Only the encoder's input is tidied: the word rules see what was said.
    Nothing is left (an answer that is only "um") -> the text as it was."""
    tidied = _HESITATION.sub("", text)
    for _ in range(3):  # "the the power the power": each pass joins one more repeat
        tidied, repeats = _REPEATED.subn(r"\1", tidied)
        if not repeats:
            break
    tidied = " ".join(tidied.split())
    return tidied if any(c.isalnum() for c in tidied) else text


_LEXICAL_ONLY = ("empty", "small talk", "only filler words", "digit ")


@dataclass(frozen=True)
class Features:
    """What the decision looks at for one utterance."""

    cosine: float  # nearest example of the best target
    margin: float  # best target's cosine minus the runner-up target's
    lexical_agrees: bool  # the lexical matcher names the same target
    lexical_score: float  # the lexical matcher's confidence (0 when it found nothing)

    def vector(self) -> list[float]:
        return [1.0, self.cosine, self.margin, float(self.lexical_agrees), self.lexical_score]

    def probability(self, weights: Sequence[float] = CALIBRATION) -> float:
        z = sum(w * x for w, x in zip(weights, self.vector(), strict=True))
        return 1.0 / (1.0 + math.exp(-max(-50.0, min(50.0, z))))


@dataclass(frozen=True)
class _Target:
    name: str  # the option id, the intent name, or OUT_OF_SCOPE
    option: str | None
    intent: str | None


@functools.cache
def _tables() -> dict[str, Any]:
    text = importlib.resources.files("ivr.speech").joinpath("intents.toml").read_text(encoding="utf-8")
    return tomllib.loads(text)


def out_of_scope_examples() -> tuple[str, ...]:
    """``[out_of_scope]`` of the shipped :file:`intents.toml`: talk that is no option."""
    return tuple(str(e) for e in _tables().get("out_of_scope", {}).get("en", []))


def paraphrases() -> dict[str, list[str]]:
    """``[paraphrases]`` of the shipped :file:`intents.toml`: more English examples per intent,
    read by this scorer only."""
    return {str(i): [str(e) for e in by.get("en", [])] for i, by in _tables().get("paraphrases", {}).items()}


class SemanticMatcher:
    """One menu's options scored by meaning, with the lexical matcher's verdict as evidence.

    Built once per menu (the examples are encoded then: a few hundred, about a second on first
    use, so build it off the event loop); ``match`` runs the encoder once, a few milliseconds.
    """

    def __init__(
        self,
        options: Sequence[OptionSpec],
        encoder: SentenceEncoder,
        examples: Mapping[str, Sequence[str]] | None = None,
        *,
        lexical: IntentMatcher | None = None,
        calibration: Sequence[float] = CALIBRATION,
        with_paraphrases: bool = True,
    ) -> None:
        """``calibration``: the logistic weights that turn features into a confidence; they belong
        to the encoder and the examples they were fitted with, so a matcher built with another
        encoder, or without the ``[paraphrases]`` (``with_paraphrases=False``: what the examples
        alone generalise to), needs its own (``bench/intents.py`` fits them on the dev split)."""
        self.options = tuple(options)
        self.encoder = encoder
        self.calibration = tuple(calibration)
        self.lexical = lexical or IntentMatcher(self.options, examples)
        lexicon = self.lexical.lexicon
        by_intent: dict[str, list[str]] = {}
        for intent, by_language in lexicon.intents.items():
            by_intent.setdefault(intent, []).extend(by_language.get("en", []))
        for intent, sentences in (paraphrases() if with_paraphrases else {}).items():
            by_intent.setdefault(intent, []).extend(sentences)
        for intent, extra in (examples or {}).items():
            by_intent.setdefault(intent, []).extend(e for e in extra if not _CYRILLIC.search(e))
        texts: list[str] = []
        owners: list[_Target] = []

        def add(target: _Target, sentences: Iterable[str]) -> None:
            for sentence in dict.fromkeys(sentences):
                texts.append(sentence)
                owners.append(target)

        claimed: set[str] = set()
        for option in self.options:
            first = option.intents[0] if option.intents else None
            target = _Target(option.id, option.id, first)
            add(target, [option.label] if option.label else [])
            for intent in option.intents:
                claimed.add(intent)
                add(_Target(option.id, option.id, intent), by_intent.get(intent, []))
        for intent, sentences in by_intent.items():
            if intent not in claimed:
                add(_Target(intent, None, intent), sentences)
        add(_Target(OUT_OF_SCOPE, None, None), out_of_scope_examples())
        self._texts = texts
        self._owners = owners
        self._names = sorted({o.name for o in owners})
        self._index = np.array([self._names.index(o.name) for o in owners])
        self._vectors: Array = encoder.encode_examples(texts)

    @classmethod
    def from_choices(
        cls,
        choices: Iterable[Any],
        examples: Mapping[str, Sequence[str]] | None = None,
        *,
        encoder: SentenceEncoder,
        calibration: Sequence[float] = CALIBRATION,
        with_paraphrases: bool = True,
    ) -> SemanticMatcher:
        lexical = IntentMatcher.from_choices(choices, examples)
        return cls(
            lexical.options,
            encoder,
            examples,
            lexical=lexical,
            calibration=calibration,
            with_paraphrases=with_paraphrases,
        )

    def phrases(self, language: str = "en") -> list[str]:
        return self.lexical.phrases(language)

    def features(self, text: str, lexical: IntentMatch) -> tuple[Features, _Target, str, str]:
        """The decision's inputs: features, best target, its nearest example, the runner-up's name."""
        vector = self.encoder.encode([tidy(text)])[0]
        cosines = self._vectors @ vector
        best_per_target = np.full(len(self._names), -1.0, dtype=np.float32)
        np.maximum.at(best_per_target, self._index, cosines)
        order = np.argsort(-best_per_target)
        first, second = int(order[0]), int(order[1]) if len(order) > 1 else int(order[0])
        members = np.flatnonzero(self._index == first)
        nearest = int(members[np.argmax(cosines[members])])
        target = self._owners[nearest]
        lexical_name = lexical.option or lexical.intent
        margin = float(best_per_target[first] - best_per_target[second]) if len(order) > 1 else 1.0
        agrees = lexical_name is not None and lexical_name in (target.option, target.intent, target.name)
        features = Features(float(best_per_target[first]), margin, agrees, lexical.confidence if lexical_name else 0.0)
        return features, target, self._texts[nearest], self._names[second]

    @staticmethod
    def focus(text: str) -> tuple[str, list[str]]:
        """The part of an answer that is scored, and what was left out: negated clauses, a second
        request."""
        focus, dropped = drop_negated(text)
        focus, later = first_request(focus)
        return focus, [*dropped, later] if later else dropped

    def match(self, text: str) -> IntentMatch:
        focus, dropped = self.focus(text)
        lexical = self.lexical.match(focus)
        if lexical.reason.startswith(_LEXICAL_ONLY) or _CYRILLIC.search(text):
            return lexical
        features, target, nearest, runner_up = self.features(focus, lexical)
        confidence = round(features.probability(self.calibration), 3)
        why = (
            f"nearest {nearest!r} ({target.name} {features.cosine:.2f}, margin {features.margin:.2f} "
            f"over {runner_up}); lexical: {lexical.reason}"
        )
        if dropped:
            why = f"left out {', '.join(repr(d) for d in dropped)}; {why}"
        if target.name == OUT_OF_SCOPE:
            return IntentMatch(None, None, 0.0, f"out of scope: {why}")  # sure it is no option
        if confidence < MIN_CONFIDENCE:
            return IntentMatch(None, None, confidence, f"not sure ({confidence:.2f}): {why}")
        return IntentMatch(target.option, target.intent, confidence, why)


def warm_examples(encoder: SentenceEncoder | None = None) -> SentenceEncoder:
    """The process's encoder with every shipped example already encoded (the intents' English
    examples and the out-of-scope ones): what a menu's matcher then builds from is in memory."""
    encoder = encoder or default_encoder()
    lexicon = IntentMatcher().lexicon
    texts = [t for by_language in lexicon.intents.values() for t in by_language.get("en", [])]
    texts += [t for sentences in paraphrases().values() for t in sentences]
    encoder.encode_examples([*texts, *out_of_scope_examples()])
    return encoder
