#!/usr/bin/env python3
"""Speech under load: how long callers wait after speaking, with and without the latency budget.

N simultaneous callers on the product's 2-worker pool, each in a loop: 1-2 s while the menu plays,
then either

* **admitted** (:class:`ivr.speech.pool.Admission` says yes, or there is no budget): an utterance
  streamed in real time (20 ms frames), decoded by Whisper tiny.en, matched by the semantic
  matcher; timed from the last frame to the option (end of speech -> intent), or
* **offered keys** (over budget): the caller presses a key (no decode) and listens 2 s.

For each N: utterances spoken, menus offered on keys, p50 / p99 / max of end of speech -> intent,
and how many spoken answers waited past the budget. ``--budget 0`` is the "before" (every menu
listens). Reuses the loading and streaming helpers of ``bench/speech.py``.

Run: ``.venv/bin/python bench/speech_admission.py [--budget 1.5] [--seconds 20] [--calls 1,2,4,6,9]``
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import random
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def speech_bench() -> Any:
    spec = importlib.util.spec_from_file_location("bench_speech", REPO / "bench" / "speech.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


async def step(
    bench: Any, recognizer: Any, utterances: list[Any], matcher: Any, calls: int, seconds: float, budget: float
) -> dict[str, Any]:
    from ivr.speech.pool import Admission, Listening, speech_executor

    executor = speech_executor(2)
    admission = Admission(budget, 2) if budget > 0 else None
    latencies: list[float] = []
    keys = 0
    phrases = matcher.phrases("en")
    stop_at = time.monotonic() + seconds

    async def caller(n: int) -> None:
        nonlocal keys
        rng = random.Random(n)
        loop = asyncio.get_running_loop()
        while time.monotonic() < stop_at:
            await asyncio.sleep(rng.uniform(1.0, 2.0))
            if admission is not None and not admission.admit():
                keys += 1
                await asyncio.sleep(2.0)
                continue
            _, pcm, _ = rng.choice(utterances)
            listening = Listening(recognizer, phrases, executor)
            start = loop.time()
            for i, frame in enumerate(bench.frames(pcm + bench.TAIL)):
                delay = start + (i + 1) * 0.02 - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                listening.feed(frame)
            eos = time.perf_counter()
            transcript = await listening.finish()
            await asyncio.to_thread(matcher.match, transcript.text)
            latencies.append(time.perf_counter() - eos)
            if admission is not None:
                admission.release(time.perf_counter() - eos)

    await asyncio.gather(*(caller(n) for n in range(calls)))
    executor.shutdown(wait=True)
    pct = bench.percentile
    return {
        "calls": calls,
        "spoken": len(latencies),
        "offered_keys": keys,
        "p50_ms": round(pct(latencies, 50) * 1000) if latencies else None,
        "p99_ms": round(pct(latencies, 99) * 1000) if latencies else None,
        "max_ms": round(max(latencies) * 1000) if latencies else None,
        "over_budget": sum(latency > (budget or 1.5) for latency in latencies),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--budget", type=float, default=1.5, help="seconds; 0: no admission control")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--calls", default="1,2,4,6,9")
    args = parser.parse_args()

    bench = speech_bench()

    matcher = bench.menu_matcher()
    recognizer = bench.load("whisper")
    utterances = bench.utterance_set("whisper")
    label = f"budget {args.budget:g} s" if args.budget > 0 else "no budget"
    print(f"whisper, {label}, {args.seconds:g} s a step, 2 workers")
    print("| callers | spoken | offered keys | EOS->intent p50 / p99 / max ms | spoken answers over 1.5 s |")
    print("|---|---|---|---|---|")
    for calls in (int(c) for c in args.calls.split(",")):
        r = asyncio.run(step(bench, recognizer, utterances, matcher, calls, args.seconds, args.budget))
        print(
            f"| {r['calls']} | {r['spoken']} | {r['offered_keys']} | {r['p50_ms']} / {r['p99_ms']} / {r['max_ms']} "
            f"| {r['over_budget']} |",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
