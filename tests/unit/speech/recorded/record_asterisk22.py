#!/usr/bin/env python3
"""Record what a real Asterisk 22 sends on AudioSocket connections, as literal fixtures.

Run by hand against the lab (it takes the lab lock; nothing else may listen on 4573):
``.venv/bin/python tests/unit/speech/recorded/record_asterisk22.py``. For each script it places a
call through the trunk with SIPp, answers the FastAGI connection with ``EXEC AudioSocket(<uuid>,
127.0.0.1:4599)``, and on 4599 writes every byte Asterisk sent to ``asterisk22-<name>.bin``, the
AGI reply lines to ``asterisk22-<name>.agi`` and the events our parser saw to ``.events``.
While recording it plays a 1 kHz tone back through the socket (proving Asterisk takes our audio
frames), and ends the exchange the way the product does: hangup frame + close after a key press,
or waits for Asterisk to close when the caller hangs up.
"""

from __future__ import annotations

import asyncio
import math
import struct
import sys
import tempfile
import uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[3]))

from ivr.agi.protocol import NEED_DATA as AGI_NEED_DATA  # noqa: E402
from ivr.agi.protocol import AgiConnection, Reply  # noqa: E402
from ivr.prompts.tts import get_engine, render_to_file  # noqa: E402
from ivr.speech.audiosocket import NEED_DATA, AudioSocketConnection, Closed  # noqa: E402
from ivr.speech.audiosocket import Dtmf as DtmfFrame  # noqa: E402
from lab.asterisk import AsteriskLab  # noqa: E402
from lab.lock import lab_session_lock  # noqa: E402
from lab.sipp import CallerScript, Dtmf, run_caller_async  # noqa: E402

PORT = 4599
UTTERANCE = Path(tempfile.gettempdir()) / "ivr-record-audiosocket-utterance.wav"


def tone(ms: int, hz: float = 1000.0, amplitude: int = 6000) -> bytes:
    n = 8 * ms
    return b"".join(struct.pack("<h", int(amplitude * math.sin(2 * math.pi * hz * i / 8000))) for i in range(n))


SCRIPTS: dict[str, tuple[CallerScript, bool]] = {
    # The caller speaks, then presses 5 (RFC 4733) while we play a tone; we end on the key.
    "speech-then-dtmf": (
        CallerScript(caller_id="+15551239997", audio=UTTERANCE, dtmf=(Dtmf("5", 3500),), max_call_ms=12000),
        True,
    ),
    # The caller hangs up in the middle of the exchange: Asterisk closes the socket.
    "caller-hangs-up": (CallerScript(caller_id="+15551239996", audio=UTTERANCE, hangup_after_ms=2500), False),
}


def replayed(data: bytes) -> list[str]:
    """Event class names our parser sees in ``data`` then EOF, runs of Audio collapsed to one."""
    conn = AudioSocketConnection()
    conn.receive_data(data)
    conn.receive_data(b"")
    names: list[str] = []
    while True:
        event = conn.next_event()
        assert event is not NEED_DATA
        name = type(event).__name__
        if not (names and names[-1] == name == "Audio"):
            names.append(name)
        if isinstance(event, Closed):
            return names


async def record(name: str, caller: CallerScript, end_on_key: bool) -> None:
    received = bytearray()
    agi_lines: list[str] = []
    call_uuid = uuid.uuid4()
    done = asyncio.Event()

    async def audiosocket(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = AudioSocketConnection()
        playing: asyncio.Task[None] | None = None

        async def play() -> None:
            loop = asyncio.get_running_loop()
            pcm = tone(2000)
            t0 = loop.time()
            for i, start in enumerate(range(0, len(pcm), 320)):
                await asyncio.sleep(max(0.0, t0 + i * 0.02 - loop.time()))
                writer.write(conn.send_audio(pcm[start : start + 320]))

        while True:
            data = await reader.read(65536)
            received.extend(data)
            conn.receive_data(data)
            ended = False
            while (event := conn.next_event()) is not NEED_DATA:
                if playing is None and conn.state.name == "STREAMING":
                    playing = asyncio.create_task(play())
                if isinstance(event, DtmfFrame) and end_on_key:
                    print(f"  {name}: key {event.digit!r}; hanging up the AudioSocket", flush=True)
                    if playing:
                        playing.cancel()
                    writer.write(conn.send_hangup())
                    writer.close()
                    ended = True
                    break
                if isinstance(event, Closed):
                    ended = True
                    break
            if ended or not data:
                break
        if playing:
            playing.cancel()
        done.set()

    async def agi(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = AgiConnection()
        commands = [f'EXEC AudioSocket "{call_uuid},127.0.0.1:{PORT}"', 'SET VARIABLE IVR_ACTION "hangup"']
        while True:
            data = await reader.read(65536)
            conn.receive_data(data)
            while (event := conn.next_event()) is not AGI_NEED_DATA:
                if isinstance(event, Reply):
                    agi_lines.append(event.raw)
                elif type(event).__name__ == "HangupNotice":
                    agi_lines.append("HANGUP")
                elif type(event).__name__ == "Closed":
                    writer.close()
                    return
            if not data:
                return
            if conn.state.name == "IDLE" and commands:
                writer.write(conn.send_command(commands.pop(0)))
            elif conn.state.name == "IDLE":
                writer.close()
                return

    agi_server = await asyncio.start_server(agi, "127.0.0.1", 4573)
    as_server = await asyncio.start_server(audiosocket, "127.0.0.1", PORT)
    async with agi_server, as_server:
        result = await run_caller_async(caller, timeout=40)
        await asyncio.wait_for(done.wait(), 20)
        await asyncio.sleep(0.5)
    events = replayed(bytes(received))
    (HERE / f"asterisk22-{name}.bin").write_bytes(bytes(received))
    (HERE / f"asterisk22-{name}.events").write_text("\n".join(events) + "\n")
    (HERE / f"asterisk22-{name}.agi").write_text("\n".join(agi_lines) + "\n")
    print(f"{name}: {len(received)} bytes, events {events}, AGI {agi_lines}, SIP ok={result.ok}")


async def main() -> None:
    if not UTTERANCE.exists():
        render_to_file(get_engine("auto"), "I want to report an outage.", UTTERANCE)
    for name, (caller, end_on_key) in SCRIPTS.items():
        await record(name, caller, end_on_key)


if __name__ == "__main__":
    with lab_session_lock():
        lab = AsteriskLab()
        lab.provision()
        lab.install_config()
        started = not lab.is_running()
        if started:
            lab.start()
        try:
            asyncio.run(main())
        finally:
            if started:
                lab.stop()
