"""Which controller node drives the ACD: one leader at a time, by a lease in the shared database.

Why one: the ACD's state (agents, waiting callers, held agents) is built from one AMI event stream
and acted on with AMI actions; two nodes doing it would pause and unpause the same agents and dial
the same callbacks. Every node answers calls (FastAGI), chats and websockets; only the lease
holder connects to AMI, runs the ACD from its events, publishes the wallboard and dials callbacks.

The lease (``ivr.store.leases``, name ``acd``) lasts ``ttl`` seconds and is renewed every
``renew_every``. When the holder dies, its lease expires and the next node to try takes it: the
takeover time is at most ``ttl + renew_every``. The holder steps down on its own when it has not
renewed for ``ttl - renew_every`` seconds (the database is away, or the process stalled), so it
stops before anyone else can start. What it claims is stamped with its fencing token and checked
against the lease in the same statement (:meth:`ivr.store.agents.CallbackStore.claim`), which
covers the case where it learns too late.

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

from ivr.store.leases import ACD_LEASE, LeaseStore

log = logging.getLogger(__name__)

Role = Literal["leader", "follower"]
LEASE_TTL = 3.0
RENEW_EVERY = 1.0


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
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
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

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.renew_every)
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
            if self.is_leader and self._monotonic() - self._renewed_at >= self.ttl - self.renew_every:
                await self._become("follower", None, "lease not renewed in time")
            return self.role
        if self._failing:
            log.info("ACD lease reachable again")
            self._failing = False
        if token is None:
            if self.is_leader:
                await self._become("follower", None, "another node holds the lease")
        else:
            self._renewed_at = started  # the lease runs from when the write was asked for, not answered
            if not self.is_leader or token != self.token:
                await self._become("leader", token, "lease taken")
        return self.role

    async def _acquire(self) -> tuple[int | None, float]:
        """The lease write, waited for at most ``renew_every``; its token and when it started.

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
            return await asyncio.wait_for(asyncio.shield(task), self.renew_every), started
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
                await self.on_lead(token)
            except Exception:
                log.exception("ACD leader start-up failed; giving the lease up")
                await self._step_down("start-up failed")
                self.role, self.token = "follower", None
                with contextlib.suppress(Exception):
                    await self.leases.release(self.name, self.holder)
        else:
            log.warning("ACD role: follower (node %s: %s)", self.holder, why)
            await self._step_down(why)

    async def _step_down(self, why: str) -> None:
        try:
            await self.on_follow()
        except Exception:
            log.exception("ACD leader duties not stopped cleanly (%s)", why)
