"""The unit tests' bounded stop (tests/unit/bounded.py): a stop that hangs fails the test with
the pending tasks and where they wait, instead of hanging the run."""

from __future__ import annotations

import asyncio

import pytest

from tests.unit.bounded import stop_bounded


async def test_a_stop_that_never_ends_fails_naming_the_task_it_waits_for() -> None:
    never = asyncio.Event()

    async def owned_forever() -> None:
        await never.wait()

    stuck = asyncio.create_task(owned_forever(), name="owned-forever")

    async def stop() -> None:
        await stuck  # an owner awaiting a task that never finishes

    with pytest.raises(pytest.fail.Exception) as failed:
        await stop_bounded(stop, bound=0.2)
    message = str(failed.value)
    assert "within 0.2 s" in message
    assert (
        "task 'owned-forever' (test_a_stop_that_never_ends_fails_naming_the_task_it_waits_for.<locals>.owned_forever)"
        in message
    )
    assert "in owned_forever" in message and "in wait" in message  # the line it waits at
    assert stuck.cancelled()  # cancelled along with the stop that awaited it


async def test_a_stop_in_time_passes_and_its_error_is_the_test_s() -> None:
    async def quick() -> None:
        await asyncio.sleep(0)

    await stop_bounded(quick, bound=5)

    async def broken() -> None:
        raise RuntimeError("release failed")

    with pytest.raises(RuntimeError, match="release failed"):
        await stop_bounded(broken, bound=5)
