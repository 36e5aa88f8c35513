"""Publish/subscribe between the node that sees events (AMI, chat) and the nodes holding websockets.

Why a seam: with one controller everything is in one process and a dict of queues is enough; with
several, the node holding the AMI connection is not the node holding an agent's websocket. Both
implementations have the same small API, so nothing above this module knows which one runs::

    await bus.publish("agent.1001", {"type": "pop", ...})
    async with bus.subscribe("agent.1001") as sub:
        async for message in sub: ...

Delivery is live and at-most-once (like Redis PUBLISH): a subscriber sees what is published after
``subscribe`` returned. A slow subscriber never blocks publishers: its queue is bounded and when it
overflows the subscription is closed (the websocket then reconnects and reloads its state), instead
of silently dropping one pop in the middle.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from types import TracebackType
from typing import Any, Protocol

log = logging.getLogger(__name__)
Message = dict[str, Any]
QUEUE_LIMIT = 1000
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
        message = await asyncio.wait_for(self.__anext__(), timeout)
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
    """Redis PUBLISH/SUBSCRIBE: one connection for all of this node's subscriptions, read by one task.

    A topic is subscribed on Redis while it has at least one local subscriber. If the connection to
    Redis drops, the reader reconnects with backoff and re-subscribes every topic; messages
    published meanwhile are lost (live delivery), and subscribers are not closed.
    """

    def __init__(self, url: str, *, prefix: str = "ivr:") -> None:
        import redis.asyncio as aioredis

        self.url = url
        self.prefix = prefix
        self._redis = aioredis.from_url(url, decode_responses=True)
        self._pubsub: Any = None
        self._fanout = _Fanout()
        self._reader: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self._ready = asyncio.Event()

    async def start(self) -> None:
        await self._redis.ping()  # fail fast on a wrong URL
        self._pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
        self._reader = asyncio.create_task(self._read(), name="redis-bus-reader")

    async def stop(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
            self._reader = None
        if self._pubsub is not None:
            with contextlib.suppress(Exception):
                await self._pubsub.aclose()
        self._fanout.close_all()
        await self._redis.aclose()

    async def publish(self, topic: str, message: Message) -> None:
        await self._redis.publish(self.prefix + topic, json.dumps(message, separators=(",", ":")))

    def subscribe(self, topic: str) -> _Subscribing:
        async def make() -> Subscription:
            sub = Subscription(topic, self._unsubscribe)
            async with self._lock:
                if self._fanout.add(sub):
                    await self._pubsub.subscribe(self.prefix + topic)
                    self._ready.set()
            return sub

        return _Subscribing(make)

    async def _unsubscribe(self, sub: Subscription) -> None:
        async with self._lock:
            if self._fanout.remove(sub) and self._pubsub is not None:
                with contextlib.suppress(Exception):
                    await self._pubsub.unsubscribe(self.prefix + sub.topic)

    async def _read(self) -> None:
        delay = 0.1
        while True:
            await self._ready.wait()  # get_message() needs at least one subscription
            try:
                message = await self._pubsub.get_message(timeout=1.0)
                delay = 0.1
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("redis bus: %s; reconnecting in %.1fs", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                with contextlib.suppress(Exception):
                    async with self._lock:
                        await self._pubsub.reset()
                        self._pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
                        topics = [self.prefix + t for t in self._fanout.topics]
                        if topics:
                            await self._pubsub.subscribe(*topics)
                continue
            if message is None or message.get("type") != "message":
                continue
            channel = str(message["channel"])
            try:
                data = json.loads(message["data"])
            except ValueError:
                log.warning("redis bus: dropped a non-JSON message on %s", channel)
                continue
            self._fanout.deliver(channel.removeprefix(self.prefix), data)


def bus_from_url(url: str) -> MemoryBus | RedisBus:
    """``""`` -> in-process bus; ``redis://...`` -> Redis."""
    if not url:
        return MemoryBus()
    if url.startswith(("redis://", "rediss://", "unix://")):
        return RedisBus(url)
    raise ValueError(f"pubsub.url must be empty or redis://..., got {url!r}")
