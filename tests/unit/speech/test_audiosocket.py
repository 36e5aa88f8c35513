"""Sans-IO AudioSocket: literal frames in, events out; every byte boundary; garbage and bounds."""

from __future__ import annotations

import itertools
import uuid

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ivr.errors import LocalProtocolError, RemoteProtocolError
from ivr.speech.audiosocket import (
    _TRANSITIONS,
    HANGUP_FRAME,
    MAX_PAYLOAD,
    NEED_DATA,
    Audio,
    AudioSocketConnection,
    Closed,
    ConnectionState,
    Dtmf,
    Event,
    Hangup,
    Identified,
    PeerError,
    encode_frame,
    frames_of,
)

S = ConnectionState
CALL = uuid.UUID("40325ec2-5efd-4bd3-805f-53576e581d13")
# What Asterisk writes first (ast_audiosocket_init): kind 0x01, length 0x0010, uuid_parse() bytes.
UUID_FRAME = b"\x01\x00\x10" + bytes.fromhex("40325ec25efd4bd3805f53576e581d13")
AUDIO_FRAME = b"\x10\x00\x04" + b"\x01\x00\xff\x7f"  # two samples: 1, 32767
DTMF_5 = b"\x03\x00\x01" + b"5"


def state_of(conn: AudioSocketConnection) -> ConnectionState:
    return conn.state


def drain(conn: AudioSocketConnection) -> list[Event]:
    events: list[Event] = []
    while True:
        event = conn.next_event()
        if event is NEED_DATA:
            return events
        assert not isinstance(event, type)
        events.append(event)
        if isinstance(event, Closed):
            return events


def feed(data: bytes, *, eof: bool = True, chunk: int | None = None) -> list[Event]:
    conn = AudioSocketConnection()
    events: list[Event] = []
    pieces = [data] if chunk is None else [data[i : i + chunk] for i in range(0, len(data), chunk)]
    for piece in pieces:
        conn.receive_data(piece)
        events += drain(conn)
    if eof:
        conn.receive_data(b"")
        events += drain(conn)
    return events


def streaming() -> AudioSocketConnection:
    conn = AudioSocketConnection()
    conn.receive_data(UUID_FRAME)
    assert conn.next_event() == Identified(CALL)
    return conn


# -- the frames Asterisk sends ----------------------------------------------------------------


def test_uuid_then_audio_then_dtmf_then_eof() -> None:
    events = feed(UUID_FRAME + AUDIO_FRAME + DTMF_5 + AUDIO_FRAME)
    assert events == [Identified(CALL), Audio(b"\x01\x00\xff\x7f"), Dtmf("5"), Audio(b"\x01\x00\xff\x7f"), Closed()]


def test_uuid_is_remembered_and_state_moves() -> None:
    conn = AudioSocketConnection()
    assert conn.state is S.AWAITING_UUID and conn.uuid is None
    conn.receive_data(UUID_FRAME)
    assert conn.next_event() == Identified(CALL)
    assert conn.uuid == CALL and state_of(conn) is S.STREAMING


def test_a_real_20ms_frame() -> None:
    pcm = bytes(range(256)) + bytes(64)
    assert len(pcm) == 320
    assert feed(UUID_FRAME + b"\x10\x01\x40" + pcm, eof=False) == [Identified(CALL), Audio(pcm)]


@pytest.mark.parametrize("key", list(b"0123456789*#ABCD"))
def test_every_dtmf_key(key: int) -> None:
    assert feed(UUID_FRAME + b"\x03\x00\x01" + bytes([key]), eof=False)[1] == Dtmf(chr(key))


def test_lower_case_abcd_are_the_same_keys() -> None:
    assert feed(UUID_FRAME + b"\x03\x00\x01d", eof=False)[1] == Dtmf("D")


def test_hangup_and_error_frames() -> None:
    assert feed(UUID_FRAME + b"\x00\x00\x00") == [Identified(CALL), Hangup(), Closed()]
    assert feed(UUID_FRAME + b"\xff\x00\x01\x02") == [Identified(CALL), PeerError(2), Closed()]
    assert feed(UUID_FRAME + b"\xff\x00\x00") == [Identified(CALL), PeerError(None), Closed()]


