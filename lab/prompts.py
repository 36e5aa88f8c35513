"""Prompt audio for lab calls: render every flow's prompts into Asterisk's sounds, and know how long
each one plays, so scripted callers press keys and speak when the IVR listens (not after fixed
milliseconds that drift whenever a prompt's wording or the TTS voice changes).
"""

from __future__ import annotations

import wave
from collections.abc import Callable
from pathlib import Path

from ivr.flow.loader import check_paths
from ivr.flow.model import SYSTEM_PROMPTS, Prompt
from ivr.prompts.build import BuildReport, PromptItem, build_prompts


def build_flow_prompts(
    flows_dir: Path, sounds_dir: Path, progress: Callable[[int, int, str], None] | None = None
) -> BuildReport:
    """Render the system prompts and every text prompt of the flows in ``flows_dir`` (cached).

    Raises ValueError listing the problems when a flow does not load: a demo or test on a broken
    flow would only fail later and less clearly.
    """
    flows, problems = check_paths([flows_dir])
    if problems:
        raise ValueError("\n".join(str(p) for p in problems))
    items = [PromptItem(p.audio_name(), p.text) for p in SYSTEM_PROMPTS]
    for flow in flows:
        items += [PromptItem(p.audio_name(), p.text) for p in flow.prompts() if not p.audio]
    return build_prompts(items, sounds_dir, progress=progress)


def prompt_lengths(sounds_dir: Path) -> dict[str, int]:
    """Length in ms of each rendered prompt, keyed by its file stem."""
    lengths: dict[str, int] = {}
    for path in (sounds_dir / "ivr").glob("*.wav"):
        with wave.open(str(path)) as w:
            lengths[path.stem] = int(w.getnframes() * 1000 / w.getframerate())
    return lengths


def prompt_ms(lengths: dict[str, int], text: str) -> int:
    """How long the prompt with this text plays (KeyError if it was never rendered)."""
    return lengths[Prompt(text).audio_name().split("/", 1)[1]]


def digits_ms(sounds_dir: Path, digits: str) -> int:
    """How long SAY DIGITS takes: Asterisk's own digits/N recordings (800 ms each if unreadable)."""
    total = 0
    for d in digits:
        try:
            with wave.open(str(sounds_dir / "digits" / f"{d}.wav")) as w:
                total += int(w.getnframes() * 1000 / w.getframerate())
        except (OSError, wave.Error):
            total += 800
    return total
