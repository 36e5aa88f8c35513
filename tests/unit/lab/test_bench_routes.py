"""The benchmark's four menu-call routes do the same work (bench/calls_per_second.py compares them).

The controller's ``bench_menu`` flow is run through the real flow engine and voice channel on a
scripted AGI session; the bare FastAGI server (over a real socket), the pyst2 script (as a real
process on pipes, the way Asterisk runs it) and the dialplan extension must play the same files
in the same order and send the same AGI commands. A prompt text edited in the flow changes its
file name: this test then says which route to update.
"""

from __future__ import annotations

import asyncio
import importlib.util
import re
import subprocess
import sys
from pathlib import Path
from typing import cast

from ivr.agi.commands import unquote
from ivr.agi.protocol import Reply
from ivr.agi.server import AgiSession
from ivr.channels.voice import VoiceChannel
from ivr.flow.library import FlowLibrary
from ivr.flow.machine import FlowMachine
from ivr.flow.model import Journey
from lab.asterisk import AGI_PORT, AGI_STANDBY_PORT

REPO = Path(__file__).resolve().parents[3]
KEY = "2"  # the key the benchmark's caller presses


def answer(line: str) -> str:
    """What Asterisk answers: the caller's key for the menu's variable, 0 for everything else."""
    return f"200 result=1 ({KEY})" if line.startswith("GET VARIABLE") else "200 result=0"


class ScriptedAsterisk:
    def __init__(self) -> None:
        self.sent: list[str] = []

    async def command(self, line: str) -> Reply:
        self.sent.append(line)
        raw = answer(line)
        result, _, data = raw.removeprefix("200 result=").partition(" ")
        return Reply(200, result, data[1:-1] if data else None, None, raw)

    async def set_variable(self, name: str, value: str) -> None:
        await self.command(f"SET VARIABLE {name} {value}")


def controller_commands() -> list[list[str]]:
    library = FlowLibrary(REPO / "dialplans")
    library.reload()
    flow = library.current("bench_menu")
    journey = Journey.new(flow, "voice")
    machine = FlowMachine(library, journey)
    session = ScriptedAsterisk()
    channel = VoiceChannel(cast(AgiSession, session))

    async def run() -> None:
        commands = machine.start()
        while (event := await channel.execute(commands)) is not None:
            commands = machine.receive(event)

    asyncio.run(run())
    assert journey.status == "completed" and "outage" in journey.path, journey
    return [unquote(line) for line in session.sent]


ENVIRONMENT = "agi_network: yes\nagi_network_script: menu\nagi_request: agi://127.0.0.1/menu\n\n"


def bare_commands() -> list[list[str]]:
    spec = importlib.util.spec_from_file_location("bare_fastagi", REPO / "bench" / "bare_fastagi.py")
    assert spec and spec.loader
    bare = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bare)

    async def run() -> list[str]:
        server = await asyncio.start_server(bare.handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(ENVIRONMENT.encode())
        sent = []
        while line := (await asyncio.wait_for(reader.readline(), 5)).decode().strip():
            sent.append(line)
            writer.write(answer(line).encode() + b"\n")
        writer.close()
        server.close()
        return sent

    return [unquote(line) for line in asyncio.run(run())]


def pyst2_commands() -> list[list[str]]:
    proc = subprocess.Popen(
        [sys.executable, str(REPO / "bench" / "bench_pyst2.py"), "menu"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        bufsize=1,
    )
    assert proc.stdin and proc.stdout
    proc.stdin.write(ENVIRONMENT)
    proc.stdin.flush()
    sent = []
    while line := proc.stdout.readline().strip():
        sent.append(line)
        proc.stdin.write(answer(line) + "\n")
        proc.stdin.flush()
    assert proc.wait(10) == 0
    # pyst2 always sends STREAM FILE's optional sample offset: 0 is where playback starts anyway.
    return [args[:4] if args[:2] == ["STREAM", "FILE"] and args[4:] == ["0"] else args for args in map(unquote, sent)]


def dialplan_files() -> list[str]:
    conf = (REPO / "lab" / "overlay" / "extensions_lab.conf").read_text()
    lines = [line for line in conf.splitlines() if line.startswith(("exten => bench-menu-dialplan", " same"))]
    start = next(i for i, line in enumerate(lines) if line.startswith("exten => bench-menu-dialplan"))
    body = []
    for line in lines[start + 1 :]:
        if not line.startswith(" same"):
            break
        body.append(line)
    files = []
    for line in body:
        if m := re.search(r"Playback\(([^)]*)\)", line):
            files.append(m.group(1))
        elif m := re.search(r"Read\(\w+,([^,]*),", line):
            files += m.group(1).split("&")
        if "(outage)" in line:  # the key's branch; the billing branch is not taken
            break
    return [f for f in files if "billing-is-closed" not in f]


def played(commands: list[list[str]]) -> list[str]:
    files = []
    for args in commands:
        if args[:2] == ["STREAM", "FILE"]:
            files.append(args[2])
        elif args[:2] == ["EXEC", "Read"]:
            files += args[2].split(",")[1].split("&")
    return files


def test_the_bare_server_sends_what_the_controller_sends() -> None:
    assert bare_commands() == controller_commands()


def test_the_pyst2_script_sends_what_the_controller_sends() -> None:
    assert pyst2_commands() == controller_commands()


def test_the_dialplan_route_plays_what_the_controller_plays() -> None:
    assert dialplan_files() == played(controller_commands())


def test_the_lab_dialplan_reaches_its_two_controller_nodes_where_lab_asterisk_says() -> None:
    product = (REPO / "asterisk-config" / "extensions.conf").read_text()
    overlay = (REPO / "lab" / "overlay" / "extensions_lab.conf").read_text()
    assert f"IVR_AGI = agi://127.0.0.1:{AGI_PORT}\n" in product
    assert f"IVR_AGI_STANDBY = agi://127.0.0.1:{AGI_STANDBY_PORT}\n" in overlay
