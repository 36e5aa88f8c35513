"""Batched decodes of concurrent callers, with a fake decode function (the queueing is pure logic;
the real Whisper batch is in tests/unit/speech/test_whisper_batch.py)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor

import pytest

from ivr.speech.batching import BatchItem, DecodeBatcher
from ivr.speech.engine import Transcript


class SlowDecoder:
    """Decodes a batch in ``seconds`` of a worker thread; records each batch's audio."""

    def __init__(self, seconds: float = 0.2, fail: bytes | None = None) -> None:
        self.seconds = seconds
        self.fail = fail
        self.batches: list[list[bytes]] = []
        self.started = threading.Event()

    def __call__(self, items: Sequence[BatchItem]) -> list[Transcript]:
        self.batches.append([pcm for pcm, _ in items])
        self.started.set()
        threading.Event().wait(self.seconds)
        if self.fail is not None and any(pcm == self.fail for pcm, _ in items):
            raise RuntimeError("engine broke")
        return [Transcript(pcm.decode() + "|" + ",".join(phrases), 0.9, "fake", self.seconds) for pcm, phrases in items]


@pytest.fixture
def executor() -> Iterator[ThreadPoolExecutor]:
    pool = ThreadPoolExecutor(2)
    yield pool
    pool.shutdown(wait=True)


async def test_a_caller_alone_is_decoded_at_once(executor: ThreadPoolExecutor) -> None:
    decoder = SlowDecoder(0.05)
    batcher = DecodeBatcher(decoder, executor)
    transcript = await batcher.transcribe(b"yes", ["yes", "no"])
    assert transcript.text == "yes|yes,no"
    assert decoder.batches == [[b"yes"]]
    await batcher.aclose()


async def test_utterances_that_end_during_a_decode_go_together_in_the_next(executor: ThreadPoolExecutor) -> None:
    decoder = SlowDecoder(0.2)
    batcher = DecodeBatcher(decoder, executor, max_batch=3)
    first = asyncio.create_task(batcher.transcribe(b"a", ["x"]))
    await asyncio.to_thread(decoder.started.wait, 2)
    rest = [asyncio.create_task(batcher.transcribe(word, [word.decode()])) for word in (b"b", b"c", b"d", b"e")]
    results = await asyncio.gather(first, *rest)
    # each caller gets their own words with their own menu's phrases, in any batch
    assert [t.text for t in results] == ["a|x", "b|b", "c|c", "d|d", "e|e"]
    assert decoder.batches == [[b"a"], [b"b", b"c", b"d"], [b"e"]]
    assert batcher.largest == 3 and batcher.batches == 3 and batcher.decoded == 5
    await batcher.aclose()


async def test_a_caller_who_left_is_not_decoded(executor: ThreadPoolExecutor) -> None:
    decoder = SlowDecoder(0.2)
    batcher = DecodeBatcher(decoder, executor)
    first = asyncio.create_task(batcher.transcribe(b"a", []))
    await asyncio.to_thread(decoder.started.wait, 2)
    gone = asyncio.create_task(batcher.transcribe(b"pressed-a-key", []))
    stays = asyncio.create_task(batcher.transcribe(b"b", []))
    await asyncio.sleep(0.01)
    gone.cancel()
    assert (await first).text == "a|" and (await stays).text == "b|"
    assert gone.cancelled()
    assert decoder.batches == [[b"a"], [b"b"]]
    await batcher.aclose()


async def test_an_engine_failure_fails_its_batch_only(executor: ThreadPoolExecutor) -> None:
    decoder = SlowDecoder(0.1, fail=b"bad")
    batcher = DecodeBatcher(decoder, executor)
    first = asyncio.create_task(batcher.transcribe(b"a", []))
    await asyncio.to_thread(decoder.started.wait, 2)
    bad = asyncio.create_task(batcher.transcribe(b"bad", []))
    await asyncio.sleep(0)
    with pytest.raises(RuntimeError, match="engine broke"):
        await bad
    assert (await first).text == "a|"
    assert (await batcher.transcribe(b"after", [])).text == "after|"
    await batcher.aclose()


async def test_closing_cancels_the_waiting_callers_and_the_drain(executor: ThreadPoolExecutor) -> None:
    decoder = SlowDecoder(0.3)
    batcher = DecodeBatcher(decoder, executor)
    waiting = [asyncio.create_task(batcher.transcribe(w, [])) for w in (b"a", b"b")]
    await asyncio.to_thread(decoder.started.wait, 2)
    await batcher.aclose()
    for task in waiting:
        with pytest.raises(asyncio.CancelledError):
            await task
    with pytest.raises(RuntimeError, match="closed"):
        await batcher.transcribe(b"late", [])


async def test_two_workers_decode_two_callers_at_once_and_batch_the_rest(executor: ThreadPoolExecutor) -> None:
    """With ``parallel=2`` a second caller does not wait for the first's decode; callers who end
    while both decode go together in the batch of whichever finishes first."""
    decoder = SlowDecoder(0.3)
    batcher = DecodeBatcher(decoder, executor, max_batch=4, parallel=2)
    loop = asyncio.get_running_loop()
    started = loop.time()
    first = asyncio.create_task(batcher.transcribe(b"a", []))
    await asyncio.sleep(0.05)
    second = asyncio.create_task(batcher.transcribe(b"b", []))
    await asyncio.sleep(0.05)
    rest = [asyncio.create_task(batcher.transcribe(word, [])) for word in (b"c", b"d")]
    assert (await second).text == "b|"
    assert loop.time() - started < 0.5  # decoded beside "a", not after it (0.05 + 0.3 s)
    results = await asyncio.gather(first, *rest)
    assert [t.text for t in results] == ["a|", "c|", "d|"]
    assert decoder.batches == [[b"a"], [b"b"], [b"c", b"d"]]
    await batcher.aclose()


async def test_callers_who_end_together_on_idle_workers_are_decoded_apart(executor: ThreadPoolExecutor) -> None:
    decoder = SlowDecoder(0.1)
    batcher = DecodeBatcher(decoder, executor, parallel=2)
    heard = await asyncio.gather(batcher.transcribe(b"a", []), batcher.transcribe(b"b", []))
    assert [t.text for t in heard] == ["a|", "b|"]
    assert sorted(decoder.batches) == [[b"a"], [b"b"]]
    await batcher.aclose()


async def test_a_caller_speaking_again_as_the_last_drainer_ends_is_decoded(executor: ThreadPoolExecutor) -> None:
    """The caller's task resumes with its transcript before the finished drainer's done callback
    has taken it out of the set: an utterance asked for right then (the next answer, with no
    await in between) saw the full set, started no drainer and waited forever."""
    decoder = SlowDecoder(0.01)
    for parallel in (1, 2):
        batcher = DecodeBatcher(decoder, executor, parallel=parallel)
        assert (await batcher.transcribe(b"one", ["x"])).text == "one|x"
        async with asyncio.timeout(2.0):  # not wait_for: its task would start a turn too late
            second = await batcher.transcribe(b"two", ["x"])
        assert second.text == "two|x"
        await batcher.aclose()
