"""Recognition off the event loop: a bounded thread pool and the per-utterance plumbing to it.

Why threads (not processes): both engines spend their time in C++ (Kaldi, CTranslate2) with the
GIL released, and both models are big and read-only, so threads share one copy of the model
(a process pool would load one per worker: 75-250 MB each). The pool is bounded at about one
worker per core: more would only make every decode slower at once.

Why :class:`Listening` instead of one ``run_in_executor`` per audio frame: AudioSocket delivers
20 ms frames, 50 a second per call. A streaming engine gets them in batches of
:data:`BATCH_BYTES` with at most one job in flight per utterance, so the order of the audio is
kept without locks, a busy pool is never flooded by one call, and at the end of speech only
the last batch is left to decode.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import AsyncIterable, Callable, Iterable, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor

from ivr.speech.batching import DecodeBatcher
from ivr.speech.engine import Recognizer, RecognizerSession, Transcript

__all__ = ["BATCH_BYTES", "Admission", "Listening", "speech_executor", "transcribe"]

log = logging.getLogger(__name__)

BATCH_BYTES = 3200
"""100 ms of 8 kHz 16-bit audio: what a streaming engine is handed at a time."""


def speech_executor(workers: int = 2) -> ThreadPoolExecutor:
    """The process's pool for recognition (``speech.workers`` threads). Owned by the composition
    root, which shuts it down on stop."""
    return ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="speech")


class Listening:
    """One utterance being recognised in ``executor`` while the event loop carries on.

    ``feed`` never blocks (call it for every frame from the audio path); ``finish`` at the end
    of speech returns the transcript; ``cancel`` when DTMF wins or the caller hangs up.

    With a ``batcher`` (a recognizer that decodes at the end, like Whisper), ``finish`` hands the
    utterance to it, to be decoded together with other callers' utterances that ended meanwhile.
    """

    def __init__(
        self,
        recognizer: Recognizer,
        phrases: Sequence[str],
        executor: Executor,
        *,
        batch_bytes: int = BATCH_BYTES,
        batcher: DecodeBatcher | None = None,
    ) -> None:
        self.recognizer = recognizer
        self._batcher = batcher if not recognizer.streaming else None
        self._phrases = tuple(phrases)
        self._executor = executor
        self._batch = batch_bytes
        self._session: RecognizerSession | None = None
        self._buffer = bytearray()
        self._pending: asyncio.Future[None] | None = None
        self._cancelled = False
        self._finished = False

    # Runs in a worker thread; one job of this utterance at a time, so no lock is needed.
    def _accept(self, chunk: bytes) -> None:
        if self._session is None:
            self._session = self.recognizer.session(self._phrases)
        if chunk:
            self._session.accept(chunk)

    def _finish(self, chunk: bytes) -> Transcript:
        started = time.perf_counter()
        self._accept(chunk)
        assert self._session is not None
        transcript = self._session.finish()
        seconds = time.perf_counter() - started
        return Transcript(transcript.text, transcript.confidence, transcript.engine, seconds)

    def feed(self, pcm: bytes) -> None:
        """More caller audio (8 kHz slin). Must be called from the event loop's thread."""
        if self._finished or self._cancelled:
            return
        self._buffer += pcm
        if not self.recognizer.streaming or len(self._buffer) < self._batch:
            return
        if self._pending is not None:
            if not self._pending.done():
                return  # the engine is behind: the next job takes a bigger batch
            self._pending.result()  # re-raise an engine failure now, not at the end
        chunk = bytes(self._buffer)
        self._buffer.clear()
        loop = asyncio.get_running_loop()
        self._pending = loop.run_in_executor(self._executor, self._accept, chunk)

    async def finish(self) -> Transcript:
        """The end of speech: wait for the last batch to decode and return the words.

        ``Transcript.seconds`` is the engine time after the end of speech; queueing for a busy
        pool comes on top (the benchmark measures both).
        """
        if self._cancelled:
            raise RuntimeError("finish() on a cancelled Listening")
        if self._finished:
            raise RuntimeError("finish() called twice")
        self._finished = True
        if self._pending is not None:
            await self._pending
        chunk = bytes(self._buffer)
        self._buffer.clear()
        if self._batcher is not None:
            return await self._batcher.transcribe(chunk, self._phrases)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._finish, chunk)

    def cancel(self) -> None:
        """Drop the utterance (DTMF won, the caller left). A job already running finishes in its
        thread and is discarded; nothing else is submitted."""
        self._cancelled = True
        self._buffer.clear()
        if self._pending is not None:
            # retrieve a failure of the abandoned job, so asyncio does not log it as never retrieved
            self._pending.add_done_callback(lambda f: None if f.cancelled() else f.exception())


