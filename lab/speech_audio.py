"""A caller's words as 8 kHz audio for SIPp to stream over RTP: rendered by the project's offline
TTS (what a person on a telephone sounds like, near enough for the recognizer) and padded with
silence so the words start where the IVR listens."""

from __future__ import annotations

import wave
from pathlib import Path

from ivr.prompts.tts import get_engine, render_to_file


def padded_speech(text: str, lead_ms: int, target: Path) -> tuple[Path, int]:
    """``lead_ms`` of silence then ``text`` spoken, written to ``target``; returns it and the speech's ms."""
    raw = target.with_suffix(".raw.wav")
    render_to_file(get_engine("auto"), text, raw)
    with wave.open(str(raw)) as w:
        speech = w.readframes(w.getnframes())
        if (w.getframerate(), w.getsampwidth()) != (8000, 2):
            raise ValueError(f"TTS gave {w.getframerate()} Hz, {w.getsampwidth() * 8}-bit; want 8 kHz 16-bit")
    with wave.open(str(target), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(8000)
        out.writeframes(bytes(16 * lead_ms) + speech)
    return target, len(speech) // 16
