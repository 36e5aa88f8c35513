"""Audio helpers for recognition: 8 kHz signed-linear in, what the engines need out.

Why these live here and not in the engines: both engines and the benchmark need the same three
things, and each has a telephony gotcha worth writing down once.

* **Resampling 8 -> 16 kHz** (Whisper only takes 16 kHz). Doubling the rate by inserting zeros
  creates a mirror image of the speech band at 4-8 kHz; a plain linear interpolation leaves
  some of it in. A half-band low-pass removes it; the even output samples stay the input ones.
* **Is anyone speaking at all?** White or pink line noise is loud enough for an energy detector
  and, with a grammar that has no garbage word (the Korean Vosk model has no ``[unk]``), a
  recognizer *must* answer with some phrase. Voiced speech is periodic (a pitch between 60 and
  400 Hz); noise is not. Counting periodic frames rejects noise cheaply before any decode.
* **Reading test and benchmark audio**: Asterisk's sounds are PCM WAV; telephone fixtures are
  G.711 mu-law WAV (what ``sox -e mu-law`` writes and SIPp's ``rtp_stream`` plays). The stdlib
  ``wave`` module reads only PCM.
"""

from __future__ import annotations

import functools
import struct
from pathlib import Path

import numpy as np
import numpy.typing as npt

__all__ = [
    "INPUT_RATE",
    "decode_alaw",
    "decode_ulaw",
    "has_voice",
    "pcm_to_float",
    "read_wav",
    "upsample_2x",
    "voiced_seconds",
]

INPUT_RATE = 8000

Float32Array = npt.NDArray[np.float32]

# ------------------------------------------------------------------------------------ resampling

HALF_BAND_TAPS = 63
"""Length of the 2x interpolation filter: passband flat (< 0.1 dB) to 3.4 kHz, the top of the
telephone band; images at 4.6 kHz and above down by more than 55 dB."""


@functools.cache
def _half_band() -> npt.NDArray[np.float64]:
    n = np.arange(HALF_BAND_TAPS) - HALF_BAND_TAPS // 2
    taps = np.sinc(n / 2) * np.kaiser(HALF_BAND_TAPS, 8.0)  # cut-off at a quarter of the new rate
    return np.asarray(taps * (2.0 / taps.sum()), dtype=np.float64)  # gain 2: half the output samples were zeros