async def transcribe(
    recognizer: Recognizer,
    audio: bytes | Iterable[bytes] | AsyncIterable[bytes],
    phrases: Sequence[str],
    executor: Executor,
) -> Transcript:
    """Recognise one endpointed utterance without blocking the event loop.

    ``audio`` is the whole utterance (bytes), or its chunks as they come (an iterable or an
    async iterable, e.g. the frames of an AudioSocket): a streaming engine decodes while they
    arrive.
    """
    listening = Listening(recognizer, phrases, executor)
    try:
        if isinstance(audio, bytes | bytearray | memoryview):
            listening.feed(bytes(audio))
        elif isinstance(audio, AsyncIterable):
            async for chunk in audio:
                listening.feed(chunk)
        else:
            for chunk in audio:
                listening.feed(chunk)
                await asyncio.sleep(0)  # let the batch reach the pool, like frames from a socket
        return await listening.finish()
    except BaseException:
        listening.cancel()
        raise


class Admission:
    """Whether one more caller may speak to a menu without callers waiting past the latency budget.

    Why at the menu and not at the decode: a caller refused *before* the menu starts listening
    simply hears "for billing press 1" and presses a key at once; a caller refused after speaking
    would have talked for nothing and then waited.

    Why a limit learnt from measured waits, not a model of the pool: on a shared machine two
    decodes on two workers do not each take one decode's time (measured: Whisper tiny.en 1.1 s
    alone, 1.7 s each for two at once), so the number of callers who may listen at once is found
    the way TCP finds a window. Every answer's end of speech -> transcript time is reported to
    :meth:`release`: past ``budget_s`` the limit halves; under ``grow_below`` x the budget it
    grows, but only when the limit was in use since it last grew (callers refused, or as many
    listening as it allows): a quiet hour must not grow it to a size no load has proven. Growth
    starts fast (one more caller per fast answer, TCP's slow start) and turns cautious (one more
    per a limit's worth of fast answers) after the first wait past the budget. With the cautious
    growth alone, a fresh process on a quiet machine stayed at 2 listening callers and offered 13
    of 54 menus on keys at 8 callers, while every answer came within 0.12 s (bench/README.md).
    A caller alone is always admitted. Refusals are logged once per ``log_every`` seconds with
    their count.

    The limit is learnt, so a sudden load (another process taking the cores) can still make a
    decode late: the listener then stops waiting at the budget (``ListenResult("late")``) and
    the caller is offered keys as if refused (:meth:`count_late`): nobody waits past it in
    silence.

    Not thread-safe: the event loop's thread calls ``admit`` and ``release``.
    """

    def __init__(
        self,
        budget_s: float = 1.5,
        workers: int = 2,
        *,
        grow_below: float = 0.6,
        max_limit: int = 64,
        log_every: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.budget_s = budget_s
        self.limit = float(max(1, workers))
        self._grow_below = grow_below
        self._max_limit = max_limit
        self._log_every = log_every
        self._clock = clock
        self.listening = 0
        #: growing one caller per fast answer until the first wait past the budget
        self.slow_start = True
        #: callers were refused, or the limit was full, since the limit last grew
        self._in_use = False
        self.refused = 0  # since the process started
        self.late = 0  # admitted, spoke, words not ready within the budget
        self._unlogged = 0
        self._last_log: float | None = None

    def admit(self) -> bool:
        if self.listening > 0 and self.listening + 1 > math.floor(self.limit):
            self.refused += 1
            self._in_use = True
            self._offered_keys()
            return False
        self.listening += 1
        if self.listening >= math.floor(self.limit):
            self._in_use = True
        return True

    def count_late(self) -> None:
        """An admitted caller spoke but the words were not ready within the budget, so they too
        were offered keys (counted in the same once-a-minute report). Too many were listening:
        the limit halves, as for a wait past the budget."""
        self.late += 1
        self._shrink()
        self._offered_keys()

    def _offered_keys(self) -> None:
        self._unlogged += 1
        now = self._clock()
        if self._last_log is None or now - self._last_log >= self._log_every:
            log.warning(
                "speech is at its limit of %d listening callers for a %.1f s wait: "
                "%d menu(s) offered on keys since the last report",
                math.floor(self.limit),
                self.budget_s,
                self._unlogged,
            )
            self._last_log = now
            self._unlogged = 0

    def release(self, waited_s: float | None = None) -> None:
        """One admitted caller is done listening; ``waited_s``: end of speech -> transcript, if
        they spoke."""
        self.listening = max(0, self.listening - 1)
        if waited_s is None:
            return
        if waited_s > self.budget_s:
            self._shrink()
        elif waited_s < self._grow_below * self.budget_s and self._in_use:
            step = 1.0 if self.slow_start else 1.0 / self.limit
            self.limit = min(float(self._max_limit), self.limit + step)
            self._in_use = self.listening >= math.floor(self.limit)

    def _shrink(self) -> None:
        """Too many were listening: halve the limit (never under one) and grow cautiously after."""
        self.limit = max(1.0, self.limit / 2)
        self.slow_start = False
