"""Sans-IO AudioSocket: feed bytes in, pull typed frames out. No sockets, no asyncio.

AudioSocket is how a call's audio reaches us: the voice channel runs ``EXEC AudioSocket(<uuid>,
127.0.0.1:<port>)`` from its AGI session, Asterisk connects to our TCP server and streams the
caller's audio while we stream audio back. Same discipline as ``ivr/agi/protocol.py`` (after h11):
every protocol decision lives here and is tested with literal bytes, byte-at-a-time delivery and
EOF at every offset; the asyncio server in ``listener.py`` only moves bytes.

The wire (res_audiosocket.c / app_audiosocket.c, Asterisk 22.10, checked against the lab):

* Every message is ``kind (1 byte) | length (2 bytes, big-endian) | payload (length bytes)``.
* ``0x01`` UUID: 16 bytes, the binary form of the UUID given to ``AudioSocket()``. Asterisk sends
  it once, first, right after connecting.
* ``0x10`` audio: signed linear 16-bit little-endian mono at 8 kHz. The application forces the
  channel's read and write formats to slin, so from the app this is the only audio kind; Asterisk
  sends one message per channel frame (320 bytes = 20 ms from a 20 ms RTP stream).
* ``0x03`` DTMF: 1 byte, the ASCII digit. The application forwards ``AST_FRAME_DTMF`` (the END
  of a key press) since the DTMF patch (Asterisk 20.x/21.x/22.x); a key press arrives once, when
  it ends. Audio keeps flowing around it.
* ``0x00`` hangup (length 0): "terminate". Asterisk's app never sends it; it closes the socket
  when the channel hangs up. *We* send it (or just close) to end the application gracefully: the
  app then returns 0 and the AGI ``EXEC`` answers ``200 result=0``.
* ``0xff`` error: optional 1-byte code (Asterisk's bit-packed codes: 0x01 hangup of the calling
  party, 0x02 frame forwarding error, 0x04 memory error).
* ``0x11``..``0x18``: slin at 12..192 kHz, only used by the chan_audiosocket channel driver;
  refused here (the application never sends them).

Telephony gotchas encoded in the send side:

* Asterisk reads the 3-byte header with one ``read(fd, header, 3)`` per loop turn *into the start
  of the buffer*: a header split across two TCP segments is misread. Each frame we send is one
  ``bytes`` object, written with one ``write()`` (TCP_NODELAY on loopback keeps it one segment).
* Asterisk treats a zero-length audio message from us as an error (the app ends with -1), and
  anything other than audio or hangup too (it logs "Received AudioSocket message other than
  hangup or audio"): we only ever send non-empty audio, and hangup.

Two error classes, as in the AGI code: ``RemoteProtocolError`` when the peer sent garbage (an
unknown kind, a UUID that is not 16 bytes, audio before the UUID, a payload over the bound),
``LocalProtocolError`` when *we* misuse the protocol (odd-length audio, sending after hangup).
"""

from __future__ import annotations

import enum
import struct
import uuid
from dataclasses import dataclass
from typing import Final

from ivr.errors import LocalProtocolError, RemoteProtocolError

__all__ = [
    "FRAME_BYTES",
    "HANGUP_FRAME",
    "MAX_PAYLOAD",
    "NEED_DATA",
    "Audio",
    "AudioSocketConnection",
    "Closed",
    "ConnectionState",
    "Dtmf",
    "Event",
    "Hangup",
    "Identified",
    "Kind",
    "PeerError",
    "encode_frame",
    "frames_of",
]


class Kind(enum.IntEnum):
    HANGUP = 0x00
    UUID = 0x01
    DTMF = 0x03
    AUDIO = 0x10
    ERROR = 0xFF


#: Sample rates of the chan_audiosocket-only kinds, so the error message can say what came.
_HIGHER_RATE_KINDS: Final = {
    0x11: 12000,
    0x12: 16000,
    0x13: 24000,
    0x14: 32000,
    0x15: 44100,
    0x16: 48000,
    0x17: 96000,
    0x18: 192000,
}
HEADER_BYTES: Final = 3
#: 20 ms of 8 kHz 16-bit mono: what Asterisk sends per frame and what we send back.
FRAME_BYTES: Final = 320
SAMPLE_RATE: Final = 8000
#: Largest payload we buffer. One Asterisk frame is 20-60 ms (320-960 bytes); one second of
#: audio in a single message is already absurd, and a peer must not make us hold 64 KiB per frame.
MAX_PAYLOAD: Final = 16000
HANGUP_FRAME: Final = b"\x00\x00\x00"
_DTMF_KEYS: Final = frozenset(b"0123456789*#ABCD")
_KINDS: Final = frozenset(int(kind) for kind in Kind)
_HEADER: Final = struct.Struct(">BH")


# --------------------------------------------------------------------------------------------
# Events


class NEED_DATA:
    """Sentinel returned by ``next_event`` when no complete frame is buffered yet."""

    def __init__(self) -> None:
        raise TypeError("NEED_DATA is a sentinel; compare with `is NEED_DATA`")


