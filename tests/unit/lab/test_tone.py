"""The Goertzel share tells a recorded tone from music, noise and silence."""

from __future__ import annotations

import math
import random
from pathlib import Path

from lab.tone import read_wav, rms, tone_share, write_tone_wav


def sine(freq: float, rate: int = 8000, n: int = 8000, amp: float = 8000) -> list[int]:
    return [int(amp * math.sin(2 * math.pi * freq * i / rate)) for i in range(n)]


def test_a_pure_tone_is_nearly_all_at_its_frequency() -> None:
    assert tone_share(sine(1000), 8000, 1000) > 0.95
    assert tone_share(sine(1000), 8000, 700) < 0.01


def test_noise_music_and_silence_are_not_the_tone() -> None:
    rng = random.Random(1)
    noise = [rng.randint(-8000, 8000) for _ in range(8000)]
    chord = [a + b for a, b in zip(sine(440), sine(554), strict=True)]
    assert tone_share(noise, 8000, 1000) < 0.01
    assert tone_share(chord, 8000, 1000) < 0.01
    assert tone_share([0] * 8000, 8000, 1000) == 0.0


def test_the_fake_microphone_file_holds_the_tone(tmp_path: Path) -> None:
    samples, rate = read_wav(write_tone_wav(tmp_path / "tone.wav", freq=1000, seconds=0.5))
    assert rate == 48000 and len(samples) == 24000
    assert tone_share(samples, rate, 1000) > 0.95 and rms(samples) > 10000
