#!/usr/bin/env python3
"""The thinnest FastAGI server there can be: Asterisk's own ceiling for any FastAGI controller.

It does exactly the two AGI commands the controller's ``bench`` flow sends (``STREAM FILE beep``,
``SET VARIABLE IVR_ACTION hangup``) with no parsing beyond line ends, no flow, no journey, no
database. ``calls_per_second.py`` runs it as the ``bare`` route (lab extension ``bench-bare``,
port 4575), between ``dialplan`` and ``ivr``: dialplan -> bare is what FastAGI itself costs
Asterisk; bare -> ivr is what our controller costs. Prints how many calls it served on SIGTERM.
"""

from __future__ import annotations

import asyncio
import signal
import sys

served = 0


async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    global served
    try:
        while (await reader.readline()) not in (b"\n", b""):
            pass
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
