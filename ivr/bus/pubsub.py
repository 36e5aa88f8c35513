"""Publish/subscribe between the node that sees events (AMI, chat) and the nodes holding websockets.

Why a seam: with one controller everything is in one process and a dict of queues is enough; with
several, the node holding the AMI connection is not the node holding an agent's websocket. Both
implementations have the same small API, so nothing above this module knows which one runs::

    await bus.publish("agent.1001", {"type": "pop", ...})
    async with bus.subscribe("agent.1001") as sub:
        async for message in sub: ...

A subscriber sees what is published after ``subscribe`` returned (not the topic's history), in
order, each message once; with Redis that holds across a Redis outage or restart, within the bounds
given in ``RedisBus``. A slow subscriber never blocks publishers: its queue is bounded and when it
overflows the subscription is closed (the websocket then reconnects and reloads its state), instead
of silently dropping one pop in the middle.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from types import TracebackType
from typing import Any, Protocol
from urllib.parse import urlsplit

from ivr.aio import wait_cancelled, wait_for

log = logging.getLogger(__name__)
Message = dict[str, Any]
QUEUE_LIMIT = 1000
BUFFER_LIMIT = 5000  # messages a RedisBus node keeps for Redis while it is down
STREAM_MAXLEN = 1000  # entries kept per topic (approximately) for readers that were away
STREAM_TTL = 86400  # seconds a topic's stream outlives its last publish
BLOCK_MS = 2000  # an idle XREAD returns this often, so a silently dead connection is noticed
CONNECT_TIMEOUT = 2.0
INITIAL_BACKOFF = 0.1
WRITE_BATCH = 200
READ_COUNT = 200
_CLOSED: Message = {"type": "__closed__"}


class Subscription:
    """One subscriber's view of one topic. Iterate it; ``close()`` (or leave ``async with``) ends it."""

    def __init__(self, topic: str, on_close: Any) -> None:
        self.topic = topic
        self._queue: asyncio.Queue[Message] = asyncio.Queue(QUEUE_LIMIT + 1)
        self._on_close = on_close
        self.closed = False
        self.overflowed = False

    def deliver(self, message: Message) -> None:
        if self.closed:
            return
        if self._queue.qsize() >= QUEUE_LIMIT:
            log.warning("subscriber of %s fell %d messages behind: closing it", self.topic, QUEUE_LIMIT)
            self.overflowed = True
            self._queue.put_nowait(_CLOSED)
            self.closed = True
            return
        self._queue.put_nowait(message)

    async def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._queue.put_nowait(_CLOSED)
        await self._on_close(self)

    def __aiter__(self) -> AsyncIterator[Message]:
        return self

    async def __anext__(self) -> Message:
        message = await self._queue.get()
        if message is _CLOSED:
            raise StopAsyncIteration
        return message

    async def get(self, timeout: float | None = None) -> Message:
        """The next message (tests and simple loops); TimeoutError after ``timeout`` seconds."""
        message = await wait_for(self.__anext__(), timeout)
        return message

    async def __aenter__(self) -> Subscription:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()


class Bus(Protocol):
    async def start(self) -> None: ...
    async def stop(self) -> None: ...
    async def publish(self, topic: str, message: Message) -> None: ...
    def subscribe(self, topic: str) -> _Subscribing: ...


class _Subscribing:
    """What ``subscribe`` returns: await it, or ``async with`` it (subscribed once entered)."""

    def __init__(self, make: Any) -> None:
        self._make = make
        self._sub: Subscription | None = None

    def __await__(self) -> Any:
        return self._make().__await__()

    async def __aenter__(self) -> Subscription:
        self._sub = await self._make()
        return self._sub

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._sub is not None:
            await self._sub.close()


