"""A voice menu that listens: VoiceChannel + SpeechService over a real AudioSocket server, with an
AGI session whose ``EXEC AudioSocket`` runs a fake Asterisk. Every fallback to keys is here."""

from __future__ import annotations

import asyncio
import wave
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from ivr.channels.voice import VoiceChannel
from ivr.errors import CallEnded
from ivr.flow.model import Choice, InputResult, Menu, Prompt
from ivr.speech.endpoint import EndpointSettings
from ivr.speech.service import IntentMatchers, SpeechService
from tests.unit.speech.fakes import FakeAgiSession, FakeRecognizer, Heard, fake_asterisk, silence, speak, tone

MENU = Menu(
    "main_menu",
    Prompt("How can we help you today?"),
    (
        Choice("1", "pay_bill", Prompt("paying your bill"), ("billing", "pay")),
        Choice("2", "outage", Prompt("reporting an outage"), ("outage",)),
        Choice("0", "agent", Prompt("talking to an agent"), ("agent", "operator")),
    ),
    timeout=0.5,
    attempt=1,
)
FRAGMENTS = 1 + 4 * len(MENU.choices)
FAST = EndpointSettings(end_silence_ms=300, max_speech_ms=3000)


def write_wav(path: Path, pcm: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(pcm)


def fragment_names(menu: Menu) -> list[str]:
    names = [menu.prompt.audio_name()]
    for c in menu.choices:
        names += [Prompt("For").audio_name(), c.label.audio_name(), Prompt("press").audio_name(), f"digits/{c.key}"]
    return names


@pytest.fixture
def sounds(tmp_path: Path) -> Path:
    for name in fragment_names(MENU):
        write_wav(tmp_path / f"{name}.wav", tone(20, amplitude=800))
    return tmp_path


async def service(sounds: Path, recognizer: FakeRecognizer | None = None) -> SpeechService:
    speech = SpeechService(recognizer or FakeRecognizer(), IntentMatchers(), port=0, sounds_dir=sounds, endpoint=FAST)
    await speech.start()
    return speech


@pytest.fixture
async def speech(sounds: Path) -> AsyncIterator[SpeechService]:
    s = await service(sounds)
    yield s
    await s.stop()


def caller(*chunks: bytes, **kwargs: Any) -> Callable[[str, str], Any]:
    async def asterisk(call: str, address: str) -> Heard:
        return await fake_asterisk(address, call, speak(*chunks, pace=0.005, **kwargs))

    return asterisk


def exec_lines(session: FakeAgiSession) -> list[str]:
    """Attempts to listen (AudioSocket)."""
    return [line for line in session.lines if line.startswith("EXEC AudioSocket")]


def read_lines(session: FakeAgiSession) -> list[str]:
    """Menus played on keys (one Read each)."""
    return [line for line in session.lines if line.startswith("EXEC Read")]


def stream_lines(session: FakeAgiSession) -> list[str]:
    return [line for line in session.lines if line.startswith("STREAM FILE")]


# -- the caller speaks, presses, or says nothing ---------------------------------------------------


async def test_spoken_intent_picks_the_option(speech: SpeechService) -> None:
    session = FakeAgiSession(caller(silence(200), tone(700), silence(500)))
    channel = VoiceChannel(session, speech=speech)  # type: ignore[arg-type]
    result = await channel.menu(MENU)
    assert result.status == "match" and result.mode == "speech"
    assert (result.interpretation, result.intent) == ("outage", "outage")
    assert result.utterance == "I want to report an outage" and 0 < result.confidence <= 1
    assert stream_lines(session) == []  # the menu was played over the AudioSocket
    (line,) = exec_lines(session)
    assert line.startswith('EXEC AudioSocket "') and line.endswith(f',{speech.server.address}"')
    assert session.heard is not None and session.heard.audio_frames >= 1 and session.heard.hangup
    assert channel.speech is speech


async def test_the_recognizer_is_primed_with_the_menu(speech: SpeechService) -> None:
    session = FakeAgiSession(caller(tone(500), silence(500)))
    await VoiceChannel(session, speech=speech).menu(MENU)  # type: ignore[arg-type]
    assert isinstance(speech.recognizer, FakeRecognizer)
    phrases = speech.recognizer.sessions[0].phrases
    assert {"paying your bill", "reporting an outage", "talking to an agent"} <= set(phrases)


async def test_a_key_during_the_menu_wins(speech: SpeechService) -> None:
    session = FakeAgiSession(caller(silence(100), dtmf="0"))
    assert await VoiceChannel(session, speech=speech).menu(MENU) == InputResult("match", "dtmf", "0")  # type: ignore[arg-type]


async def test_silence_is_noinput(speech: SpeechService) -> None:
    session = FakeAgiSession(caller(silence(100)))
    result = await VoiceChannel(session, speech=speech).menu(MENU)  # type: ignore[arg-type]
    assert (result.status, result.mode) == ("noinput", "speech")


async def test_words_without_intent_are_nomatch(sounds: Path) -> None:
    speech = await service(sounds, FakeRecognizer(text="the weather is lovely today"))
    try:
        result = await VoiceChannel(FakeAgiSession(caller(tone(500), silence(500))), speech=speech).menu(MENU)  # type: ignore[arg-type]
        assert (result.status, result.utterance) == ("nomatch", "the weather is lovely today")
    finally:
        await speech.stop()


async def test_no_words_at_all_is_noinput(sounds: Path) -> None:
    speech = await service(sounds, FakeRecognizer(text=""))
    try:
        result = await VoiceChannel(FakeAgiSession(caller(tone(300), silence(500))), speech=speech).menu(MENU)  # type: ignore[arg-type]
        assert (result.status, result.mode) == ("noinput", "speech")
    finally:
        await speech.stop()


async def test_a_prompt_we_cannot_read_is_played_by_asterisk_then_we_listen(speech: SpeechService) -> None:
    (speech.prompts.sounds_dir / "digits" / "0.wav").unlink()  # e.g. a GSM-only recording
    session = FakeAgiSession(caller(tone(600), silence(500)))
    result = await VoiceChannel(session, speech=speech).menu(MENU)  # type: ignore[arg-type]
    assert result.mode == "speech" and result.interpretation == "outage"
    assert len(stream_lines(session)) == FRAGMENTS and len(exec_lines(session)) == 1
    assert session.lines.index(exec_lines(session)[0]) == FRAGMENTS  # listening after the menu
    assert session.heard is not None and session.heard.audio_frames == 0


async def test_a_key_during_the_stream_file_menu_skips_listening(speech: SpeechService) -> None:
    (speech.prompts.sounds_dir / "digits" / "0.wav").unlink()
    session = FakeAgiSession(caller(), keys=["", "2"])
    assert await VoiceChannel(session, speech=speech).menu(MENU) == InputResult("match", "dtmf", "2")  # type: ignore[arg-type]
    assert exec_lines(session) == []


# -- fallbacks to keys ---------------------------------------------------------------------------


async def test_audiosocket_not_connecting_falls_back_to_keys_for_the_rest_of_the_call(speech: SpeechService) -> None:
    session = FakeAgiSession(exec_result="-2", keys=["", "", "1"])  # app missing: no connection
    channel = VoiceChannel(session, speech=speech)  # type: ignore[arg-type]
    result = await channel.menu(MENU)
    assert result == InputResult("match", "dtmf", "1")
    assert len(exec_lines(session)) == 1 and len(read_lines(session)) == 1  # the menu again, on keys
    assert stream_lines(session) == []
    assert channel.speech is None and speech.failures == 1
    session.lines.clear()
    session.keys = ["2"]
    assert await channel.menu(MENU) == InputResult("match", "dtmf", "2")
    assert exec_lines(session) == []  # no second try at speech on this call


async def test_asterisk_closing_the_socket_falls_back(speech: SpeechService) -> None:
    session = FakeAgiSession(caller(tone(100), then_close=True), keys=[""] * FRAGMENTS)
    result = await VoiceChannel(session, speech=speech).menu(MENU)  # type: ignore[arg-type]
    assert (result.status, result.mode) == ("noinput", "dtmf")
    assert session.lines[-2:] == [read_lines(session)[0], 'GET VARIABLE "IVR_MENU_KEY"']


async def test_a_recognizer_error_falls_back(sounds: Path) -> None:
    speech = await service(sounds, FakeRecognizer(error=RuntimeError("decode failed")))
    try:
        session = FakeAgiSession(caller(tone(500), silence(500)), keys=["2"])
        assert await VoiceChannel(session, speech=speech).menu(MENU) == InputResult("match", "dtmf", "2")  # type: ignore[arg-type]
        assert speech.failures == 1
    finally:
        await speech.stop()


async def test_a_slow_recognizer_falls_back(sounds: Path) -> None:
    speech = SpeechService(
        FakeRecognizer(delay=1.0), IntentMatchers(), port=0, sounds_dir=sounds, endpoint=FAST, decode_timeout=0.2
    )
    await speech.start()
    try:
        session = FakeAgiSession(caller(tone(500), silence(500)), keys=["1"])
        assert await VoiceChannel(session, speech=speech).menu(MENU) == InputResult("match", "dtmf", "1")  # type: ignore[arg-type]
    finally:
        await speech.stop()


async def test_a_matcher_bug_falls_back(speech: SpeechService, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(choices: Any) -> Any:
        raise ValueError("bug")

    monkeypatch.setattr(speech.matchers, "matcher", broken)
    session = FakeAgiSession(caller(tone(500), silence(500)), keys=["1"])
    assert await VoiceChannel(session, speech=speech).menu(MENU) == InputResult("match", "dtmf", "1")  # type: ignore[arg-type]


async def test_a_hangup_while_listening_ends_the_call(speech: SpeechService) -> None:
    session = FakeAgiSession(caller(tone(100), then_close=True), hang_up_on_exec=True)
    with pytest.raises(CallEnded):
        await VoiceChannel(session, speech=speech).menu(MENU)  # type: ignore[arg-type]
    assert not speech.server._pending and not speech.server._by_listening  # nothing left behind


async def test_a_menu_that_says_no_speech_is_keys_only(speech: SpeechService) -> None:
    from dataclasses import replace

    session = FakeAgiSession(keys=["1"])
    assert await VoiceChannel(session, speech=speech).menu(replace(MENU, speech=False)) == InputResult(  # type: ignore[arg-type]
        "match", "dtmf", "1"
    )
    assert exec_lines(session) == []


async def test_without_a_recognizer_menus_are_keys_only() -> None:
    session = FakeAgiSession(keys=["", "", "", "2"])
    assert await VoiceChannel(session).menu(MENU) == InputResult("match", "dtmf", "2")  # type: ignore[arg-type]
    assert exec_lines(session) == []


async def test_stop_while_a_call_listens(sounds: Path) -> None:
    speech = await service(sounds)
    session = FakeAgiSession(caller(silence(20)))
    channel = VoiceChannel(session, speech=speech)  # type: ignore[arg-type]
    listening = asyncio.create_task(channel.menu(replace_timeout(MENU, 30)))
    await asyncio.sleep(0.3)
    await speech.stop()
    result = await asyncio.wait_for(listening, 5)
    assert result.mode == "dtmf"  # the exchange failed: keys took over


def replace_timeout(menu: Menu, timeout: float) -> Menu:
    from dataclasses import replace

    return replace(menu, timeout=timeout)


async def test_over_the_latency_budget_the_caller_hears_speech_is_busy_then_the_keys(sounds: Path) -> None:
    """Speech at its limit: nothing listens, the busy notice comes first in the one Read() of the
    menu on keys (no AudioSocket), and the rest of the call stays on keys."""
    speech = SpeechService(
        FakeRecognizer(), IntentMatchers(), port=0, sounds_dir=sounds, endpoint=FAST, latency_budget=1.5
    )
    await speech.start()
    try:
        assert speech.admission is not None
        assert speech.admission.admit() and speech.admission.admit()  # two callers listen already
        session = FakeAgiSession(keys=["1"])
        channel = VoiceChannel(session, speech=speech)  # type: ignore[arg-type]
        assert await channel.menu(MENU) == InputResult("match", "dtmf", "1")
        assert exec_lines(session) == []
        (read,) = read_lines(session)
        busy = "Voice answers are busy right now. Please use your keypad."
        assert read.startswith(f'EXEC Read "IVR_MENU_KEY,{Prompt(busy).audio_name()}&{MENU.prompt.audio_name()}&')
        assert channel.speech is None and speech.admission.refused == 1
    finally:
        await speech.stop()


# -- what operators see ----------------------------------------------------------------------------


async def test_each_decode_is_observed_once_and_keys_or_silence_are_not(sounds: Path) -> None:
    """The decode histogram on /metrics hears what a speaking caller waited; a key press or a
    silent caller decoded nothing, so they add no sample."""
    waited: list[float] = []
    speech = SpeechService(
        FakeRecognizer(), IntentMatchers(), port=0, sounds_dir=sounds, endpoint=FAST, observe_decode=waited.append
    )
    await speech.start()
    try:
        spoken = FakeAgiSession(caller(silence(200), tone(700), silence(500)))
        assert (await VoiceChannel(spoken, speech=speech).menu(MENU)).mode == "speech"  # type: ignore[arg-type]
        assert len(waited) == 1 and 0 <= waited[0] < 5
        for chunks, dtmf in (((silence(100),), "0"), ((silence(100),), "")):
            session = FakeAgiSession(caller(*chunks, dtmf=dtmf) if dtmf else caller(*chunks))
            await VoiceChannel(session, speech=speech).menu(MENU)  # type: ignore[arg-type]
        assert len(waited) == 1
    finally:
        await speech.stop()
