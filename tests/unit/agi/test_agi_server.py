"""The asyncio FastAGI server over real sockets on port 0; the test plays Asterisk's side."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from ivr.agi import commands as c
from ivr.agi.protocol import AgiEnvironment
from ivr.agi.server import AgiServer, AgiSession, Handler
from ivr.agi.variables import ACTION
from ivr.errors import CallEnded, ChannelError, CommandTimeout, RemoteProtocolError
from ivr.logs import CallIdFilter, call_id
from tests.unit.agi.agi_wire import ENV_BYTES, env_for

FALLBACK = b'SET VARIABLE IVR_ACTION "fallback"'


class FakeAsterisk:
    """Asterisk's end of one FastAGI connection, speaking literal bytes."""

    opened: list[FakeAsterisk] = []

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        FakeAsterisk.opened.append(self)

    @classmethod
    async def connect(cls, port: int) -> FakeAsterisk:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        return cls(reader, writer)

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def command(self, timeout: float = 2.0) -> bytes:
        """The next command line we received, without its newline."""
        async with asyncio.timeout(timeout):
            line = await self.reader.readline()
        assert line.endswith(b"\n"), f"expected a command, got {line!r}"
        return line[:-1]

    async def reply(self, expected: bytes, answer: bytes) -> None:
        assert await self.command() == expected
        await self.send(answer)

    async def eof(self, timeout: float = 2.0) -> bytes:
        """Everything until the server closes; fails if it does not close within ``timeout``."""
        async with asyncio.timeout(timeout):
            return await self.reader.read()

    def close(self) -> None:
        self.writer.close()


@pytest.fixture(autouse=True)
async def _close_fake_asterisks() -> AsyncIterator[None]:
    yield
    while FakeAsterisk.opened:
        FakeAsterisk.opened.pop().close()
    await asyncio.sleep(0)  # let the transports finish closing before the loop goes away


class Recorder:
    """Collects what handlers saw, for assertions after the call."""

    def __init__(self) -> None:
        self.events: list[Any] = []
        self.done = asyncio.Event()


@contextlib.asynccontextmanager
async def running(route: Callable[[AgiEnvironment], Handler | None], **kwargs: Any) -> AsyncIterator[AgiServer]:
    server = AgiServer(route, host="127.0.0.1", port=0, **kwargs)
    await server.start()
    try:
        yield server
    finally:
        await server.stop(grace=2.0)


def only(handler: Handler) -> Callable[[AgiEnvironment], Handler | None]:
    return lambda env: handler if env.route == "inbound" else None


async def wait_until(predicate: Callable[[], bool], timeout: float = 1.0) -> None:
    """Poll server-side state the test cannot be notified of (counters, the task set)."""
    async with asyncio.timeout(timeout):
        while not predicate():  # noqa: ASYNC110 - polling is the point here
            await asyncio.sleep(0.005)


# -- a whole call --------------------------------------------------------------------------------


async def test_full_call() -> None:
    seen = Recorder()

    async def handler(session: AgiSession) -> None:
        seen.events.append((session.env.route, session.env.params, session.env.arguments, call_id.get()))
        await session.command(c.answer())
        digit = c.digit_from_reply(await session.command(c.stream_file("ivr/menu", "12")))
        digits, timed_out = c.get_data_digits(await session.command(c.get_data("ivr/account", 5000, 8)))
        value = c.variable_from_reply(await session.command(c.get_variable("CALLERID(num)")))
        await session.set_variable(ACTION, "queue")
        seen.events.append((digit, digits, timed_out, value))

    async with running(only(handler)) as server:
        assert server.port != 0
        ast = await FakeAsterisk.connect(server.port)
        await ast.send(ENV_BYTES)
        await ast.reply(b"ANSWER", b"200 result=0\n")
        await ast.reply(b'STREAM FILE "ivr/menu" "12"', b"200 result=50 endpos=8000\n")
        await ast.reply(b'GET DATA "ivr/account" 5000 8', b"200 result=1234 (timeout)\n")
        await ast.reply(b'GET VARIABLE "CALLERID(num)"', b"200 result=1 (5551234)\n")
        await ast.reply(b'SET VARIABLE IVR_ACTION "queue"', b"200 result=1\n")
        assert await ast.eof() == b""  # the handler returned: the server closes
        await wait_until(lambda: server.active_calls == 0)
        assert (server.total_calls, server.failed_calls) == (1, 0)
    assert seen.events == [
        ("inbound", {"flow": "x"}, ("one", "two words"), "1732560000.12"),
        ("2", "1234", True, "5551234"),
    ]
    assert call_id.get() == "-"  # the call's id did not leak out of its task


