"""End-of-speech detection on synthetic 8 kHz PCM: tones for speech, zeros and noise for silence."""

from __future__ import annotations

import math
import random
import struct

import pytest

from ivr.speech.endpoint import (
    SILENCE_DBFS,
    Endpointer,
    EndpointEvent,
    EndpointSettings,
    NoInput,
    SpeechAudio,
    SpeechEnded,
    SpeechStarted,
    level_dbfs,
)

RATE = 8000


def tone(ms: int, amplitude: int = 4000, hz: float = 440.0) -> bytes:
    n = RATE * ms // 1000
    return struct.pack(f"<{n}h", *(int(amplitude * math.sin(2 * math.pi * hz * i / RATE)) for i in range(n)))


def silence(ms: int) -> bytes:
    return bytes(RATE * ms // 1000 * 2)


def noise(ms: int, amplitude: int = 60, seed: int = 1) -> bytes:
    rnd = random.Random(seed)
    n = RATE * ms // 1000
    return struct.pack(f"<{n}h", *(rnd.randint(-amplitude, amplitude) for _ in range(n)))


def run(ep: Endpointer, pcm: bytes, chunk: int = 320) -> list[EndpointEvent]:
    events: list[EndpointEvent] = []
    for i in range(0, len(pcm), chunk):
        events += ep.feed(pcm[i : i + chunk])
    return events


def kinds(events: list[EndpointEvent]) -> list[str]:
    out: list[str] = []
    for e in events:
        name = type(e).__name__
        if not (out and out[-1] == name == "SpeechAudio"):
            out.append(name)
    return out


def speech_audio(events: list[EndpointEvent]) -> bytes:
    return b"".join(e.pcm for e in events if isinstance(e, SpeechAudio))


def test_levels() -> None:
    assert level_dbfs(silence(20)) == SILENCE_DBFS
    assert level_dbfs(b"") == SILENCE_DBFS
    full = struct.pack("<2h", 32767, -32768)
    assert level_dbfs(full) == pytest.approx(0.0, abs=0.01)
    assert level_dbfs(tone(20, 4000)) == pytest.approx(20 * math.log10(4000 / math.sqrt(2) / 32768), abs=0.3)
    assert level_dbfs(b"\x01\x00\x01") == level_dbfs(b"\x01\x00")  # a trailing odd byte is ignored


def test_utterance_between_silences() -> None:
    ep = Endpointer(EndpointSettings(end_silence_ms=600))
    ep.arm()
    events = run(ep, silence(1000) + tone(1200) + silence(1000))
    assert kinds(events) == ["SpeechStarted", "SpeechAudio", "SpeechEnded"]
    started = events[0]
    ended = events[-1]
    assert isinstance(started, SpeechStarted) and started.at_ms == 1000
    assert isinstance(ended, SpeechEnded) and ended.reason == "silence"
    assert ended.speech_ms == 1200
    assert ended.at_ms == 1000 + 1200 + 600  # the hangover after the last voiced frame
    # The recognizer hears the pre-roll, the words and the hangover; nothing after the end.
    audio = speech_audio(events)
    assert len(audio) == (300 + 1200 + 600) * 16
    assert audio[300 * 16 : 300 * 16 + 16] == tone(1200)[:16]
    assert ep.done and ep.feed(tone(100)) == []


def test_speech_audio_comes_before_the_end_in_one_feed() -> None:
    ep = Endpointer()
    events = ep.feed(tone(500) + silence(1000))
    assert kinds(events) == ["SpeechStarted", "SpeechAudio", "SpeechEnded"]


def test_a_click_is_not_speech_and_no_input_follows() -> None:
    ep = Endpointer(EndpointSettings(start_ms=100, noinput_ms=2000))
    ep.arm()
    events = run(ep, tone(60) + silence(3000))
    assert kinds(events) == ["NoInput"]
    assert isinstance(events[0], NoInput) and events[0].at_ms == 2000


def test_no_input_counts_from_arm_not_from_the_start() -> None:
    ep = Endpointer(EndpointSettings(noinput_ms=1000))
    assert run(ep, silence(5000)) == []  # the prompt is still playing: no timer yet
    ep.arm()
    events = run(ep, silence(1500))
    assert events == [NoInput(6000)]


def test_barge_in_speech_before_arm() -> None:
    ep = Endpointer()
    events = run(ep, silence(400) + tone(800) + silence(1000))
    assert kinds(events) == ["SpeechStarted", "SpeechAudio", "SpeechEnded"]


def test_short_pauses_inside_an_utterance_do_not_end_it() -> None:
    ep = Endpointer(EndpointSettings(end_silence_ms=700))
    words = tone(400) + silence(300) + tone(400) + silence(500) + tone(300)
    events = run(ep, words + silence(1000))
    assert kinds(events) == ["SpeechStarted", "SpeechAudio", "SpeechEnded"]
    ended = events[-1]
    assert isinstance(ended, SpeechEnded) and ended.speech_ms == 1900


def test_max_utterance_length() -> None:
    ep = Endpointer(EndpointSettings(max_speech_ms=2000))
    events = run(ep, tone(5000))
    ended = events[-1]
    assert isinstance(ended, SpeechEnded) and ended.reason == "max_length" and ended.speech_ms == 2000


def test_quiet_line_noise_is_not_speech_but_speech_over_it_is() -> None:
    ep = Endpointer(EndpointSettings(noinput_ms=10000))
    ep.arm()
    assert kinds(run(ep, noise(2000, amplitude=300))) == []  # about -44 dBFS of hiss
    events = run(ep, noise(1000, amplitude=300) + tone(800, amplitude=4000) + noise(1500, amplitude=300, seed=2))
    assert kinds(events) == ["SpeechStarted", "SpeechAudio", "SpeechEnded"]


def test_loud_hum_raises_the_floor_slowly() -> None:
    """A steady loud line (hum) starts as 'speech' but is ended by the length bound, not forever."""
    ep = Endpointer(EndpointSettings(max_speech_ms=4000))
    events = run(ep, tone(6000, amplitude=1500, hz=50))
    assert isinstance(events[-1], SpeechEnded) and events[-1].reason == "max_length"


def test_chunking_does_not_matter() -> None:
    pcm = silence(500) + tone(700) + silence(300) + tone(200) + silence(1200)
    reference = run(Endpointer(), pcm, chunk=320)
    for chunk in (2, 100, 322, 4000, len(pcm)):
        events = run(Endpointer(), pcm, chunk=chunk)
        assert [e for e in events if not isinstance(e, SpeechAudio)] == [
            e for e in reference if not isinstance(e, SpeechAudio)
        ]
        assert speech_audio(events) == speech_audio(reference)


def test_odd_byte_chunks_carry_over() -> None:
    ep = Endpointer()
    pcm = tone(400) + silence(1000)
    events = run(ep, pcm, chunk=33)
    assert kinds(events) == ["SpeechStarted", "SpeechAudio", "SpeechEnded"]


def test_preroll_is_limited_to_what_was_heard() -> None:
    ep = Endpointer(EndpointSettings(preroll_ms=300))
    events = run(ep, tone(500) + silence(1000))  # speech from the first frame: no pre-roll exists
    assert speech_audio(events)[:16] == tone(500)[:16]


def test_arm_is_idempotent() -> None:
    ep = Endpointer(EndpointSettings(noinput_ms=1000))
    ep.arm()
    run(ep, silence(600))
    ep.arm()
    assert run(ep, silence(600)) == [NoInput(1000)]


@pytest.mark.parametrize(
    "kwargs",
    [{"sample_rate": 0}, {"start_ms": -1}, {"noinput_ms": -5}, {"start_ms": 3000, "max_speech_ms": 2000}],
)
def test_settings_are_checked(kwargs: dict[str, int]) -> None:
    with pytest.raises(ValueError):
        EndpointSettings(**kwargs)


def test_frame_bytes() -> None:
    assert EndpointSettings().frame_bytes == 320
    assert EndpointSettings(sample_rate=16000, frame_ms=10).frame_bytes == 320