class _Fanout:
    """Local subscribers by topic; both buses deliver through one of these."""

    def __init__(self) -> None:
        self.topics: dict[str, set[Subscription]] = {}

    def add(self, sub: Subscription) -> bool:
        """True if this is the topic's first local subscriber."""
        subs = self.topics.setdefault(sub.topic, set())
        subs.add(sub)
        return len(subs) == 1

    def remove(self, sub: Subscription) -> bool:
        """True if the topic has no local subscriber left."""
        subs = self.topics.get(sub.topic)
        if subs is None:
            return False
        subs.discard(sub)
        if not subs:
            del self.topics[sub.topic]
            return True
        return False

    def deliver(self, topic: str, message: Message) -> None:
        for sub in list(self.topics.get(topic, ())):
            sub.deliver(message)

    def close_all(self) -> None:
        for subs in self.topics.values():
            for sub in subs:
                if not sub.closed:
                    sub.closed = True
                    sub._queue.put_nowait(_CLOSED)
        self.topics.clear()


class MemoryBus:
    """In-process: publish hands the dict to every local subscriber (no copy: do not mutate it)."""

    def __init__(self) -> None:
        self._fanout = _Fanout()

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        self._fanout.close_all()

    async def publish(self, topic: str, message: Message) -> None:
        self._fanout.deliver(topic, message)

    def subscribe(self, topic: str) -> _Subscribing:
        async def make() -> Subscription:
            sub = Subscription(topic, self._unsubscribe)
            self._fanout.add(sub)
            return sub

        return _Subscribing(make)

    async def _unsubscribe(self, sub: Subscription) -> None:
        self._fanout.remove(sub)


