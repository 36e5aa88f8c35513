"""Waiting that never swallows a cancel: ``wait_for`` instead of ``asyncio.wait_for`` (ruff bans
that), ``wait_cancelled`` / ``cancel_and_wait`` to stop a task, ``run_to_end`` for cleanup that
must finish.

Why ``wait_for``: on Python 3.11 (this package's floor) ``asyncio.wait_for`` returns the awaited result when
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
import logging
from collections.abc import Awaitable
from typing import Any, TypeVar

T = TypeVar("T")
log = logging.getLogger(__name__)


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


async def cancel_and_wait(task: asyncio.Future[Any]) -> None:
    """Cancel ``task`` and wait until it has ended (see :func:`wait_cancelled`)."""
    task.cancel()
    await wait_cancelled(task)


async def wait_cancelled(task: asyncio.Future[Any]) -> None:
    """Wait for ``task``, already cancelled, to end. Its own ``CancelledError`` is how it was
    meant to end and goes no further; a cancel of the task waiting here, arriving while it waits,
    does, and so does any other error the task ended with.

    Why not ``with suppress(CancelledError): await task``: the ``CancelledError`` that comes out
    of the ``await`` is the same whether the awaited task ended by its cancel or the waiting task
    was itself cancelled meanwhile, and the ``suppress`` swallowed both. A stop that was waiting
    there when its own owner cancelled it then went on as if nothing had happened: the
    lease-renewing task stepped down into a duty's stop, took the process's SIGTERM for the
    duty's, and renewed on into a locked database; the process never ended (bench/README.md).
    ``Task.cancelling()`` tells the two apart: it counts the cancels asked of the waiting task.
    Only one asked during the wait counts: cleanup in a ``finally`` of a task cancelled before
    (a websocket handler whose client left) still waits for its children and runs to its end.
    """
    waiting = asyncio.current_task()
    asked = waiting.cancelling() if waiting is not None else 0
    try:
        await task
    except asyncio.CancelledError:
        if waiting is not None and waiting.cancelling() > asked:
            raise


async def run_to_end(aw: Awaitable[T]) -> T:
    """``aw`` (a coroutine runs in a task of its own) run to its end even when the task awaiting
    it is cancelled meanwhile; that cancel then goes on, as ``CancelledError`` once ``aw`` is done
    (an error ``aw`` ended with is logged then, not lost).

    Why: cleanup that must finish, in a ``finally`` of a handler that aiohttp cancels when its
    client leaves (a desktop's socket closing tells the ACD the agent's screen is gone: without
    it a call could ring on a desk nobody sees). A cancel that lands in the middle of it used to
    be swallowed by the ``suppress(CancelledError)`` around a child's ``await`` there, which let
    the cleanup finish by accident (:func:`wait_cancelled`); this finishes it on purpose.
    """
    task = asyncio.ensure_future(aw)
    interrupted = False
    while not task.done():
        try:
            await asyncio.wait([task])
        except asyncio.CancelledError:
            interrupted = True
    if interrupted:
        if not task.cancelled() and task.exception() is not None:
            log.error("cleanup finished with an error after its caller was cancelled", exc_info=task.exception())
        raise asyncio.CancelledError
    return task.result()
