"""``ivr.aio.wait_for``: 3.12's ``wait_for`` on Python 3.11, whose own swallows a cancel that
arrives with the result (the App.stop hang: a renewing task cancelled as its write returned ran on)."""

from __future__ import annotations

import asyncio

import pytest

from ivr.aio import wait_for


async def test_a_cancel_that_arrives_with_the_result_is_not_swallowed() -> None:
    answer: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    got: list[int] = []

    async def loop_stopped_by_cancel() -> None:
        while True:  # a background loop as the product has them: only a cancel ends it
            got.append(await wait_for(answer, 5.0))
            await asyncio.sleep(3600)

    task = asyncio.create_task(loop_stopped_by_cancel())
    await asyncio.sleep(0)  # it waits for the answer
    answer.set_result(7)
    task.cancel()  # in the same turn of the loop: 3.11's asyncio.wait_for returned 7 and slept on
    done, _ = await asyncio.wait([task], timeout=1.0)
    assert done and task.cancelled()
    assert got == []


async def test_the_result_in_time_and_a_timeout_after() -> None:
    assert await wait_for(asyncio.sleep(0, result="ok"), 1.0) == "ok"
    assert await wait_for(asyncio.sleep(0, result="no limit"), None) == "no limit"
    slow = asyncio.ensure_future(asyncio.sleep(3600))
    with pytest.raises(TimeoutError):
        await wait_for(slow, 0.05)
    assert slow.cancelled()  # cancelled and waited for, as asyncio.wait_for does
    with pytest.raises(TimeoutError):
        await wait_for(asyncio.Event().wait(), 0)  # no time at all: not even one turn


async def test_a_shielded_write_outlives_the_timeout() -> None:
    """The lease write's pattern: the wait gives up, the write goes on."""
    release = asyncio.Event()

    async def write() -> str:
        await release.wait()
        return "written"

    task = asyncio.create_task(write())
    with pytest.raises(TimeoutError):
        await wait_for(asyncio.shield(task), 0.05)
    assert not task.done()
    release.set()
    assert await wait_for(asyncio.shield(task), 1.0) == "written"
