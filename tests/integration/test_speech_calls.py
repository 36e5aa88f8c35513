"""Spoken menus end to end: SIPp streams a recorded utterance as RTP -> Asterisk 22 -> FastAGI
controller -> ``EXEC AudioSocket`` -> the controller's AudioSocket server -> Whisper -> intent.

The controller is ``ivr serve`` as a child process with speech configured through the
environment (``IVR_SPEECH_*``). Each test checks what the controller recorded (the journey, its
recognition and the interaction log), not only SIPp's verdict.

Timing: the caller's RTP is scripted from the answer, so the utterance is padded with silence to
start while the main menu is playing (barge-in), and keys are sent at times computed from the
rendered prompts' lengths (``prompt_ms``), with margins for the decode.
"""

from __future__ import annotations

import wave
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ivr.flow.model import Prompt
from ivr.prompts.tts import get_engine, render_to_file
from lab.asterisk import AsteriskLab
from lab.controller import ControllerProcess
from lab.sipp import CallerScript, Dtmf, run_caller

REPO = Path(__file__).resolve().parents[2]
DIALPLANS = REPO / "dialplans"

GREETING = "Welcome to Example Power."
MAIN_MENU = ("How can we help you today?", ["paying your bill", "reporting an outage", "talking to an agent"], "120")
OUTAGE = "We are aware of outages in some areas and crews are working on them."
OUTAGE_MENU = ("Is there anything else?", ["reporting a new outage", "ending this call"], "12")
NOINPUT = "Sorry, I did not hear your choice."
DECODE_MARGIN_MS = 2500  # end of speech (700 ms of silence) + Whisper tiny.en on a busy CI core


def ms(prompt_ms: dict[str, int], text: str) -> int:
    return prompt_ms[Prompt(text).audio_name().split("/", 1)[1]]


def digit_ms(lab: AsteriskLab, digit: str) -> int:
    with wave.open(str(lab.sounds_dir / "digits" / f"{digit}.wav")) as w:
        return int(w.getnframes() * 1000 / w.getframerate())


def menu_ms(lab: AsteriskLab, prompt_ms: dict[str, int], menu: tuple[str, list[str], str]) -> int:
    """How long a menu's fragments play: prompt, then "For" <label> "press" <digit> per option."""
    prompt, labels, keys = menu
    total = ms(prompt_ms, prompt)
    for label, key in zip(labels, keys, strict=True):
        total += ms(prompt_ms, "For") + ms(prompt_ms, label) + ms(prompt_ms, "press") + digit_ms(lab, key)
    return total


