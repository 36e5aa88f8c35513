"""Audio helpers: resampling 8 -> 16 kHz, the voice check, G.711 and WAV reading."""

from __future__ import annotations

import struct
import warnings
from pathlib import Path

import numpy as np
import pytest

from ivr.speech.audio import (
    decode_alaw,
    decode_ulaw,
    has_voice,
    pcm_to_float,
    read_wav,
    upsample_2x,
    voiced_seconds,
)

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)  # the reference G.711 codec; gone in 3.13
    import audioop

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "speech"
RATE = 8000


def tone(hz: float, seconds: float = 1.0, rate: int = RATE, amplitude: float = 0.5) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return (amplitude * np.sin(2 * np.pi * hz * t)).astype(np.float32)


def to_pcm(x: np.ndarray) -> bytes:
    return bytes(np.clip(x * 32767, -32768, 32767).astype("<i2").tobytes())


def noise(kind: str, seconds: float, level: float, seed: int) -> bytes:
    """Deterministic white, pink (1/f) or brown (1/f^2) noise at ``level`` RMS (full scale 1)."""
    rng = np.random.default_rng(seed)
    n = int(RATE * seconds)
    white = rng.standard_normal(n)
    spectrum = np.fft.rfft(white)
    f = np.arange(spectrum.size, dtype=np.float64)
    f[0] = 1.0
    shaped = {"white": spectrum, "pink": spectrum / np.sqrt(f), "brown": spectrum / f}[kind]
    x = np.fft.irfft(shaped, n)
    return to_pcm(x / x.std() * level)


# ---------------------------------------------------------------------------------- resampling


def test_pcm_to_float_scale_and_odd_byte() -> None:
    pcm = struct.pack("<3h", -32768, 0, 16384) + b"\x01"
    assert pcm_to_float(pcm).tolist() == [-1.0, 0.0, 0.5]


def test_upsample_keeps_a_tone_and_doubles_the_length() -> None:
    x = tone(1000)
    y = upsample_2x(x)
    assert y.dtype == np.float32 and y.size == 2 * x.size
    reference = tone(1000, rate=2 * RATE)
    assert np.abs(y[200:-200] - reference[200:-200]).max() < 1e-3
    assert np.allclose(y[200:-200:2], x[100:-100], atol=1e-5)  # half-band: even outputs are the inputs


def test_upsample_leaves_no_mirror_image_of_the_speech_band() -> None:
    """A 3.4 kHz tone doubled by zero-stuffing has an image at 4.6 kHz; the filter removes it."""
    y = upsample_2x(tone(3400))[100:-100]
    spectrum = np.abs(np.fft.rfft(y * np.hanning(y.size)))
    freqs = np.fft.rfftfreq(y.size, 1 / (2 * RATE))
    image = spectrum[freqs > 4600].max() / spectrum.max()
    assert 20 * np.log10(image) < -55


def test_upsample_empty() -> None:
    assert upsample_2x(np.zeros(0, dtype=np.float32)).size == 0


# ---------------------------------------------------------------------------------- voice check


@pytest.mark.parametrize("name", sorted(p.name for p in FIXTURES.glob("*.wav")))
def test_speech_fixtures_have_voice(name: str) -> None:
    pcm, _ = read_wav(FIXTURES / name)
    assert has_voice(pcm), voiced_seconds(pcm)


@pytest.mark.parametrize("kind", ["white", "pink", "brown"])
@pytest.mark.parametrize("level", [0.01, 0.1, 0.3])
def test_noise_has_no_voice(kind: str, level: float) -> None:
    pcm = noise(kind, 10.0, level, seed=7)
    assert voiced_seconds(pcm) == 0.0


def test_silence_and_short_input_have_no_voice() -> None:
    assert voiced_seconds(b"\0\0" * RATE) == 0.0
    assert voiced_seconds(b"") == 0.0
    assert voiced_seconds(b"\x10\x00" * 100) == 0.0


def test_a_vowel_like_buzz_is_voice() -> None:
    """Harmonics of a 150 Hz pitch, in the telephone band only: what a vowel looks like."""
    x = np.sum([tone(150 * k, 0.5, amplitude=0.1 / k) for k in range(2, 20)], axis=0)
    assert voiced_seconds(to_pcm(x)) > 0.3


def test_voiced_seconds_takes_8khz_only() -> None:
    with pytest.raises(ValueError):
        voiced_seconds(b"", rate=16000)


# ----------------------------------------------------------------------------------------- G.711


def test_g711_tables_match_audioop() -> None:
    every_code = bytes(range(256))
    assert decode_ulaw(every_code) == audioop.ulaw2lin(every_code, 2)
    assert decode_alaw(every_code) == audioop.alaw2lin(every_code, 2)


def _wav(fmt_tag: int, bits: int, body: bytes, rate: int = RATE, channels: int = 1, extra: bytes = b"") -> bytes:
    block = channels * bits // 8
    fmt = struct.pack("<HHIIHH", fmt_tag, channels, rate, rate * block, block, bits) + extra
    chunks = b"fmt " + struct.pack("<I", len(fmt)) + fmt
    chunks += b"fact" + struct.pack("<I", 4) + struct.pack("<I", len(body))
    chunks += b"data" + struct.pack("<I", len(body)) + body + (b"\0" if len(body) & 1 else b"")
    return b"RIFF" + struct.pack("<I", 4 + len(chunks)) + b"WAVE" + chunks


def test_read_wav_pcm_ulaw_alaw(tmp_path: Path) -> None:
    pcm = struct.pack("<4h", 0, 1000, -1000, 32767)
    (tmp_path / "pcm.wav").write_bytes(_wav(1, 16, pcm, rate=16000))
    assert read_wav(tmp_path / "pcm.wav") == (pcm, 16000)
    ulaw = audioop.lin2ulaw(pcm, 2)
    (tmp_path / "ulaw.wav").write_bytes(_wav(7, 8, ulaw + b"\xff"))  # odd length: padded chunk
    assert read_wav(tmp_path / "ulaw.wav") == (audioop.ulaw2lin(ulaw + b"\xff", 2), RATE)
    alaw = audioop.lin2alaw(pcm, 2)
    (tmp_path / "alaw.wav").write_bytes(_wav(6, 8, alaw))
    assert read_wav(tmp_path / "alaw.wav")[0] == audioop.alaw2lin(alaw, 2)


def test_read_wav_refuses_what_it_cannot_read(tmp_path: Path) -> None:
    bad = {
        "text.wav": b"hello",
        "stereo.wav": _wav(1, 16, b"\0" * 8, channels=2),
        "float.wav": _wav(3, 32, b"\0" * 8),
    }
    for name, data in bad.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(ValueError):
            read_wav(tmp_path / name)


def test_read_wav_matches_sox_on_a_fixture() -> None:
    """The committed fixtures are what ``sox -e mu-law`` wrote: 8 kHz mu-law, decoded like audioop."""
    raw = (FIXTURES / "piper-yes.wav").read_bytes()
    assert struct.unpack_from("<H", raw, 20)[0] == 7  # WAVE_FORMAT_MULAW
    pcm, rate = read_wav(FIXTURES / "piper-yes.wav")
    assert rate == RATE and len(pcm) > RATE  # more than half a second
