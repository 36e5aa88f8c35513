"""Speech under load degrades, it does not stall: the admission check that offers a menu on keys
when listening would make some caller wait past the latency budget."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from ivr.channels.voice import VoiceChannel
from ivr.flow.model import InputResult, Prompt
from ivr.speech.pool import Admission
from ivr.speech.service import IntentMatchers, SpeechService
from tests.unit.speech.fakes import FakeAgiSession, FakeRecognizer, silence, tone
from tests.unit.speech.test_voice_speech import FAST, MENU, caller, exec_lines, sounds  # noqa: F401


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_admits_up_to_the_limit_and_a_caller_alone_always() -> None:
    a = Admission(1.5, workers=2)
    assert [a.admit() for _ in range(3)] == [True, True, False]
    assert a.listening == 2 and a.refused == 1
    a.release()
    assert a.admit() is True


def test_a_wait_past_the_budget_halves_the_limit_and_fast_answers_grow_it() -> None:
    a = Admission(1.5, workers=4)
    assert a.admit()
    a.release(2.0)  # someone waited 2 s: too many were listening
    assert a.limit == 2.0
    a.admit()
    a.release(3.0)
    a.admit()
    a.release(3.0)
    assert a.limit == 1.0  # never under one
    assert a.admit() and not a.admit()  # alone: admitted; a second: keys
    a.release(0.5)  # fast (under 0.6 x budget): grows by 1 / limit
    assert a.limit == 2.0
    a.release(1.2)  # neither fast nor late: unchanged
    assert a.limit == 2.0
    assert [a.admit() for _ in range(3)] == [True, True, False]


def test_a_fresh_limit_grows_one_caller_per_fast_answer_until_the_first_wait_past_the_budget() -> None:
    a = Admission(1.5, workers=2)
    assert [a.admit() for _ in range(3)] == [True, True, False]  # full: in use
    a.release(0.1)
    assert a.limit == 3.0  # slow start: one more per fast answer
    assert a.admit() and a.admit()  # 3 listening: full again
    a.release(0.1)
    assert a.limit == 4.0
    a.release(2.0)  # a wait past the budget: halved, and cautious from now on
    assert a.limit == 2.0 and not a.slow_start
    assert a.listening == 1 and a.admit() and not a.admit()  # full again
    a.release(0.1)
    assert a.limit == 2.5  # one over its size


def test_a_limit_nobody_reached_does_not_grow() -> None:
    """One caller at a time answering fast for an hour proves nothing about two at once."""
    a = Admission(1.5, workers=2)
    for _ in range(100):
        assert a.admit()
        a.release(0.1)
    assert a.limit == 2.0
    assert a.admit() and a.admit()  # now it is full: the next fast answer grows it
    a.release(0.1)
    assert a.limit == 3.0


def test_refusals_are_logged_once_a_minute_with_a_count(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    a = Admission(0.5, workers=1, clock=clock)
    assert a.admit()
    with caplog.at_level(logging.WARNING, logger="ivr.speech.pool"):
        for t in range(0, 121, 10):  # 13 refusals over two minutes
            clock.now = float(t)
            assert not a.admit()
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 3  # at 0 s, 60 s, 120 s
    assert lines[0].endswith("1 menu(s) offered on keys since the last report")
    assert lines[1].endswith("6 menu(s) offered on keys since the last report")
    assert a.refused == 13


async def test_over_budget_the_menu_is_offered_on_keys_at_once(sounds: Path) -> None:  # noqa: F811
    speech = SpeechService(
        FakeRecognizer(), IntentMatchers(), port=0, sounds_dir=sounds, endpoint=FAST, latency_budget=0.4, workers=1
    )
    await speech.start()
    try:
        assert speech.admission is not None and speech.admission.admit()  # someone else is listening
        session = FakeAgiSession(caller(tone(500), silence(500)), keys=["2"])
        channel = VoiceChannel(session, speech=speech)  # type: ignore[arg-type]
        assert await channel.menu(MENU) == InputResult("match", "dtmf", "2")
        assert exec_lines(session) == []  # no AudioSocket: the caller never spoke into a queue
        assert speech.admission.refused == 1 and speech.failures == 0
        speech.admission.release()
        session = FakeAgiSession(caller(tone(700), silence(500)))
        heard = await VoiceChannel(session, speech=speech).menu(MENU)  # type: ignore[arg-type]
        assert heard.mode == "speech" and speech.admission.listening == 0  # admitted, then released
    finally:
        await speech.stop()


async def test_words_not_ready_within_the_budget_turn_into_keys_at_the_budget(sounds: Path) -> None:  # noqa: F811
    """Admitted, the caller speaks, but the decode takes 2 s against a 0.6 s budget (a sudden
    load): at the budget the caller hears that speech is busy and gets the menu on keys, instead
    of waiting on in silence; it counts as a menu offered on keys and halves the limit."""
    speech = SpeechService(
        FakeRecognizer(delay=2.0), IntentMatchers(), port=0, sounds_dir=sounds, endpoint=FAST, latency_budget=0.6
    )
    await speech.start()
    try:
        assert speech.admission is not None
        session = FakeAgiSession(caller(tone(500), silence(500)), keys=["1"])
        channel = VoiceChannel(session, speech=speech)  # type: ignore[arg-type]
        waited: list[float] = []
        real_listen = speech.listen

        async def timed_listen(*args: Any) -> Any:
            heard = await real_listen(*args)
            waited.append(heard.latency_s)
            return heard

        speech.listen = timed_listen  # type: ignore[method-assign, assignment]
        assert await channel.menu(MENU) == InputResult("match", "dtmf", "1")
        assert waited and waited[0] < 0.6  # the end of speech -> "busy" wait stayed within the budget
        (read,) = [line for line in session.lines if line.startswith("EXEC Read")]
        assert Prompt("Voice answers are busy right now. Please use your keypad.").audio_name() in read
        assert speech.admission.late == 1 and speech.admission.limit == 1.0 and speech.failures == 0
        assert speech.admission.listening == 0
    finally:
        await speech.stop()
