"""Recognition off the event loop, with fake engines: order, batching, failures, responsiveness."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor

import pytest

from ivr.speech.pool import BATCH_BYTES, Listening, speech_executor, transcribe
from ivr.speech.recognizer import Recognizer, Transcript

FRAME = 320  # 20 ms of 8 kHz slin: one AudioSocket frame


class FakeSession:
    def __init__(self, engine: FakeEngine, phrases: Sequence[str]) -> None:
        self.engine = engine
        self.phrases = list(phrases)
        self.chunks: list[bytes] = []
        self.finished = False

    def accept(self, pcm: bytes) -> None:
        assert threading.current_thread() is not self.engine.loop_thread, "accept() ran on the event loop"
        if self.engine.fail_on_accept:
            raise RuntimeError("engine broke")
        time.sleep(self.engine.accept_s)
        self.chunks.append(pcm)

    def finish(self) -> Transcript:
        assert threading.current_thread() is not self.engine.loop_thread, "finish() ran on the event loop"
        with self.engine.lock:
            self.engine.running += 1
            self.engine.peak = max(self.engine.peak, self.engine.running)
        try:
            time.sleep(self.engine.finish_s)  # a decode: holds the worker, not the loop
        finally:
            with self.engine.lock:
                self.engine.running -= 1
        self.finished = True
        return Transcript(b"".join(self.chunks).decode("latin-1"), 0.9, self.engine.name, 0.0)


class FakeEngine:
    name = "fake"
    sample_rate = 8000

    def __init__(self, *, streaming: bool, accept_s: float = 0.0, finish_s: float = 0.0) -> None:
        self.streaming = streaming
        self.accept_s = accept_s
        self.finish_s = finish_s
        self.fail_on_accept = False
        self.sessions: list[FakeSession] = []
        self.loop_thread: threading.Thread | None = None
        self.lock = threading.Lock()
        self.running = 0
        self.peak = 0

    def session(self, phrases: Sequence[str]) -> FakeSession:
        s = FakeSession(self, phrases)
        self.sessions.append(s)
        return s


@pytest.fixture
def executor() -> Iterator[ThreadPoolExecutor]:
    pool = speech_executor(2)
    yield pool
    pool.shutdown(wait=True)


def frames(text: bytes) -> list[bytes]:
    """``text`` padded to whole frames and cut into 20 ms frames (bytes stand in for audio)."""
    padded = text.ljust(-(-len(text) // FRAME) * FRAME, b".")
    return [padded[i : i + FRAME] for i in range(0, len(padded), FRAME)]


async def test_streaming_engine_gets_the_audio_in_order_in_batches(executor: ThreadPoolExecutor) -> None:
    engine = FakeEngine(streaming=True)
    engine.loop_thread = threading.current_thread()
    audio = bytes(range(256)) * 100  # 25.6 kB: 80 frames
    transcript = await transcribe(engine, frames(audio), ["billing"], executor)
    session = engine.sessions[0]
    assert b"".join(session.chunks) == audio
    assert transcript.text == audio.decode("latin-1") and transcript.engine == "fake"
    assert session.phrases == ["billing"]
    assert all(len(c) >= BATCH_BYTES for c in session.chunks[:-1])
    assert 2 <= len(session.chunks) <= len(audio) // BATCH_BYTES + 1


async def test_non_streaming_engine_gets_everything_at_the_end(executor: ThreadPoolExecutor) -> None:
    engine = FakeEngine(streaming=False)
    engine.loop_thread = threading.current_thread()
    listening = Listening(engine, [], executor)
    for frame in frames(b"x" * 10 * FRAME):
        listening.feed(frame)
        await asyncio.sleep(0)
    assert engine.sessions == []  # nothing handed over while the caller speaks
    transcript = await listening.finish()
    assert transcript.text == "x" * 10 * FRAME
    assert len(engine.sessions[0].chunks) == 1


async def test_transcribe_takes_bytes_iterables_and_async_iterables(executor: ThreadPoolExecutor) -> None:
    engine = FakeEngine(streaming=True)

    async def agen() -> AsyncIterator[bytes]:
        for f in frames(b"async"):
            yield f

    assert (await transcribe(engine, b"whole", [], executor)).text == "whole"
    assert (await transcribe(engine, iter(frames(b"list")), [], executor)).text.startswith("list")
    assert (await transcribe(engine, agen(), [], executor)).text.startswith("async")


async def test_loop_stays_responsive_while_decodes_run(executor: ThreadPoolExecutor) -> None:
    """Four utterances, each a 0.4 s decode, on two workers: the loop ticks every 10 ms throughout."""
    engine = FakeEngine(streaming=False, finish_s=0.4)
    engine.loop_thread = threading.current_thread()
    gaps: list[float] = []
    stop = asyncio.Event()

    async def ticker() -> None:
        last = time.perf_counter()
        while not stop.is_set():
            await asyncio.sleep(0.01)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    tick = asyncio.create_task(ticker())
    started = time.perf_counter()
    results = await asyncio.gather(*(transcribe(engine, b"abc", [], executor) for _ in range(4)))
    elapsed = time.perf_counter() - started
    stop.set()
    await tick
    assert [r.text for r in results] == ["abc"] * 4
    assert engine.peak == 2  # bounded: never more decodes at once than workers
    assert 0.75 < elapsed < 2.0  # two rounds of two
    assert max(gaps) < 0.1, f"the event loop stalled for {max(gaps):.3f} s"


async def test_finish_reports_the_time_after_the_end_of_speech(executor: ThreadPoolExecutor) -> None:
    engine = FakeEngine(streaming=True, finish_s=0.05)
    transcript = await transcribe(engine, frames(b"y" * 40 * FRAME), [], executor)
    assert 0.05 <= transcript.seconds < 0.5


async def test_an_engine_failure_surfaces_to_the_caller(executor: ThreadPoolExecutor) -> None:
    engine = FakeEngine(streaming=True)
    engine.fail_on_accept = True
    with pytest.raises(RuntimeError, match="engine broke"):
        await transcribe(engine, frames(b"z" * 40 * FRAME), [], executor)


async def test_cancel_drops_the_utterance(executor: ThreadPoolExecutor) -> None:
    engine = FakeEngine(streaming=True, accept_s=0.05)
    listening = Listening(engine, [], executor)
    for frame in frames(b"q" * 20 * FRAME):
        listening.feed(frame)
    listening.cancel()  # DTMF won
    listening.feed(b"more" * 1000)
    with pytest.raises(RuntimeError, match="cancelled"):
        await listening.finish()
    await asyncio.sleep(0.1)  # the job already running ends in its thread
    assert all(not s.finished for s in engine.sessions)


async def test_cancel_swallows_a_failure_of_the_abandoned_job(
    executor: ThreadPoolExecutor, caplog: pytest.LogCaptureFixture
) -> None:
    engine = FakeEngine(streaming=True)
    engine.fail_on_accept = True
    listening = Listening(engine, [], executor)
    listening.feed(b"w" * BATCH_BYTES)
    listening.cancel()
    await asyncio.sleep(0.05)
    assert "never retrieved" not in caplog.text


async def test_finish_twice_is_a_bug(executor: ThreadPoolExecutor) -> None:
    listening = Listening(FakeEngine(streaming=True), [], executor)
    await listening.finish()
    with pytest.raises(RuntimeError, match="twice"):
        await listening.finish()


def test_fake_engine_satisfies_the_protocol() -> None:
    engine: Recognizer = FakeEngine(streaming=True)
    assert engine.sample_rate == 8000