async def test_environment_in_tiny_pieces_and_crlf() -> None:
    seen: list[str] = []

    async def handler(session: AgiSession) -> None:
        seen.append(session.env.uniqueid)

    async with running(only(handler)) as server:
        ast = await FakeAsterisk.connect(server.port)
        for i in range(0, len(ENV_BYTES), 7):
            await ast.send(ENV_BYTES[i : i + 7].replace(b"\n", b"\r\n"))
            await asyncio.sleep(0)
        assert await ast.eof() == b""
    assert seen == ["1732560000.12"]


async def test_tcp_nodelay_is_set() -> None:
    flags: list[int] = []

    async def handler(session: AgiSession) -> None:
        transport = session._stream.transport
        assert transport is not None
        sock = transport.get_extra_info("socket")
        flags.append(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))

    async with running(only(handler)) as server:
        ast = await FakeAsterisk.connect(server.port)
        await ast.send(ENV_BYTES)
        await ast.eof()
    assert flags and flags[0] != 0


# -- peers that are not calls --------------------------------------------------------------------


@pytest.mark.parametrize("sent", [b"", b"agi_network: yes\nagi_network_scr", ENV_BYTES[:-1]])
async def test_peer_closes_before_the_end_of_the_header(sent: bytes) -> None:
    called: list[bool] = []

    async def handler(session: AgiSession) -> None:
        called.append(True)

    async with running(only(handler), header_timeout=30.0) as server:
        cpu_before = time.process_time()
        ast = await FakeAsterisk.connect(server.port)
        await ast.send(sent)
        ast.close()
        # The connection task must end at once (not at the 30 s header timeout) ...
        await wait_until(lambda: not server._tasks and server.active_calls == 0, timeout=1.0)
        await asyncio.sleep(0.2)
        # ... and must not spin on EOF like panoramisk's server does.
        assert time.process_time() - cpu_before < 0.5
        assert server.total_calls == 0
    assert called == []


async def test_health_check_costs_one_debug_line(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="ivr.agi")
    async with running(only(lambda s: asyncio.sleep(0))) as server:
        ast = await FakeAsterisk.connect(server.port)
        ast.close()
        await wait_until(lambda: any("closed before" in r.getMessage() for r in caplog.records))
    lines = [r for r in caplog.records if "closed before" in r.getMessage()]
    assert len(lines) == 1
    assert lines[0].levelno == logging.DEBUG


async def test_header_timeout(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="ivr.agi")
    async with running(only(lambda s: asyncio.sleep(0)), header_timeout=0.2) as server:
        ast = await FakeAsterisk.connect(server.port)
        await ast.send(b"agi_network: yes\n")  # half a header, then silence
        started = time.monotonic()
        assert await ast.eof(timeout=2.0) == b""
        assert 0.15 < time.monotonic() - started < 1.5
        assert server.total_calls == 0
    assert any("no AGI environment" in r.getMessage() for r in caplog.records)


async def test_garbage_instead_of_a_header(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="ivr.agi")
    async with running(only(lambda s: asyncio.sleep(0))) as server:
        ast = await FakeAsterisk.connect(server.port)
        await ast.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert await ast.eof() == b""
    assert any("GET / HTTP" in r.getMessage() for r in caplog.records)


# -- hangups -------------------------------------------------------------------------------------


