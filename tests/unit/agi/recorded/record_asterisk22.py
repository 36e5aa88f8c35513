#!/usr/bin/env python3
"""Record what a real Asterisk 22 sends on FastAGI connections, as literal fixtures.

Run by hand against the lab (the controller must not be running: this listens on 4573):
``.venv/bin/python tests/unit/agi/recorded/record_asterisk22.py``. It places calls through the
trunk with SIPp, answers each AGI connection with a fixed command script, and writes every byte
Asterisk sent to ``asterisk22-<name>.bin`` plus the event classes our parser saw to ``.events``.
The unit tests replay those files; re-record when Asterisk's major version changes.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[3]))

from ivr.agi.protocol import NEED_DATA, AgiConnection, Closed  # noqa: E402
from lab.asterisk import AsteriskLab  # noqa: E402
from lab.sipp import CallerScript, Dtmf, run_caller_async  # noqa: E402

SCRIPTS: dict[str, tuple[CallerScript, list[str]]] = {
    # Every reply shape the controller meets, then the caller hangs up during a long file.
    "replies-and-hangup": (
        CallerScript(caller_id="+15551239999", dialled="5550100", hangup_after_ms=4000),
        [
            "ANSWER",
            'STREAM FILE beep "0123456789"',
            "GET DATA beep 300 4",
            "WAIT FOR DIGIT 100",
            'SET VARIABLE __IVR_TEST "a \\"quoted\\" value, with comma"',
            "GET VARIABLE IVR_TEST",
            "GET VARIABLE NO_SUCH_VARIABLE",
            'GET FULL VARIABLE "${CALLERID(num)}"',
            "FOO BAR",
            "STREAM FILE",
            "CHANNEL STATUS",
            'STREAM FILE no-such-prompt ""',
            'STREAM FILE demo-congrats ""',  # ~20 s: the caller hangs up in the middle
            'STREAM FILE beep ""',  # after the hangup: 511
        ],
    ),
    # DTMF typed during GET DATA, with the '#' terminator.
    "get-data-digits": (
        CallerScript(caller_id="+15551239998", dialled="5550100", dtmf=(Dtmf("42#", 1500),), max_call_ms=15000),
        ["GET DATA demo-congrats 3000 8", 'SET VARIABLE IVR_ACTION "hangup"'],
    ),
}


async def record(name: str, commands: list[str], caller: CallerScript) -> None:
    received = bytearray()
    done = asyncio.Event()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = AgiConnection()
        pending = list(commands)
        events: list[str] = []
        while True:
            data = await reader.read(65536)
            received.extend(data)
            conn.receive_data(data)
            while (event := conn.next_event()) is not NEED_DATA:
                events.append(type(event).__name__)
                print(f"  {name}: {event!r}"[:160], flush=True)
                if isinstance(event, Closed):  # Closed repeats once reached (like h11): stop reading
                    break
            if not data:
                break
            if conn.state.name == "IDLE" and pending:
                writer.write(conn.send_command(pending.pop(0)))
                await writer.drain()
            elif conn.state.name == "IDLE" and not pending:
                writer.close()
        (HERE / f"asterisk22-{name}.bin").write_bytes(bytes(received))
        (HERE / f"asterisk22-{name}.events").write_text("\n".join(events) + "\n")
        done.set()

    server = await asyncio.start_server(handle, "127.0.0.1", 4573)
    async with server:
        result = await run_caller_async(caller, timeout=60)
        await asyncio.wait_for(done.wait(), 30)
    print(f"{name}: {len(received)} bytes, SIP ok={result.ok}")


async def main() -> None:
    for name, (caller, commands) in SCRIPTS.items():
        await record(name, commands, caller)


if __name__ == "__main__":
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
