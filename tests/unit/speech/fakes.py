"""Test doubles for the speech path: a recognizer, an Asterisk that speaks AudioSocket over a real
socket, and an AGI session whose ``EXEC AudioSocket`` runs that Asterisk."""

from __future__ import annotations

import asyncio
import math
import struct
import threading
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from ivr.agi import commands as agi
from ivr.agi.protocol import Reply
from ivr.errors import CallEnded
from ivr.speech.audiosocket import HANGUP_FRAME, encode_frame
from ivr.speech.recognizer import Transcript

RATE = 8000


def tone(ms: int, amplitude: int = 4000, hz: float = 440.0) -> bytes:
    n = RATE * ms // 1000
    return struct.pack(f"<{n}h", *(int(amplitude * math.sin(2 * math.pi * hz * i / RATE)) for i in range(n)))


def silence(ms: int) -> bytes:
    return bytes(RATE * ms // 1000 * 2)


class FakeSession:
    def __init__(self, recognizer: FakeRecognizer, phrases: Sequence[str]) -> None:
        self.recognizer = recognizer
        self.phrases = list(phrases)
        self.audio = bytearray()
        self.accepts = 0

    def accept(self, pcm: bytes) -> None:
        assert threading.current_thread() is not threading.main_thread(), "accept() ran on the event loop"
        self.accepts += 1
        self.audio += pcm

    def finish(self) -> Transcript:
        self.recognizer.finished.append(self)
        if self.recognizer.error:
            raise self.recognizer.error
        if self.recognizer.delay:
            import time

            time.sleep(self.recognizer.delay)
        return Transcript(self.recognizer.text, self.recognizer.confidence, self.recognizer.name, 0.01)


@dataclass
class FakeRecognizer:
    text: str = "I want to report an outage"
    confidence: float = 0.9
    streaming: bool = True
    error: Exception | None = None
    delay: float = 0.0
    name: str = "fake"
    sample_rate: int = RATE
    sessions: list[FakeSession] = field(default_factory=list)
    finished: list[FakeSession] = field(default_factory=list)

    def session(self, phrases: Sequence[str]) -> FakeSession:
        s = FakeSession(self, phrases)
        self.sessions.append(s)
        return s


@dataclass
class Heard:
    """What the fake Asterisk received from our server."""

    audio_frames: int = 0
    hangup: bool = False
    eof: bool = False
    raw: bytearray = field(default_factory=bytearray)


async def fake_asterisk(
    address: str,
    call: str,
    caller: Callable[[asyncio.StreamWriter], Awaitable[None]],
) -> Heard:
    """Connect like app_audiosocket: UUID frame first, then whatever ``caller`` writes, while
    reading everything the server sends until it closes."""
    host, port = address.rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(encode_frame(0x01, uuid.UUID(call).bytes))
    heard = Heard()

    async def read() -> None:
        while True:
            data = await reader.read(65536)
            if not data:
                heard.eof = True
                return
            heard.raw += data

    reading = asyncio.create_task(read())
    talking: asyncio.Task[None] = asyncio.ensure_future(caller(writer))
    await asyncio.wait([reading], timeout=30)
    talking.cancel()
    writer.close()
    # parse what came back
    buf = bytes(heard.raw)
    i = 0
    while i + 3 <= len(buf):
        kind, length = buf[i], int.from_bytes(buf[i + 1 : i + 3], "big")
        if kind == 0x10:
            heard.audio_frames += 1
        elif buf[i : i + 3] == HANGUP_FRAME:
            heard.hangup = True
        i += 3 + length
    return heard


def speak(
    *chunks: bytes, dtmf: str = "", pace: float = 0.0, then_close: bool = False
) -> Callable[[asyncio.StreamWriter], Awaitable[None]]:
    """A caller that sends ``chunks`` as 20 ms audio frames (``pace`` seconds apart), then a key."""

    async def run(writer: asyncio.StreamWriter) -> None:
        for pcm in chunks:
            for i in range(0, len(pcm), 320):
                writer.write(encode_frame(0x10, pcm[i : i + 320]))
                if pace:
                    await asyncio.sleep(pace)
            await writer.drain()
        if dtmf:
            writer.write(encode_frame(0x03, dtmf.encode()))
        if then_close:
            writer.close()
            return
        while True:  # keep the line open with silence, as a real channel does
            writer.write(encode_frame(0x10, bytes(320)))
            await asyncio.sleep(0.02 if pace else 0.001)

    return run


class FakeAgiSession:
    """Enough of ``AgiSession`` for the voice channel and the speech service.

    ``EXEC AudioSocket`` runs ``asterisk`` (a coroutine factory given the UUID and address) and
    answers ``200 result=0`` when it ends, as app_audiosocket does after a graceful close;
    ``exec_result`` overrides that (``-2``: application not found, without connecting).
    STREAM FILE answers with the next key from ``keys`` (or none); a menu's ``EXEC Read`` takes
    one entry per fragment (and one for the wait after them) and leaves the first key in its
    variable for ``GET VARIABLE``.
    """

    def __init__(
        self,
        asterisk: Callable[[str, str], Awaitable[Heard]] | None = None,
        *,
        exec_result: str | None = None,
        keys: Sequence[str] = (),
        hang_up_on_exec: bool = False,
    ) -> None:
        self.asterisk = asterisk
        self.exec_result = exec_result
        self.keys = list(keys)
        self.hang_up_on_exec = hang_up_on_exec
        self.lines: list[str] = []
        self.variables: dict[str, str] = {}
        self.heard: Heard | None = None
        self.hung_up = False

    async def command(self, line: str, *, timeout: float | None = None) -> Reply:
        self.lines.append(line)
        if line.startswith("EXEC AudioSocket"):
            call, address = agi.unquote(line)[2].split(",")
            if self.exec_result is not None:
                return Reply(200, self.exec_result, None, None, f"200 result={self.exec_result}")
            assert self.asterisk is not None
            self.heard = await self.asterisk(call, address)
            if self.hang_up_on_exec:
                self.hung_up = True
                raise CallEnded("caller hung up")
            return Reply(200, "0", None, None, "200 result=0")
        if line.startswith(("STREAM FILE", "WAIT FOR DIGIT")):
            key = self.keys.pop(0) if self.keys else ""
            code = str(ord(key)) if key else "0"
            return Reply(200, code, None, 0, f"200 result={code} endpos=0")
        if line.startswith("EXEC Read"):
            # Read(VAR,f1&f2&...,1,,1,timeout): one entry of ``keys`` per fragment, then one for the
            # wait after them, as if each fragment were a STREAM FILE; the first key ends it.
            name, files = agi.unquote(line)[2].split(",")[:2]
            key = ""
            for _ in range(len(files.split("&")) + 1):
                key = self.keys.pop(0) if self.keys else ""
                if key:
                    break
            self.variables[name] = key
            return Reply(200, "0", None, None, "200 result=0")
        if line.startswith("GET VARIABLE"):
            value = self.variables.get(agi.unquote(line)[2])
            if value is None:
                return Reply(200, "0", None, None, "200 result=0")
            return Reply(200, "1", value, None, f"200 result=1 ({value})")
        return Reply(200, "1", None, None, "200 result=1")

    async def set_variable(self, name: str, value: str) -> None:
        await self.command(agi.set_variable(name, value))
