"""The real Whisper tiny.en (from the installed wheel) on a short window and in batches: the same
words as one at a time on the 30 s window, and no repeated replies."""

from __future__ import annotations

from pathlib import Path

import pytest

from ivr.speech import recognizer as rec
from ivr.speech.audio import read_wav
from ivr.speech.whisper_engine import (
    DEFAULT_WINDOW_S,
    WHISPER_WINDOW_S,
    WhisperRecognizer,
    collapse_repeats,
    token_cap,
)
from lab.require import require

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "speech"
PHRASES = ["pay your bill", "billing", "report an outage", "technical support", "talk to an agent"]


@pytest.mark.parametrize(
    ("heard", "read"),
    [
        ("Yes. Yes. Yes.", "Yes."),
        ("1. 1. 1 1 1 1", "1."),
        ("0 0 0 0", "0"),
        ("I want to pay my bill. I want to pay my bill. I want to pay", "I want to pay my bill."),
        ("No... no... No", "No..."),
        ("I'd like to pay what I owe. I'd like to pay what I owe. I", "I'd like to pay what I owe."),
        ("My service is out, my service is out, my services is out, my services", "My service is out,"),
        ("Either I just want to pay my bill, I just want to pay my bill, I just", "Either I just want to pay my bill,"),
        ("one one two", "one one two"),
        ("Yes, please.", "Yes, please."),
        ("Billing, billing please", "Billing, billing please"),
        ("I want to pay, pay my bill", "I want to pay, pay my bill"),
        ("Option 2.", "Option 2."),
        ("Thank", "Thank"),
        ("", ""),
    ],
)
def test_a_reply_said_over_and_over_is_read_once(heard: str, read: str) -> None:
    assert collapse_repeats(heard) == read


def test_the_decode_is_capped_by_the_length_of_the_reply() -> None:
    assert token_cap(0.0) == 6
    assert token_cap(0.5) == 10
    assert token_cap(2.3) == 25  # "I have a question about my bill." is 9 tokens


@pytest.fixture(scope="module")
def short_window() -> WhisperRecognizer:
    require("whisper-model")
    path = rec.packaged_whisper_model()
    assert path is not None
    return WhisperRecognizer.load(path, workers=1, window_s=DEFAULT_WINDOW_S)


def test_a_batch_hears_what_the_30_s_window_hears_one_at_a_time(short_window: WhisperRecognizer) -> None:
    names = ["piper-yes.wav", "piper-billing.wav", "piper-option-two.wav", "piper-question-about-my-bill.wav"]
    audio = [read_wav(FIXTURES / name)[0] for name in names]
    full = WhisperRecognizer(short_window.model, short_window.path, window_s=WHISPER_WINDOW_S)
    alone = []
    for pcm in audio:
        session = full.session(PHRASES)
        session.accept(pcm)
        alone.append(session.finish().text)
    batched = short_window.transcribe_batch([(pcm, PHRASES) for pcm in audio] + [(bytes(16000), PHRASES)])

    def words(text: str) -> str:
        return text.lower().strip(" .,?!").replace("2", "two")

    assert [words(t.text) for t in batched[:-1]] == [words(t) for t in alone]
    assert batched[-1].text == "" and batched[-1].confidence == 0.0  # silence is not decoded
    assert all(t.confidence > 0.3 for t in batched[:-1])
    assert len({t.seconds for t in batched}) == 1  # one decode for all of them


def test_callers_at_different_menus_share_a_batch(short_window: WhisperRecognizer) -> None:
    """Prompts of different lengths cannot be generated as one CTranslate2 batch: they share the
    encoder pass and are generated in groups, each with its own menu's prompt."""
    yes, billing = (read_wav(FIXTURES / name)[0] for name in ("piper-yes.wav", "piper-billing.wav"))
    heard = short_window.transcribe_batch([(yes, ["yes", "no"]), (billing, PHRASES), (yes, PHRASES)])
    assert [t.text.lower().strip(" .?!") for t in heard] == ["yes", "billing", "yes"]
