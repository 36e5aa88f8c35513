"""The pub/sub seam, same test body on the in-process bus and on a real throwaway Redis
(two RedisBus instances = two controller nodes: the AMI node publishes, the websocket node hears)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import pytest

from ivr.bus.pubsub import MemoryBus, RedisBus, bus_from_url
from lab.redis import RedisServer, throwaway_redis
from lab.require import require


@pytest.fixture(scope="module")
def redis() -> Iterator[RedisServer]:
    require("redis-server")
    with throwaway_redis() as server:
        yield server


@pytest.fixture(params=["memory", "redis"])
async def nodes(request: pytest.FixtureRequest) -> AsyncIterator[tuple[object, object]]:
    """(publishing node's bus, subscribing node's bus)."""
    if request.param == "memory":
        bus = MemoryBus()
        await bus.start()
        yield bus, bus
        await bus.stop()
        return
    server: RedisServer = request.getfixturevalue("redis")
    a, b = bus_from_url(server.url), bus_from_url(server.url)
    assert isinstance(a, RedisBus)
    await a.start()
    await b.start()
    yield a, b
    await a.stop()
    await b.stop()


async def test_only_subscribers_of_a_topic_get_its_messages_in_order(nodes: tuple[MemoryBus, MemoryBus]) -> None:
    pub, sub_node = nodes
    async with sub_node.subscribe("agent.1") as ann, sub_node.subscribe("agent.2") as bob:
        for i in range(50):
            await pub.publish("agent.1", {"type": "pop", "n": i})
        got = [await ann.get(timeout=5) for _ in range(50)]
        assert [m["n"] for m in got] == list(range(50))
        with pytest.raises(TimeoutError):
            await bob.get(timeout=0.3)


async def test_two_subscribers_of_one_topic_both_hear_and_unsubscribing_stops_delivery(
    nodes: tuple[MemoryBus, MemoryBus],
) -> None:
    pub, sub_node = nodes
    first = await sub_node.subscribe("agent.7")
    async with sub_node.subscribe("agent.7") as second:
        await pub.publish("agent.7", {"type": "state"})
        assert (await first.get(timeout=5))["type"] == "state"
        assert (await second.get(timeout=5))["type"] == "state"
        await first.close()
        await pub.publish("agent.7", {"type": "again"})
        assert (await second.get(timeout=5))["type"] == "again"
    with pytest.raises(StopAsyncIteration):
        await first.__anext__()


async def test_async_for_ends_when_the_bus_stops() -> None:
    bus = MemoryBus()
    sub = await bus.subscribe("t")
    seen: list[dict[str, object]] = []

    async def consume() -> None:
        async for message in sub:
            seen.append(message)

    task = asyncio.create_task(consume())
    await bus.publish("t", {"a": 1})
    await asyncio.sleep(0.01)
    await bus.stop()
    await asyncio.wait_for(task, 1)
    assert seen == [{"a": 1}]
