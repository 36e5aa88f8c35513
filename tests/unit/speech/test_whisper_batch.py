"""The real Whisper tiny.en (from the installed wheel) on a short window and in batches: the same
words as one at a time on the 30 s window, and no repeated replies."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ivr.speech import recognizer as rec
from ivr.speech.audio import read_wav
from ivr.speech.whisper_engine import (
    DEFAULT_WINDOW_S,
    WHISPER_WINDOW_S,
    WINDOW_MARGIN_S,
    WhisperRecognizer,
    collapse_repeats,
    token_cap,
    trim_silence,
    window_for,
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
        (
            "I may write just one, pay my bill, pay my bill, pay my bill, pay my bill, pay my bill",
            "I may write just one, pay my bill,",
        ),
        (
            "I don't want a machine, give me a person, give me a person, give me a person, give me a",
            "I don't want a machine, give me a person,",
        ),
        ("I want to pay my bill pay my bill", "I want to pay my bill pay my bill"),
        ("my number is 4 5 4 5 4 5", "my number is 4 5 4 5 4 5"),
        ("one two two two", "one two two two"),
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


@pytest.mark.parametrize(
    ("seconds", "window"),
    [(0.0, 6.0), (0.8, 6.0), (4.0, 6.0), (4.1, 8.0), (7.9, 10.0), (9.5, 15.0), (27.0, 30.0), (40.0, 30.0)],
)
def test_the_window_is_the_smallest_fixed_size_that_holds_the_reply_and_its_margin(
    seconds: float, window: float
) -> None:
    assert window_for(seconds) == window
    assert window_for(seconds) >= min(WHISPER_WINDOW_S, seconds + WINDOW_MARGIN_S)


def test_the_shortest_window_can_be_raised() -> None:
    assert window_for(0.8, shortest=10.0) == 10.0
    assert window_for(0.8, shortest=WHISPER_WINDOW_S) == WHISPER_WINDOW_S


def _tone(seconds: float, amplitude: int) -> bytes:
    t = np.arange(int(8000 * seconds)) / 8000
    return (amplitude * np.sin(2 * np.pi * 300 * t)).astype("<i2").tobytes()


def _silence(seconds: float, amplitude: int = 0) -> bytes:
    noise = np.random.default_rng(7).integers(-amplitude, amplitude + 1, int(8000 * seconds))
    return noise.astype("<i2").tobytes()


def test_the_silent_edges_are_trimmed_to_a_few_tenths_of_a_second() -> None:
    """The endpointer's pre-roll and hangover (and a slow start) are cut, 0.3 s kept each side."""
    words = _tone(0.6, 8000) + _tone(0.2, 300) + _tone(0.4, 6000)  # a soft syllable inside is kept
    trimmed = trim_silence(_silence(1.0, 20) + words + _silence(0.7, 20))
    assert len(trimmed) == len(words) + 2 * int(0.3 * 8000) * 2
    assert words in trimmed


def test_trimming_keeps_audio_without_a_loud_part_and_short_edges_as_they_are() -> None:
    quiet = _silence(1.0, 30)  # under the silence level: nothing to anchor a trim on
    assert trim_silence(quiet) == quiet
    snug = _silence(0.1) + _tone(0.5, 8000) + _silence(0.2)
    assert trim_silence(snug) == snug
    assert trim_silence(b"") == b""


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


def test_a_short_reply_is_heard_on_the_shortest_window(short_window: WhisperRecognizer) -> None:
    """Allison's "six" alone on the 6 s window: with the window's tail zero in the log-mel (a
    flat, fairly loud sound after Whisper's normalisation) tiny.en heard nothing; with the tail
    padded as silence before the log-mel it hears the digit, as on the 30 s window."""
    from lab.require import allison

    six = read_wav(allison() / "digits" / "6.wav")[0]
    assert short_window.window_s == DEFAULT_WINDOW_S == 6.0
    heard = short_window.transcribe_batch([(six, PHRASES)])[0]
    assert heard.text.strip(" .,?!").lower() in {"6", "six"}
