"""A shutdown that ends: what is still running, in words, and an exit that does not wait on it.

Why the words: a shutdown that hangs shows only the last line it logged ("ACD role: follower
(... shutting down)") and then the SIGKILL. The tasks still pending, each with the line it waits
at, name the owner that did not let go. ``ivr serve`` logs them on SIGUSR1 at any time, and by itself when
``App.stop`` has run longer than ``STOP_WATCHDOG_S``; if the loop itself is stuck (a thread
holding it), ``faulthandler`` writes every thread's stack to stderr a little later, which a task
dump cannot do from a loop that no longer runs.

Why the exit: a statement in SQLite's driver thread cannot be cancelled or interrupted (it waits
out the busy timeout, 30 s), and that thread is not a daemon, so once every owner has stopped or
given up on its work, :func:`exit_leaving` ends the process instead of joining what is left.
"""

from __future__ import annotations

import asyncio
import contextlib
import faulthandler
import logging
import os
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from typing import Any

log = logging.getLogger(__name__)

#: seconds ``App.stop`` may run before the tasks still pending are logged (stop is bounded well
#: below this: the AGI grace, the KPI read, the customer creations and the journey flush)
STOP_WATCHDOG_S = 12.0
#: and then every thread's stack, for a loop too stuck to run the watchdog's callback
STACKS_AFTER_S = 14.0
#: frames shown per task: the innermost ones are where it waits
FRAMES = 8


def awaiting(coro: Any) -> list[tuple[str, int, str]]:
    """Where a suspended coroutine waits: (file, line, function) from its own frame down the
    chain of what it awaits. Why not ``Task.get_stack``: for a suspended task it gives only the
    outermost frame ("serve", line 662), which names no owner."""
    frames: list[tuple[str, int, str]] = []
    seen = 0
    while coro is not None and seen < 100:
        seen += 1
        frame = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None) or getattr(coro, "ag_frame", None)
        if frame is not None:
            frames.append((frame.f_code.co_filename, frame.f_lineno, frame.f_code.co_name))
        coro = getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None) or getattr(coro, "ag_await", None)
    return frames


def describe_task(task: asyncio.Task[Any], frames: int = FRAMES) -> str:
    """One task in a few lines: its name, the coroutine, and where it waits (innermost last)."""
    coro = task.get_coro()
    name = getattr(coro, "__qualname__", type(coro).__name__)
    lines = [f"task {task.get_name()!r} ({name})" + (" cancelling" if task.cancelling() else "")]
    for filename, line, function in awaiting(coro)[-frames:]:
        lines.append(f"    {filename}:{line} in {function}")
    return "\n".join(lines)


def describe_tasks(tasks: Iterable[asyncio.Task[Any]], frames: int = FRAMES) -> list[str]:
    """Every task not done, sorted by name so two dumps compare line by line."""
    pending = sorted((t for t in tasks if not t.done()), key=lambda t: t.get_name())
    return [describe_task(t, frames) for t in pending]


def log_tasks(why: str) -> None:
    """Log the running loop's pending tasks (except the one calling this) at WARNING."""
    current = asyncio.current_task()
    tasks = [t for t in asyncio.all_tasks() if t is not current]
    described = describe_tasks(tasks)
    log.warning("%s: %d task(s) pending\n%s", why, len(described), "\n".join(described))


@contextlib.contextmanager
def stop_watchdog(after: float = STOP_WATCHDOG_S, stacks_after: float | None = STACKS_AFTER_S) -> Iterator[None]:
    """Around a shutdown: after ``after`` seconds log the tasks still pending; after
    ``stacks_after`` (None: never) write every thread's stack to stderr. Both are disarmed when
    the block ends, so a shutdown in time logs nothing."""
    loop = asyncio.get_running_loop()
    timer = loop.call_later(after, log_tasks, f"still stopping after {after:g} s")
    try:
        sys.stderr.fileno()  # faulthandler writes to a file descriptor (a captured stderr has none)
    except (AttributeError, OSError, ValueError):
        stacks_after = None
    if stacks_after is not None:
        faulthandler.dump_traceback_later(stacks_after, exit=False, file=sys.stderr)
    try:
        yield
    finally:
        timer.cancel()
        if stacks_after is not None:
            faulthandler.cancel_dump_traceback_later()


#: seconds the process waits, after ``App.stop``, for tasks and threads nobody owns any more
LEAVE_AFTER_S = 1.0


async def settle_tasks(timeout: float = LEAVE_AFTER_S) -> list[asyncio.Task[Any]]:
    """Cancel the tasks still pending (but the caller), wait at most ``timeout``: the ones left."""
    current = asyncio.current_task()
    tasks = [t for t in asyncio.all_tasks() if t is not current and not t.done()]
    for task in tasks:
        task.cancel()
    if not tasks:
        return []
    _, pending = await asyncio.wait(tasks, timeout=timeout)
    return list(pending)


def stragglers(timeout: float = LEAVE_AFTER_S) -> list[threading.Thread]:
    """Non-daemon threads (but this one) still alive after joining each for what is left of
    ``timeout``: what the interpreter would wait for at exit."""
    deadline = time.monotonic() + timeout
    alive = []
    for thread in threading.enumerate():
        if thread is threading.current_thread() or thread.daemon:
            continue
        thread.join(max(0.0, deadline - time.monotonic()))
        if thread.is_alive():
            alive.append(thread)
    return alive


def exit_leaving(threads: list[threading.Thread], code: int = 0) -> None:
    """End the process now, naming what it does not wait for (see the module's "why")."""
    log.error(
        "exiting without waiting for what is still running (a statement in the database driver); threads: %s",
        ", ".join(t.name for t in threads) or "none",
    )
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
