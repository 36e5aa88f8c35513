"""A stop a unit test waits for a bounded time, failing with what it still waits on.

Why: a shutdown that never ends hung a whole unit run in teardown (``App.stop`` awaiting a task
that never finished) and showed nothing but pytest's silence until the job was killed. Bounded,
the test fails after ``STOP_BOUND_S`` with every pending task and the line it waits at (the
product's own dump, :func:`ivr.shutdown.describe_tasks`), which names the owner that did not let go.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable

import pytest

from ivr.shutdown import STOP_WATCHDOG_S, describe_tasks, stop_watchdog

#: seconds a stop may take in a unit test: well above the product's own bound on ``App.stop`` (the
#: watchdog logs at ``STOP_WATCHDOG_S``) on a loaded 2-core machine, well below a CI job's patience
STOP_BOUND_S = 15.0


async def stop_bounded(stop: Callable[[], Awaitable[None]], *, bound: float = STOP_BOUND_S) -> None:
    """Run ``stop()``; after ``bound`` seconds print and fail with the tasks still pending (taken
    before the stop is cancelled, so the dump shows where it hung, not its unwinding)."""
    assert bound > 0
    task = asyncio.ensure_future(stop())
    # the product's watchdog too: its log at STOP_WATCHDOG_S, and every thread's stack if the loop
    # itself is stuck (then this function's timer cannot fire either)
    with stop_watchdog(after=min(STOP_WATCHDOG_S, bound), stacks_after=bound + 5):
        done, _ = await asyncio.wait({task}, timeout=bound)
    if not done:
        current = asyncio.current_task()
        dump = "\n".join(describe_tasks(t for t in asyncio.all_tasks() if t is not current))
        print(f"stop still pending after {bound:g} s; pending tasks:\n{dump}", file=sys.stderr, flush=True)
        task.cancel()
        await asyncio.wait({task}, timeout=2.0)  # let it unwind what it can; the failure is the point
        pytest.fail(f"stop did not finish within {bound:g} s; pending tasks:\n{dump}", pytrace=False)
    task.result()  # a stop that raised fails the test with its own error
