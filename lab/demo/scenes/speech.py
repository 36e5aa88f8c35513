"""A caller who speaks: recorded speech streamed over RTP into the shipped support line.

The words ("Everything in my house went dark.") share no keyword with the outage option's
examples: the recognizer hears them, the semantic matcher takes them to the outage option by
meaning, and the flow moves on. What was heard, the intent and its confidence are read back from
the journey with ``ivr journeys ID``.
"""

from __future__ import annotations

from lab.demo.registry import Tell, check, scene
from lab.demo.stack import DemoStack
from lab.sipp import CallerScript, run_caller_async
from lab.speech_audio import padded_speech

CALLER = "+15551240003"
NUMBER = "5550100"
WORDS = "Everything in my house went dark."
GREETING = "Welcome to Example Power."
OUTAGE = "We are aware of outages in some areas and crews are working on them."
DECODE_MARGIN_MS = 3000  # end of speech (700 ms of silence) + Whisper tiny.en + the encoder, busy cores


@scene(
    "speech",
    "A caller who speaks",
    "spoken words reach the outage option and step",
    order=20,
)
async def speech(stack: DemoStack, tell: Tell) -> str:
    lead = stack.ms(GREETING) + 1500  # into the menu prompt: the caller talks over it
    audio, speech_ms = padded_speech(WORDS, lead, stack.work_dir / "caller-speech.wav")
    hangup = lead + speech_ms + DECODE_MARGIN_MS + stack.ms(OUTAGE) + 1000
    tell(f'{CALLER} dials {NUMBER} and, {lead} ms in, says "{WORDS}" ({speech_ms} ms of speech over RTP)')
    script = CallerScript(
        caller_id=CALLER, dialled=NUMBER, audio=audio, hangup_after_ms=hangup, max_call_ms=hangup + 20000
    )
    result = tell.call_result(await run_caller_async(script, timeout=hangup / 1000 + 40), "caller")
    check(result.ok, "the SIP call failed")
    row = await stack.wait_journey(lambda r: r.caller == CALLER and r.status != "active", timeout=40)
    journey, _ = await stack.journey(row.id)
    heard = journey.get("recognition") or {}
    confidence = heard.get("confidence")
    after = row.path.index("main_menu") + 1 if "main_menu" in row.path else len(row.path)
    reached = row.path[after] if after < len(row.path) else "(nothing after the menu)"
    tell(f'  heard:      "{heard.get("utterance", "")}"')
    tell(f"  intent:     {heard.get('intent')} -> option {heard.get('option')}")
    shown = f"{confidence:.0%}" if isinstance(confidence, (int, float)) else "-"
    tell(f"  confidence: {shown}")
    if heard.get("reason"):
        tell(f"  why:        {heard['reason']}")
    tell(f"  step reached after the menu: {reached}   (journey {row.id[:8]}: {' > '.join(row.path)})")
    check(heard.get("option") == "outage", f"the words were taken as {heard.get('option')!r}: {heard}")
    check(reached == "outage_info", f"the flow went to {reached}")
    return f"{heard.get('option')} at {shown}, reached {reached}"
