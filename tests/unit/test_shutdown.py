"""ivr.shutdown: the pending tasks named where they wait, the watchdog that fires only on a slow
stop, and the tasks left after a cancel."""

from __future__ import annotations

import asyncio
import logging

import pytest

from ivr.shutdown import describe_tasks, settle_tasks, stop_watchdog


async def _inner(gate: asyncio.Event) -> None:
    await gate.wait()


async def _outer(gate: asyncio.Event) -> None:
    await _inner(gate)


async def test_a_pending_task_is_named_with_the_line_it_waits_at_innermost_last() -> None:
    gate = asyncio.Event()
    task = asyncio.create_task(_outer(gate), name="waiter")
    await asyncio.sleep(0)
    (described,) = describe_tasks([task])
    lines = described.splitlines()
    assert lines[0] == "task 'waiter' (_outer)"
    assert [line.rsplit(" in ", 1)[1] for line in lines[1:3]] == ["_outer", "_inner"]
    assert "test_shutdown.py" in lines[2]
    gate.set()
    await task
    assert describe_tasks([task]) == []  # a done task is not pending


async def test_the_watchdog_logs_the_pending_tasks_only_when_stop_runs_too_long(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="ivr.shutdown")
    gate = asyncio.Event()
    task = asyncio.create_task(_outer(gate), name="stuck-owner")
    with stop_watchdog(after=0.05, stacks_after=None):
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.1)
    assert caplog.records == []  # ended in time: disarmed
    with stop_watchdog(after=0.05, stacks_after=None):
        await asyncio.sleep(0.1)
    (record,) = caplog.records
    message = record.getMessage()
    assert "still stopping after 0.05 s: 2 task(s) pending" in message  # the stopping one, and its owner's
    assert "in test_the_watchdog_logs_the_pending_tasks_only_when_stop_runs_too_long" in message
    assert "task 'stuck-owner' (_outer)" in message
    gate.set()
    await task


async def test_settle_cancels_what_is_left_and_returns_only_what_outlives_the_cancel() -> None:
    gate = asyncio.Event()
    obedient = asyncio.create_task(_outer(gate))

    async def stubborn() -> None:  # as a statement in a driver thread: the cancel does not end it
        try:
            await gate.wait()
        except asyncio.CancelledError:
            await asyncio.sleep(10)

    late = asyncio.create_task(stubborn())
    await asyncio.sleep(0)
    assert await settle_tasks(timeout=0.1) == [late]
    assert obedient.cancelled()
    late.cancel()
    with pytest.raises(asyncio.CancelledError):
        await late
