"""Asterisk Manager Interface client: the only module that imports panoramisk.

Why a wrapper: panoramisk's API is untyped and callback-shaped, and its reconnect is a fixed
2-second retry that knows nothing about what must be redone after a reconnect. The rest of the
product wants ``await ami.action({...}) -> dict`` with a bounded wait and a clear error, typed
events (``ivr.ami.events``), and one promise: after every (re)connection, once Asterisk is fully
booted, the ``on_connected`` callbacks run (the ACD re-adds its members and rebuilds queue state
from ``QueueStatus``) before events are trusted again.

Two ways to use it:

* ``await ami.connect()`` ... ``ami.close()``: one connection, no reconnect (tests, CLI tools).
* ``await ami.start()`` ... ``await ami.stop()``: a supervisor task owns the connection and
  reconnects with exponential backoff and jitter (0.2 s doubling to ``max_backoff``) whenever
  Asterisk restarts or the TCP connection drops; ``connected`` is an Event that says whether
  actions can be sent now.

Events are parsed in panoramisk's callback (cheap, pure) and queued; one consumer task awaits the
handlers in arrival order, so a slow handler delays later events but never reorders them.
``lag`` is how many events wait in that queue (the benchmark watches it).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable
from typing import Any

from panoramisk import Manager

from ivr.aio import wait_cancelled, wait_for
from ivr.ami.events import AmiEvent, AmiEventError, FullyBooted, parse
from ivr.errors import IvrError

log = logging.getLogger(__name__)
# panoramisk logs every action still pending when a connection drops, verbatim, at INFO: a DBPut
# carrying a browser softphone's password (ivr.acd.sipcreds) would reach the log.
logging.getLogger("panoramisk.ami_protocol").setLevel(logging.WARNING)
EventHandler = Callable[[AmiEvent], Awaitable[None]]
ConnectedHandler = Callable[[], Awaitable[None]]


class AmiError(IvrError):
    """AMI refused the login or an action, or did not answer in time, or is not connected."""


def _as_dict(message: Any) -> dict[str, str]:
    return {str(k): str(v) for k, v in dict(message).items()}


def _headers(message: Any) -> dict[str, Any]:
    """panoramisk's Message -> plain dict; repeated headers (ChanVariable) stay lists."""
    return {str(k): v for k, v in dict(message).items()}


class _Manager(Manager):  # type: ignore[misc]
    """panoramisk's Manager with its own reconnect switched off: the supervisor owns reconnects."""

    pinger: Any

    def __init__(self, on_lost: Callable[[], None], **config: Any) -> None:
        super().__init__(**config)
        self._on_lost = on_lost

    def connection_made(self, f: asyncio.Future[Any]) -> None:
        if f.cancelled() or f.exception() is not None:
            self._on_lost()
            return
        super().connection_made(f)

    def connection_lost(self, exc: Any) -> None:
        self._connected = False
        self.authenticated = False
        if self.pinger:
            self.pinger.cancel()
            self.pinger = None
        self._on_lost()