async def test_hangup_mid_command_raises_call_ended(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="ivr.agi")
    seen = Recorder()

    async def handler(session: AgiSession) -> None:
        try:
            await session.command(c.stream_file("ivr/welcome"))
        except CallEnded as exc:
            seen.events.append(exc)
            assert session.hung_up
            raise

    async with running(only(handler)) as server:
        ast = await FakeAsterisk.connect(server.port)
        await ast.send(ENV_BYTES)
        assert await ast.command() == b'STREAM FILE "ivr/welcome" ""'
        await ast.send(b"HANGUP\n")
        assert await ast.eof() == b""  # and no fallback SET VARIABLE: the caller is gone
        await wait_until(lambda: server.active_calls == 0)
        assert server.failed_calls == 0
    assert len(seen.events) == 1
    hangup_logs = [r for r in caplog.records if r.getMessage() == "caller hung up"]
    assert len(hangup_logs) == 1
    assert hangup_logs[0].levelno == logging.INFO
    assert hangup_logs[0].exc_info is None


@pytest.mark.parametrize(
    "answer",
    [
        b"200 result=-1 endpos=4000\nHANGUP\n",  # typical: the reply, then the notice
        b"200 result=-1 endpos=4000\n",  # notice in a later segment, within the grace
        b"511 Command Not Permitted on a dead channel or intercept routine\n",
    ],
)
async def test_hangup_shapes_all_end_as_call_ended(answer: bytes) -> None:
    seen = Recorder()

    async def handler(session: AgiSession) -> None:
        with pytest.raises(CallEnded):
            await session.command(c.stream_file("ivr/welcome"))
        seen.events.append("ended")
        with pytest.raises(CallEnded):  # nothing more is sent after a hangup
            await session.command(c.answer())

    async with running(only(handler), hangup_grace=0.5) as server:
        ast = await FakeAsterisk.connect(server.port)
        await ast.send(ENV_BYTES)
        await ast.command()
        await ast.send(answer)
        if b"HANGUP" not in answer and answer.startswith(b"200"):
            await asyncio.sleep(0.05)
            await ast.send(b"HANGUP\n")
        assert await ast.eof() == b""
    assert seen.events == ["ended"]


async def test_minus_one_without_hangup_is_a_reply() -> None:
    seen = Recorder()

    async def handler(session: AgiSession) -> None:
        seen.events.append(await session.command(c.stream_file("missing-file")))

    async with running(only(handler), hangup_grace=0.05) as server:
        ast = await FakeAsterisk.connect(server.port)
        await ast.send(ENV_BYTES)
        await ast.reply(b'STREAM FILE "missing-file" ""', b"200 result=-1 endpos=0\n")
        assert await ast.eof() == b""
    assert seen.events[0].result == "-1"


async def test_eof_mid_command_is_call_ended() -> None:
    seen = Recorder()

    async def handler(session: AgiSession) -> None:
        try:
            await session.command(c.answer())
        except CallEnded:
            seen.events.append("ended")
            raise

    async with running(only(handler)) as server:
        ast = await FakeAsterisk.connect(server.port)
        await ast.send(ENV_BYTES)
        await ast.command()
        await ast.send(b"200 resu")  # EOF in the middle of a reply
        ast.close()
        await wait_until(lambda: seen.events == ["ended"] and server.active_calls == 0)


# -- failures and the dialplan fallback ----------------------------------------------------------


async def test_handler_exception_sends_the_fallback(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="ivr.agi")
    caplog.handler.addFilter(CallIdFilter())  # as setup_logging's handler: the call id is set per connection

    async def handler(session: AgiSession) -> None:
        await session.command(c.answer())
        raise ValueError("bug in a flow")

    async with running(only(handler)) as server:
        ast = await FakeAsterisk.connect(server.port)
        await ast.send(ENV_BYTES)
        await ast.reply(b"ANSWER", b"200 result=0\n")
        await ast.reply(FALLBACK, b"200 result=1\n")
        assert await ast.eof() == b""
        await wait_until(lambda: server.failed_calls == 1)
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1
    assert errors[0].exc_info is not None and errors[0].exc_info[0] is ValueError
    assert getattr(errors[0], "call_id", None) == "1732560000.12"  # the failing call's uniqueid (ENV_BYTES)
    assert "'inbound'" in errors[0].getMessage()


