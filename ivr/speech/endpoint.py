"""End-of-speech detection on the caller's audio: pure, clocked by the audio itself.

Why our own endpointer: recognizers differ (Vosk streams, Whisper decodes a finished utterance)
but all need the same decision -- when did the caller start, when did they stop -- and that
decision must be instant, cheap (one per 20 ms frame, for every listening call) and testable with
synthetic PCM. Energy with an adaptive noise floor is enough on a telephone line:

* a 20 ms frame is *voiced* when its RMS level is above ``threshold_dbfs`` *and* ``noise_margin_db``
  above the noise floor (the floor follows quiet frames quickly and loud ones very slowly, so a
  humming line raises it while a caller's words do not);
* speech *starts* after ``start_ms`` of consecutive voiced frames (a click or a pop is shorter);
  the ``preroll_ms`` before that are kept so the recognizer hears the first syllable whole;
* speech *ends* after ``end_silence_ms`` without a voiced frame (the hangover), or when the
  utterance reaches ``max_speech_ms``;
* *no input* is ``noinput_ms`` of audio after :meth:`Endpointer.arm` (the prompt has finished)
  without speech starting.

Time is the audio's: 160 samples are 20 ms. Asterisk sends caller audio continuously (a silent
caller is a stream of quiet frames), so this clock runs with the wall clock; the listener still
bounds the whole exchange with a wall-clock deadline in case the stream stops.
"""

from __future__ import annotations

import array
import math
import sys
from collections import deque
from dataclasses import dataclass
from typing import Literal

__all__ = [
    "EndpointEvent",
    "EndpointSettings",
    "Endpointer",
    "NoInput",
    "SpeechAudio",
    "SpeechEnded",
    "SpeechStarted",
    "level_dbfs",
]

SILENCE_DBFS = -96.0  # the level we give a frame of digital silence (log of zero)
_FULL_SCALE_SQ = 32768.0 * 32768.0