def pcm_to_float(pcm: bytes) -> Float32Array:
    """Signed 16-bit little-endian PCM -> float32 in [-1, 1). A trailing odd byte is ignored."""
    samples = np.frombuffer(pcm, dtype="<i2", count=len(pcm) // 2)
    return samples.astype(np.float32) / np.float32(32768.0)


def upsample_2x(samples: Float32Array) -> Float32Array:
    """8 kHz -> 16 kHz, exactly twice as many samples, no mirror image of the speech band."""
    if samples.size == 0:
        return np.zeros(0, dtype=np.float32)
    stuffed = np.zeros(samples.size * 2, dtype=np.float64)
    stuffed[::2] = samples
    out = np.convolve(stuffed, _half_band(), mode="same")
    return out.astype(np.float32)


# ------------------------------------------------------------------------------------- voicing

_FRAME = 320  # 40 ms at 8 kHz: two periods of a 50 Hz voice
_HOP = 160  # 20 ms
_LAGS = (20, 134)  # pitch periods of 400 Hz down to 60 Hz, at 8 kHz
VOICED_CORRELATION = 0.5
"""Normalised autocorrelation at the pitch lag above which a frame counts as voiced. Measured on
the Asterisk recordings and Piper fixtures (speech frames: up to 1.0, each utterance has at least 8
frames above 0.5) against 10 s each of white, pink and brown noise (never above 0.43)."""
SILENCE_RMS = 60.0
"""Frames quieter than this (about -55 dBFS) are not looked at."""


@functools.cache
def _window_correction() -> npt.NDArray[np.float64]:
    window = np.hanning(_FRAME)
    wac = np.fft.irfft(np.abs(np.fft.rfft(window, 2 * _FRAME)) ** 2)[:_FRAME]
    return np.asarray(wac / wac[0], dtype=np.float64)


def voiced_seconds(pcm: bytes, rate: int = INPUT_RATE) -> float:
    """How much of ``pcm`` (16-bit mono at 8 kHz) is voiced speech, in seconds.

    Per 40 ms frame (20 ms hop), after pre-emphasis (which whitens pink and brown noise): the
    peak of the normalised autocorrelation over pitch lags of 60-400 Hz. Speech vowels repeat
    with the pitch period; noise does not. A steady hum does, and counts as voice: the engine's
    own no-speech judgement has the last word there.
    """
    if rate != INPUT_RATE:
        raise ValueError(f"voiced_seconds works on {INPUT_RATE} Hz audio, not {rate}")
    x = np.frombuffer(pcm, dtype="<i2", count=len(pcm) // 2).astype(np.float64)
    if x.size < _FRAME:
        return 0.0
    x = np.append(x[:1], x[1:] - 0.95 * x[:-1])
    count = 1 + (x.size - _FRAME) // _HOP
    index = np.arange(_FRAME)[None, :] + _HOP * np.arange(count)[:, None]
    frames = x[index]
    frames -= frames.mean(axis=1, keepdims=True)
    rms = np.sqrt((frames**2).mean(axis=1))
    spectrum = np.fft.rfft(frames * np.hanning(_FRAME), 2 * _FRAME, axis=1)
    ac = np.fft.irfft(np.abs(spectrum) ** 2, axis=1)[:, :_FRAME]
    normalised = ac / (ac[:, :1] + 1e-9) / _window_correction()[None, :]
    peak = normalised[:, _LAGS[0] : _LAGS[1]].max(axis=1)
    voiced = (rms > SILENCE_RMS) & (peak > VOICED_CORRELATION)
    return float(voiced.sum()) * _HOP / rate


MIN_VOICED_SECONDS = 0.06
"""Three voiced frames: the shortest reply ("six", "no") has far more; noise has none."""


def has_voice(pcm: bytes) -> bool:
    return voiced_seconds(pcm) >= MIN_VOICED_SECONDS


# ---------------------------------------------------------------------------------------- G.711


@functools.cache
def _ulaw_table() -> npt.NDArray[np.int16]:
    codes = ~np.arange(256, dtype=np.int32) & 0xFF
    exponent = (codes >> 4) & 0x07
    mantissa = codes & 0x0F
    magnitude = (((mantissa << 3) + 0x84) << exponent) - 0x84
    return np.where(codes & 0x80, -magnitude, magnitude).astype(np.int16)


@functools.cache
def _alaw_table() -> npt.NDArray[np.int16]:
    codes = np.arange(256, dtype=np.int32) ^ 0x55
    exponent = (codes >> 4) & 0x07
    mantissa = codes & 0x0F
    magnitude = np.where(exponent == 0, (mantissa << 4) + 8, ((mantissa << 4) + 0x108) << np.maximum(exponent - 1, 0))
    return np.where(codes & 0x80, magnitude, -magnitude).astype(np.int16)


def decode_ulaw(data: bytes) -> bytes:
    """G.711 mu-law bytes -> 16-bit little-endian PCM (the ITU-T table, as Asterisk decodes)."""
    return _ulaw_table()[np.frombuffer(data, dtype=np.uint8)].astype("<i2").tobytes()


def decode_alaw(data: bytes) -> bytes:
    """G.711 A-law bytes -> 16-bit little-endian PCM."""
    return _alaw_table()[np.frombuffer(data, dtype=np.uint8)].astype("<i2").tobytes()


_WAVE_PCM, _WAVE_ALAW, _WAVE_ULAW, _WAVE_EXTENSIBLE = 1, 6, 7, 0xFFFE


def read_wav(path: Path) -> tuple[bytes, int]:
    """``(16-bit mono PCM, sample rate)`` of a mono WAV file in 16-bit PCM, mu-law or A-law."""
    data = path.read_bytes()
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise ValueError(f"{path}: not a RIFF/WAVE file")
    pos, fmt, body = 12, None, None
    while pos + 8 <= len(data):
        chunk_id, size = data[pos : pos + 4], struct.unpack_from("<I", data, pos + 4)[0]
        content = data[pos + 8 : pos + 8 + size]
        if chunk_id == b"fmt ":
            fmt = content
        elif chunk_id == b"data":
            body = content
        pos += 8 + size + (size & 1)  # chunks are padded to an even length
    if fmt is None or body is None or len(fmt) < 16:
        raise ValueError(f"{path}: no fmt or data chunk")
    tag, channels, rate, _, _, bits = struct.unpack_from("<HHIIHH", fmt)
    if tag == _WAVE_EXTENSIBLE and len(fmt) >= 26:
        tag = struct.unpack_from("<H", fmt, 24)[0]  # first two bytes of the sub-format GUID
    if channels != 1:
        raise ValueError(f"{path}: {channels} channels; mono only")
    if tag == _WAVE_PCM and bits == 16:
        return body[: len(body) // 2 * 2], rate
    if tag == _WAVE_ULAW and bits == 8:
        return decode_ulaw(body), rate
    if tag == _WAVE_ALAW and bits == 8:
        return decode_alaw(body), rate
    raise ValueError(f"{path}: unsupported WAV format (tag {tag}, {bits} bits)")
