"""Thin asyncio FastAGI server: sockets in, ``AgiConnection`` events out, one task per call.

Why we own this instead of using panoramisk's: its server spins forever when a peer closes before
the end of the AGI header (every TCP health check does that). Here the protocol decisions live in
``protocol.py``; this module only moves bytes, bounds every wait, and makes sure an unexpected
error ends in a *defined dialplan fallback* rather than a dead channel:

* unknown route, or a handler raising anything but ``CallEnded``: ``SET VARIABLE IVR_ACTION
  "<fallback_action>"`` (when the channel is still up and the connection in sync), then close.
  The dialplan reads ``IVR_ACTION`` after ``AGI()`` returns and sends the call to its fallback.
  When even that cannot be sent (protocol error, command timeout, server stop) we close the
  socket; the dialplan must treat an empty ``IVR_ACTION`` the same way.
* ``CallEnded`` (HANGUP notice, 511, EOF, ``result=-1`` on a hung-up channel): control flow,
  logged at INFO.

Each connection is its own task, owned by the server (``stop`` cancels and awaits them), and
exceptions are contained per task, so one call's failure never touches another.
Per-call overhead is kept low (no threads, no per-line INFO logging, no task per command, and no
stream layer: :class:`_AgiStream` hands the socket's bytes straight to the sans-IO connection,
and a wait is one future with one timer) because Asterisk, not us, should be the bottleneck of
the benchmark.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final, cast

from ivr.agi import commands
from ivr.agi.protocol import (
    NEED_DATA,
    AgiConnection,
    AgiEnvironment,
    Closed,
    ConnectionState,
    DeadChannel,
    HangupNotice,
    InvalidCommand,
    Reply,
    UsageError,
)
from ivr.agi.variables import ACTION
from ivr.errors import CallEnded, ChannelError, CommandTimeout, IvrError, RemoteProtocolError
from ivr.logs import call_id

__all__ = ["AgiServer", "AgiSession", "CommandObservers", "Handler", "Router"]

log = logging.getLogger("ivr.agi")

#: Bytes buffered and not yet parsed at which the socket stops being read until the call asks
#: for more: a peer that floods us is held to this, as a stream reader's limit held it.
_READ_LIMIT: Final = 128 * 1024
#: Bound on the fallback SET VARIABLE after a failure: the call must not wait long for it.
_FALLBACK_TIMEOUT: Final = 2.0
_BACKLOG: Final = 1024


class AgiSession:
    """One call as a handler sees it: the environment and an awaitable ``command``.

    A session is not safe for concurrent ``command`` calls (AGI is strictly one command, one
    reply); a second concurrent call raises LocalProtocolError, a bug on our side.
    """

    __slots__ = (
        "_closed",
        "_conn",
        "_connected",
        "_dead",
        "_hangup_grace",
        "_observers",
        "_stream",
        "_timeout",
        "env",
    )

    def __init__(
        self,
        env: AgiEnvironment,
        stream: _AgiStream,
        *,
        command_timeout: float,
        hangup_grace: float = 0.1,
        observers: CommandObservers | None = None,
        connected: float | None = None,
    ) -> None:
        """``connected``: ``time.perf_counter()`` when Asterisk connected (the first command's
        delay is measured from it); ``observers``: told each command's round trip."""
        self.env = env
        self._conn = stream.conn
        self._stream = stream
        self._timeout = command_timeout
        self._hangup_grace = hangup_grace
        self._closed = False
        self._dead = False  # a 511 reply or EOF: the caller is gone even without a HANGUP line
        self._observers = observers
        self._connected = connected

    @property
    def hung_up(self) -> bool:
        """The caller is gone: a HANGUP notice, a 511 reply or EOF was seen."""
        return self._dead or self._conn.hung_up

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def ready(self) -> bool:
        """A command can be sent now (channel up, connection open and in sync)."""
        return not self._closed and not self.hung_up and self._conn.state is ConnectionState.IDLE

    async def command(self, line: str, *, timeout: float | None = None) -> Reply:
        """Send one AGI command line and await its reply.

        Raises CallEnded when the caller hung up (HANGUP notice, 511, EOF, or ``result=-1``
        followed by a HANGUP notice within ``hangup_grace``), ChannelError when Asterisk rejects
        the command (510 / 520, the message carries Asterisk's usage text) or answers 503,
        CommandTimeout when no reply comes within ``timeout`` (default: the server's
        ``command_timeout``). A timeout, a RemoteProtocolError or cancellation closes the
        session: the byte stream can no longer be trusted to pair replies with commands. (That
        is why the timeout is a parameter here rather than an ``asyncio.timeout`` around the
        call, hence the ASYNC109 waiver.)
        """
        if self.hung_up:
            raise CallEnded("caller hung up")
        if self._closed:
            raise ChannelError("the AGI session is closed")
        sent = time.perf_counter()
        self._stream.write(self._conn.send_command(line))
        observers = self._observers
        if observers is not None and self._connected is not None:
            if observers.first is not None:
                observers.first(sent - self._connected)
            self._connected = None
        limit = self._timeout if timeout is None else timeout
        try:
            try:
                reply = await self._await_reply(line, self._stream.deadline(limit))
                if observers is not None:
                    took = time.perf_counter() - sent
                    if observers.command is not None:
                        observers.command(took)
                    if observers.control is not None and commands.is_control(line):
                        observers.control(took)
            except TimeoutError:
                self.close()
                raise CommandTimeout(f"no AGI reply to {line[:80]!r} within {limit:g}s") from None
            # Asterisk writes "200 result=-1" and only then notices the hangup and writes
            # HANGUP; give it a moment so a hangup reads as CallEnded, not as a failure.
            if reply.result == "-1" and reply.code == 200 and not self.hung_up:
                await self._await_hangup()
        except (RemoteProtocolError, asyncio.CancelledError):
            # Cancelled mid-exchange (server stop, an outer timeout): the reply would arrive
            # later and pair with the next command, so this connection is done.
            self.close()
            raise
        if reply.code != 200:
            raise ChannelError(f"Asterisk failed {line[:80]!r}: {reply.raw}")
        if reply.result == "-1" and self.hung_up:
            raise CallEnded("caller hung up")
        return reply

    async def set_variable(self, name: str, value: str) -> None:
        await self.command(commands.set_variable(name, value))

    async def variable_after_hangup(self, name: str, *, timeout: float = 2.0) -> str | None:
        """``GET VARIABLE`` after the caller hung up; None when it cannot be read.

        Why: res_agi keeps a FastAGI session in "dead" mode after ``HANGUP`` (until we close
        it) and still answers ``GET VARIABLE`` there, so what an application left behind (the
        ``DIALSTATUS`` of a Dial the caller ended) can be read. The reply of the command that
        saw the hangup may still be on its way: it is read and dropped first. A 511, EOF or
        no answer within ``timeout`` gives None (a timeout closes the session).
        """
        if self._closed or self._dead:
            return None
        conn = self._conn
        deadline = self._stream.deadline(timeout)
        try:
            while conn.state is ConnectionState.AWAITING_REPLY:
                if await self._next_dead_event(deadline) is None:
                    return None
            if conn.state is not ConnectionState.IDLE:
                return None
            self._stream.write(conn.send_command(commands.get_variable(name)))
            while True:
                event = await self._next_dead_event(deadline)
                if event is None:
                    return None
                if isinstance(event, Reply):
                    return commands.variable_from_reply(event) if event.code == 200 else None
        except TimeoutError:
            self.close()
            return None
        except RemoteProtocolError:
            self.close()
            return None

    async def _next_dead_event(self, deadline: float) -> Reply | HangupNotice | None:
        """The next reply or HANGUP notice; None when the channel is dead or the socket closed."""
        while True:
            event = self._conn.next_event()
            if event is NEED_DATA:
                await self._stream.fill(deadline)
            elif isinstance(event, Reply | HangupNotice):
                return event
            elif isinstance(event, DeadChannel | Closed):
                self._dead = True
                return None
            elif isinstance(event, InvalidCommand | UsageError):
                return None

    def close(self) -> None:
        """Close the socket (idempotent); Asterisk then continues in the dialplan."""
        if not self._closed:
            self._closed = True
            self._stream.close()

    async def _await_reply(self, line: str, deadline: float) -> Reply:
        conn = self._conn
        while True:
            event = conn.next_event()
            if event is NEED_DATA:
                await self._stream.fill(deadline)
            elif isinstance(event, Reply):
                return event
            elif isinstance(event, HangupNotice):
                raise CallEnded("caller hung up")
            elif isinstance(event, DeadChannel):
                self._dead = True
                raise CallEnded("caller hung up (the channel is dead)")
            elif isinstance(event, Closed):
                self._dead = True
                raise CallEnded("Asterisk closed the AGI connection")
            elif isinstance(event, InvalidCommand):
                raise ChannelError(f"Asterisk does not know the AGI command {line[:80]!r}: {event.raw}")
            elif isinstance(event, UsageError):
                raise ChannelError(f"Asterisk rejected the syntax of {line[:80]!r}; usage:\n{event.usage}")
            else:
                raise RemoteProtocolError(f"unexpected AGI event {event!r}")

    async def _await_hangup(self) -> None:
        if self._hangup_grace <= 0:
            return
        conn = self._conn
        deadline = self._stream.deadline(self._hangup_grace)
        with contextlib.suppress(TimeoutError):
            while True:
                event = conn.next_event()
                if event is NEED_DATA:
                    await self._stream.fill(deadline)
                elif isinstance(event, Closed):
                    self._dead = True
                    return
                else:  # only HANGUP is legal while idle; anything else raised already
                    return


