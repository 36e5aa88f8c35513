"""``build_prompts``: caching, ordering, duplicates, atomicity. A fake engine keeps it fast; one
test goes through a real engine by name."""

from __future__ import annotations

import json
import math
import wave
from pathlib import Path

import pytest

from ivr.errors import ConfigError
from ivr.prompts.build import MANIFEST_PATH, BuildReport, PromptItem, build_prompts
from ivr.prompts.naming import prompt_audio_name
from ivr.prompts.tts import AudioSegment, TtsError
from lab.require import require


class ToneEngine:
    """Speaks a tone whose pitch and length depend on the text; counts its calls."""

    name = "tone"

    def __init__(self, voice: str = "a440", fail_on: str | None = None) -> None:
        self.voice = voice
        self.fail_on = fail_on
        self.calls: list[str] = []

    def synthesize(self, text: str) -> AudioSegment:
        self.calls.append(text)
        if text == self.fail_on:
            raise TtsError(f"cannot say {text!r}")
        rate, hz = 16000, 300 + 10 * (sum(map(ord, text)) % 50)
        n = int(rate * (0.2 + 0.05 * len(text)))
        data = b"".join(
            int(8000 * math.sin(2 * math.pi * hz * i / rate)).to_bytes(2, "little", signed=True) for i in range(n)
        )
        tone = AudioSegment(data=data, sample_width=2, frame_rate=rate, channels=1)
        return AudioSegment.silent(300, frame_rate=rate) + tone + AudioSegment.silent(300, frame_rate=rate)


def _items(*texts: str) -> list[PromptItem]:
    return [PromptItem(prompt_audio_name(text), text) for text in texts]


TEXTS = ("Welcome to Example Power.", "For", "pay your bill", "press", "1")


def _temp_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.name.endswith(".tmp")]


def test_first_build_renders_every_item_as_telephone_wav(tmp_path: Path) -> None:
    engine = ToneEngine()
    items = _items(*TEXTS)
    report = build_prompts(items, tmp_path, engine=engine)

    assert isinstance(report, BuildReport)
    assert report.engine == "tone"
    assert report.rendered == sorted(item.name for item in items)
    assert report.skipped == []
    assert report.seconds >= 0
    for item in items:
        with wave.open(str(tmp_path / f"{item.name}.wav"), "rb") as wav:
            assert (wav.getframerate(), wav.getnchannels(), wav.getsampwidth()) == (8000, 1, 2)
    manifest = json.loads((tmp_path / MANIFEST_PATH).read_text())
    entry = manifest["prompts"][items[0].name]
    assert entry["text"] == items[0].text and entry["engine"] == "tone" and entry["voice"] == "a440"
    assert len(entry["sha256"]) == 64
    assert _temp_files(tmp_path) == []


def test_second_build_skips_everything(tmp_path: Path) -> None:
    build_prompts(_items(*TEXTS), tmp_path, engine=ToneEngine())
    engine = ToneEngine()
    report = build_prompts(_items(*reversed(TEXTS)), tmp_path, engine=engine)
    assert report.rendered == []
    assert report.skipped == sorted(prompt_audio_name(t) for t in TEXTS)
    assert engine.calls == []
    assert report.seconds < 0.5


def test_changed_text_makes_a_new_file_and_keeps_the_old(tmp_path: Path) -> None:
    build_prompts(_items("Welcome to Example Power."), tmp_path, engine=ToneEngine())
    old = tmp_path / f"{prompt_audio_name('Welcome to Example Power.')}.wav"
    old_bytes = old.read_bytes()

    report = build_prompts(_items("Welcome to Example Power and Light."), tmp_path, engine=ToneEngine())
    new_name = prompt_audio_name("Welcome to Example Power and Light.")
    assert report.rendered == [new_name]
    assert (tmp_path / f"{new_name}.wav").read_bytes() != old_bytes
    assert old.read_bytes() == old_bytes
    manifest = json.loads((tmp_path / MANIFEST_PATH).read_text())["prompts"]
    assert set(manifest) == {old.relative_to(tmp_path).with_suffix("").as_posix(), new_name}


def test_same_name_with_a_new_text_is_rerendered(tmp_path: Path) -> None:
    build_prompts([PromptItem("ivr/digit-1", "one")], tmp_path, engine=ToneEngine())
    engine = ToneEngine()
    report = build_prompts([PromptItem("ivr/digit-1", "number one")], tmp_path, engine=engine)
    assert report.rendered == ["ivr/digit-1"] and engine.calls == ["number one"]