def test_empty_audio_payload_is_harmless() -> None:
    assert feed(UUID_FRAME + b"\x10\x00\x00", eof=False) == [Identified(CALL), Audio(b"")]


def test_byte_at_a_time_gives_the_same_events() -> None:
    data = UUID_FRAME + AUDIO_FRAME + DTMF_5 + b"\xff\x00\x01\x01"
    assert feed(data, chunk=1) == feed(data)


# -- EOF anywhere -------------------------------------------------------------------------------


@pytest.mark.parametrize("cut", range(len(UUID_FRAME + AUDIO_FRAME + DTMF_5) + 1))
def test_eof_at_every_offset_is_closed_never_an_exception(cut: int) -> None:
    data = (UUID_FRAME + AUDIO_FRAME + DTMF_5)[:cut]
    events = feed(data)
    assert isinstance(events[-1], Closed)
    boundaries = {0, len(UUID_FRAME), len(UUID_FRAME + AUDIO_FRAME), len(UUID_FRAME + AUDIO_FRAME + DTMF_5)}
    assert (events[-1].truncated == 0) == (cut in boundaries)


def test_closed_repeats_and_data_after_eof_is_our_bug() -> None:
    conn = AudioSocketConnection()
    conn.receive_data(b"")
    assert conn.next_event() == Closed()
    assert conn.next_event() == Closed()
    with pytest.raises(LocalProtocolError):
        conn.receive_data(b"x")


# -- garbage --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (AUDIO_FRAME, "Audio in state AWAITING_UUID"),
        (DTMF_5, "Dtmf in state AWAITING_UUID"),
        (UUID_FRAME + UUID_FRAME, "Identified in state STREAMING"),
        (b"\x01\x00\x0f" + bytes(15), "UUID payload must be 16 bytes"),
        (UUID_FRAME + b"\x03\x00\x02" + b"12", "DTMF payload must be 1 byte"),
        (UUID_FRAME + b"\x03\x00\x01x", "not a key"),
        (UUID_FRAME + b"\x10\x00\x03abc", "whole 16-bit samples"),
        (UUID_FRAME + b"\x02\x00\x00", "unknown AudioSocket message kind 0x02"),
        (UUID_FRAME + b"GET / HTTP/1.1\r\n", "unknown AudioSocket message kind 0x47"),
        (UUID_FRAME + b"\x12\x01\x40", "16000 Hz"),
        (UUID_FRAME + b"\x00\x00\x00" + AUDIO_FRAME, "Audio in state ENDED"),
    ],
)
def test_garbage_is_a_remote_protocol_error(data: bytes, message: str) -> None:
    conn = AudioSocketConnection()
    conn.receive_data(data)
    with pytest.raises(RemoteProtocolError, match=message):
        drain(conn)
    assert state_of(conn) is S.ERROR
    with pytest.raises(RemoteProtocolError):  # it stays failed
        conn.next_event()


def test_payload_bound_is_checked_on_the_header_before_buffering() -> None:
    conn = AudioSocketConnection()
    conn.receive_data(UUID_FRAME)
    drain(conn)
    length = MAX_PAYLOAD + 2
    conn.receive_data(b"\x10" + length.to_bytes(2, "big"))  # header only: refused at once
    with pytest.raises(RemoteProtocolError, match="over the"):
        conn.next_event()


def test_payload_bound_is_configurable() -> None:
    conn = AudioSocketConnection(max_payload=320)
    conn.receive_data(UUID_FRAME + b"\x10\x01\x40" + bytes(320) + b"\x10\x01\x42")
    assert drain_until_error(conn) == [Identified(CALL), Audio(bytes(320))]
    with pytest.raises(ValueError):
        AudioSocketConnection(max_payload=0)


def drain_until_error(conn: AudioSocketConnection) -> list[Event]:
    events: list[Event] = []
    with pytest.raises(RemoteProtocolError):
        while (event := conn.next_event()) is not NEED_DATA:
            assert not isinstance(event, type)
            events.append(event)
    return events