async def test_unknown_route_sends_the_configured_fallback(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="ivr.agi")
    async with running(only(lambda s: asyncio.sleep(0)), fallback_action="general_queue") as server:
        ast = await FakeAsterisk.connect(server.port)
        await ast.send(env_for("nowhere?x=1"))
        await ast.reply(b'SET VARIABLE IVR_ACTION "general_queue"', b"200 result=1\n")
        assert await ast.eof() == b""
        await wait_until(lambda: server.failed_calls == 1)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "'nowhere'" in warnings[0].getMessage()


async def test_router_raising_sends_the_fallback() -> None:
    def route(env: AgiEnvironment) -> Handler | None:
        raise KeyError(env.route)

    async with running(route) as server:
        ast = await FakeAsterisk.connect(server.port)
        await ast.send(ENV_BYTES)
        await ast.reply(FALLBACK, b"200 result=1\n")
        assert await ast.eof() == b""


async def test_fallback_is_skipped_when_the_caller_is_gone() -> None:
    async def handler(session: AgiSession) -> None:
        with pytest.raises(CallEnded):
            await session.command(c.answer())
        raise RuntimeError("crash after the hangup")

    async with running(only(handler)) as server:
        ast = await FakeAsterisk.connect(server.port)
        await ast.send(ENV_BYTES)
        await ast.command()
        await ast.send(b"HANGUP\n")
        assert await ast.eof() == b""


async def test_fallback_reply_never_comes() -> None:
    async def handler(session: AgiSession) -> None:
        raise RuntimeError("boom")

    async with running(only(handler)) as server:
        ast = await FakeAsterisk.connect(server.port)
        await ast.send(ENV_BYTES)
        assert await ast.command() == FALLBACK
        # no reply: the server gives up after its short fallback bound and closes
        assert await ast.eof(timeout=5.0) == b""


async def test_invalid_command_and_usage_are_channel_errors() -> None:
    seen = Recorder()

    async def handler(session: AgiSession) -> None:
        with pytest.raises(ChannelError, match="510 Invalid or unknown command"):
            await session.command("FROB")
        with pytest.raises(ChannelError, match="Usage: GET DATA"):
            await session.command("GET DATA")
        with pytest.raises(ChannelError, match="Memory allocation failure"):
            await session.command('EXEC Gosub "x,s,1"')
        seen.events.append(await session.command(c.answer()))  # still in sync

    async with running(only(handler)) as server:
        ast = await FakeAsterisk.connect(server.port)
        await ast.send(ENV_BYTES)
        await ast.reply(b"FROB", b"510 Invalid or unknown command\n")
        await ast.reply(
            b"GET DATA",
            b"520-Invalid command syntax.  Proper usage follows:\n Usage: GET DATA <file>\n520 End of proper usage.\n",
        )
        await ast.reply(b'EXEC Gosub "x,s,1"', b"503 result=-2 Memory allocation failure\n")
        await ast.reply(b"ANSWER", b"200 result=0\n")
        assert await ast.eof() == b""
    assert len(seen.events) == 1


async def test_command_timeout_closes_the_session() -> None:
    seen = Recorder()

    async def handler(session: AgiSession) -> None:
        started = time.monotonic()
        with pytest.raises(CommandTimeout):
            await session.command(c.wait_for_digit(100), timeout=0.1)
        seen.events.append(time.monotonic() - started)
        assert session.closed
        with pytest.raises(ChannelError):
            await session.command(c.answer())
        raise CommandTimeout("propagates like any failure")

    async with running(only(handler)) as server:
        ast = await FakeAsterisk.connect(server.port)
        await ast.send(ENV_BYTES)
        await ast.command()
        # out of sync, so no fallback is attempted; the dialplan sees IVR_ACTION unset
        assert await ast.eof() == b""
        await wait_until(lambda: server.failed_calls == 1)
    assert 0.09 < seen.events[0] < 1.0