@dataclass(frozen=True, slots=True)
class Identified:
    """The UUID frame: which ``AudioSocket(<uuid>, ...)`` call this connection belongs to."""

    uuid: uuid.UUID


@dataclass(frozen=True, slots=True)
class Audio:
    """Caller audio: slin16 little-endian mono 8 kHz (an even number of bytes)."""

    pcm: bytes


@dataclass(frozen=True, slots=True)
class Dtmf:
    """A key press (sent once, when the key is released): ``0-9 * # A-D``."""

    digit: str


@dataclass(frozen=True, slots=True)
class Hangup:
    """The peer asked to terminate the stream (kind 0x00)."""


@dataclass(frozen=True, slots=True)
class PeerError:
    """Kind 0xff: the peer reports an error; ``code`` is its optional first payload byte."""

    code: int | None


@dataclass(frozen=True, slots=True)
class Closed:
    """The peer closed the connection. ``truncated`` counts bytes of a frame cut short by EOF.

    EOF is never an exception, wherever it falls (a caller who hangs up mid-frame is still just a
    caller who hung up); ``truncated`` lets the server log the rare torn frame.
    """

    truncated: int = 0


Event = Identified | Audio | Dtmf | Hangup | PeerError | Closed


class ConnectionState(enum.Enum):
    AWAITING_UUID = "AWAITING_UUID"
    STREAMING = "STREAMING"
    #: The peer sent hangup or error: the stream is over; only EOF may follow.
    ENDED = "ENDED"
    CLOSED = "CLOSED"
    #: The peer sent garbage; the byte stream can no longer be trusted.
    ERROR = "ERROR"


_S = ConnectionState
_Trigger = type[Identified] | type[Audio] | type[Dtmf] | type[Hangup] | type[PeerError] | type[Closed]

#: Every legal transition; a missing pair is the peer's protocol error ("audio before the UUID",
#: "a second UUID", "audio after hangup").
_TRANSITIONS: Final[dict[tuple[ConnectionState, _Trigger], ConnectionState]] = {
    (_S.AWAITING_UUID, Identified): _S.STREAMING,
    (_S.AWAITING_UUID, Hangup): _S.ENDED,
    (_S.AWAITING_UUID, PeerError): _S.ENDED,
    (_S.AWAITING_UUID, Closed): _S.CLOSED,
    (_S.STREAMING, Audio): _S.STREAMING,
    (_S.STREAMING, Dtmf): _S.STREAMING,
    (_S.STREAMING, Hangup): _S.ENDED,
    (_S.STREAMING, PeerError): _S.ENDED,
    (_S.STREAMING, Closed): _S.CLOSED,
    (_S.ENDED, Closed): _S.CLOSED,
    (_S.CLOSED, Closed): _S.CLOSED,
}


# --------------------------------------------------------------------------------------------
# Encoding (pure functions)


def encode_frame(kind: int, payload: bytes = b"") -> bytes:
    """One message: header and payload as a single ``bytes`` (write it with one write())."""
    if not 0 <= kind <= 0xFF:
        raise LocalProtocolError(f"AudioSocket kind must be one byte, got {kind}")
    if len(payload) > 0xFFFF:
        raise LocalProtocolError(f"AudioSocket payload of {len(payload)} bytes does not fit a 16-bit length")
    return _HEADER.pack(kind, len(payload)) + payload


def frames_of(pcm: bytes, frame_bytes: int = FRAME_BYTES) -> list[bytes]:
    """Split slin audio into ``frame_bytes`` chunks (the last may be shorter, never empty)."""
    if frame_bytes <= 0 or frame_bytes % 2:
        raise LocalProtocolError(f"frame size must be a positive even number of bytes, got {frame_bytes}")
    if len(pcm) % 2:
        raise LocalProtocolError(f"slin audio must be whole 16-bit samples, got {len(pcm)} bytes")
    return [pcm[i : i + frame_bytes] for i in range(0, len(pcm), frame_bytes)]


# --------------------------------------------------------------------------------------------
# The connection