def _expire(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_exception(TimeoutError())


class _AgiStream(asyncio.Protocol):
    """One FastAGI connection's socket, its bytes fed straight into its :class:`AgiConnection`.

    Why not asyncio's streams: a ``StreamReader`` buffers every chunk before the sans-IO
    connection buffers it again, and each wait for a reply goes through the reader's waiter and an
    ``asyncio.timeout`` context (a Timeout object, a reschedule, a task cancellation on expiry).
    Here ``data_received`` hands the bytes to the connection and wakes the call's one waiter, and a
    wait is one future with one timer at its deadline. The end of the peer's side (EOF, a reset)
    reaches the connection as ``b""``, as a stream's EOF did.
    """

    __slots__ = ("_eof", "_loop", "_on_open", "_paused", "_waiter", "conn", "transport")

    def __init__(self, loop: asyncio.AbstractEventLoop, on_open: Callable[[_AgiStream], None]) -> None:
        self.conn = AgiConnection()
        self.transport: asyncio.Transport | None = None
        self._loop = loop
        self._on_open = on_open
        self._waiter: asyncio.Future[None] | None = None
        self._eof = False
        self._paused = False

    # -- asyncio.Protocol -------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's TCP transport does not subclass asyncio.Transport, so no isinstance check
        self.transport = cast(asyncio.Transport, transport)
        self._on_open(self)

    def data_received(self, data: bytes) -> None:
        if self._eof:
            return
        self.conn.receive_data(data)
        if not self._paused and self.conn.buffered > _READ_LIMIT and self.transport is not None:
            self._paused = True
            self.transport.pause_reading()
        self._wake()

    def eof_received(self) -> bool:
        self._end()
        return True  # half-closed: the call may still write (the fallback), then closes

    def connection_lost(self, exc: Exception | None) -> None:
        self._end()  # a reset by the peer is the same as EOF for us

    # -- for the session --------------------------------------------------------------------

    def deadline(self, seconds: float) -> float:
        """The loop time ``seconds`` from now (what :meth:`fill` is given)."""
        return self._loop.time() + seconds

    async def fill(self, deadline: float) -> None:
        """Wait until more bytes (or the end of the peer's side) reached the connection;
        TimeoutError at ``deadline`` (loop time)."""
        if self._eof:
            return
        if self._paused and self.transport is not None:
            self._paused = False
            self.transport.resume_reading()
        waiter = self._loop.create_future()
        self._waiter = waiter
        timer = self._loop.call_at(deadline, _expire, waiter)
        try:
            await waiter
        finally:
            self._waiter = None
            timer.cancel()

    def write(self, data: bytes) -> None:
        if self.transport is not None:
            self.transport.write(data)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def peer(self) -> str:
        peer = self.transport.get_extra_info("peername") if self.transport is not None else None
        if isinstance(peer, tuple) and len(peer) >= 2:
            return f"{peer[0]}:{peer[1]}"
        return str(peer)

    def _end(self) -> None:
        if not self._eof:
            self._eof = True
            self.conn.receive_data(b"")
            self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


@dataclass(frozen=True, slots=True)
class CommandObservers:
    """Where a session reports its timings (the operators' histograms); each is optional.

    ``command``: every replied command's round trip (prompts included); ``control``: the round
    trip of commands that neither play nor listen (``commands.is_control``); ``first``: from the
    connection to the call's first command, the silence a caller hears at call start.
    """

    command: Callable[[float], None] | None = None
    control: Callable[[float], None] | None = None
    first: Callable[[float], None] | None = None


Handler = Callable[[AgiSession], Awaitable[None]]
Router = Callable[[AgiEnvironment], Handler | None]


class AgiServer:
    """FastAGI listener: routes each call by ``env.route`` to a handler, contains its failures.

    ``route`` maps the environment to a handler (``None`` for an unknown route). Counters:
    ``total_calls`` counts connections that delivered an environment (health checks do not),
    ``active_calls`` those in progress, ``failed_calls`` those that ended on the fallback path
    (unknown route, handler error, protocol error, timeout) -- hangups are not failures.
    ``observe_command``, when given, is told every replied command's round trip in seconds;
    ``observe_control`` only those of commands that neither play nor listen; ``observe_first``
    each call's delay from its connection to its first command (:class:`CommandObservers`).
    """

    def __init__(
        self,
        route: Router,
        *,
        host: str = "127.0.0.1",
        port: int = 4573,
        header_timeout: float = 5.0,
        command_timeout: float = 120.0,
        fallback_action: str = "fallback",
        hangup_grace: float = 0.1,
        observe_command: Callable[[float], None] | None = None,
        observe_control: Callable[[float], None] | None = None,
        observe_first: Callable[[float], None] | None = None,
    ) -> None:
        self._route = route
        self._host = host
        self._port = port
        self._header_timeout = header_timeout
        self._command_timeout = command_timeout
        self._fallback_action = fallback_action
        self._fallback_command = commands.set_variable(ACTION, fallback_action)  # validates
        self._hangup_grace = hangup_grace
        self._observers = (
            CommandObservers(observe_command, observe_control, observe_first)
            if observe_command or observe_control or observe_first
            else None
        )
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._stopping = False
        self._stopped: asyncio.Event | None = None
        self._active_calls = 0
        self._total_calls = 0
        self._failed_calls = 0

    # -- public -----------------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The bound port once started (useful with ``port=0``), else the configured one."""
        if self._server is not None and self._server.sockets:
            return int(self._server.sockets[0].getsockname()[1])
        return self._port

    @property
    def serving(self) -> bool:
        """The listening socket is open and calls are taken (started, not stopping)."""
        return self._server is not None and self._server.is_serving() and not self._stopping

    @property
    def active_calls(self) -> int:
        return self._active_calls

    @property
    def total_calls(self) -> int:
        return self._total_calls

    @property
    def failed_calls(self) -> int:
        return self._failed_calls

    async def start(self) -> None:
        if self._server is not None:
            raise RuntimeError("AgiServer.start() called twice")
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: _AgiStream(loop, self._on_open), self._host, self._port, backlog=_BACKLOG, reuse_address=True
        )
        log.info("FastAGI server listening on %s:%d", self._host, self.port)

    async def stop(self, grace: float = 5.0) -> None:
        """Stop accepting, cancel every call task and await them (at most ``grace`` seconds).

        A cancelled call closes its socket at once, so Asterisk continues in the dialplan with
        ``IVR_ACTION`` unset. Idempotent; a concurrent second call waits for the first.
        """
        if self._server is None:
            return
        if self._stopped is not None:
            await self._stopped.wait()
            return
        self._stopped = asyncio.Event()
        self._stopping = True
        try:
            self._server.close()
            current = asyncio.current_task()
            tasks = [task for task in self._tasks if task is not current]
            for task in tasks:
                task.cancel()
            if tasks:
                _, pending = await asyncio.wait(tasks, timeout=grace)
                if pending:
                    log.warning("%d AGI call task(s) did not finish within %gs of stop", len(pending), grace)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(grace):
                    await self._server.wait_closed()
            log.info("FastAGI server stopped (%d calls, %d failed)", self._total_calls, self._failed_calls)
        finally:
            self._stopped.set()

    async def __aenter__(self) -> AgiServer:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    # -- per connection ---------------------------------------------------------------------

    def _on_open(self, stream: _AgiStream) -> None:
        """A connection was accepted: its call task, owned by the server from this moment."""
        if self._stopping:
            stream.close()
            return
        task = asyncio.get_running_loop().create_task(self._on_connect(stream), name="agi-call")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _on_connect(self, stream: _AgiStream) -> None:
        try:
            await self._serve(stream)
        except asyncio.CancelledError:
            # stop() cancelled this call (the socket is closed below). Ending normally is
            # deliberate: this is the task's outermost frame and stop() only waits for it.
            log.debug("call cancelled by server stop")
        except Exception:  # a bug here must not reach the event loop or another call
            log.exception("unexpected error in the FastAGI connection handler")
        finally:
            stream.close()

    async def _serve(self, stream: _AgiStream) -> None:
        connected = time.perf_counter()
        # One small command, one small reply: Nagle would add up to 40 ms per exchange. asyncio
        # (since 3.7) and uvloop set TCP_NODELAY on every TCP transport already; setting it again
        # here cost a socket object and a system call per call (test_tcp_nodelay_is_set holds them to it).
        env = await self._read_environment(stream)
        if env is None:
            return
        call_id.set(env.uniqueid or "-")
        session = AgiSession(
            env,
            stream,
            command_timeout=self._command_timeout,
            hangup_grace=self._hangup_grace,
            observers=self._observers,
            connected=connected,
        )
        self._total_calls += 1
        self._active_calls += 1
        try:
            await self._run_call(session)
        finally:
            self._active_calls -= 1
            session.close()

    async def _read_environment(self, stream: _AgiStream) -> AgiEnvironment | None:
        """The environment, or None (logged once) for EOF, garbage or silence within the bound."""
        conn = stream.conn
        deadline = stream.deadline(self._header_timeout)
        try:
            while True:
                event = conn.next_event()
                if event is NEED_DATA:
                    await stream.fill(deadline)
                elif isinstance(event, AgiEnvironment):
                    return event
                else:  # Closed: a health check, or a peer that gave up mid-header
                    log.debug("peer %s closed before the end of the AGI environment", stream.peer())
                    return None
        except TimeoutError:
            log.info("no AGI environment from %s within %gs; closing", stream.peer(), self._header_timeout)
        except RemoteProtocolError as exc:
            log.info("dropping connection from %s: %s", stream.peer(), exc)
        return None

    async def _run_call(self, session: AgiSession) -> None:
        env = session.env
        log.debug("call on route %r from %s", env.route, env.channel)
        try:
            handler = self._route(env)
            if handler is None:
                self._failed_calls += 1
                log.warning(
                    "no handler for AGI route %r (agi_network_script %r); sending the call to %r",
                    env.route,
                    env.network_script,
                    self._fallback_action,
                )
                await self._send_fallback(session)
                return
            await handler(session)
        except CallEnded:
            log.info("caller hung up")
        except Exception:
            self._failed_calls += 1
            log.exception("AGI route %r failed; sending the call to %r", env.route, self._fallback_action)
            await self._send_fallback(session)
        else:
            log.debug("call on route %r finished", env.route)

    async def _send_fallback(self, session: AgiSession) -> None:
        """Best effort ``SET VARIABLE IVR_ACTION "<fallback>"``; never raises (but cancellation)."""
        if not session.ready:
            return
        try:
            await session.command(self._fallback_command, timeout=min(_FALLBACK_TIMEOUT, self._command_timeout))
        except CallEnded:
            log.info("caller hung up before the fallback was set")
        except (IvrError, OSError) as exc:
            log.warning("could not set %s for the dialplan fallback: %s", ACTION, exc)
