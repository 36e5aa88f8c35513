#!/usr/bin/env python3
"""The controller's call path under load without Asterisk: this script plays Asterisk's side.

``calls_per_second.py`` needs the lab (and its lock) and its short call carries no caller id
(the lab endpoint's CALLERID(num) is ``lab``), so it never exercises the caller lookup, the one
database read before the first prompt. Here ``ivr serve`` (this checkout, and with
``--base-code`` another checkout's, interleaved round by round, the order flipping) takes
``--rate`` calls/s of the ``bench`` flow for ``--seconds``, from ``--callers`` numbers: the first
call of each number creates its customer, later ones are lookups of a known caller. A warm-up
creates the first half of them. Each fake Asterisk connection sends an AGI environment, answers
``STREAM FILE`` after 50 ms (the beep) and anything else at once.

``--calls menu`` runs ``bench_menu`` instead (a greeting, a two-option menu in one ``Read()``
answered with 2, the reply, hang up: the lab's menu call, five commands).

Prints per run: calls, how long after connecting each call got its first AGI command (p50 / p99 /
max: the silence a caller hears; the lookup's timeout is 1 s), and the controller's CPU per call,
the event loop's thread apart from the others (aiosqlite's, the speech pool's ...).
``--pin``: this script (the fake Asterisk) on CPU 0 and every thread of the controller on CPU 1,
so neither preempts the other; the figures then move less from run to run.
``--profile DIR``: py-spy samples the controller during the measured load (not the warm-up) and
the run's CPU is split into the call's stages (``bench/profile_calls.py``); the raw stacks are
kept in DIR.

    .venv/bin/python bench/agi_load.py [--rate 60] [--seconds 8] [--callers 400] [--rounds 3] [--base-code /work/main]
        [--database sqlite|postgresql] [--calls short|menu] [--profile DIR] [--pin]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.profile_calls import stage_table  # noqa: E402
from lab.controller import ControllerProcess  # noqa: E402
from lab.postgres import PostgresServer  # noqa: E402

PORT = 4581  # not the lab's 4573: this never talks to Asterisk
PY_SPY = str(Path(sys.executable).parent / "py-spy")
FLOWS = {"short": "bench", "menu": "bench_menu"}
flow = FLOWS["short"]


def environment(n: int, callers: int) -> bytes:
    return (
        f"agi_network: yes\nagi_network_script: inbound?flow={flow}\n"
        f"agi_request: agi://127.0.0.1/inbound?flow={flow}\n"
        f"agi_channel: PJSIP/lab-{n:08x}\nagi_language: en\nagi_type: PJSIP\nagi_uniqueid: 1764000000.{n}\n"
        f"agi_version: 22.1.0\nagi_callerid: +1555{n % callers:07d}\nagi_calleridname: bench\nagi_dnid: 5550100\n"
        "agi_context: lab-routes\nagi_extension: bench-ivr\nagi_priority: 2\n\n"
    ).encode()


async def call(n: int, callers: int, firsts: list[float]) -> bool:
    started = time.perf_counter()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", PORT)
    except OSError:
        return False
    writer.write(environment(n, callers))
    first = True
    while line := await reader.readline():
        if first:
            firsts.append(time.perf_counter() - started)
            first = False
        if line.startswith(b"STREAM FILE"):
            await asyncio.sleep(0.05)
            writer.write(b"200 result=0 endpos=400\n")
        elif line.startswith(b"GET VARIABLE IVR_MENU_KEY"):  # the menu's Read() took a 2
            writer.write(b"200 result=1 (2)\n")
        else:
            writer.write(b"200 result=1\n")
    writer.close()
    return not first


async def load(rate: float, seconds: float, callers: int, offset: int = 0) -> tuple[int, int, list[float]]:
    firsts: list[float] = []
    tasks = []
    started = time.perf_counter()
    n = 0
    while time.perf_counter() - started < seconds:
        tasks.append(asyncio.create_task(call(offset + n, callers, firsts)))
        n += 1
        await asyncio.sleep(max(0.0, started + n / rate - time.perf_counter()))
    served = sum(await asyncio.gather(*tasks))
    return n, served, sorted(firsts)


def cpu_split(pid: int) -> tuple[float, float]:
    """User and system CPU seconds of a process, every thread (from /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def thread_cpu(pid: int) -> dict[int, float]:
    """CPU seconds (user + system) of each thread of a process (from /proc)."""
    tick = os.sysconf("SC_CLK_TCK")
    out: dict[int, float] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:  # the thread ended meanwhile
            continue
        out[int(task.name)] = (int(fields[11]) + int(fields[12])) / tick
    return out


def pin_threads(pid: int, cpu: int) -> None:
    """Every thread of ``pid`` on ``cpu`` (threads started later inherit it from theirs)."""
    for tid in thread_cpu(pid):
        with contextlib.suppress(ProcessLookupError):
            os.sched_setaffinity(tid, {cpu})


def run_once(code: Path | None, args: argparse.Namespace, pg: PostgresServer | None, number: int) -> str:
    data = Path(tempfile.mkdtemp(prefix="ivr-agi-load-"))
    env = {"IVR_SPEECH_ENGINE": "off"}
    if pg is not None:  # a fresh database per run, as SQLite gets a fresh file
        env["IVR_DATABASE_URL"] = pg.create_database(f"agi_load_{number}")
    if code is not None:
        env["PYTHONPATH"] = str(code)
    controller = ControllerProcess(
        flows_dir=REPO / "dialplans", data_dir=data, agi_port=PORT, log_level="WARNING", env=env
    )
    controller.start(timeout=60)
    assert controller.process is not None
    pid = controller.process.pid
    if args.pin:
        pin_threads(pid, 1)
    spy: subprocess.Popen[bytes] | None = None
    raw = Path()
    try:
        asyncio.run(load(min(args.rate, 50.0), args.callers / 2 / min(args.rate, 50.0), args.callers))  # warm-up
        if args.profile is not None:
            assert controller.process is not None
            raw = args.profile / f"run{number}-{'base' if code else 'this'}.txt"
            # --gil: only the thread holding the GIL (py-spy counts threads asleep on a queue as running)
            record = ["record", "--pid", str(controller.process.pid), "--rate", "250", "--gil", "--format", "raw"]
            spy = subprocess.Popen(
                [PY_SPY, *record, "--output", str(raw), "--duration", str(int(args.seconds))],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            time.sleep(0.5)  # py-spy attached
        if args.pin:
            pin_threads(pid, 1)  # threads the warm-up started
        threads = thread_cpu(pid)
        user, system = cpu_split(pid)
        calls, served, firsts = asyncio.run(load(args.rate, args.seconds, args.callers, offset=args.callers // 2))
        user2, system2 = cpu_split(pid)
        threads2 = thread_cpu(pid)
        user, system = user2 - user, system2 - system
        cpu = user + system
        if spy is not None:
            spy.wait(timeout=60)
    finally:
        controller.stop()
        shutil.rmtree(data, ignore_errors=True)
    loop_cpu = threads2.get(pid, 0.0) - threads.get(pid, 0.0)
    if not firsts:
        return f"{calls} calls, none served"
    p99 = firsts[min(len(firsts) - 1, int(0.99 * len(firsts)))]
    line = (
        f"{served}/{calls} calls served; first command p50 {1000 * statistics.median(firsts):.1f} ms, "
        f"p99 {1000 * p99:.1f} ms, max {1000 * firsts[-1]:.1f} ms; controller CPU {1000 * cpu / calls:.2f} ms/call "
        f"(user {1000 * user / calls:.2f}, system {1000 * system / calls:.2f}; "
        f"event loop's thread {1000 * loop_cpu / calls:.2f})"
    )
    if spy is not None:
        line += "\n" + stage_table(raw.read_text().splitlines(), cpu_ms_per_call=1000 * cpu / calls)
    return line


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=60)
    parser.add_argument("--seconds", type=float, default=8)
    parser.add_argument("--callers", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--base-code", type=Path, help="another checkout, run as 'base' round by round")
    parser.add_argument("--database", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--calls", choices=tuple(FLOWS), default="short")
    parser.add_argument("--profile", type=Path, help="sample the controller with py-spy; raw stacks go here")
    parser.add_argument("--pin", action="store_true", help="this script on CPU 0, the controller on CPU 1")
    args = parser.parse_args()
    global flow
    flow = FLOWS[args.calls]
    if args.profile is not None:
        if not Path(PY_SPY).exists():
            parser.error(f"--profile needs py-spy ({PY_SPY}): .venv/bin/pip install py-spy")
        args.profile = args.profile.resolve()
        args.profile.mkdir(parents=True, exist_ok=True)
    # the controllers import ivr from their working folder first: run them from a neutral one
    os.chdir(tempfile.gettempdir())
    if args.pin:
        if len(os.sched_getaffinity(0)) < 2:
            parser.error("--pin needs two CPUs")
        os.sched_setaffinity(0, {0})
    codes: list[tuple[str, Path | None]] = [("this", None)]
    if args.base_code is not None:
        codes.append(("base", args.base_code))
    pg = PostgresServer().start() if args.database == "postgresql" else None
    runs = 0
    try:
        for number in range(args.rounds):
            for name, code in codes if number % 2 == 0 else codes[::-1]:
                runs += 1
                print(f"round {number + 1} {name}: {run_once(code, args, pg, runs)}", flush=True)
    finally:
        if pg is not None:
            pg.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