async def test_default_command_timeout_comes_from_the_server() -> None:
    async def handler(session: AgiSession) -> None:
        await session.command(c.answer())

    async with running(only(handler), command_timeout=0.1) as server:
        ast = await FakeAsterisk.connect(server.port)
        await ast.send(ENV_BYTES)
        await ast.command()
        assert await ast.eof() == b""
        await wait_until(lambda: server.failed_calls == 1)


async def test_garbage_reply_closes_only_that_call() -> None:
    seen = Recorder()

    async def handler(session: AgiSession) -> None:
        try:
            await session.command(c.answer())
        except RemoteProtocolError:
            seen.events.append("garbage")
            raise
        seen.events.append("fine")

    async with running(only(handler)) as server:
        bad = await FakeAsterisk.connect(server.port)
        await bad.send(env_for("inbound", "1.1"))
        await bad.command()
        await bad.send(b"hello there\n")
        assert await bad.eof() == b""
        good = await FakeAsterisk.connect(server.port)
        await good.send(env_for("inbound", "1.2"))
        await good.reply(b"ANSWER", b"200 result=0\n")
        assert await good.eof() == b""
        assert (server.total_calls, server.failed_calls) == (2, 1)
    assert seen.events == ["garbage", "fine"]


async def test_a_peer_flooding_a_busy_call_is_held_to_the_read_limit_then_dropped() -> None:
    """While the call does something else (a slow lookup), a peer that streams megabytes without
    a newline fills at most the read limit (plus one read) before the socket stops being read;
    when the call asks again, the over-long line fails only that call."""
    buffered: list[int] = []
    seen = Recorder()

    async def handler(session: AgiSession) -> None:
        await asyncio.sleep(0.3)  # busy: nobody reads the connection meanwhile
        buffered.append(session._stream.conn.buffered)
        try:
            await session.command(c.answer())
        except RemoteProtocolError as exc:
            seen.events.append(str(exc))
            raise

    async with running(only(handler)) as server:
        ast = await FakeAsterisk.connect(server.port)
        await ast.send(ENV_BYTES)
        ast.writer.write(b"x" * (8 * 1024 * 1024))  # no drain: the kernel's buffers fill and stop
        with contextlib.suppress(ConnectionResetError):  # closed with our bytes unread: a reset
            await ast.eof(timeout=5.0)
        await wait_until(lambda: server.failed_calls == 1)
    assert buffered and buffered[0] <= 1024 * 1024  # of 8 MiB sent
    assert seen.events and "longer than" in seen.events[0]


async def test_two_concurrent_calls_one_crashes() -> None:
    seen: dict[str, str] = {}

    async def handler(session: AgiSession) -> None:
        uid = session.env.uniqueid
        await session.command(c.answer())
        assert call_id.get() == uid
        if uid == "1.crash":
            raise RuntimeError("only this call")
        await asyncio.sleep(0.05)  # the other call crashes meanwhile
        await session.command(c.stream_file("ivr/ok"))
        seen[uid] = call_id.get()

    async with running(only(handler)) as server:
        crash = await FakeAsterisk.connect(server.port)
        fine = await FakeAsterisk.connect(server.port)
        await crash.send(env_for("inbound", "1.crash"))
        await fine.send(env_for("inbound", "1.fine"))
        await fine.reply(b"ANSWER", b"200 result=0\n")
        await crash.reply(b"ANSWER", b"200 result=0\n")
        await crash.reply(FALLBACK, b"200 result=1\n")
        assert await crash.eof() == b""
        await fine.reply(b'STREAM FILE "ivr/ok" ""', b"200 result=0 endpos=100\n")
        assert await fine.eof() == b""
        await wait_until(lambda: server.active_calls == 0)
        assert (server.total_calls, server.failed_calls) == (2, 1)
    assert seen == {"1.fine": "1.fine"}


