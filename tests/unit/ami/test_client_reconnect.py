"""The client's supervisor against a minimal AMI speaker on loopback: login, FullyBooted, the
on_connected rebuild, a dropped connection, refused reconnects with backoff, and the comeback."""

from __future__ import annotations

import asyncio
import contextlib

from ivr.ami import events as ev
from ivr.ami.client import AmiClient, AmiError


class FakeAmi:
    def __init__(self) -> None:
        self.server: asyncio.Server | None = None
        self.port = 0
        self.writers: list[asyncio.StreamWriter] = []
        self.logins = 0
        self.actions: list[str] = []

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        self.port = self.server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        assert self.server
        self.server.close()
        for w in self.writers:
            w.close()
        self.writers.clear()
        await self.server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers.append(writer)
        writer.write(b"Asterisk Call Manager/9.0.0\r\n")
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            while True:
                block = (await reader.readuntil(b"\r\n\r\n")).decode()
                headers = dict(line.split(": ", 1) for line in block.strip().split("\r\n") if ": " in line)
                action, action_id = headers.get("Action", ""), headers.get("ActionID", "")
                self.actions.append(action)
                writer.write(f"Response: Success\r\nActionID: {action_id}\r\n\r\n".encode())
                if action.lower() == "login":
                    self.logins += 1
                    writer.write(b"Event: FullyBooted\r\nStatus: Fully Booted\r\nUptime: 5\r\n\r\n")
                    writer.write(b"Event: Hangup\r\nChannel: PJSIP/x-1\r\nUniqueid: 1.1\r\nCause: 16\r\n\r\n")
                await writer.drain()


async def test_reconnects_with_backoff_and_runs_the_rebuild_after_every_login() -> None:
    fake = FakeAmi()
    await fake.start()
    client = AmiClient(port=fake.port, username="ivr", secret="s3cret-s3cret", events=True, max_backoff=0.5)
    rebuilt: list[int] = []
    hangups: list[ev.Hangup] = []

    async def rebuild() -> None:
        rebuilt.append(client.connections)
        await client.action({"Action": "QueueStatus"})

    async def on_event(event: ev.AmiEvent) -> None:
        if isinstance(event, ev.Hangup):
            hangups.append(event)

    client.on_connected(rebuild)
    client.on_event(on_event)
    await client.start(wait=5)
    try:
        assert client.connected.is_set()
        for _ in range(100):
            if rebuilt and hangups:
                break
            await asyncio.sleep(0.02)
        assert rebuilt == [1] and hangups[0].cause == 16
        await fake.stop()  # "Asterisk restarts": connection closed, port refused for a while
        for _ in range(100):
            if not client.connected.is_set():
                break
            await asyncio.sleep(0.02)
        assert not client.connected.is_set()
        try:
            await client.action({"Action": "Ping"})
            raise AssertionError("an action while disconnected must fail fast")
        except AmiError as exc:
            assert "not connected" in str(exc)
        await asyncio.sleep(1.0)  # several refused attempts, backing off
        await fake.start()  # same port
        for _ in range(200):
            if len(rebuilt) == 2:
                break
            await asyncio.sleep(0.02)
        assert rebuilt == [1, 2] and fake.logins == 2 and client.connections == 2
        assert fake.actions.count("QueueStatus") == 2
    finally:
        await client.stop()
        with contextlib.suppress(Exception):
            await fake.stop()


async def test_a_refused_login_is_an_error() -> None:
    async def refuse(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"Asterisk Call Manager/9.0.0\r\n")
        block = (await reader.readuntil(b"\r\n\r\n")).decode()
        action_id = next(line.split(": ", 1)[1] for line in block.split("\r\n") if line.startswith("ActionID"))
        writer.write(f"Response: Error\r\nActionID: {action_id}\r\nMessage: Authentication failed\r\n\r\n".encode())
        await writer.drain()

    server = await asyncio.start_server(refuse, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client = AmiClient(port=port, username="ivr", secret="wrong-wrong-wrong", timeout=2)
    try:
        await client.connect()
        raise AssertionError("login must be refused")
    except AmiError as exc:
        assert "refused" in str(exc)
    finally:
        server.close()
        await server.wait_closed()


async def test_a_queueadd_reply_completes_the_action() -> None:
    """panoramisk reads "Added interface to queue" as the start of a list; our client must not wait."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"Asterisk Call Manager/9.0.0\r\n")
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            while True:
                block = (await reader.readuntil(b"\r\n\r\n")).decode()
                action_id = next(line.split(": ", 1)[1] for line in block.split("\r\n") if line.startswith("ActionID"))
                message = "Added interface to queue" if "QueueAdd" in block else "Authentication accepted"
                writer.write(f"Response: Success\r\nActionID: {action_id}\r\nMessage: {message}\r\n\r\n".encode())
                await writer.drain()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    client = AmiClient(port=server.sockets[0].getsockname()[1], username="ivr", secret="s3cret-s3cret", timeout=2)
    try:
        await client.connect()
        reply = await client.action({"Action": "QueueAdd", "Queue": "q", "Interface": "PJSIP/a"})
        assert reply["Message"] == "Added interface to queue"
    finally:
        await client.stop()
        server.close()
        await server.wait_closed()