@dataclass(frozen=True)
class EndpointSettings:
    """Tuning of the endpointer; every value is a config key under ``speech.*``."""

    sample_rate: int = 8000
    frame_ms: int = 20
    threshold_dbfs: float = -45.0
    noise_margin_db: float = 10.0
    start_ms: int = 100
    end_silence_ms: int = 700
    max_speech_ms: int = 10000
    noinput_ms: int = 5000
    preroll_ms: int = 300
    initial_floor_dbfs: float = -70.0

    def __post_init__(self) -> None:
        if self.sample_rate <= 0 or self.frame_ms <= 0:
            raise ValueError("sample_rate and frame_ms must be positive")
        for name in ("start_ms", "end_silence_ms", "max_speech_ms", "noinput_ms", "preroll_ms"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0")
        if self.start_ms > self.max_speech_ms:
            raise ValueError("start_ms must not exceed max_speech_ms")

    @property
    def frame_bytes(self) -> int:
        return self.sample_rate * self.frame_ms // 1000 * 2


@dataclass(frozen=True, slots=True)
class SpeechStarted:
    """Speech began ``at_ms`` (the first voiced frame of the run that crossed ``start_ms``)."""

    at_ms: int


@dataclass(frozen=True, slots=True)
class SpeechAudio:
    """Audio that belongs to the utterance (pre-roll first): what the recognizer should hear."""

    pcm: bytes


@dataclass(frozen=True, slots=True)
class SpeechEnded:
    """The utterance is over: ``silence`` after speech, or it reached ``max_length``."""

    at_ms: int
    reason: Literal["silence", "max_length"]
    speech_ms: int


@dataclass(frozen=True, slots=True)
class NoInput:
    """``noinput_ms`` passed after :meth:`Endpointer.arm` and nobody spoke."""

    at_ms: int


EndpointEvent = SpeechStarted | SpeechAudio | SpeechEnded | NoInput


def level_dbfs(frame: bytes) -> float:
    """RMS level of slin16 little-endian samples in dB relative to full scale (<= 0)."""
    samples = array.array("h")
    samples.frombytes(frame[: len(frame) - len(frame) % 2])
    if not samples:
        return SILENCE_DBFS
    if sys.byteorder == "big":
        samples.byteswap()
    energy = sum(s * s for s in samples) / len(samples)
    if energy <= 0:
        return SILENCE_DBFS
    return max(SILENCE_DBFS, 10.0 * math.log10(energy / _FULL_SCALE_SQ))


class Endpointer:
    """Feed caller audio, get endpoint events. One per listening; ``done`` once it decided."""

    #: How fast the noise floor follows a frame below it / above it (fraction per frame).
    FLOOR_FALL = 0.3
    FLOOR_RISE = 0.002

    def __init__(self, settings: EndpointSettings | None = None) -> None:
        self.settings = s = settings or EndpointSettings()
        self.floor_dbfs = s.initial_floor_dbfs
        self.state: Literal["waiting", "speech", "done"] = "waiting"
        self.now_ms = 0
        self.armed_at: int | None = None
        self.speech_start_ms: int | None = None
        self._frame_bytes = s.frame_bytes
        self._partial = b""
        self._voiced_run_ms = 0
        self._silence_run_ms = 0
        self._last_voiced_end = 0
        keep = max(1, (s.preroll_ms + s.start_ms) // s.frame_ms + 1)
        self._recent: deque[bytes] = deque(maxlen=keep)

    @property
    def done(self) -> bool:
        return self.state == "done"

    def arm(self) -> None:
        """Start the no-input timer now (the prompt has finished playing). Idempotent."""
        if self.armed_at is None:
            self.armed_at = self.now_ms

    def feed(self, pcm: bytes) -> list[EndpointEvent]:
        """Consume audio; return what happened in it, in order. After ``done``, audio is ignored."""
        if self.done:
            return []
        data = self._partial + pcm if self._partial else pcm
        size = self._frame_bytes
        whole = len(data) - len(data) % size
        self._partial = data[whole:]
        events: list[EndpointEvent] = []
        audio: list[bytes] = []
        for offset in range(0, whole, size):
            self._frame(data[offset : offset + size], events, audio)
            if self.done:
                self._partial = b""
                break
        if audio:  # one SpeechAudio per feed, placed before SpeechEnded if the utterance ended here
            chunk = SpeechAudio(b"".join(audio))
            if events and isinstance(events[-1], SpeechEnded):
                events.insert(len(events) - 1, chunk)
            else:
                events.append(chunk)
        return events

    # -- internals --------------------------------------------------------------------------

    def _voiced(self, frame: bytes) -> bool:
        s = self.settings
        level = level_dbfs(frame)
        voiced = level > s.threshold_dbfs and level > self.floor_dbfs + s.noise_margin_db
        rate = self.FLOOR_FALL if level < self.floor_dbfs else self.FLOOR_RISE
        self.floor_dbfs += (level - self.floor_dbfs) * rate
        return voiced

    def _frame(self, frame: bytes, events: list[EndpointEvent], audio: list[bytes]) -> None:
        s = self.settings
        start = self.now_ms
        self.now_ms += s.frame_ms
        voiced = self._voiced(frame)
        if self.state == "waiting":
            self._recent.append(frame)
            self._voiced_run_ms = self._voiced_run_ms + s.frame_ms if voiced else 0
            if voiced and self._voiced_run_ms >= max(s.start_ms, s.frame_ms):
                self.state = "speech"
                self.speech_start_ms = self.now_ms - self._voiced_run_ms
                self._last_voiced_end = self.now_ms
                self._silence_run_ms = 0
                preroll_frames = (s.preroll_ms + self._voiced_run_ms) // s.frame_ms
                audio.extend(list(self._recent)[-preroll_frames:] if preroll_frames else [])
                self._recent.clear()
                events.append(SpeechStarted(self.speech_start_ms))
            elif self.armed_at is not None and self.now_ms - self.armed_at >= s.noinput_ms:
                self.state = "done"
                events.append(NoInput(self.now_ms))
            return
        # speech
        audio.append(frame)
        assert self.speech_start_ms is not None
        if voiced:
            self._silence_run_ms = 0
            self._last_voiced_end = start + s.frame_ms
        else:
            self._silence_run_ms += s.frame_ms
        speech_ms = self.now_ms - self.speech_start_ms
        if self._silence_run_ms >= s.end_silence_ms:
            self.state = "done"
            events.append(SpeechEnded(self.now_ms, "silence", self._last_voiced_end - self.speech_start_ms))
        elif speech_ms >= s.max_speech_ms:
            self.state = "done"
            events.append(SpeechEnded(self.now_ms, "max_length", speech_ms))
