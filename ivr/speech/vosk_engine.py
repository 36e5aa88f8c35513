"""Vosk (Kaldi): the production engine. Streaming, with a grammar per step.

Why a grammar: a caller at a menu says one of a few dozen things. Small Vosk models (the
``vosk-model-small-*`` family, 40-50 MB) carry a lookahead graph (``HCLr.fst`` + ``Gr.fst``) that
compiles a phrase list at run time in milliseconds; decoding against it is both faster and far
more accurate on short replies than the open vocabulary. The grammar is a loop over its phrases,
so it holds every example phrase *and* every word of them: a paraphrase made of known words
still comes out as words the intent matcher can read.

Gotchas handled here:

* A grammar word missing from the model's vocabulary is dropped by Vosk with a warning per
  session; we ask the model (``vosk_model_find_word``) once and leave such words out.
* ``[unk]`` is Vosk's garbage word: it absorbs out-of-grammar speech. Some models (the Korean
  one on PyPI) have none, and then noise *must* come out as a grammar phrase, with confidence
  1.0. So the session checks for voiced speech (:func:`ivr.speech.audio.has_voice`) and returns
  no words for noise whatever Vosk says.
* A big model with a static ``HCLG.fst`` cannot take a runtime grammar; it decodes the open
  vocabulary instead (and says so once at load).
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
import unicodedata
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ivr.errors import ConfigError
from ivr.speech.audio import has_voice
from ivr.speech.engine import INPUT_RATE, Transcript

log = logging.getLogger(__name__)

__all__ = ["UNK", "VoskRecognizer", "VoskSession", "grammar_phrases", "normalise_phrase"]

UNK = "[unk]"

_EN_DIGITS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
_NOT_WORD = re.compile(r"[^\w' ]+")


def normalise_phrase(phrase: str, language: str = "en") -> str:
    """What a Vosk model's vocabulary looks like: lower case, no punctuation, digits as words
    (English models spell them out), single spaces."""
    text = unicodedata.normalize("NFKC", phrase).lower()
    if language.lower().startswith("en"):
        text = re.sub(r"\d", lambda m: f" {_EN_DIGITS[int(m.group())]} ", text)
    words = (w.strip("'") for w in _NOT_WORD.sub(" ", text).split())
    return " ".join(w for w in words if w)


def grammar_phrases(
    phrases: Sequence[str], known: Callable[[str], bool] | None = None, language: str = "en", *, unk: bool = True
) -> list[str]:
    """The grammar for one step: each phrase whose words the model knows, then each known word
    of every phrase on its own, then ``[unk]`` if the model has it. Order kept, no duplicates."""
    out: dict[str, None] = {}
    words: dict[str, None] = {}
    for phrase in phrases:
        clean = normalise_phrase(phrase, language)
        if not clean:
            continue
        tokens = clean.split()
        if known is None or all(known(t) for t in tokens):
            out[clean] = None
        for token in tokens:
            if known is None or known(token):
                words[token] = None
    for word in words:
        out.setdefault(word, None)
    if unk and (known is None or known(UNK)):
        out[UNK] = None
    return list(out)


class VoskSession:
    """One utterance on a KaldiRecognizer: decodes as audio arrives."""

    def __init__(self, recognizer: Any, engine: str) -> None:
        self._rec = recognizer
        self._engine = engine
        self._pcm = bytearray()  # kept for the voice check at the end; 16 kB per second
        self._carry = b""
        self._words: list[dict[str, Any]] = []

    def _take(self, result_json: str) -> None:
        result = json.loads(result_json)
        self._words.extend(w for w in result.get("result", []) if isinstance(w, dict))

    def accept(self, pcm: bytes) -> None:
        data = self._carry + pcm
        cut = len(data) // 2 * 2
        self._carry = data[cut:]
        if cut:
            self._pcm += data[:cut]
            # True: Vosk's own endpointer closed a segment (a pause inside the reply). Its
            # words are only in Result() now; the next segment starts from scratch.
            if self._rec.AcceptWaveform(data[:cut]):
                self._take(self._rec.Result())

    def finish(self) -> Transcript:
        started = time.perf_counter()
        self._take(self._rec.FinalResult())
        voiced = has_voice(bytes(self._pcm))
        self._pcm.clear()
        words, self._words = self._words, []
        known = [w for w in words if w.get("word") != UNK]
        if not voiced or not known:
            return Transcript("", 0.0, self._engine, time.perf_counter() - started)
        text = " ".join(str(w["word"]) for w in known)
        confidence = sum(float(w.get("conf", 0.0)) for w in known) / len(known)
        confidence *= len(known) / len(words)  # words Vosk could not place lower the trust in the rest
        return Transcript(text, confidence, self._engine, time.perf_counter() - started)


class VoskRecognizer:
    """A loaded Vosk model, shared by every call (Kaldi models are read-only after load;
    each session has its own KaldiRecognizer)."""

    name = "vosk"
    streaming = True
    sample_rate = INPUT_RATE

    def __init__(self, model: Any, path: Path, *, language: str = "en", grammar: bool = True) -> None:
        self.model = model
        self.path = path
        self.language = language
        self.grammar = grammar
        self._vocab: dict[str, bool] = {}
        self._vocab_lock = threading.Lock()

    @classmethod
    def load(cls, path: Path, *, language: str = "en") -> VoskRecognizer:
        import vosk

        vosk.SetLogLevel(-1)  # Kaldi's INFO lines, one per model file; warnings still show
        try:
            model = vosk.Model(str(path))
        except Exception as exc:  # vosk raises a bare Exception("Failed to create a model")
            raise ConfigError(f"cannot load the Vosk model at {path}: {exc}") from exc
        grammar = any((d / "HCLr.fst").is_file() for d in (path, path / "graph"))
        if not grammar:
            log.warning("Vosk model %s has no runtime-grammar graph (HCLr.fst): decoding the open vocabulary", path)
        return cls(model, path, language=language, grammar=grammar)

    def knows(self, word: str) -> bool:
        with self._vocab_lock:
            if word not in self._vocab:
                self._vocab[word] = self.model.vosk_model_find_word(word) >= 0
            return self._vocab[word]

    def grammar_for(self, phrases: Sequence[str]) -> list[str]:
        return grammar_phrases(phrases, self.knows, self.language)

    def session(self, phrases: Sequence[str]) -> VoskSession:
        import vosk

        grammar = self.grammar_for(phrases) if self.grammar else []
        if any(p != UNK for p in grammar):
            rec = vosk.KaldiRecognizer(self.model, float(INPUT_RATE), json.dumps(grammar, ensure_ascii=False))
        else:
            rec = vosk.KaldiRecognizer(self.model, float(INPUT_RATE))
        rec.SetWords(True)
        return VoskSession(rec, self.name)
