"""The interface every speech engine implements, apart from the code that picks and loads one.

Why its own module: the engines (:mod:`ivr.speech.vosk_engine`, :mod:`ivr.speech.whisper_engine`)
implement this interface, and :mod:`ivr.speech.recognizer` imports the engines to load one; with
the interface here, neither engine imports the loader and there is no import cycle among them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

__all__ = ["INPUT_RATE", "Recognizer", "RecognizerSession", "Transcript"]

INPUT_RATE = 8000
"""What every session accepts: AudioSocket's slin, signed 16-bit little-endian mono at 8 kHz."""


@dataclass(frozen=True)
class Transcript:
    """What an engine heard in one utterance.

    ``text`` is empty when it heard no words. ``confidence`` is the engine's own 0..1 figure
    (Vosk: mean word confidence; Whisper: ``exp(avg_logprob)`` scaled down by the no-speech
    probability). ``seconds`` is the CPU-side time spent in :meth:`RecognizerSession.finish`:
    the part of the decode that comes *after* the end of speech, i.e. what the caller waits for.
    """

    text: str
    confidence: float
    engine: str
    seconds: float


class RecognizerSession(Protocol):
    """One utterance. Blocking calls; the caller runs them in a worker thread, one at a time."""

    def accept(self, pcm: bytes) -> None:
        """More audio: signed 16-bit little-endian mono at 8 kHz, any length (odd bytes are kept
        for the next call)."""
        ...

    def finish(self) -> Transcript:
        """The words of the whole utterance. Call once; the session is spent afterwards."""
        ...


class Recognizer(Protocol):
    """A loaded engine and model, shared by all calls of the process (thread-safe ``session``)."""

    name: str
    streaming: bool  # True: accept() decodes as audio arrives, so finish() is quick
    sample_rate: int = INPUT_RATE  # of the audio that accept() takes

    def session(self, phrases: Sequence[str]) -> RecognizerSession:
        """A new utterance. ``phrases`` are what the caller is likely to say at this step (the
        options' labels and their intents' example phrases): Vosk's grammar, Whisper's prompt."""
        ...
