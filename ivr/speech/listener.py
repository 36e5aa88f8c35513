"""The AudioSocket server: one listening exchange per connection, matched to its call by UUID.

How a menu listens (see ``ivr/speech/service.py`` for the voice side)::

    voice channel (AGI session)                 AudioSocketServer (this module)
    listening = server.expect(request)  ----->  registered under a fresh UUID
    EXEC AudioSocket(<uuid>,127.0.0.1:4574)     Asterisk connects, sends the UUID frame
      ... blocks while the socket is open ...   plays the prompt (20 ms slin frames, paced),
                                                endpoints the caller's audio, feeds the recognizer,
                                                a key press (DTMF frame) wins at once;
    200 result=0  <-----------------------------  sends hangup + closes: the application returns
    await listening.result                      transcript (decode finishes off the event loop)

Why the prompt is played *through the socket* rather than with STREAM FILE before listening:
the caller can then talk over it (barge-in on speech, not only on keys), nothing is lost in the
gap between a STREAM FILE ending and AudioSocket connecting, and one socket carries prompt, speech
and keys. The price is that we read the prompt files ourselves (``prompt_audio.py``).

Every exchange is bounded: the UUID must come within ``uuid_timeout``; the whole exchange within
the prompt's length plus the no-input and utterance bounds plus slack (a caller's audio that
stops flowing must not hold a call). Connections are tasks owned by the server: ``stop`` cancels
and awaits them, and a cancelled exchange closes its socket, so Asterisk's ``EXEC`` returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from ivr.aio import wait_cancelled
from ivr.errors import LocalProtocolError, RemoteProtocolError
from ivr.logs import call_id
from ivr.speech.audiosocket import (
    FRAME_BYTES,
    NEED_DATA,
    Audio,
    AudioSocketConnection,
    Closed,
    ConnectionState,
    Dtmf,
    Hangup,
    Identified,
    PeerError,
    frames_of,
)
from ivr.speech.batching import DecodeBatcher
from ivr.speech.endpoint import (
    Endpointer,
    EndpointSettings,
    NoInput,
    SpeechAudio,
    SpeechEnded,
    SpeechStarted,
)
from ivr.speech.engine import Recognizer
from ivr.speech.pool import Listening as Utterance

__all__ = ["AudioSocketServer", "ListenRequest", "ListenResult", "Listening"]

log = logging.getLogger(__name__)

_READ_SIZE: Final = 16 * 1024
_FRAME_S: Final = 0.020
#: Falling this far behind the prompt's clock (a stalled event loop) restarts the clock instead
#: of bursting the missed frames at the caller.
_MAX_LAG_S: Final = 0.2
_CLOSE_TIMEOUT: Final = 1.0


Outcome = Literal["speech", "dtmf", "noinput", "closed", "failed", "late"]


@dataclass(frozen=True)
class ListenRequest:
    """What one listening exchange should do: play ``prompt``, hear the caller say one thing."""

    #: slin 8 kHz audio played back to back (the menu's fragments); empty: listen at once.
    prompt: Sequence[bytes] = ()
    #: What the caller is likely to say (the recognizer's grammar / initial prompt).
    phrases: Sequence[str] = ()
    settings: EndpointSettings = field(default_factory=EndpointSettings)

    @property
    def prompt_ms(self) -> int:
        return sum(len(p) for p in self.prompt) * 1000 // (2 * self.settings.sample_rate)

    def bound_s(self, slack: float) -> float:
        """Longest the whole exchange may take, wall clock."""
        s = self.settings
        return (self.prompt_ms + s.noinput_ms + s.max_speech_ms) / 1000 + slack


@dataclass(frozen=True)
class ListenResult:
    """How an exchange ended.

    ``speech``: the caller spoke (``text`` may be empty if the engine heard no words); ``dtmf``:
    a key (``digit``); ``noinput``: silence; ``closed``: Asterisk closed the socket first (the
    caller hung up, or the application gave up); ``failed``: our side could not do it (no
    connection, recognizer error, timeout) -- ``detail`` says why; ``late``: the caller spoke
    but the words were not ready within ``answer_within`` (speech is overloaded: the caller is
    told so and offered keys instead of waiting on in silence).
    """

    outcome: Outcome
    text: str = ""
    confidence: float = 0.0
    engine: str = ""
    digit: str = ""
    speech_ms: int = 0
    #: Wall-clock seconds from the detected end of speech to the transcript.
    latency_s: float = 0.0
    barged_in: bool = False
    detail: str = ""


class Listening:
    """A registered exchange: the voice channel awaits ``result`` after its EXEC returns."""

    def __init__(self, request: ListenRequest) -> None:
        self.id = uuid.uuid4()
        self.request = request
        self.connected = False
        self.call_id = call_id.get()  # the AGI call that registered it: its log lines carry it
        self.result: asyncio.Future[ListenResult] = asyncio.get_running_loop().create_future()

    @property
    def uuid(self) -> str:
        return str(self.id)

    def resolve(self, result: ListenResult) -> None:
        if not self.result.done():
            self.result.set_result(result)


class AudioSocketServer:
    """Asyncio TCP server for ``AudioSocket()`` connections from Asterisk (loopback only)."""

    def __init__(
        self,
        recognizer: Recognizer,
        *,
        host: str = "127.0.0.1",
        port: int = 4574,
        executor: Executor,
        uuid_timeout: float = 3.0,
        slack: float = 5.0,
        decode_timeout: float = 15.0,
        batcher: DecodeBatcher | None = None,
        answer_within: float = 0.0,
    ) -> None:
        self.recognizer = recognizer
        self._batcher = batcher
        #: Seconds after the end of speech by which the words must be ready, else ``late``
        #: (0: only ``decode_timeout``).
        self.answer_within = answer_within
        self._host = host
        self._port = port
        self._executor = executor
        self._uuid_timeout = uuid_timeout
        self._slack = slack
        self._decode_timeout = decode_timeout
        self._pending: dict[uuid.UUID, Listening] = {}
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._by_listening: dict[uuid.UUID, asyncio.Task[Any]] = {}
        self.exchanges = 0
        self.unknown_connections = 0

    # -- lifecycle --------------------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._server is not None and self._server.sockets:
            return int(self._server.sockets[0].getsockname()[1])
        return self._port

    @property
    def address(self) -> str:
        """``host:port`` as the ``AudioSocket()`` application's service argument."""
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"{host}:{self.port}"

    async def start(self) -> None:
        if self._server is not None:
            raise RuntimeError("AudioSocketServer.start() called twice")
        self._server = await asyncio.start_server(self._on_connect, self._host, self._port, reuse_address=True)
        log.info("AudioSocket server listening on %s", self.address)
        if self._host not in ("127.0.0.1", "::1", "localhost"):
            # AudioSocket has no authentication and no encryption: callers' voices in clear.
            log.warning("AudioSocket server is not on loopback (%s): callers' audio is unencrypted", self._host)

    async def stop(self, grace: float = 5.0) -> None:
        """Stop accepting, cancel every exchange (their sockets close) and await them."""
        if self._server is None:
            return
        server, self._server = self._server, None
        server.close()
        for listening in list(self._pending.values()):
            listening.resolve(ListenResult("failed", detail="speech server stopped"))
        self._pending.clear()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=grace)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(grace):
                await server.wait_closed()

    # -- registration (called by the voice channel) ----------------------------------------

    def expect(self, request: ListenRequest) -> Listening:
        """Register an exchange; pass ``listening.uuid`` and :attr:`address` to AudioSocket()."""
        if self._server is None:
            raise RuntimeError("the AudioSocket server is not running")
        listening = Listening(request)
        self._pending[listening.id] = listening
        return listening

    def bound_s(self, request: ListenRequest) -> float:
        """How long the voice channel may wait for the exchange, EXEC and decode included."""
        return request.bound_s(self._slack) + self._uuid_timeout + self._decode_timeout

    async def forget(self, listening: Listening) -> None:
        """Drop a registration (the call went on without it): its exchange is cancelled."""
        self._pending.pop(listening.id, None)
        task = self._by_listening.pop(listening.id, None)
        try:
            if task is not None and not task.done():
                task.cancel()
                # at most _CLOSE_TIMEOUT: the call goes on; a cancel of the call itself propagates
                await asyncio.wait([task], timeout=_CLOSE_TIMEOUT)
        finally:
            listening.resolve(ListenResult("failed", detail="abandoned by the call"))

    # -- per connection ---------------------------------------------------------------------

    async def _on_connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            sock = writer.get_extra_info("socket")
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            await self._serve(reader, writer)
        except asyncio.CancelledError:
            log.debug("AudioSocket exchange cancelled")  # outermost frame: end normally (see AgiServer)
        except Exception:
            log.exception("unexpected error in the AudioSocket connection handler")
        finally:
            self._tasks.discard(task)
            writer.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = AudioSocketConnection()
        try:
            async with asyncio.timeout(self._uuid_timeout):
                while True:
                    event = conn.next_event()
                    if event is NEED_DATA:
                        conn.receive_data(await _read(reader))
                        continue
                    break
        except TimeoutError:
            log.warning("AudioSocket peer sent no UUID within %gs; closing", self._uuid_timeout)
            return
        except RemoteProtocolError as exc:
            log.warning("AudioSocket peer sent garbage before its UUID: %s", exc)
            return
        if not isinstance(event, Identified):
            log.debug("AudioSocket peer ended before its UUID: %r", event)
            return
        listening = self._pending.pop(event.uuid, None)
        if listening is None:
            # A call that gave up waiting, or a stranger: end the application at once.
            self.unknown_connections += 1
            log.warning("AudioSocket connection for unknown or expired UUID %s; hanging up", event.uuid)
            writer.write(conn.send_hangup())
            return
        listening.connected = True
        call_id.set(listening.call_id)
        task = asyncio.current_task()
        assert task is not None
        self._by_listening[listening.id] = task
        self.exchanges += 1
        try:
            result = await self._exchange(listening.request, conn, reader, writer)
        except asyncio.CancelledError:
            listening.resolve(ListenResult("failed", detail="cancelled"))
            raise
        except Exception as exc:
            log.exception("AudioSocket exchange failed")
            result = ListenResult("failed", detail=f"{type(exc).__name__}: {exc}")
        finally:
            self._by_listening.pop(listening.id, None)
        listening.resolve(result)

    async def _exchange(
        self,
        request: ListenRequest,
        conn: AudioSocketConnection,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> ListenResult:
        endpointer = Endpointer(request.settings)
        # The utterance is fed to the engine off the event loop (ivr.speech.pool): a streaming
        # engine decodes while the caller speaks, at most one job in flight per call.
        recognition = Utterance(self.recognizer, request.phrases, self._executor, batcher=self._batcher)
        player: asyncio.Task[None] | None = None
        if request.prompt:
            player = asyncio.create_task(self._play(writer, conn, request.prompt, endpointer.arm), name="prompt")
        else:
            endpointer.arm()
        barged_in = False
        ended: SpeechEnded | None = None
        outcome: ListenResult | None = None
        try:
            async with asyncio.timeout(request.bound_s(self._slack)):
                while outcome is None and ended is None:
                    event = conn.next_event()
                    if event is NEED_DATA:
                        conn.receive_data(await _read(reader))
                    elif isinstance(event, Audio):
                        for ev in endpointer.feed(event.pcm):
                            if isinstance(ev, SpeechStarted):
                                if player is not None and not player.done():
                                    player.cancel()  # barge-in: the caller talks over the prompt
                                    barged_in = True
                            elif isinstance(ev, SpeechAudio):
                                recognition.feed(ev.pcm)  # raises an earlier engine failure
                            elif isinstance(ev, SpeechEnded):
                                ended = ev
                            elif isinstance(ev, NoInput):
                                outcome = ListenResult("noinput")
                    elif isinstance(event, Dtmf):
                        outcome = ListenResult(
                            "dtmf", digit=event.digit, barged_in=player is not None and not player.done()
                        )
                    elif isinstance(event, Closed | Hangup):
                        outcome = ListenResult("closed", detail="Asterisk ended the AudioSocket")
                    elif isinstance(event, PeerError):
                        outcome = ListenResult("closed", detail=f"Asterisk reported AudioSocket error {event.code}")
                    # Identified cannot come twice: the connection raises on a second UUID.
        except TimeoutError:
            outcome = ListenResult("failed", detail="listening timed out")
        except RemoteProtocolError as exc:
            outcome = ListenResult("failed", detail=f"AudioSocket protocol error: {exc}")
        except Exception as exc:  # the engine failed while streaming: keys take over
            log.warning("recognizer %s failed: %s", self.recognizer.name, exc, exc_info=True)
            outcome = ListenResult("failed", detail=f"recognizer error: {type(exc).__name__}: {exc}")
        finally:
            if player is not None:
                player.cancel()
            if outcome is not None or ended is None:
                recognition.cancel()
            await _hang_up(conn, writer)
            if player is not None:
                await wait_cancelled(player)
        if outcome is not None:
            return outcome
        assert ended is not None
        end_of_speech = time.monotonic()
        late = 0 < self.answer_within < self._decode_timeout
        try:
            async with asyncio.timeout(self.answer_within if late else self._decode_timeout):
                transcript = await recognition.finish()
        except TimeoutError:
            if late:
                # The decode goes on in its thread (or leaves the batch queue) and is dropped.
                return ListenResult(
                    "late",
                    speech_ms=ended.speech_ms,
                    latency_s=time.monotonic() - end_of_speech,
                    detail=f"words not ready {self.answer_within:g} s after the end of speech",
                )
            return ListenResult("failed", detail=f"recognizer took over {self._decode_timeout:g}s")
        except Exception as exc:  # an engine error must become a DTMF fallback, not a dead call
            log.warning("recognizer %s failed: %s", self.recognizer.name, exc, exc_info=True)
            return ListenResult("failed", detail=f"recognizer error: {type(exc).__name__}: {exc}")
        latency = time.monotonic() - end_of_speech
        log.info(
            "heard %r (confidence %.2f, %s, %d ms of speech%s, end of speech to text %.0f ms)",
            transcript.text,
            transcript.confidence,
            transcript.engine,
            ended.speech_ms,
            ", barge-in" if barged_in else "",
            latency * 1000,
        )
        return ListenResult(
            "speech",
            text=transcript.text.strip(),
            confidence=transcript.confidence,
            engine=transcript.engine,
            speech_ms=ended.speech_ms,
            latency_s=latency,
            barged_in=barged_in,
            detail=ended.reason,
        )

    @staticmethod
    async def _play(
        writer: asyncio.StreamWriter, conn: AudioSocketConnection, prompt: Sequence[bytes], done: Callable[[], None]
    ) -> None:
        """Send the prompt as 20 ms frames on the audio clock, then start the no-input timer.

        Asterisk writes each frame to the channel as it arrives (no jitter buffer on this path),
        so the pacing is ours: frame *n* goes out at ``t0 + n * 20 ms``.
        """
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        sent = 0
        try:
            for pcm in prompt:
                for frame in frames_of(pcm, FRAME_BYTES):
                    delay = t0 + sent * _FRAME_S - loop.time()
                    if delay > 0:
                        await asyncio.sleep(delay)
                    elif delay < -_MAX_LAG_S:
                        t0 = loop.time() - sent * _FRAME_S
                    writer.write(conn.send_audio(frame))
                    sent += 1
            await asyncio.sleep(max(0.0, t0 + sent * _FRAME_S - loop.time()))
        except (LocalProtocolError, ConnectionError):
            return  # the exchange is ending under us
        done()


async def _read(reader: asyncio.StreamReader) -> bytes:
    try:
        return await reader.read(_READ_SIZE)
    except OSError:  # reset by peer: the same as EOF for us
        return b""


async def _hang_up(conn: AudioSocketConnection, writer: asyncio.StreamWriter) -> None:
    """Terminate the application gracefully (it returns 0, the AGI EXEC continues)."""
    if conn.state is ConnectionState.STREAMING:
        with contextlib.suppress(LocalProtocolError, ConnectionError):
            writer.write(conn.send_hangup())
    writer.close()
    with contextlib.suppress(OSError, TimeoutError):
        async with asyncio.timeout(_CLOSE_TIMEOUT):
            await writer.wait_closed()
