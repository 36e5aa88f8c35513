"""Engine resolution, model lookup, Vosk grammars and Whisper prompts: no model is loaded here."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from ivr.config import load_config
from ivr.errors import ConfigError
from ivr.speech import recognizer as rec
from ivr.speech.recognizer import find_vosk_model, is_vosk_model, load_recognizer
from ivr.speech.vosk_engine import UNK, grammar_phrases, normalise_phrase
from ivr.speech.whisper_engine import PROMPT_MAX_CHARS, initial_prompt
from lab.require import require


def fake_model(path: Path) -> Path:
    (path / "am").mkdir(parents=True)
    (path / "am" / "final.mdl").write_bytes(b"")
    (path / "conf").mkdir()
    return path


# ------------------------------------------------------------------------------- model lookup


def test_is_vosk_model(tmp_path: Path) -> None:
    assert not is_vosk_model(tmp_path)
    assert is_vosk_model(fake_model(tmp_path / "m"))


def test_configured_model_wins(tmp_path: Path) -> None:
    model = fake_model(tmp_path / "vosk-model-small-en-us-0.15")
    env = {"VOSK_MODEL_PATH": str(fake_model(tmp_path / "other"))}
    assert find_vosk_model(str(model), environ=env, search_dirs=()) == model
    assert find_vosk_model("", environ=env, search_dirs=()) == tmp_path / "other"


def test_configured_but_missing_model_is_a_config_error_not_a_download(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"speech.vosk_model.*no Vosk model.*models/README.md"):
        find_vosk_model(str(tmp_path / "nope"), environ={}, search_dirs=())
    with pytest.raises(ConfigError, match="VOSK_MODEL_PATH"):
        find_vosk_model("", environ={"VOSK_MODEL_PATH": str(tmp_path)}, search_dirs=())


def test_search_dirs_hold_models_by_language(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    fake_model(cache / "vosk-model-ru-0.42")
    fake_model(cache / "vosk-model-small-ru-0.22")
    fake_model(cache / "vosk-model-small-en-us-0.15")
    (cache / "not-a-model").mkdir()
    dirs = (str(tmp_path / "missing"), str(cache))
    assert find_vosk_model("", "en", environ={}, search_dirs=dirs) == cache / "vosk-model-small-en-us-0.15"
    assert find_vosk_model("", "ru", environ={}, search_dirs=dirs) == cache / "vosk-model-small-ru-0.22"
    assert find_vosk_model("", "en", environ={}, search_dirs=(str(tmp_path / "missing"),)) is None
    # a configured parent directory is searched the same way
    assert find_vosk_model(str(cache), "ru", environ={}, search_dirs=()) == cache / "vosk-model-small-ru-0.22"


def test_load_recognizer_off_and_bad_engine(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="ivr.speech.recognizer"):
        assert load_recognizer("off") is None
    assert [r.getMessage() for r in caplog.records] == [
        "speech recognition: off (speech.engine = off); menus take DTMF only"
    ]
    with pytest.raises(ConfigError, match="choose one of"):
        load_recognizer("kaldi")


def test_neither_engine_means_dtmf_only_with_one_log_line(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(rec, "VOSK_SEARCH_DIRS", ())
    monkeypatch.delenv("VOSK_MODEL_PATH", raising=False)
    monkeypatch.setattr(rec, "packaged_whisper_model", lambda: None)
    with caplog.at_level(logging.INFO, logger="ivr.speech.recognizer"):
        assert load_recognizer("auto") is None
    assert len(caplog.records) == 1
    assert "menus take DTMF only" in caplog.records[0].getMessage()


def test_asking_for_an_engine_that_is_not_there_fails_at_start_up(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(rec, "VOSK_SEARCH_DIRS", ())
    monkeypatch.delenv("VOSK_MODEL_PATH", raising=False)
    with pytest.raises(ConfigError, match=r"speech\.engine = vosk but no Vosk model found"):
        load_recognizer("vosk")
    with pytest.raises(ConfigError, match=r"speech\.whisper_model"):
        load_recognizer("whisper", whisper_model=str(tmp_path))
    monkeypatch.setattr(rec, "packaged_whisper_model", lambda: None)
    with pytest.raises(ConfigError, match=r"speech\.engine = whisper but"):
        load_recognizer("whisper")


def test_speech_settings_are_in_the_config_registry() -> None:
    config = load_config(environ={"IVR_SPEECH_VOSK_MODEL": "/srv/vosk/en"})
    assert config.speech.vosk_model == "/srv/vosk/en"
    assert config.speech.engine == "auto"
    described = {key: text for key, _, _, text in config.rows()}
    assert "Vosk model directory" in described["speech.vosk_model"]


def test_packaged_whisper_model_is_found_by_importlib() -> None:
    require("whisper-model")
    path = rec.packaged_whisper_model()
    assert path is not None
    assert (path / "model.bin").is_file() and (path / "tokenizer.json").is_file()


# ------------------------------------------------------------------------------- Vosk grammar


def test_normalise_phrase() -> None:
    assert normalise_phrase("Press 1, please!") == "press one please"
    assert normalise_phrase("I'd like   the 'operator'") == "i'd like the operator"
    assert normalise_phrase("Wi-Fi") == "wi fi"
    assert normalise_phrase("Нажмите 1", "ru") == "нажмите 1"


def test_grammar_has_phrases_then_words_then_unk() -> None:
    grammar = grammar_phrases(["Pay your bill", "talk to an agent", "one", "pay your bill"])
    assert grammar == [
        "pay your bill",
        "talk to an agent",
        "one",
        "pay",
        "your",
        "bill",
        "talk",
        "to",
        "an",
        "agent",
        UNK,
    ]


def test_grammar_leaves_out_what_the_model_does_not_know() -> None:
    vocabulary = {"pay", "your", "bill", "agent"}
    grammar = grammar_phrases(["pay your bill", "talk to an agent", "счет"], vocabulary.__contains__)
    assert grammar == ["pay your bill", "pay", "your", "bill", "agent"]  # no [unk] in this vocabulary


def test_grammar_of_nothing_is_just_unk() -> None:
    assert grammar_phrases(["", "!!"]) == [UNK]
    assert grammar_phrases([], unk=False) == []


# ------------------------------------------------------------------------------ Whisper prompt


def test_initial_prompt_reads_like_a_reply() -> None:
    assert initial_prompt(["billing", "Technical support.", "billing", " talk  to an agent "]) == (
        "Billing, Technical support, talk to an agent."
    )
    assert initial_prompt([]) is None
    assert initial_prompt(["", "  "]) is None


def test_the_prompt_holds_a_menus_labels_and_keys_not_all_its_examples() -> None:
    """Every prompt token is decoded with every reply: the labels and keys, first in a menu's
    phrases, are what it keeps."""
    phrases = ["Pay your bill", "one", "report an outage", "two", "technical support", "three"]
    phrases += ["talk to an agent", "zero", "billing", "bill", "my bill", "a question about my bill"]
    phrases += ["I have a question about my bill", "billing question", "question about my statement"]
    prompt = initial_prompt(phrases)
    assert prompt is not None and len(prompt) <= 120
    assert prompt.startswith("Pay your bill, one, report an outage, two, technical support, three, talk to an agent")
    assert "question about my statement" not in prompt


def test_initial_prompt_is_bounded_and_keeps_the_first_phrases() -> None:
    phrases = [f"phrase number {i}" for i in range(200)]
    prompt = initial_prompt(phrases)
    assert prompt is not None and len(prompt) <= PROMPT_MAX_CHARS
    assert prompt.startswith("Phrase number 0, phrase number 1,") and prompt.endswith(".")