async def test_concurrent_commands_on_one_session_are_our_bug() -> None:
    seen = Recorder()

    async def handler(session: AgiSession) -> None:
        first = asyncio.ensure_future(session.command(c.answer()))
        await asyncio.sleep(0)  # let it send and start waiting for the reply
        try:
            await session.command(c.answer())
        except Exception as exc:
            seen.events.append(type(exc).__name__)
        seen.events.append((await first).result)

    async with running(only(handler)) as server:
        ast = await FakeAsterisk.connect(server.port)
        await ast.send(ENV_BYTES)
        await ast.reply(b"ANSWER", b"200 result=0\n")
        assert await ast.eof() == b""
    assert seen.events == ["LocalProtocolError", "0"]


# -- shutdown ------------------------------------------------------------------------------------


async def test_stop_cancels_in_flight_calls_promptly() -> None:
    seen = Recorder()

    async def handler(session: AgiSession) -> None:
        seen.done.set()
        try:
            await session.command(c.exec_app("Wait", "3600"))  # Asterisk never answers
        except asyncio.CancelledError:
            seen.events.append("cancelled")
            raise

    server = AgiServer(only(handler), port=0, command_timeout=3600)
    await server.start()
    clients = [await FakeAsterisk.connect(server.port) for _ in range(3)]
    for i, ast in enumerate(clients):
        await ast.send(env_for("inbound", f"9.{i}"))
    for ast in clients:
        await ast.command()
    await wait_until(lambda: server.active_calls == 3)
    started = time.monotonic()
    await server.stop(grace=2.0)
    assert time.monotonic() - started < 0.5
    assert seen.events == ["cancelled"] * 3
    assert server.active_calls == 0 and not server._tasks
    for ast in clients:
        assert await ast.eof(timeout=1.0) == b""  # the socket closed: Asterisk moves on
    with pytest.raises(OSError):
        await FakeAsterisk.connect(server.port)  # no longer accepting
    await server.stop()  # idempotent


async def test_stop_is_idempotent_and_concurrent() -> None:
    server = AgiServer(lambda env: None, port=0)
    await server.stop()  # never started: nothing to do
    await server.start()
    with pytest.raises(RuntimeError):
        await server.start()
    await asyncio.gather(server.stop(), server.stop())
    await server.stop()


async def test_stop_waits_at_most_grace_for_a_stubborn_handler(caplog: pytest.LogCaptureFixture) -> None:
    release = asyncio.Event()

    async def stubborn(session: AgiSession) -> None:
        while not release.is_set():
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.sleep(10)

    server = AgiServer(only(stubborn), port=0)
    await server.start()
    ast = await FakeAsterisk.connect(server.port)
    await ast.send(ENV_BYTES)
    await wait_until(lambda: server.active_calls == 1)
    started = time.monotonic()
    await server.stop(grace=0.2)
    assert time.monotonic() - started < 1.0
    assert any("did not finish" in r.getMessage() for r in caplog.records)
    release.set()
    for task in list(server._tasks):
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_async_context_manager() -> None:
    async with AgiServer(lambda env: None, port=0) as server:
        assert server.port > 0
        ast = await FakeAsterisk.connect(server.port)
        await ast.send(ENV_BYTES)
        await ast.reply(FALLBACK, b"200 result=1\n")


# -- dead mode: what a Dial the caller ended left behind -------------------------------------------


@pytest.mark.parametrize(
    ("after_dial", "variable_reply", "expected"),
    [
        (b"200 result=-1\nHANGUP\n", b"200 result=1 (ANSWER)\n", "ANSWER"),  # reply, then the notice
        (b"HANGUP\n200 result=-1\n", b"200 result=1 (CANCEL)\n", "CANCEL"),  # notice before the reply
        (b"200 result=-1\nHANGUP\n", b"511 Command Not Permitted on a dead channel or intercept routine\n", None),
    ],
)
async def test_a_variable_can_be_read_after_the_caller_hung_up(
    after_dial: bytes, variable_reply: bytes, expected: str | None
) -> None:
    seen = Recorder()

    async def handler(session: AgiSession) -> None:
        try:
            await session.command(c.exec_app("Dial", ["PJSIP/agent1002", "20"]))
        except CallEnded:
            seen.events.append(await session.variable_after_hangup("DIALSTATUS"))
            raise

    async with running(only(handler)) as server:
        ast = await FakeAsterisk.connect(server.port)
        await ast.send(ENV_BYTES)
        assert await ast.command() == b'EXEC Dial "PJSIP/agent1002,20"'
        await ast.send(after_dial)
        await ast.reply(b'GET VARIABLE "DIALSTATUS"', variable_reply)
        assert await ast.eof() == b""  # no fallback: the caller is gone
        await wait_until(lambda: server.active_calls == 0)
    assert seen.events == [expected]