def test_other_engine_or_voice_rerenders(tmp_path: Path) -> None:
    items = _items("press")
    build_prompts(items, tmp_path, engine=ToneEngine("a440"))
    assert build_prompts(items, tmp_path, engine=ToneEngine("a440")).skipped == [items[0].name]
    assert build_prompts(items, tmp_path, engine=ToneEngine("b494")).rendered == [items[0].name]


def test_force_rerenders_everything(tmp_path: Path) -> None:
    build_prompts(_items(*TEXTS), tmp_path, engine=ToneEngine())
    engine = ToneEngine()
    report = build_prompts(_items(*TEXTS), tmp_path, engine=engine, force=True)
    assert len(report.rendered) == len(TEXTS) and report.skipped == []


def test_missing_or_altered_file_is_rerendered(tmp_path: Path) -> None:
    items = _items("press", "1")
    build_prompts(items, tmp_path, engine=ToneEngine())
    (tmp_path / f"{prompt_audio_name('press')}.wav").unlink()
    (tmp_path / f"{prompt_audio_name('1')}.wav").write_bytes(b"RIFF, but not ours")
    report = build_prompts(items, tmp_path, engine=ToneEngine())
    assert sorted(report.rendered) == sorted(item.name for item in items)


def test_duplicates_are_built_once_in_a_stable_order(tmp_path: Path) -> None:
    engine = ToneEngine()
    items = [*_items("press", "1", "press"), PromptItem(prompt_audio_name("press"), "  press\n")]
    seen: list[tuple[int, int, str]] = []
    report = build_prompts(items, tmp_path, engine=engine, progress=lambda i, n, name: seen.append((i, n, name)))
    names = sorted({prompt_audio_name("press"), prompt_audio_name("1")})
    assert report.rendered == names
    assert len(engine.calls) == 2
    assert seen == [(1, 2, names[0]), (2, 2, names[1])]

    # Progress covers skipped items too.
    seen.clear()
    build_prompts(items, tmp_path, engine=engine, progress=lambda i, n, name: seen.append((i, n, name)))
    assert seen == [(1, 2, names[0]), (2, 2, names[1])]


def test_one_name_for_two_texts_is_a_config_error(tmp_path: Path) -> None:
    items = [PromptItem("ivr/greeting", "Hello."), PromptItem("ivr/greeting", "Goodbye.")]
    with pytest.raises(ConfigError, match="two different texts"):
        build_prompts(items, tmp_path, engine=ToneEngine())


@pytest.mark.parametrize("name", ["", "/etc/passwd", "ivr/../../x", "ivr/", "ivr/.manifest.json", "a\\b"])
def test_bad_names_are_config_errors(name: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="bad prompt sound name"):
        build_prompts([PromptItem(name, "hello")], tmp_path, engine=ToneEngine())


def test_empty_text_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="empty text"):
        build_prompts([PromptItem("ivr/blank", " ")], tmp_path, engine=ToneEngine())


def test_unknown_engine_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown TTS engine 'nope'"):
        build_prompts(_items("press"), tmp_path, engine="nope")


def test_failure_keeps_finished_work_and_leaves_no_partial_file(tmp_path: Path) -> None:
    items = _items("aaa first", "bbb second", "ccc third")
    with pytest.raises(TtsError, match="bbb second"):
        build_prompts(items, tmp_path, engine=ToneEngine(fail_on="bbb second"))
    assert (tmp_path / f"{items[0].name}.wav").is_file()
    assert not (tmp_path / f"{items[1].name}.wav").exists()
    assert _temp_files(tmp_path) == []

    engine = ToneEngine()
    report = build_prompts(items, tmp_path, engine=engine)
    assert report.skipped == [items[0].name]
    assert report.rendered == [items[1].name, items[2].name]


def test_corrupt_manifest_means_rebuild(tmp_path: Path) -> None:
    build_prompts(_items("press"), tmp_path, engine=ToneEngine())
    (tmp_path / MANIFEST_PATH).write_text("{not json")
    assert build_prompts(_items("press"), tmp_path, engine=ToneEngine()).rendered == [prompt_audio_name("press")]


def test_build_by_engine_name_with_a_real_engine(tmp_path: Path) -> None:
    require("espeak-ng")
    items = _items("For", "pay your bill")
    report = build_prompts(items, tmp_path, engine="espeak-ng")
    assert report.engine == "espeak-ng" and len(report.rendered) == 2
    assert build_prompts(items, tmp_path, engine="espeak-ng").skipped == sorted(i.name for i in items)
    assert _temp_files(tmp_path) == []
