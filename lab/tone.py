"""A known tone for a fake microphone, and the Goertzel test for it in a recording. Pure.

Why: "two-way audio" in the browser softphone's test means the caller really hears what the
agent's microphone picks up. Chromium plays a WAV as its fake microphone
(``--use-file-for-fake-audio-capture``); Asterisk records what the caller's channel is sent
(MixMonitor); the share of that recording's energy at the tone's frequency says whether the tone
crossed WebRTC (opus, DTLS-SRTP) and the bridge to the caller's G.711 leg.
"""

from __future__ import annotations

import math
import struct
import wave
from pathlib import Path


def write_tone_wav(path: Path, *, freq: float = 1000.0, seconds: float = 2.0, rate: int = 48000) -> Path:
    """A mono 16-bit sine at ``freq`` Hz, half of full scale (Chromium loops it)."""
    count = int(seconds * rate)
    frames = b"".join(struct.pack("<h", int(16000 * math.sin(2 * math.pi * freq * i / rate))) for i in range(count))
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(frames)
    return path


def read_wav(path: Path) -> tuple[list[int], int]:
    """16-bit mono samples and the rate (what MixMonitor writes as .wav: slin 8 kHz)."""
    with wave.open(str(path), "rb") as src:
        if src.getsampwidth() != 2 or src.getnchannels() != 1:
            raise ValueError(f"{path}: not 16-bit mono")
        data = src.readframes(src.getnframes())
        return list(struct.unpack(f"<{len(data) // 2}h", data)), src.getframerate()


def tone_share(samples: list[int], rate: int, freq: float) -> float:
    """Share (0..1) of the signal's energy at ``freq`` (Goertzel over the whole buffer); 0 for silence."""
    n = len(samples)
    energy = sum(s * s for s in samples)
    if n == 0 or energy == 0:
        return 0.0
    coeff = 2 * math.cos(2 * math.pi * round(n * freq / rate) / n)
    s1 = s2 = 0.0
    for x in samples:
        s1, s2 = x + coeff * s1 - s2, s1
    power = s1 * s1 + s2 * s2 - coeff * s1 * s2
    # a pure sine of amplitude A over n samples: power = (A n / 2)^2, energy = A^2 n / 2
    return min(1.0, 2 * power / (n * energy))


def rms(samples: list[int]) -> float:
    return math.sqrt(sum(s * s for s in samples) / len(samples)) if samples else 0.0