# -- what operators see --------------------------------------------------------------------------


async def test_each_replied_command_round_trip_is_observed_and_serving_follows_the_listener() -> None:
    """The histogram behind /metrics hears one duration per reply, measured around Asterisk's
    answer (a reply held back 50 ms reads as at least 50 ms); a command without a reply (the
    caller hung up) is not a round trip."""
    observed: list[float] = []

    async def handler(session: AgiSession) -> None:
        await session.command(c.answer())
        await session.command(c.stream_file("ivr/menu", ""))
        await session.command(c.answer())

    server = AgiServer(only(handler), host="127.0.0.1", port=0, observe_command=observed.append)
    assert not server.serving
    async with server:
        assert server.serving
        ast = await FakeAsterisk.connect(server.port)
        await ast.send(ENV_BYTES)
        await ast.reply(b"ANSWER", b"200 result=0\n")
        assert await ast.command() == b'STREAM FILE "ivr/menu" ""'
        await asyncio.sleep(0.05)
        await ast.send(b"200 result=0 endpos=8000\n")
        assert await ast.command() == b"ANSWER"
        await ast.send(b"HANGUP\n")
        await ast.eof()
        await wait_until(lambda: server.active_calls == 0)
    assert not server.serving
    assert len(observed) == 2
    assert observed[0] < 0.05 <= observed[1] < 1.0


async def test_control_commands_and_the_first_commands_delay_are_observed_apart() -> None:
    """A prompt's length never reaches the control-command histogram (only commands that neither
    play nor listen do), and the first command's delay is measured from the connection: a handler
    that makes Asterisk wait 60 ms before its first command reads as at least 60 ms, once per call."""
    every: list[float] = []
    control: list[float] = []
    first: list[float] = []

    async def handler(session: AgiSession) -> None:
        await asyncio.sleep(0.06)  # the caller lookup, say
        await session.command(c.stream_file("ivr/menu", ""))
        await session.command(c.set_variable("IVR_ACTION", "hangup"))

    server = AgiServer(
        only(handler),
        host="127.0.0.1",
        port=0,
        observe_command=every.append,
        observe_control=control.append,
        observe_first=first.append,
    )
    async with server:
        ast = await FakeAsterisk.connect(server.port)
        await ast.send(ENV_BYTES)
        assert await ast.command() == b'STREAM FILE "ivr/menu" ""'
        await asyncio.sleep(0.05)
        await ast.send(b"200 result=0 endpos=8000\n")
        await ast.reply(b'SET VARIABLE IVR_ACTION "hangup"', b"200 result=1\n")
        await ast.eof()
        await wait_until(lambda: server.active_calls == 0)
    assert len(every) == 2 and every[0] >= 0.05
    assert len(control) == 1 and control[0] < 0.05
    assert len(first) == 1 and 0.06 <= first[0] < 1.0


def test_control_commands_are_those_that_neither_play_nor_listen() -> None:
    assert c.is_control(c.set_variable("IVR_ACTION", "hangup"))
    assert c.is_control(c.get_variable("IVR_MENU_KEY"))
    assert c.is_control(c.get_full_variable("${CALLERID(num)}"))
    assert c.is_control(c.answer()) and c.is_control(c.noop()) and c.is_control(c.channel_status())
    assert not c.is_control(c.stream_file("beep", ""))
    assert not c.is_control(c.wait_for_digit(3000))
    assert not c.is_control(c.exec_app("Read", "IVR_MENU_KEY,beep,1,,1,3"))
    assert not c.is_control(c.get_data("beep", 3000, 4))
    assert not c.is_control(c.say_digits("123"))