class AudioSocketConnection:
    """One AudioSocket connection, seen from the server (our) side. Feed bytes, pull events.

    ``next_event`` returns one event per call, or ``NEED_DATA``; it never blocks. ``send_audio``
    and ``send_hangup`` return the bytes to write.
    """

    __slots__ = ("_buffer", "_eof", "_error", "_max_payload", "_sent_hangup", "state", "uuid")

    def __init__(self, *, max_payload: int = MAX_PAYLOAD) -> None:
        if not 1 <= max_payload <= 0xFFFF:
            raise ValueError(f"max_payload must be 1..65535, got {max_payload}")
        self.state: ConnectionState = ConnectionState.AWAITING_UUID
        #: The call's UUID once the first frame has been read.
        self.uuid: uuid.UUID | None = None
        self._buffer = bytearray()
        self._eof = False
        self._error: RemoteProtocolError | None = None
        self._max_payload = max_payload
        self._sent_hangup = False

    # -- input ------------------------------------------------------------------------------

    def receive_data(self, data: bytes) -> None:
        """Buffer bytes from the peer; ``b""`` means the peer closed its side."""
        if not data:
            self._eof = True
            return
        if self._eof:
            raise LocalProtocolError("received data after EOF")
        self._buffer += data

    def next_event(self) -> Event | type[NEED_DATA]:
        """The next complete frame as an event, or ``NEED_DATA``. Raises RemoteProtocolError."""
        if self._error is not None:
            raise self._error
        if self.state is ConnectionState.CLOSED:
            return Closed()
        try:
            event = self._parse()
            if event is NEED_DATA:
                if not self._eof:
                    return NEED_DATA
                event = Closed(truncated=len(self._buffer))
                self._buffer.clear()
            assert not isinstance(event, type)
            self._transition(type(event))
            if isinstance(event, Identified):
                self.uuid = event.uuid
            return event
        except RemoteProtocolError as exc:
            self._error = exc
            self.state = ConnectionState.ERROR
            self._buffer.clear()
            raise

    # -- output -----------------------------------------------------------------------------

    def send_audio(self, pcm: bytes) -> bytes:
        """One audio message for ``pcm`` (1..65534 bytes of whole samples)."""
        self._check_can_send("audio")
        if not pcm:
            raise LocalProtocolError("empty audio frame: Asterisk ends the application on a zero length")
        if len(pcm) % 2:
            raise LocalProtocolError(f"slin audio must be whole 16-bit samples, got {len(pcm)} bytes")
        return encode_frame(Kind.AUDIO, pcm)

    def send_hangup(self) -> bytes:
        """The terminate message; after it only closing the socket is left to do."""
        self._check_can_send("hangup")
        self._sent_hangup = True
        return HANGUP_FRAME

    # -- internals --------------------------------------------------------------------------

    def _check_can_send(self, what: str) -> None:
        if self._sent_hangup:
            raise LocalProtocolError(f"cannot send {what}: we already sent hangup")
        if self.state is not ConnectionState.STREAMING:
            raise LocalProtocolError(f"cannot send {what} in state {self.state.value}")

    def _transition(self, trigger: _Trigger) -> None:
        new_state = _TRANSITIONS.get((self.state, trigger))
        if new_state is None:
            raise RemoteProtocolError(f"unexpected AudioSocket {trigger.__name__} in state {self.state.value}")
        self.state = new_state

    def _parse(self) -> Event | type[NEED_DATA]:
        buffer = self._buffer
        if len(buffer) < HEADER_BYTES:
            return NEED_DATA
        kind, length = _HEADER.unpack_from(buffer)
        self._check_header(kind, length)
        end = HEADER_BYTES + length
        if len(buffer) < end:
            return NEED_DATA
        payload = bytes(buffer[HEADER_BYTES:end])
        del buffer[:end]
        return self._decode(kind, payload)

    def _check_header(self, kind: int, length: int) -> None:
        """Refuse a bad header before its payload arrives, so garbage is never buffered."""
        if kind in _HIGHER_RATE_KINDS:
            raise RemoteProtocolError(
                f"AudioSocket audio at {_HIGHER_RATE_KINDS[kind]} Hz (kind 0x{kind:02x}): the AudioSocket() "
                "application sends 8 kHz slin (kind 0x10) only"
            )
        if kind not in _KINDS:
            raise RemoteProtocolError(f"unknown AudioSocket message kind 0x{kind:02x} (length {length})")
        if length > self._max_payload:
            raise RemoteProtocolError(
                f"AudioSocket {Kind(kind).name} payload of {length} bytes is over the {self._max_payload}-byte bound"
            )
        if kind == Kind.UUID and length != 16:
            raise RemoteProtocolError(f"AudioSocket UUID payload must be 16 bytes, got {length}")
        if kind == Kind.DTMF and length != 1:
            raise RemoteProtocolError(f"AudioSocket DTMF payload must be 1 byte, got {length}")
        if kind == Kind.AUDIO and length % 2:
            raise RemoteProtocolError(f"AudioSocket slin payload must be whole 16-bit samples, got {length} bytes")

    @staticmethod
    def _decode(kind: int, payload: bytes) -> Event:
        if kind == Kind.AUDIO:
            return Audio(payload)
        if kind == Kind.UUID:
            return Identified(uuid.UUID(bytes=payload))
        if kind == Kind.DTMF:
            key = payload[0]
            if 0x61 <= key <= 0x64:  # a-d: the same keys as A-D
                key -= 0x20
            if key not in _DTMF_KEYS:
                raise RemoteProtocolError(f"AudioSocket DTMF payload is not a key: {payload!r}")
            return Dtmf(chr(key))
        if kind == Kind.HANGUP:
            return Hangup()
        return PeerError(payload[0] if payload else None)
