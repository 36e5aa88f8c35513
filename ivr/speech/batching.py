"""Decoding the finished utterances of concurrent callers together, one batch at a time.

Why: Whisper decodes a whole utterance at its end, and two decodes side by side on two cores each
take nearly twice as long as one alone (they fight for the same cores and memory bandwidth). One
batched decode of the utterances that ended meanwhile does the same work in one encoder pass and
one batched generation, with the cores' threads cooperating instead of competing: measured on
this machine's 2 cores, about 0.6-0.8x the time per utterance of decoding them one by one.

How the batch forms, with no timer: a caller alone is decoded at once (no added latency). Up to
``parallel`` batches decode at once (one per pool worker); while they all decode, utterances that
end queue up, and the first to finish takes them all as its next batch (up to ``max_batch``). So
the batch grows exactly when the load does.

Why ``parallel`` decodes of one CPU thread each rather than one decode of every core's threads:
Whisper tiny.en's matrices are too small for intra-op threads to pay on two cores. Measured on
this machine (Allison's replies, 6 s window, load average about 3): one thread per decode and two
decodes at once, 331-438 ms of wall time per reply at full load against 426-483 ms for one decode
at a time on two threads, and a reply alone 319-322 ms against 332-728 ms.

The batch runs in the speech pool (``executor``); the event loop only queues and hands back
results. The batcher owns the tasks that drain the queue (at most ``parallel``): :meth:`aclose`
cancels and awaits them, and fails whoever is still waiting.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from typing import Protocol, runtime_checkable

from ivr.aio import cancel_and_wait
from ivr.speech.engine import Transcript

__all__ = ["BatchItem", "BatchRecognizer", "DecodeBatcher"]

log = logging.getLogger(__name__)

BatchItem = tuple[bytes, Sequence[str]]
"""One finished utterance: its 8 kHz slin audio and the phrases of the menu it answers."""


@runtime_checkable
class BatchRecognizer(Protocol):
    """A recognizer that can decode several finished utterances in one call (Whisper)."""

    def transcribe_batch(self, items: Sequence[BatchItem]) -> list[Transcript]:
        """One transcript per item, in order. Blocking: runs in a worker thread."""
        ...


class DecodeBatcher:
    """Queue of finished utterances, decoded ``max_batch`` at a time by ``decode`` in ``executor``,
    at most ``parallel`` batches at once."""

    def __init__(
        self,
        decode: Callable[[Sequence[BatchItem]], list[Transcript]],
        executor: Executor,
        *,
        max_batch: int = 8,
        parallel: int = 1,
    ) -> None:
        self._decode = decode
        self._executor = executor
        self.max_batch = max(1, max_batch)
        self.parallel = max(1, parallel)
        self._queue: list[tuple[BatchItem, asyncio.Future[Transcript]]] = []
        self._drainers: set[asyncio.Task[None]] = set()
        self._decoding = 0  # drainers waiting for their batch's decode
        self._closed = False
        self.batches = 0
        self.decoded = 0
        self.largest = 0

    async def transcribe(self, pcm: bytes, phrases: Sequence[str]) -> Transcript:
        """The words of one finished utterance, decoded with whatever else is waiting."""
        if self._closed:
            raise RuntimeError("the decode batcher is closed")
        future: asyncio.Future[Transcript] = asyncio.get_running_loop().create_future()
        self._queue.append(((pcm, tuple(phrases)), future))
        if self._running() < self.parallel:
            drainer = asyncio.create_task(self._drain(), name="speech-batches")
            self._drainers.add(drainer)
            drainer.add_done_callback(self._drainers.discard)
        return await future

    def _running(self) -> int:
        """Drainers not finished. Why not ``len(self._drainers)``: a drainer that found the queue
        empty has ended, but leaves the set only when its done callback runs, a turn of the loop
        later; the caller it just answered resumes before that, and an utterance it sent right
        away (the next answer) counted the ended drainer, started none, and waited forever."""
        return sum(not drainer.done() for drainer in self._drainers)

    def _take(self) -> list[tuple[BatchItem, asyncio.Future[Transcript]]]:
        """The next batch: the oldest waiting utterances whose callers still wait (a caller who
        pressed a key or hung up meanwhile has cancelled their future), shared with the other
        drainers that are not decoding (two callers who end together on two idle workers are
        two decodes at once, not one batch of two)."""
        self._queue = [entry for entry in self._queue if not entry[1].done()]
        idle = max(1, self._running() - self._decoding)
        size = min(self.max_batch, -(-len(self._queue) // idle))
        batch, self._queue = self._queue[:size], self._queue[size:]
        return batch

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        while batch := self._take():
            items = [item for item, _ in batch]
            self._decoding += 1
            try:
                transcripts = await loop.run_in_executor(self._executor, self._decode, items)
            except asyncio.CancelledError:
                for _, future in batch:
                    future.cancel()
                raise
            except Exception as exc:  # an engine failure fails this batch's callers, not the next
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            finally:
                self._decoding -= 1
            self.batches += 1
            self.decoded += len(batch)
            self.largest = max(self.largest, len(batch))
            for (_, future), transcript in zip(batch, transcripts, strict=True):
                if not future.done():
                    future.set_result(transcript)

    async def aclose(self) -> None:
        """Stop: the batch being decoded is abandoned (its thread finishes on its own), and every
        caller still waiting gets ``CancelledError``."""
        self._closed = True
        for drainer in list(self._drainers):
            await cancel_and_wait(drainer)
        for _, future in self._queue:
            future.cancel()
        self._queue.clear()