class AmiClient:
    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 5038,
        username: str,
        secret: str,
        timeout: float = 10.0,
        events: bool = False,
        max_backoff: float = 10.0,
        boot_timeout: float = 30.0,
    ) -> None:
        self.host = host
        self.port = port
        self._username = username
        self._secret = secret
        self._timeout = timeout
        self._events = events
        self._max_backoff = max_backoff
        self._boot_timeout = boot_timeout
        self._manager: _Manager | None = None
        self._lost = asyncio.Event()
        self._booted = asyncio.Event()
        self._handlers: list[EventHandler] = []
        self._on_connected: list[ConnectedHandler] = []
        self._queue: asyncio.Queue[AmiEvent] = asyncio.Queue()
        self._consumer: asyncio.Task[None] | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self.connected = asyncio.Event()
        #: Connections made so far (1 after the first login; +1 after every reconnect).
        self.connections = 0
        self.events_seen = 0
        self.events_parsed = 0

    # ------------------------------------------------------------------ subscriptions

    def on_event(self, handler: EventHandler) -> None:
        """``await handler(event)`` for every typed event, in arrival order."""
        self._handlers.append(handler)

    def on_connected(self, handler: ConnectedHandler) -> None:
        """``await handler()`` after every login, once Asterisk reported FullyBooted."""
        self._on_connected.append(handler)

    @property
    def is_connected(self) -> bool:
        """Logged in and the connection not known lost (``connected`` is cleared a moment after
        a loss, when the supervisor wakes; this is true only while actions can be sent)."""
        return self.connected.is_set() and not self._lost.is_set()

    @property
    def lag(self) -> int:
        return self._queue.qsize()

    # ------------------------------------------------------------------ one connection

    def _new_manager(self) -> _Manager:
        self._lost = asyncio.Event()
        self._booted = asyncio.Event()
        lost = self._lost
        manager = _Manager(
            lost.set,
            host=self.host,
            port=self.port,
            username=self._username,
            secret=self._secret,
            ping_delay=10,
            reconnect_timeout=2,
            events="on" if self._events else "off",
            loop=asyncio.get_running_loop(),
            forgetable_actions=("ping", "login", "queuestatus", "queueadd", "queuepause", "queueremove"),
        )
        manager.register_event("*", self._dispatch)
        return manager

    def _dispatch(self, _manager: Any, message: Any) -> None:
        self.events_seen += 1
        try:
            event = parse(_headers(message))
        except AmiEventError as exc:
            log.warning("AMI event not understood: %s", exc)
            return
        if event is None:
            return
        self.events_parsed += 1
        if isinstance(event, FullyBooted):
            self._booted.set()
        if self._handlers:
            self._queue.put_nowait(event)

    async def connect(self) -> None:
        """Connect and log in once (no reconnect). AmiError if unreachable or refused."""
        manager = self._new_manager()
        self._manager = manager
        try:
            await wait_for(manager.connect(), self._timeout)
            for _ in range(int(self._timeout / 0.02)):
                if manager.authenticated:
                    break
                if manager.authenticated_future is None or self._lost.is_set():
                    raise AmiError("AMI login refused (check ami.username / ami.secret)")
                await asyncio.sleep(0.02)
            else:
                raise AmiError("AMI login timed out")
        except (OSError, TimeoutError) as exc:
            self.close()
            raise AmiError(f"cannot reach AMI at {self.host}:{self.port}: {exc}") from exc
        except AmiError:
            self.close()
            raise
        if self._lost.is_set():
            self.close()
            raise AmiError(f"cannot reach AMI at {self.host}:{self.port}")
        self.connections += 1
        self.connected.set()
        self._start_consumer()

    def close(self) -> None:
        self.connected.clear()
        if self._manager is not None:
            with contextlib.suppress(Exception):
                self._manager.close()
            self._manager = None

    def _start_consumer(self) -> None:
        if self._consumer is None and self._handlers:
            self._consumer = asyncio.create_task(self._consume(), name="ami-events")

    async def _consume(self) -> None:
        while True:
            event = await self._queue.get()
            for handler in self._handlers:
                try:
                    await handler(event)
                except Exception:  # one bad event must not stop the stream
                    log.exception("AMI event handler failed on %s", type(event).__name__)

    # ------------------------------------------------------------------ supervised

    async def start(self, wait: float | None = None) -> None:
        """Run the reconnecting supervisor; with ``wait``, also wait that long for the first login."""
        if self._supervisor is None:
            self._start_consumer()
            self._supervisor = asyncio.create_task(self._supervise(), name="ami-supervisor")
        if wait:
            with contextlib.suppress(TimeoutError):
                await wait_for(self.connected.wait(), wait)

    async def stop(self) -> None:
        tasks = [task for task in (self._supervisor, self._consumer) if task is not None]
        self._supervisor = self._consumer = None
        for task in tasks:  # both cancelled before either is waited for
            task.cancel()
        try:
            for task in tasks:
                await wait_cancelled(task)
        finally:
            self.close()

    async def _supervise(self) -> None:
        delay = 0.2
        while True:
            try:
                await self.connect()
            except AmiError as exc:
                pause = delay * random.uniform(0.8, 1.2)
                log.warning("AMI: %s; retrying in %.1fs", exc, pause)
                await asyncio.sleep(pause)
                delay = min(delay * 2, self._max_backoff)
                continue
            delay = 0.2
            lost = self._lost
            if self._events:
                # Asterisk sends FullyBooted right after login when it is already up; after a
                # restart it comes once the modules (app_queue) are loaded.
                with contextlib.suppress(TimeoutError):
                    await wait_for(self._booted.wait(), self._boot_timeout)
            log.info("AMI connected to %s:%d (connection %d)", self.host, self.port, self.connections)
            for handler in self._on_connected:
                if lost.is_set():
                    break
                try:
                    await handler()
                except Exception:
                    log.exception("AMI on_connected handler failed")
            await lost.wait()
            self.close()
            log.warning("AMI connection to %s:%d lost; reconnecting", self.host, self.port)

    # ------------------------------------------------------------------ actions

    def _require(self) -> _Manager:
        if self._manager is None or not self.connected.is_set() or self._lost.is_set():
            raise AmiError("AMI is not connected")
        return self._manager

    async def action(self, action: dict[str, str]) -> dict[str, str]:
        manager = self._require()
        try:
            # as_list=False: panoramisk takes a reply whose Message reads "Added ... to queue"
            # (QueueAdd's!) for the start of a list and would wait for more replies forever.
            reply = await wait_for(manager.send_action(dict(action), as_list=False), self._timeout)
        except TimeoutError:
            raise AmiError(f"AMI action {action.get('Action')} timed out") from None
        if isinstance(reply, list):
            reply = reply[0]
        result = _as_dict(reply)
        if result.get("Response", "").lower() == "error":
            raise AmiError(f"AMI {action.get('Action')}: {result.get('Message', result)}")
        return result

    async def action_list(self, action: dict[str, str]) -> list[dict[str, Any]]:
        """Actions answered by a list of events ending in ...Complete (QueueStatus, Status)."""
        manager = self._require()
        try:
            replies = await wait_for(manager.send_action(dict(action), as_list=True), self._timeout)
        except TimeoutError:
            raise AmiError(f"AMI action {action.get('Action')} timed out") from None
        return [_headers(r) for r in replies]

    async def getvar(self, channel: str, variable: str) -> str | None:
        reply = await self.action({"Action": "Getvar", "Channel": channel, "Variable": variable})
        value = reply.get("Value")
        return value if value not in (None, "", "None") else None

    async def queue_entries(self, queue: str | None = None) -> list[dict[str, str]]:
        """Callers waiting in queues (QueueEntry events of QueueStatus)."""
        action = {"Action": "QueueStatus"}
        if queue:
            action["Queue"] = queue
        return [_as_dict(e) for e in await self.action_list(action) if e.get("Event") == "QueueEntry"]

    async def queue_status(self, queue: str | None = None) -> list[AmiEvent]:
        """QueueStatus as typed events (QueueParams, QueueMember, QueueEntry): the state rebuild."""
        action = {"Action": "QueueStatus"}
        if queue:
            action["Queue"] = queue
        out: list[AmiEvent] = []
        for message in await self.action_list(action):
            try:
                event = parse(message)
            except AmiEventError as exc:
                log.warning("QueueStatus entry not understood: %s", exc)
                continue
            if event is not None:
                out.append(event)
        return out