# -- what we send -------------------------------------------------------------------------------


def test_send_audio_and_hangup_bytes() -> None:
    conn = streaming()
    assert conn.send_audio(b"\x01\x00\xff\x7f") == AUDIO_FRAME
    assert conn.send_audio(bytes(320)) == b"\x10\x01\x40" + bytes(320)
    assert conn.send_hangup() == HANGUP_FRAME == b"\x00\x00\x00"


@pytest.mark.parametrize(("pcm", "message"), [(b"", "empty audio"), (b"abc", "whole 16-bit samples")])
def test_send_audio_refuses_what_asterisk_would_choke_on(pcm: bytes, message: str) -> None:
    with pytest.raises(LocalProtocolError, match=message):
        streaming().send_audio(pcm)


def test_nothing_is_sent_before_the_uuid_after_hangup_or_after_eof() -> None:
    with pytest.raises(LocalProtocolError, match="AWAITING_UUID"):
        AudioSocketConnection().send_audio(b"\x00\x00")
    conn = streaming()
    conn.send_hangup()
    with pytest.raises(LocalProtocolError, match="already sent hangup"):
        conn.send_audio(b"\x00\x00")
    with pytest.raises(LocalProtocolError):
        conn.send_hangup()
    conn = streaming()
    conn.receive_data(b"")
    assert conn.next_event() == Closed()
    with pytest.raises(LocalProtocolError, match="CLOSED"):
        conn.send_audio(b"\x00\x00")


def test_encode_frame_and_frames_of() -> None:
    assert encode_frame(0x10, b"ab") == b"\x10\x00\x02ab"
    assert encode_frame(0xFF) == b"\xff\x00\x00"
    with pytest.raises(LocalProtocolError):
        encode_frame(0x10, bytes(70000))
    with pytest.raises(LocalProtocolError):
        encode_frame(256)
    assert frames_of(bytes(700)) == [bytes(320), bytes(320), bytes(60)]
    assert frames_of(b"") == []
    with pytest.raises(LocalProtocolError):
        frames_of(b"abc")
    with pytest.raises(LocalProtocolError):
        frames_of(bytes(4), frame_bytes=3)


def test_transition_table_has_no_way_out_of_closed() -> None:
    assert {new for (old, _), new in _TRANSITIONS.items() if old is S.CLOSED} == {S.CLOSED}
    assert all(old is not S.ERROR for old, _ in _TRANSITIONS)


# -- fuzz -------------------------------------------------------------------------------------------

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FRAMES = st.sampled_from([UUID_FRAME, AUDIO_FRAME, DTMF_5, b"\x00\x00\x00", b"\xff\x00\x01\x04", b"\x10\x00\x00"])


def replay(pieces: list[bytes]) -> list[object]:
    """Events (or the error's class name) for these chunks followed by EOF."""
    conn = AudioSocketConnection(max_payload=512)
    out: list[object] = []
    try:
        for piece in [*pieces, b""]:
            conn.receive_data(piece)
            for _ in range(10_000):  # never loops without consuming input
                event = conn.next_event()
                if event is NEED_DATA:
                    break
                out.append(event)
                if isinstance(event, Closed):
                    return out
            else:
                raise AssertionError("next_event looped")
    except RemoteProtocolError:
        out.append("RemoteProtocolError")
    return out


def chunked(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    edges = [0, *points, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(edges) if b > a]


@FUZZ
@given(st.binary(max_size=600), st.lists(st.integers(0, 600), max_size=10))
def test_random_bytes(data: bytes, cuts: list[int]) -> None:
    whole = replay([data])
    assert isinstance(whole[-1], Closed) or whole[-1] == "RemoteProtocolError"
    assert replay(chunked(data, cuts)) == whole


@FUZZ
@given(st.lists(FRAMES, max_size=12), st.lists(st.integers(0, 200), max_size=10))
def test_random_frame_sequences(frames: list[bytes], cuts: list[int]) -> None:
    data = UUID_FRAME + b"".join(frames)
    whole = replay([data])
    assert whole[0] == Identified(CALL)
    assert replay(chunked(data, cuts)) == whole
