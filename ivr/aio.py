"""``wait_for`` that never swallows a cancel; use it instead of ``asyncio.wait_for`` (ruff bans that).

Why: on Python 3.11 (this package's floor) ``asyncio.wait_for`` returns the awaited result when
the task waiting in it is cancelled just after the awaited future completed (CPython gh-86296;
3.12 rebuilt ``wait_for`` on ``asyncio.timeout`` and no longer does). Every background task here
is stopped by its owner's ``cancel()`` and then awaited: a loop whose cancel was swallowed keeps
looping, and its owner waits forever. That was the intermittent hang of ``App.stop`` in the unit
tests: ``Leadership.stop`` cancelled the lease-renewing task just as a renewal's write returned
(``_acquire`` waits in ``wait_for``), the task renewed on every 0.5 s and the stop never ended.
Rare on an idle machine (the window is one or two turns of the event loop after a write that
comes every 0.5 s), common under CPU load.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

T = TypeVar("T")


async def wait_for(aw: Awaitable[T], timeout: float | None) -> T:
    """``asyncio.wait_for`` as Python 3.12 has it: the awaitable (a coroutine is run in a task of
    its own) waited for at most ``timeout`` seconds (None: no limit), then cancelled and waited
    for, and ``TimeoutError`` raised. A cancel of the caller always propagates as
    ``CancelledError``, also when it arrives with the result (3.11's returned the result)."""
    if timeout is None:
        return await aw
    task = asyncio.ensure_future(aw)
    async with asyncio.timeout(timeout):
        return await task
