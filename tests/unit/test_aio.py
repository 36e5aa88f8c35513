"""``ivr.aio``: ``wait_for`` as 3.12 has it on Python 3.11, whose own swallows a cancel that arrives
with the result (the App.stop hang: a renewing task cancelled as its write returned ran on); and a
cancelled task waited for without swallowing a cancel of the task waiting for it."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest

import ivr
from ivr.aio import cancel_and_wait, run_to_end, wait_cancelled, wait_for

PACKAGE = Path(ivr.__file__).parent


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


async def test_a_stop_cancelled_while_it_waits_for_its_task_is_cancelled_too() -> None:
    """A duty's stop waits for its task, which takes a while to end (it finishes a write first);
    the stop's own owner is cancelled meanwhile (SIGTERM during a step-down). With
    ``suppress(CancelledError)`` around the wait the owner's cancel was taken for the task's and
    the owner went on; here it ends, cancelled."""
    finishing = asyncio.Event()

    async def duty() -> None:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            await finishing.wait()  # the write in flight ends before the task does
            raise

    async def owner(task: asyncio.Task[None]) -> str:
        await cancel_and_wait(task)
        return "went on"  # what the swallowed cancel let it do

    task = asyncio.create_task(duty())
    await asyncio.sleep(0)
    stopping = asyncio.create_task(owner(task))
    await asyncio.sleep(0.01)  # the owner waits for the duty
    stopping.cancel()
    finishing.set()
    done, _ = await asyncio.wait([stopping], timeout=1.0)
    assert done and stopping.cancelled()
    await asyncio.wait([task], timeout=1.0)
    assert task.cancelled()


async def test_the_tasks_own_cancel_ends_the_wait_quietly_and_its_errors_do_not() -> None:
    async def sleeper() -> None:
        await asyncio.sleep(3600)

    task = asyncio.create_task(sleeper())
    await asyncio.sleep(0)
    await cancel_and_wait(task)  # no error: this is how it was meant to end
    assert task.cancelled()

    async def failing_on_cancel() -> None:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            raise RuntimeError("the cleanup failed") from None

    broken = asyncio.create_task(failing_on_cancel())
    await asyncio.sleep(0)
    broken.cancel()
    with pytest.raises(RuntimeError, match="cleanup failed"):
        await wait_cancelled(broken)


def test_no_module_waits_for_a_cancelled_task_under_suppress() -> None:
    """The pattern ``wait_cancelled`` replaces, anywhere in the package (ruff cannot ban it)."""
    pattern = re.compile(r"^\s*with\s+(contextlib\.)?suppress\([^)]*CancelledError")
    found = [
        f"{path.relative_to(PACKAGE.parent)}:{number}"
        for path in sorted(PACKAGE.rglob("*.py"))
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if pattern.match(line)
    ]
    assert found == []


async def test_cleanup_of_a_task_cancelled_before_waits_for_its_children_and_runs_to_its_end() -> None:
    """A websocket handler whose client left is cancelled; its ``finally`` stops its children and
    then tells the desk the agent's screen is gone. Only a cancel that arrives during the wait
    ends the wait early, not the one the cleanup is running for."""
    steps: list[str] = []

    async def child() -> None:
        await asyncio.sleep(3600)

    async def handler() -> None:
        forwarder = asyncio.create_task(child())
        try:
            await asyncio.sleep(3600)
        finally:
            await cancel_and_wait(forwarder)
            steps.append("children stopped")
            await asyncio.sleep(0)
            steps.append("desk told")

    task = asyncio.create_task(handler())
    await asyncio.sleep(0.01)
    task.cancel()
    done, _ = await asyncio.wait([task], timeout=1.0)
    assert done and task.cancelled()
    assert steps == ["children stopped", "desk told"]


async def test_cleanup_run_to_its_end_finishes_when_the_handler_is_cancelled_in_the_middle() -> None:
    """aiohttp cancels a websocket handler when its client leaves, possibly while the handler's
    ``finally`` is still telling the desk the agent's screen is gone: that part finishes, then the
    cancel goes on."""
    steps: list[str] = []
    telling = asyncio.Event()

    async def gone() -> None:
        steps.append("children stopped")
        telling.set()
        await asyncio.sleep(0.05)  # the desk's round trip
        steps.append("desk told")

    async def handler() -> None:
        try:
            pass
        finally:
            await run_to_end(gone())
            steps.append("after the cleanup")  # never: the cancel goes on once it is done

    task = asyncio.create_task(handler())
    await telling.wait()
    task.cancel()  # in the middle of the cleanup
    done, _ = await asyncio.wait([task], timeout=1.0)
    assert done and task.cancelled()
    assert steps == ["children stopped", "desk told"]
