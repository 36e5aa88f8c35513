"""Which controller node drives the ACD: one leader at a time, by a lease in the shared database.

Why one: the ACD's state (agents, waiting callers, held agents) is built from one AMI event stream
and acted on with AMI actions; two nodes doing it would pause and unpause the same agents and dial
the same callbacks. Every node answers calls (FastAGI), chats and websockets; only the lease
holder connects to AMI, runs the ACD from its events, publishes the wallboard and dials callbacks.

The lease (``ivr.store.leases``, name ``acd``) lasts ``ttl`` seconds and is renewed every
``renew_every``. When the holder dies, its lease expires and a follower takes it: a follower that
found the lease held reads when it expires and tries again right then (not on its next round), so
the takeover comes ``ttl - renew_every`` to ``ttl`` after the kill (1.5 to 2 s with the 2 s lease
renewed every 0.5 s; it was up to ``ttl + renew_every``, 4 s, with the earlier 3 s lease polled
each second). The lease is renewed while the new leader starts its duties, however long that
takes. The
holder steps down on its own when it has not renewed for ``ttl - renew_every`` seconds (the
database is away, or the process stalled), so it stops before anyone else can start: a renewal
that hangs is waited for only until that deadline, never a whole ``renew_every`` past it (which
with the old timing let a holder whose writes timed out outlive its lease by up to a second).
What it claims is stamped with its fencing token and checked against the lease in the same
statement (:meth:`ivr.store.agents.CallbackStore.claim`), which covers the case where it learns
too late.

The role is logged at start and on every change, and read by ``/readyz`` and ``/metrics``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Literal

from ivr.aio import wait_cancelled, wait_for
from ivr.store.leases import ACD_LEASE, LeaseStore

log = logging.getLogger(__name__)

Role = Literal["leader", "follower"]
#: measured over 20 leader kills (bench/failover.py): 2 s / 0.5 s, with the follower aiming at the
#: expiry, brought kill -> new leader from 2.8 / 4.0 s (p50 / p99; 3 s / 1 s) to 1.8 / 2.0 s
LEASE_TTL = 2.0
RENEW_EVERY = 0.5
#: a follower tries this long after the lease's recorded expiry (the holder's clock; the row's
#: ``expires_at <= now`` test must see it passed)
EXPIRY_SLACK = 0.02


class LeaseLost(RuntimeError):
    """The lease was lost (or not renewed in time) while this node was starting to lead."""


def node_id() -> str:
    """This process among the nodes: host, pid and a random part (a restarted pid is a new node)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Leadership:
    """Owned by the App: ``start`` takes part (one attempt at once, then a renewing task), ``stop``
    steps down and gives the lease up. ``on_lead(token)`` runs when this node becomes the leader,
    ``on_follow()`` when it stops being one; neither runs twice in a row."""

    def __init__(
        self,
        leases: LeaseStore,
        *,
        on_lead: Callable[[int], Awaitable[None]],
        on_follow: Callable[[], Awaitable[None]],
        holder: str | None = None,
        name: str = ACD_LEASE,
        ttl: float = LEASE_TTL,
        renew_every: float = RENEW_EVERY,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if not 0 < renew_every < ttl:
            raise ValueError("a lease must be renewed more often than it lasts")
        self.leases = leases
        self.on_lead = on_lead
        self.on_follow = on_follow
        self.holder = holder or node_id()
        self.name = name
        self.ttl = ttl
        self.renew_every = renew_every
        self._clock = clock
        self._monotonic = monotonic
        self.role: Role = "follower"
        #: the fencing token while leader, else None
        self.token: int | None = None
        #: times this node's role changed (for /metrics)
        self.changes = 0
        self._renewed_at = -float("inf")
        #: when (wall clock) the lease another node holds expires, as last read; None: not known
        self._expires_at: float | None = None
        self._failing = False
        self._task: asyncio.Task[None] | None = None
        #: the lease write in flight, and when (monotonic) it started; see _acquire
        self._acquiring: tuple[asyncio.Task[int | None], float] | None = None

    @property
    def is_leader(self) -> bool:
        return self.role == "leader"

    async def start(self) -> None:
        """One attempt now (a single node is the leader before it takes its first call), then renew."""
        await self.attempt()
        if self.role == "follower":
            log.info("ACD role: follower (node %s; another node holds the %s lease)", self.holder, self.name)
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="acd-leadership")

    async def stop(self) -> None:
        if self._task is not None:
            await self._cancel_until_done(self._task)
            self._task = None
        settled = await self._settle_acquire()  # before the release: a late renewal would take the lease back
        if self.is_leader:
            await self._become("follower", None, "shutting down")
            if not settled:  # the database is stuck: the release would wait as long; the lease expires
                return
            try:
                await self.leases.release(self.name, self.holder)
            except Exception as exc:  # the lease then simply expires
                log.warning("ACD lease not released: %s", exc)

    async def _cancel_until_done(self, task: asyncio.Task[None]) -> None:
        """Cancel the renewing task and wait for it, cancelling it again (every ``renew_every``)
        while it runs on.

        Why again: a step-down in progress awaits the duties' stops, and a duty that waits for a
        task of its own under ``suppress(CancelledError)`` takes a cancel that reaches this task
        there for its child's and swallows it. The loop then ran on, renewing into a locked
        database, and the process never stopped (SIGTERM under load with the database locked,
        just as the lease was lost). The duties here wait with ``ivr.aio.wait_cancelled``, which
        lets such a cancel through; this stays for any duty that does not. The spacing lets the
        step-down finish before the next cancel."""
        while not task.done():
            task.cancel()
            await asyncio.wait([task], timeout=self.renew_every)
        if not task.cancelled() and task.exception() is not None:
            log.error("ACD leadership task ended with an error", exc_info=task.exception())

    def next_attempt_in(self) -> float:
        """Seconds until the next attempt: ``renew_every`` for the holder; for a follower the time
        until the lease it saw held expires, if that comes sooner (a takeover then waits for no
        polling round)."""
        if self.is_leader or self._expires_at is None:
            return self.renew_every
        return max(0.0, min(self.renew_every, self._expires_at - self._clock() + EXPIRY_SLACK))

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.next_attempt_in())
            try:
                await self.attempt()
            except Exception:  # a dead loop would keep a leader that renews nothing
                log.exception("ACD leadership attempt failed")

    async def attempt(self) -> Role:
        """Renew or take the lease once, and change role if that changed who holds it."""
        try:
            token, started = await self._acquire()
        except Exception as exc:
            if not self._failing:
                log.warning("ACD lease not renewed: %s", exc or type(exc).__name__)
                self._failing = True
            if self.is_leader and self._past_step_down(self._renewed_at):
                await self._become("follower", None, "lease not renewed in time")
            return self.role
        if token is not None and self._past_step_down(started):
            # the write came back after the moment a holder renewed by it must step down: what is
            # left of that lease is no time to lead in (another node may take it right after)
            if self.is_leader:
                await self._become("follower", None, "lease renewed too late")
            return self.role
        if self._failing:
            log.info("ACD lease reachable again")
            self._failing = False
        if token is None:
            if self.is_leader:
                await self._become("follower", None, "another node holds the lease")
            self._expires_at = await self._expiry()
        else:
            self._expires_at = None
            self._renewed_at = started  # the lease runs from when the write was asked for, not answered
            if not self.is_leader or token != self.token:
                await self._become("leader", token, "lease taken")
        return self.role

    def _past_step_down(self, renewed_at: float) -> bool:
        """Whether a holder whose last renewal started at ``renewed_at`` (monotonic) must have
        stepped down by now (1 ms early: a timer set for that moment may wake a hair before it)."""
        return self._monotonic() - renewed_at >= self.ttl - self.renew_every - 0.001

    async def _expiry(self) -> float | None:
        """When the lease another node holds expires (None if it cannot be read in time: the
        follower then simply tries again after ``renew_every``)."""
        try:
            held = await wait_for(self.leases.holder(self.name), self.renew_every)
        except Exception:
            return None
        return None if held is None else held[2]

    def _wait_limit(self) -> float:
        """How long to wait for a lease write: ``renew_every``, and for the holder never past the
        moment it must step down (``ttl - renew_every`` after its last renewal started)."""
        if not self.is_leader:
            return self.renew_every
        left = self._renewed_at + self.ttl - self.renew_every - self._monotonic()
        return max(0.0, min(self.renew_every, left))

    async def _acquire(self) -> tuple[int | None, float]:
        """The lease write, waited for at most ``renew_every`` (the holder: not past its step-down
        deadline, :meth:`_wait_limit`); its token and when it started.

        Why the write runs in a task of its own that the timeout does not cancel: cancelling a
        write that waits for SQLite's write lock does not end it (SQLAlchemy's cancel waits for
        the driver's thread, which waits out the 30 s busy timeout), so the 1 s timeout returned
        after 30 s, too late to step down before the 3 s lease ran out, and shutdown waited as
        long. A write still running at the next attempt is waited for again, not doubled."""
        if self._acquiring is None:
            task = asyncio.create_task(
                self.leases.acquire(self.name, self.holder, ttl=self.ttl, now=self._clock()), name="acd-lease-write"
            )
            self._acquiring = (task, self._monotonic())
        task, started = self._acquiring
        try:
            return await wait_for(asyncio.shield(task), self._wait_limit()), started
        finally:
            if task.done():
                self._acquiring = None
                if not task.cancelled():
                    task.exception()  # retrieved here, also when the wait was given up

    async def _settle_acquire(self) -> bool:
        """Wait (at most ``renew_every``) for a lease write still in flight: False if it is still running
        (it is left to finish by itself, its token never used: this node is stopping)."""
        if self._acquiring is None:
            return True
        task, _ = self._acquiring
        done, _ = await asyncio.wait([task], timeout=self.renew_every)
        if not done:
            log.warning("ACD lease write still running at shutdown; the lease expires by itself")
            return False
        self._acquiring = None
        if not task.cancelled():
            task.exception()
        return True

    async def _become(self, role: Role, token: int | None, why: str) -> None:
        was = self.role
        if was == "leader" and role == "leader":  # a new token without our noticing the loss
            await self._step_down(why)
        self.role, self.token = role, token
        self.changes += 1
        if role == "leader":
            assert token is not None
            log.info("ACD role: leader (node %s, fencing token %d: %s)", self.holder, token, why)
            try:
                await self._start_leading(token)
            except Exception:
                log.exception("ACD leader start-up failed; giving the lease up")
                await self._step_down("start-up failed")
                self.role, self.token = "follower", None
                with contextlib.suppress(Exception):
                    await self.leases.release(self.name, self.holder)
        else:
            log.warning("ACD role: follower (node %s: %s)", self.holder, why)
            await self._step_down(why)

    async def _start_leading(self, token: int) -> None:
        """``on_lead(token)``, renewing the lease every ``renew_every`` while it runs: a start-up
        longer than ``ttl - renew_every`` (a loaded machine, many agents to log in again, many
        chats to adopt) would otherwise cost the very lease it starts under. Raises
        :class:`LeaseLost` (the start-up cancelled) when a renewal says the lease is gone or
        came too late."""

        async def lead_duties() -> None:
            await self.on_lead(token)

        lead = asyncio.create_task(lead_duties(), name="acd-lead-start")
        try:
            while True:
                done, _ = await asyncio.wait([lead], timeout=self.renew_every)
                if done:
                    lead.result()
                    return
                await self._renew_while_starting(token)
        finally:
            if not lead.done():
                lead.cancel()
                with contextlib.suppress(Exception):  # a cancel of this task still propagates
                    await wait_cancelled(lead)

    async def _renew_while_starting(self, token: int) -> None:
        try:
            got, started = await self._acquire()
        except Exception as exc:
            if self._past_step_down(self._renewed_at):
                raise LeaseLost("lease not renewed in time during start-up") from exc
            return
        if got != token or self._past_step_down(started):
            raise LeaseLost("lease lost during start-up")
        self._renewed_at = started

    async def _step_down(self, why: str) -> None:
        try:
            await self.on_follow()
        except Exception:
            log.exception("ACD leader duties not stopped cleanly (%s)", why)