def padded(source: Path, lead_ms: int, target: Path) -> tuple[Path, int]:
    """``source`` after ``lead_ms`` of silence (8 kHz 16-bit mono WAV); returns it and the speech length."""
    with wave.open(str(source)) as w:
        assert (w.getframerate(), w.getsampwidth(), w.getnchannels()) == (8000, 2, 1)
        speech = w.readframes(w.getnframes())
    with wave.open(str(target), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(8000)
        out.writeframes(bytes(16 * lead_ms) + speech)
    return target, len(speech) // 16


@pytest.fixture(scope="module")
def utterance(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The caller's words, spoken once by the project's offline TTS at telephone quality."""
    path = tmp_path_factory.mktemp("speech") / "report-an-outage.wav"
    render_to_file(get_engine("auto"), "I want to report an outage.", path)
    return path


def start_controller(lab: AsteriskLab, data_dir: Path, **env: str) -> ControllerProcess:
    proc = ControllerProcess(
        flows_dir=DIALPLANS,
        data_dir=data_dir,
        env={"IVR_SPEECH_SOUNDS_DIR": str(lab.sounds_dir), **env},
    )
    proc.start(timeout=60)  # the model loads before the AGI port opens
    return proc


@pytest.fixture
def speech_controller(lab: AsteriskLab, tmp_path: Path) -> Iterator[ControllerProcess]:
    proc = start_controller(lab, tmp_path / "ivr", IVR_SPEECH_ENGINE="whisper")
    proc.wait_for_log("AudioSocket server listening on 127.0.0.1:4574")
    yield proc
    proc.stop()


def by_caller(controller: ControllerProcess, caller: str, timeout: float = 30, **expect: str) -> dict[str, Any]:
    return controller.wait_for_journey(
        lambda j: j["caller"] == caller and all(j.get(k) == v for k, v in expect.items()), timeout
    )


def kinds_at(controller: ControllerProcess, journey: dict[str, Any], step: str) -> list[dict[str, Any]]:
    return [e for e in controller.interactions(journey["id"]) if e["step"] == step]


def test_spoken_intent_routes_the_call(
    lab: AsteriskLab,
    speech_controller: ControllerProcess,
    prompt_ms: dict[str, int],
    utterance: Path,
    tmp_path: Path,
) -> None:
    """ "I want to report an outage", said over the menu, lands on outage_info; then a key (sent as
    RFC 4733, reaching us as an AudioSocket DTMF frame) ends the call at the next spoken menu."""
    lead = ms(prompt_ms, GREETING) + 1500  # into the main menu's prompt: barge-in
    audio, speech_ms = padded(utterance, lead, tmp_path / "caller.wav")
    key_at = lead + speech_ms + DECODE_MARGIN_MS + ms(prompt_ms, OUTAGE) + 2500
    result = run_caller(
        CallerScript(caller_id="+15551230101", audio=audio, dtmf=(Dtmf("2", key_at),), max_call_ms=key_at + 20000)
    )
    result.raise_for_failure()
    journey = by_caller(speech_controller, "+15551230101", status="completed")
    assert journey["path"] == ["greeting", "check_hours", "main_menu", "outage_info", "outage_menu", "goodbye"]
    assert result.who_hung_up == "ivr"
    heard = journey["recognition"]
    assert heard["step"] == "main_menu" and heard["intent"] == "outage" and heard["option"] == "outage"
    assert "outage" in heard["utterance"].lower() and 0 < heard["confidence"] <= 1
    assert journey["intent"] == "goodbye"  # the last menu's choice ("ending this call") sets it
    main = kinds_at(speech_controller, journey, "main_menu")
    recognised = [e["data"] for e in main if e["kind"] == "intent_recognised"]
    assert recognised and recognised[0]["intent"] == "outage"
    chosen = [e["data"] for e in main if e["kind"] == "option_chosen"]
    assert chosen[0]["option"] == "outage" and chosen[0]["mode"] == "speech"
    second = [e["data"] for e in kinds_at(speech_controller, journey, "outage_menu") if e["kind"] == "option_chosen"]
    assert second[0]["option"] == "done" and second[0]["mode"] == "dtmf"
    log = speech_controller.log_tail(200)
    assert "heard 'I want to report an outage" in log and "barge-in" in log


def test_silent_caller_is_reprompted_and_a_key_gets_through(
    lab: AsteriskLab, speech_controller: ControllerProcess, prompt_ms: dict[str, int]
) -> None:
    """Nothing said at the spoken menu: the no-input re-prompt, then keys work (during the second
    playing of the menu, as AudioSocket DTMF frames)."""
    menu = menu_ms(lab, prompt_ms, MAIN_MENU)
    first = ms(prompt_ms, GREETING) + menu + 4000 + ms(prompt_ms, NOINPUT) + 1800  # 4 s: the menu's timeout
    second = first + ms(prompt_ms, OUTAGE) + 2500
    result = run_caller(
        CallerScript(caller_id="+15551230102", dtmf=(Dtmf("2", first), Dtmf("2", second)), max_call_ms=second + 20000)
    )
    result.raise_for_failure()
    journey = by_caller(speech_controller, "+15551230102", status="completed")
    assert journey["path"] == ["greeting", "check_hours", "main_menu", "outage_info", "outage_menu", "goodbye"]
    main = kinds_at(speech_controller, journey, "main_menu")
    rejected = [e["data"] for e in main if e["kind"] == "input_rejected"]
    assert rejected == [{"status": "noinput", "mode": "speech", "attempt": 1}]
    chosen = [e["data"] for e in main if e["kind"] == "option_chosen"]
    assert chosen[0]["mode"] == "dtmf" and chosen[0]["key"] == "2"
    assert journey["recognition"] == {}  # nothing was said


def test_recognizer_off_the_same_call_works_on_keys(
    lab: AsteriskLab, prompt_ms: dict[str, int], tmp_path: Path
) -> None:
    proc = start_controller(lab, tmp_path / "ivr", IVR_SPEECH_ENGINE="off")
    try:
        first = ms(prompt_ms, GREETING) + 800
        second = first + ms(prompt_ms, OUTAGE) + 1500
        result = run_caller(
            CallerScript(caller_id="+15551230103", dtmf=(Dtmf("2", first), Dtmf("2", second)), max_call_ms=40000)
        )
        result.raise_for_failure()
        journey = by_caller(proc, "+15551230103", status="completed")
        assert journey["path"] == ["greeting", "check_hours", "main_menu", "outage_info", "outage_menu", "goodbye"]
        kinds = [e["kind"] for e in proc.interactions(journey["id"])]
        assert "intent_recognised" not in kinds
        log = proc.log_tail(200)
        assert "speech recognition: off" in log and "AudioSocket server listening" not in log
    finally:
        proc.stop()


def test_prompts_the_controller_cannot_read_are_played_by_asterisk_then_it_listens(
    lab: AsteriskLab, prompt_ms: dict[str, int], utterance: Path, tmp_path: Path
) -> None:
    """Degraded path: no sounds directory for the controller. Asterisk plays the menu with STREAM
    FILE (keys barge in), the controller listens after it, and speech still routes the call."""
    proc = start_controller(lab, tmp_path / "ivr", IVR_SPEECH_ENGINE="whisper", IVR_SPEECH_SOUNDS_DIR=str(tmp_path))
    try:
        lead = ms(prompt_ms, GREETING) + menu_ms(lab, prompt_ms, MAIN_MENU) + 1000
        audio, speech_ms = padded(utterance, lead, tmp_path / "caller.wav")
        hangup = lead + speech_ms + DECODE_MARGIN_MS + ms(prompt_ms, OUTAGE) + 1000
        run_caller(CallerScript(caller_id="+15551230104", audio=audio, hangup_after_ms=hangup)).raise_for_failure()
        journey = by_caller(proc, "+15551230104", status="abandoned")
        assert journey["path"][:4] == ["greeting", "check_hours", "main_menu", "outage_info"]
        assert journey["recognition"]["intent"] == "outage"
        assert "menus with it are played with STREAM FILE" in proc.log_tail(200)
    finally:
        proc.stop()


def test_asterisk_has_the_audiosocket_application(lab: AsteriskLab) -> None:
    out = lab.cli("module show like audiosocket")
    assert "app_audiosocket.so" in out and "res_audiosocket.so" in out
    assert "Running" in out
    assert "AudioSocket" in lab.cli("core show application AudioSocket")


def test_a_low_confidence_answer_is_read_back_and_confirmed_with_a_key(
    lab: AsteriskLab, prompt_ms: dict[str, int], utterance: Path, tmp_path: Path
) -> None:
    """The flow asks for a read-back below 1.0 (so always): "Did you say reporting an outage? Is
    that right? For yes, press 1..." -- the caller presses 1 and lands on outage_info."""
    flows = tmp_path / "flows"
    flows.mkdir()
    for path in DIALPLANS.glob("*.yaml"):
        text = path.read_text()
        if path.name == "support.yaml":
            text = text.replace("      personalize: true\n", "      personalize: true\n      confirm_below: 1.0\n", 1)
            assert "confirm_below" in text
        (flows / path.name).write_text(text)
    proc = ControllerProcess(
        flows_dir=flows,
        data_dir=tmp_path / "ivr",
        env={"IVR_SPEECH_SOUNDS_DIR": str(lab.sounds_dir), "IVR_SPEECH_ENGINE": "whisper"},
    )
    proc.start(timeout=60)
    try:
        lead = ms(prompt_ms, GREETING) + 1500
        audio, speech_ms = padded(utterance, lead, tmp_path / "caller.wav")
        read_back = ms(prompt_ms, "Did you say") + ms(prompt_ms, "reporting an outage")
        key_at = lead + speech_ms + DECODE_MARGIN_MS + read_back + 1500  # during "Is that right? ..."
        hangup = key_at + ms(prompt_ms, OUTAGE) + 1500
        run_caller(
            CallerScript(caller_id="+15551230105", audio=audio, dtmf=(Dtmf("1", key_at),), hangup_after_ms=hangup)
        ).raise_for_failure()
        journey = by_caller(proc, "+15551230105", status="abandoned")
        assert journey["path"][:4] == ["greeting", "check_hours", "main_menu", "outage_info"]
        assert journey["confirming"] is None
        main = {e["kind"]: e["data"] for e in kinds_at(proc, journey, "main_menu")}
        assert main["confirmation_asked"]["option"] == "outage"
        assert main["confirmation_answered"] == {"option": "outage", "confirmed": True, "mode": "dtmf"}
        assert main["option_chosen"]["option"] == "outage" and main["option_chosen"]["mode"] == "speech"
    finally:
        proc.stop()