class RedisBus:
    """Redis Streams: one stream per topic, appended by a writer task, read by one reader task.

    Why streams and not PUBLISH/SUBSCRIBE: PUBLISH delivers to whoever is subscribed at that
    instant and keeps nothing, so a message published while a subscriber's connection is down (or
    before it has re-subscribed) is gone, and a publish made while Redis is down can only fail. A
    stream keeps the last messages of a topic with an id each, so a reader that comes back asks for
    "everything after the last id I saw" (``XREAD BLOCK``) and misses nothing, without any other
    node having to know it was away. How the parts keep that promise, and their bounds:

    * ``publish`` never touches the network: it appends to this node's outbox (in order, at most
      ``buffer_limit`` messages; when full the oldest is dropped, with one warning per outage and a
      count) and returns. The writer task ``XADD``\\ s the outbox in batches and removes a message only
      once Redis has acknowledged it; while Redis is down it retries with backoff, so the ACD/AMI
      code path never waits for, or fails on, Redis.
    * A batch cut by a dying connection may have been partly applied and is sent again, so every
      entry carries its origin (this node) and a sequence number, and readers skip an entry whose
      origin's sequence they have already passed on that topic: each message is delivered once.
    * Each stream is trimmed to about ``STREAM_MAXLEN`` entries (``MAXLEN ~``) and expires after
      ``STREAM_TTL`` seconds without a publish, so Redis memory stays bounded; a subscriber that is
      away longer than that can miss messages (its websocket reloads the agent's state anyway).
    * The reader keeps, per topic, the id of the last entry it delivered. A topic's first local
      subscriber starts at the stream's last id (or, if Redis is down right then, at this node's
      clock, which assumes it agrees with Redis's clock to within the outage), so a subscriber sees what is published after ``subscribe`` returned, not the topic's
      history. After an outage the reader resumes every topic from its last id. If Redis restarted
      empty (no persistence), the ids of the new entries come from its clock and so still sort
      after the old ones; what Redis held but no reader had read yet when it died is lost (publishers
      lose nothing: their outbox is kept until acknowledged).
    * One ``XREAD`` covers all of this node's topics plus a private "wake" stream: ``subscribe``
      appends to it so the blocked read returns at once and re-reads with the new topic.
    * Redis going away is logged once (warning) and coming back once (with what was buffered and
      dropped), not once per message or retry. ``stop`` cancels and awaits both tasks (which also
      end on a flag, as redis-py can turn a cancel into a ConnectionError), then makes one bounded
      last attempt to send what is still in the outbox and logs how much it could not. ``start``
      still fails when Redis does not answer, so a wrong URL is caught at once.
    """

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "ivr:",
        buffer_limit: int = BUFFER_LIMIT,
        max_backoff: float = 2.0,
    ) -> None:
        import redis.asyncio as aioredis
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff

        self.url = url
        self.prefix = prefix
        self.buffer_limit = buffer_limit
        self.max_backoff = max_backoff
        self.node = uuid.uuid4().hex[:12]
        # Our loops own retrying (with backoff and one log line per outage); redis-py's own retries
        # would only make each failed attempt slower.
        self._redis = aioredis.from_url(
            url,
            decode_responses=True,
            protocol=2,  # the reply shapes _read parses
            retry=Retry(NoBackoff(), 0),
            socket_connect_timeout=CONNECT_TIMEOUT,
            socket_timeout=BLOCK_MS / 1000 + CONNECT_TIMEOUT,
        )
        self._fanout = _Fanout()
        self._lock = asyncio.Lock()
        self._health = _Health(self.node, _where(url))
        # publishing side
        self._outbox: deque[tuple[str, str, int]] = deque()  # (topic, JSON, sequence)
        self._seq = itertools.count(1)
        self._pending = asyncio.Event()
        self.dropped = 0  # messages dropped from a full outbox since start
        self._drop_warned = False
        # reading side
        self._wake_key = f"{prefix}bus-wake:{self.node}"
        self._wake_id = "0-0"
        self._cursor: dict[str, str] = {}  # topic -> id of the last entry delivered (or start)
        self._seen: dict[str, dict[str, int]] = {}  # topic -> origin -> last sequence delivered
        self._tasks: list[asyncio.Task[None]] = []
        self._closing = False

    @property
    def connected(self) -> bool:
        """False from the first failed Redis call until both tasks have succeeded again."""
        return not self._health.failing

    @property
    def buffered(self) -> int:
        """Messages published on this node that Redis has not acknowledged yet."""
        return len(self._outbox)

    def _key(self, topic: str) -> str:
        return f"{self.prefix}bus:{topic}"

    async def start(self) -> None:
        await self._redis.ping()  # fail fast on a wrong URL
        self._tasks = [
            asyncio.create_task(self._write(), name=f"redis-bus-writer-{self.node}"),
            asyncio.create_task(self._read(), name=f"redis-bus-reader-{self.node}"),
        ]

    async def stop(self) -> None:
        if self._closing:
            return
        tasks, self._tasks = self._tasks, []
        self._closing = True  # the loops also check this: redis-py can turn a cancel into an error
        self._pending.set()
        for task in tasks:
            task.cancel()
        for task in tasks:
            await wait_cancelled(task)
        if self._outbox:
            with contextlib.suppress(Exception):
                await wait_for(self._send_batch(len(self._outbox)), CONNECT_TIMEOUT * 2)
            if self._outbox:
                log.error(
                    "redis bus %s: stopping with %d messages Redis at %s never acknowledged: they are lost",
                    self.node,
                    len(self._outbox),
                    self._health.where,
                )
        with contextlib.suppress(Exception):
            await self._redis.delete(self._wake_key)
        self._fanout.close_all()
        await self._redis.aclose()

    async def publish(self, topic: str, message: Message) -> None:
        payload = json.dumps(message, separators=(",", ":"))  # a TypeError here is the caller's bug
        if len(self._outbox) >= self.buffer_limit:
            self._outbox.popleft()
            self.dropped += 1
            if not self._drop_warned:
                self._drop_warned = True
                log.warning(
                    "redis bus %s: %d messages are waiting for Redis at %s: dropping the oldest from now on "
                    "(counted in the line logged when Redis returns)",
                    self.node,
                    self.buffer_limit,
                    self._health.where,
                )
        self._outbox.append((topic, payload, next(self._seq)))
        self._pending.set()

    def subscribe(self, topic: str) -> _Subscribing:
        async def make() -> Subscription:
            sub = Subscription(topic, self._unsubscribe)
            async with self._lock:
                if self._fanout.add(sub):
                    self._cursor[topic] = await self._last_id(topic)
                    self._seen[topic] = {}
                    await self._wake()
            return sub

        return _Subscribing(make)

    async def _unsubscribe(self, sub: Subscription) -> None:
        async with self._lock:
            if self._fanout.remove(sub):
                self._cursor.pop(sub.topic, None)
                self._seen.pop(sub.topic, None)

    async def _last_id(self, topic: str) -> str:
        """Where a new subscription starts: after the stream's last entry."""
        import redis.exceptions

        try:
            info = await self._redis.xinfo_stream(self._key(topic))
        except redis.exceptions.ResponseError:  # no such key: nothing published yet
            return "0-0"
        except (redis.exceptions.RedisError, OSError):  # Redis is down: this node's clock will do
            return f"{int(time.time() * 1000)}-0"
        return str(info["last-generated-id"])

    async def _wake(self) -> None:
        """Make the reader's blocked XREAD return so it reads the new topic too."""
        with contextlib.suppress(Exception):  # down: the reader is not blocked, it is reconnecting
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.xadd(self._wake_key, {"w": "1"}, maxlen=10, approximate=True)
                pipe.expire(self._wake_key, STREAM_TTL)
                await pipe.execute()

    async def _send_batch(self, size: int) -> None:
        """XADD the first ``size`` outbox messages; remove those Redis acknowledged."""
        batch = list(itertools.islice(self._outbox, size))
        async with self._redis.pipeline(transaction=False) as pipe:
            for topic, payload, seq in batch:
                key = self._key(topic)
                pipe.xadd(key, {"m": payload, "o": self.node, "s": seq}, maxlen=STREAM_MAXLEN, approximate=True)
                pipe.expire(key, STREAM_TTL)
            results = await pipe.execute(raise_on_error=False)
        for (topic, _, _), result in zip(batch, results[::2], strict=True):
            if isinstance(result, Exception):  # Redis answered, and refused this one: retrying won't help
                log.error("redis bus %s: Redis refused a message on %s: %s (dropped)", self.node, topic, result)
        last = batch[-1][2]
        while self._outbox and self._outbox[0][2] <= last:  # by sequence: drops may have shifted the deque
            self._outbox.popleft()
        if not self._outbox:
            self._drop_warned = False

    async def _attempt(
        self, role: str, backoff: list[float], operation: Callable[[], Awaitable[Any]]
    ) -> tuple[bool, Any]:
        """One Redis round for the writer or the reader: (True, result), or report the failure
        (one log line per outage, see ``_Health``), wait ``backoff[0]`` and double it: (False, None).

        A cancel that redis-py turned into a connection error is still a cancel: without the
        ``_cancelled()`` check ``stop()`` could wait for ever on a loop that swallowed it.
        """
        try:
            result = await operation()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if _cancelled():
                raise asyncio.CancelledError from exc
            self._health.failed(role, exc, self)
            await asyncio.sleep(backoff[0])
            backoff[0] = min(backoff[0] * 2, self.max_backoff)
            return False, None
        backoff[0] = INITIAL_BACKOFF
        self._health.ok(role, self)
        return True, result

    async def _write(self) -> None:
        backoff = [INITIAL_BACKOFF]
        while True:
            await self._pending.wait()
            if self._closing:
                return
            if not self._outbox:
                self._pending.clear()
                continue
            await self._attempt("writer", backoff, lambda: self._send_batch(WRITE_BATCH))

    async def _read(self) -> None:
        backoff = [INITIAL_BACKOFF]
        while not self._closing:
            ok, reply = await self._attempt("reader", backoff, self._xread)
            if not ok:
                continue
            for key, entries in reply or []:  # RESP2: [[key, [(id, {field: value}), ...]], ...]
                self._deliver(str(key), entries)

    async def _xread(self) -> Any:
        """One blocking read of every subscribed topic, from the last entry seen on each."""
        streams = {self._wake_key: self._wake_id}
        streams.update({self._key(topic): last for topic, last in self._cursor.items()})
        return await self._redis.xread(streams, count=READ_COUNT, block=BLOCK_MS)  # type: ignore[arg-type]

    def _deliver(self, key: str, entries: list[Any]) -> None:
        if key == self._wake_key:
            if entries:
                self._wake_id = str(entries[-1][0])
            return
        topic = key.removeprefix(f"{self.prefix}bus:")
        for entry_id, fields in entries:
            cursor = self._cursor.get(topic)
            if cursor is None:
                return  # unsubscribed while the XREAD was out
            if _id(entry_id) <= _id(cursor):
                continue  # read from an older cursor, before the topic was subscribed again
            self._cursor[topic] = str(entry_id)
            origin, seq = str(fields.get("o", "")), int(fields.get("s", 0))
            seen = self._seen.setdefault(topic, {})
            if seq and seq <= seen.get(origin, 0):
                continue  # a batch sent again after a cut connection
            seen[origin] = seq
            try:
                data = json.loads(fields["m"])
            except (KeyError, ValueError):
                log.warning("redis bus %s: dropped a malformed entry %s on %s", self.node, entry_id, key)
                continue
            self._fanout.deliver(topic, data)


