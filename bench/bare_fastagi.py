#!/usr/bin/env python3
"""The thinnest FastAGI server there can be: Asterisk's own ceiling for any FastAGI controller.

It does exactly the two AGI commands the controller's ``bench`` flow sends (``STREAM FILE beep``,
``SET VARIABLE IVR_ACTION hangup``) with no parsing beyond line ends, no flow, no journey, no
database. ``calls_per_second.py`` runs it as the ``bare`` route (lab extension ``bench-bare``,
port 4575), between ``dialplan`` and ``ivr``: dialplan -> bare is what FastAGI itself costs
Asterisk; bare -> ivr is what our controller costs. Prints how many calls it served on SIGTERM.

Two routes (``agi_network_script``): ``bare`` (the ``bench`` flow: one file, one variable) and
``menu`` (the ``bench_menu`` flow: greeting, the menu as one ``Read()`` of its fragments, the
key, the reply for it, the variable), the same commands in the same order as the controller.
"""

from __future__ import annotations

import asyncio
import signal
import sys

served = 0


#: The bench_menu flow as the controller plays it (tests/unit/lab/test_bench_routes.py keeps this in step).
GREETING = b"ivr/thank-you-for-calling-ce598488"
MENU = [
    b"ivr/please-choose-from-the-following-14e28566",
    b"ivr/for-f7880600",
    b"ivr/billing-acd14c7a",
    b"ivr/press-cd09e18a",
    b"digits/1",
    b"ivr/for-f7880600",
    b"ivr/outages-ef2db6fb",
    b"ivr/press-cd09e18a",
    b"digits/2",
]
REPLIES = {b"1": b"ivr/billing-is-closed-today-c0879f71", b"2": b"ivr/we-are-working-on-it-80f19c19"}


async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    global served
    try:
        menu = False
        while (line := await reader.readline()) not in (b"\n", b""):
            if line.startswith(b"agi_network_script: menu"):
                menu = True
        if menu:
            writer.write(b"STREAM FILE " + GREETING + b' ""\n')
            await reader.readline()
            writer.write(b'EXEC Read "IVR_MENU_KEY,' + b"&".join(MENU) + b',1,,1,3"\n')
            await reader.readline()
            writer.write(b"GET VARIABLE IVR_MENU_KEY\n")
            key = (await reader.readline()).partition(b"(")[2].partition(b")")[0]
            if key in REPLIES:
                writer.write(b"STREAM FILE " + REPLIES[key] + b' ""\n')
                await reader.readline()
        else:
            writer.write(b'STREAM FILE beep ""\n')
            await reader.readline()
        writer.write(b'SET VARIABLE IVR_ACTION "hangup"\n')
        await reader.readline()
        served += 1
    finally:
        writer.close()


async def main(port: int) -> None:
    server = await asyncio.start_server(handle, "127.0.0.1", port)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    print("ready", flush=True)
    async with server:
        await stop.wait()
    print(f"served {served}", flush=True)


if __name__ == "__main__":
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover
        pass
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 4575))
