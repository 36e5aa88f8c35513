"""RedisBus across a Redis crash and restart, on a real throwaway redis-server (no mocks of Redis).

Two RedisBus instances are two controller nodes: A publishes (the AMI/ACD node), B holds the
subscriber (the websocket node). The server is SIGKILLed mid-run and restarted empty on the same
port. Timeouts below only stop a broken test from hanging; no assertion depends on timing, and each
test ends with a sentinel published after recovery, so a duplicate or a lost message fails it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest

from ivr.bus.pubsub import RedisBus, Subscription
from lab.redis import RedisServer, throwaway_redis
from lab.require import require

GUARD = 30.0  # seconds: only against hanging


@pytest.fixture
def server() -> Iterator[RedisServer]:
    require("redis-server")
    with throwaway_redis() as server:
        yield server


@pytest.fixture
async def nodes(server: RedisServer) -> AsyncIterator[tuple[RedisBus, RedisBus]]:
    a, b = RedisBus(server.url, max_backoff=0.2), RedisBus(server.url, max_backoff=0.2)
    await a.start()
    await b.start()
    tasks = list(a._tasks) + list(b._tasks)
    yield a, b
    if server.process is None or server.process.poll() is not None:
        server.start()  # so stop() can flush and exit without waiting on a dead server
    await asyncio.wait_for(a.stop(), GUARD)
    await asyncio.wait_for(b.stop(), GUARD)
    assert tasks and all(task.done() for task in tasks), "stop() must cancel and await its tasks"


async def until(condition: Callable[[], bool]) -> None:
    async def poll() -> None:
        while True:
            if condition():
                return
            await asyncio.sleep(0.01)

    await asyncio.wait_for(poll(), GUARD)


async def collect(sub: Subscription, n: int) -> list[Any]:
    return [(await sub.get(timeout=GUARD))["n"] for _ in range(n)]


def hold(bus: RedisBus, method: str) -> asyncio.Event:
    """Hold ``bus``'s reader (``"xread"``) or writer (``"_send_batch"``) before its next attempt until
    the returned event is set: sequencing only, the call then goes to the real Redis."""
    gate = asyncio.Event()
    target = bus._redis if method == "xread" else bus
    real: Callable[..., Awaitable[Any]] = getattr(target, method)

    async def held(*args: Any, **kwargs: Any) -> Any:
        await gate.wait()
        return await real(*args, **kwargs)

    setattr(target, method, held)
    return gate


def lines(caplog: pytest.LogCaptureFixture, node: str, text: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if node in r.getMessage() and text in r.getMessage()]


async def test_what_is_published_while_redis_is_down_reaches_the_other_node_in_order_once(
    server: RedisServer, nodes: tuple[RedisBus, RedisBus], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="ivr.bus.pubsub")
    a, b = nodes
    async with b.subscribe("agent.1") as ann, b.subscribe("agent.2") as bob:
        await a.publish("agent.1", {"n": "before"})
        assert await collect(ann, 1) == ["before"]
        await until(lambda: a.buffered == 0)  # acknowledged (B may hear it before A knows)

        server.kill()
        for i in range(6):  # the process is gone: none of these can have reached Redis yet
            await a.publish(f"agent.{i % 2 + 1}", {"n": i})
        assert a.buffered == 6
        await until(lambda: a._health.failures >= 3 and not b.connected)  # both noticed, A retried

        gate = hold(b, "xread")  # B re-reads only after A has delivered everything to the new server
        server.start()
        await until(lambda: a.buffered == 0)
        gate.set()

        assert await collect(ann, 3) == [0, 2, 4]
        assert await collect(bob, 3) == [1, 3, 5]
        await a.publish("agent.1", {"n": "after"})
        await a.publish("agent.2", {"n": "after"})
        assert await collect(ann, 1) == ["after"]  # nothing twice in between
        assert await collect(bob, 1) == ["after"]
    await until(lambda: a.connected and b.connected)  # an idle reader says so within one XREAD block

    for node in (a.node, b.node):  # one line each way per node, however many retries failed
        assert len(lines(caplog, node, "is unreachable")) == 1
        assert len(lines(caplog, node, "is back")) == 1
    assert a.dropped == 0


async def test_a_subscriber_that_reconnects_first_gets_what_is_flushed_later(
    server: RedisServer, nodes: tuple[RedisBus, RedisBus]
) -> None:
    a, b = nodes
    async with b.subscribe("agent.1") as ann:
        server.kill()
        for i in range(4):
            await a.publish("agent.1", {"n": i})
        await until(lambda: not b.connected)
        gate = hold(a, "_send_batch")  # A sends only once B is reading the new server again
        server.start()
        await until(lambda: b.connected)
        assert a.buffered == 4
        gate.set()
        assert await collect(ann, 4) == [0, 1, 2, 3]
        await a.publish("agent.1", {"n": "after"})
        assert await collect(ann, 1) == ["after"]


async def test_a_full_outbox_drops_the_oldest_with_one_warning(
    server: RedisServer, nodes: tuple[RedisBus, RedisBus], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="ivr.bus.pubsub")
    a, b = nodes
    a.buffer_limit = 5
    async with b.subscribe("agent.1") as ann:
        server.kill()
        for i in range(12):
            await a.publish("agent.1", {"n": i})
        assert (a.buffered, a.dropped) == (5, 7)
        assert len(lines(caplog, a.node, "dropping the oldest")) == 1
        server.start()
        assert await collect(ann, 5) == [7, 8, 9, 10, 11]
        await a.publish("agent.1", {"n": "after"})
        assert await collect(ann, 1) == ["after"]
    await until(lambda: a.connected)
    assert "7 dropped" in lines(caplog, a.node, "is back")[0]


async def test_a_subscriber_sees_only_what_is_published_after_it_subscribed(
    nodes: tuple[RedisBus, RedisBus],
) -> None:
    a, b = nodes
    for i in range(3):
        await a.publish("agent.9", {"n": f"old{i}"})
    await until(lambda: a.buffered == 0)
    async with b.subscribe("agent.9") as sub:
        await a.publish("agent.9", {"n": "new"})
        assert await collect(sub, 1) == ["new"]


async def test_stop_ends_promptly_right_after_a_crash_and_restart(
    server: RedisServer, nodes: tuple[RedisBus, RedisBus]
) -> None:
    """Regression: redis-py turned stop()'s cancel into a ConnectionError, the loop retried, stop() hung."""
    a, b = nodes
    async with b.subscribe("agent.1"):
        server.kill()
        await a.publish("agent.1", {"n": 0})
    server.start()
    await asyncio.wait_for(a.stop(), GUARD)
    await asyncio.wait_for(b.stop(), GUARD)


async def test_stop_while_redis_is_down_says_what_it_could_not_send(
    server: RedisServer, nodes: tuple[RedisBus, RedisBus], caplog: pytest.LogCaptureFixture
) -> None:
    a, _ = nodes
    server.kill()
    await a.publish("agent.1", {"n": 0})
    await a.publish("agent.1", {"n": 1})
    await asyncio.wait_for(a.stop(), GUARD)
    assert len(lines(caplog, a.node, "stopping with 2 messages")) == 1