class _Health:
    """Whether Redis is reachable, per part (reader, writer): one log line per outage and recovery."""

    def __init__(self, node: str, where: str) -> None:
        self.node = node
        self.where = where
        self.failing: dict[str, str] = {}
        self.since = 0.0
        self.failures = 0  # failed attempts since start (tests wait on it)

    def failed(self, part: str, exc: BaseException, bus: RedisBus) -> None:
        if not self.failing:
            self.since = time.monotonic()
            log.warning(
                "redis bus %s: Redis at %s is unreachable (%s): buffering publishes (up to %d) and retrying; "
                "subscribers resume where they left off",
                self.node,
                self.where,
                str(exc) or type(exc).__name__,
                bus.buffer_limit,
            )
        self.failing[part] = str(exc)
        self.failures += 1

    def ok(self, part: str, bus: RedisBus) -> None:
        if self.failing.pop(part, None) is not None and not self.failing:
            log.warning(
                "redis bus %s: Redis at %s is back after %.1fs: %d buffered messages still to send, %d dropped so far",
                self.node,
                self.where,
                time.monotonic() - self.since,
                bus.buffered,
                bus.dropped,
            )


def _cancelled() -> bool:
    """True if this task was cancelled but the CancelledError came back as another exception.

    redis-py, cancelled in the middle of a command, can close the connection and raise a
    ConnectionError instead; a loop that retried on it would swallow ``stop()``'s cancel and never end
    (seen in tests: ``stop()`` then waited forever)."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


def _id(entry_id: str) -> tuple[int, int]:
    ms, _, seq = str(entry_id).partition("-")
    return int(ms), int(seq or 0)


def _where(url: str) -> str:
    """host:port/db (or the socket path) without the password, for log lines."""
    parts = urlsplit(url)
    if parts.scheme == "unix":
        return parts.path
    return f"{parts.hostname}:{parts.port or 6379}{parts.path or ''}"


def bus_from_url(url: str) -> MemoryBus | RedisBus:
    """``""`` -> in-process bus; ``redis://...`` -> Redis."""
    if not url:
        return MemoryBus()
    if url.startswith(("redis://", "rediss://", "unix://")):
        return RedisBus(url)
    raise ValueError(f"pubsub.url must be empty or redis://..., got {url!r}")
