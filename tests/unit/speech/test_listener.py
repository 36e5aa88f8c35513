"""The AudioSocket server over a real loopback socket, with a fake Asterisk and a fake recognizer."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from ivr.speech.audiosocket import encode_frame
from ivr.speech.endpoint import EndpointSettings
from ivr.speech.listener import AudioSocketServer, ListenRequest
from tests.unit.speech.fakes import FakeRecognizer, fake_asterisk, silence, speak, tone

EXECUTOR = ThreadPoolExecutor(max_workers=2, thread_name_prefix="test-speech")
FAST = EndpointSettings(noinput_ms=400, end_silence_ms=300, max_speech_ms=3000)


@pytest.fixture
async def server() -> AsyncIterator[AudioSocketServer]:
    srv = AudioSocketServer(
        FakeRecognizer(), executor=EXECUTOR, port=0, uuid_timeout=1.0, slack=1.0, decode_timeout=2.0
    )
    await srv.start()
    yield srv
    await srv.stop()


def recognizer_of(server: AudioSocketServer) -> FakeRecognizer:
    assert isinstance(server.recognizer, FakeRecognizer)
    return server.recognizer


async def test_speech_is_endpointed_recognised_and_the_socket_hung_up(server: AudioSocketServer) -> None:
    listening = server.expect(ListenRequest(phrases=["report an outage"], settings=FAST))
    heard = await fake_asterisk(server.address, listening.uuid, speak(silence(300), tone(800), silence(600)))
    result = await listening.result
    assert result.outcome == "speech"
    assert result.text == "I want to report an outage" and result.engine == "fake"
    assert result.speech_ms == 800 and result.detail == "silence"
    assert heard.hangup and heard.eof  # hangup frame, then close: app_audiosocket returns 0
    session = recognizer_of(server).sessions[0]
    assert session.phrases == ["report an outage"]
    assert len(session.audio) == (300 + 800 + 300) * 16  # pre-roll + speech + hangover
    assert listening.connected and server.exchanges == 1


async def test_a_key_wins_at_once(server: AudioSocketServer) -> None:
    listening = server.expect(ListenRequest(settings=FAST))
    heard = await fake_asterisk(server.address, listening.uuid, speak(silence(100), dtmf="5"))
    result = await listening.result
    assert (result.outcome, result.digit) == ("dtmf", "5")
    assert heard.hangup


async def test_a_key_during_speech_wins_too(server: AudioSocketServer) -> None:
    listening = server.expect(ListenRequest(settings=FAST))
    await fake_asterisk(server.address, listening.uuid, speak(tone(500), dtmf="#"))
    assert (await listening.result).digit == "#"


async def test_silence_is_no_input(server: AudioSocketServer) -> None:
    listening = server.expect(ListenRequest(settings=FAST))
    heard = await fake_asterisk(server.address, listening.uuid, speak(silence(1000)))
    assert (await listening.result).outcome == "noinput"
    assert heard.hangup
    assert recognizer_of(server).finished == []  # nothing decoded for silence


async def test_unknown_uuid_is_hung_up_at_once(server: AudioSocketServer) -> None:
    listening = server.expect(ListenRequest(settings=FAST))
    heard = await fake_asterisk(server.address, str(uuid.uuid4()), speak(silence(100)))
    assert heard.hangup and heard.eof
    assert server.unknown_connections == 1
    assert not listening.connected and not listening.result.done()


async def test_a_uuid_is_used_once(server: AudioSocketServer) -> None:
    listening = server.expect(ListenRequest(settings=FAST))
    first = asyncio.create_task(fake_asterisk(server.address, listening.uuid, speak(silence(2000), pace=0.002)))
    await asyncio.sleep(0.05)
    second = await fake_asterisk(server.address, listening.uuid, speak(silence(100)))
    assert second.hangup and server.unknown_connections == 1
    await first


async def test_the_prompt_is_played_in_paced_20ms_frames_before_the_no_input_timer(server: AudioSocketServer) -> None:
    prompt = [tone(200), tone(100)]
    listening = server.expect(ListenRequest(prompt=prompt, settings=FAST))
    started = time.monotonic()
    heard = await fake_asterisk(server.address, listening.uuid, speak(silence(20), pace=0.02))
    elapsed = time.monotonic() - started
    assert (await listening.result).outcome == "noinput"
    assert heard.audio_frames == 15  # 300 ms of prompt
    assert elapsed >= 0.28 + 0.35  # the prompt in real time, then the no-input wait
    assert bytes(heard.raw[3:323]) == tone(200)[:320]


async def test_speech_barges_in_on_the_prompt(server: AudioSocketServer) -> None:
    listening = server.expect(ListenRequest(prompt=[tone(3000, amplitude=1000)], settings=FAST))
    heard = await fake_asterisk(server.address, listening.uuid, speak(silence(200), tone(600), silence(600), pace=0.02))
    result = await listening.result
    assert result.outcome == "speech" and result.barged_in
    assert heard.audio_frames < 30  # the 3 s prompt stopped when the caller spoke (~0.3 s in)


async def test_a_key_barges_in_on_the_prompt(server: AudioSocketServer) -> None:
    listening = server.expect(ListenRequest(prompt=[tone(3000)], settings=FAST))
    heard = await fake_asterisk(server.address, listening.uuid, speak(silence(100), dtmf="2", pace=0.02))
    result = await listening.result
    assert (result.outcome, result.digit, result.barged_in) == ("dtmf", "2", True)
    assert heard.audio_frames < 20


async def test_asterisk_closing_is_closed_not_an_error(server: AudioSocketServer) -> None:
    listening = server.expect(ListenRequest(settings=FAST))
    await fake_asterisk(server.address, listening.uuid, speak(tone(200), then_close=True))
    result = await listening.result
    assert result.outcome == "closed"


async def test_garbage_fails_the_exchange(server: AudioSocketServer) -> None:
    listening = server.expect(ListenRequest(settings=FAST))

    async def garbage(writer: asyncio.StreamWriter) -> None:
        writer.write(b"\x42\x00\x00")

    await fake_asterisk(server.address, listening.uuid, garbage)
    result = await listening.result
    assert result.outcome == "failed" and "protocol error" in result.detail


async def test_a_recognizer_error_fails_the_exchange() -> None:
    srv = AudioSocketServer(
        FakeRecognizer(error=RuntimeError("model exploded")), executor=EXECUTOR, port=0, decode_timeout=2.0
    )
    await srv.start()
    try:
        listening = srv.expect(ListenRequest(settings=FAST))
        await fake_asterisk(srv.address, listening.uuid, speak(tone(500), silence(500)))
        result = await listening.result
        assert result.outcome == "failed" and "model exploded" in result.detail
    finally:
        await srv.stop()


async def test_a_slow_recognizer_times_out() -> None:
    srv = AudioSocketServer(FakeRecognizer(delay=1.0), executor=EXECUTOR, port=0, decode_timeout=0.2)
    await srv.start()
    try:
        listening = srv.expect(ListenRequest(settings=FAST))
        await fake_asterisk(srv.address, listening.uuid, speak(tone(500), silence(500)))
        result = await listening.result
        assert result.outcome == "failed" and "took over" in result.detail
    finally:
        await srv.stop()


async def test_a_non_streaming_engine_gets_the_utterance_once() -> None:
    srv = AudioSocketServer(FakeRecognizer(streaming=False), executor=EXECUTOR, port=0)
    await srv.start()
    try:
        listening = srv.expect(ListenRequest(settings=FAST))
        await fake_asterisk(srv.address, listening.uuid, speak(tone(700), silence(500), pace=0.001))
        assert (await listening.result).outcome == "speech"
        session = recognizer_of(srv).sessions[0]
        assert session.accepts == 1 and len(session.audio) == (700 + 300) * 16  # no pre-roll before the first frame
    finally:
        await srv.stop()


async def test_silence_after_the_uuid_times_out_within_the_bound(server: AudioSocketServer) -> None:
    settings = EndpointSettings(noinput_ms=100, max_speech_ms=100, start_ms=100)
    listening = server.expect(ListenRequest(settings=settings))

    async def mute(writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(10)  # no audio at all: the RTP stream stopped

    started = time.monotonic()
    heard = await fake_asterisk(server.address, listening.uuid, mute)
    assert (await listening.result).outcome == "failed"
    assert time.monotonic() - started < 2.5 and heard.hangup


async def test_no_uuid_at_all(server: AudioSocketServer) -> None:
    host, port = server.address.rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    started = time.monotonic()
    assert await reader.read() == b""  # closed after uuid_timeout
    assert 0.8 < time.monotonic() - started < 2
    writer.close()


async def test_forget_cancels_a_running_exchange(server: AudioSocketServer) -> None:
    listening = server.expect(ListenRequest(settings=EndpointSettings(noinput_ms=10000)))
    call = asyncio.create_task(fake_asterisk(server.address, listening.uuid, speak(silence(20), pace=0.02)))
    for _ in range(100):
        if listening.connected:
            break
        await asyncio.sleep(0.01)
    await server.forget(listening)
    heard = await asyncio.wait_for(call, 3)
    assert heard.eof and (await listening.result).outcome == "failed"


async def test_stop_resolves_pending_and_cancels_running() -> None:
    srv = AudioSocketServer(FakeRecognizer(), executor=EXECUTOR, port=0)
    await srv.start()
    waiting = srv.expect(ListenRequest())
    running = srv.expect(ListenRequest(settings=EndpointSettings(noinput_ms=10000)))
    call = asyncio.create_task(fake_asterisk(srv.address, running.uuid, speak(silence(20), pace=0.02)))
    for _ in range(100):
        if running.connected:
            break
        await asyncio.sleep(0.01)
    await srv.stop()
    assert (await waiting.result).outcome == "failed"
    assert (await running.result).outcome == "failed"
    assert (await asyncio.wait_for(call, 3)).eof


async def test_expect_before_start_is_a_bug() -> None:
    srv = AudioSocketServer(FakeRecognizer(), executor=EXECUTOR, port=0)
    with pytest.raises(RuntimeError):
        srv.expect(ListenRequest())


async def test_address_and_bounds() -> None:
    srv = AudioSocketServer(
        FakeRecognizer(), executor=EXECUTOR, host="::1", port=4599, slack=1.0, uuid_timeout=1.0, decode_timeout=3.0
    )
    assert srv.address == "[::1]:4599"
    request = ListenRequest(prompt=[silence(2000)], settings=EndpointSettings(noinput_ms=3000, max_speech_ms=5000))
    assert request.prompt_ms == 2000
    assert srv.bound_s(request) == pytest.approx(2 + 3 + 5 + 1 + 1 + 3)


def test_frame_helpers_used_by_the_fake_match_the_protocol() -> None:
    assert encode_frame(0x01, uuid.UUID(int=0).bytes)[:3] == b"\x01\x00\x10"
