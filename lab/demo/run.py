"""Run the demo: set up the stack once, play the chosen scenes, print the summary, exit non-zero on
any failure. ``--keep`` leaves everything running (URLs and credentials printed) until Ctrl-C."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import threading
import time
import traceback
from pathlib import Path

from lab.demo.registry import Scene, SceneFailed, Tell, select
from lab.demo.report import SceneResult, exit_code, summary_table
from lab.demo.stack import AGENT, DemoStack
from lab.errors import LabError
from lab.flows import DESK_NUMBER, HISTORY_NUMBER
from lab.lock import lab_session_lock

REPO = Path(__file__).resolve().parents[2]
WORK_DIR = REPO / "var" / "demo"
#: Real parts every scene set relies on (lab.require names them and says how to install each).
NEEDS = ("root", "sipp", "kannel", "chromium", "whisper-model")


def missing_parts() -> list[str]:
    """Each missing real part with how to install it: said up front, not as a scene's late failure."""
    from lab.require import COMPONENTS

    return [f"{c.name}: {c.install}" for c in (COMPONENTS[n] for n in NEEDS) if not c.present()]


def say(text: str) -> None:
    print(text, flush=True)


async def play(scene: Scene, stack: DemoStack) -> SceneResult:
    """One scene, with its failure turned into a summary line (and the reason printed)."""
    tell = Tell(scene.name, say)
    say(f"\n== Scene {scene.name}: {scene.title}")
    tell(f"expected: {scene.expected}")
    started = time.monotonic()
    try:
        happened = await scene.run(stack, tell)
        ok = True
    except SceneFailed as exc:
        happened, ok = f"check failed: {exc}", False
    except Exception as exc:  # a broken part must not hide the other scenes' results
        happened, ok = f"error: {type(exc).__name__}: {exc}", False
        tell(traceback.format_exc())
    failures = sum(1 for r in tell.sip if not r.ok)
    result = SceneResult(scene.name, scene.expected, happened, ok, len(tell.sip), failures)
    tell(f"{'ok' if result.passed else 'FAILED'} in {time.monotonic() - started:.0f} s: {happened}")
    return result


async def play_all(scenes: list[Scene], stack: DemoStack) -> list[SceneResult]:
    results = []
    for scene in scenes:
        await asyncio.to_thread(stack.restore_controller)  # a scene before may have stopped it
        results.append(await play(scene, stack))
    return results


def print_keep(stack: DemoStack) -> None:
    s = stack.secrets
    say("\n== Everything keeps running (--keep); Ctrl-C stops it")
    say(f"  agent desktop:  {stack.web}/desktop/   user {AGENT!r}, password {s.agent_password}")
    say(
        f"  timeline API:   curl -H 'Authorization: Bearer {s.api_token}' {stack.web}/api/customers/by-phone/NUMBER/timeline"
    )
    lines = f"5550100 (support), 5550200 (payments), {HISTORY_NUMBER} (history), {DESK_NUMBER} (desk)"
    say(f"  call in:        a softphone to sip:NUMBER@127.0.0.1:5060 from 127.0.0.1 (the trunk): {lines}")
    say(
        f"  agent phone:    register agent1001 at 127.0.0.1:5060, password {stack.lab.agent_passwords.get('agent1001', '?')}"
    )
    say(f"  AMI:            127.0.0.1:5038 user {stack.lab.ami_username}, secret {s.ami}")
    say(f"  journeys:       IVR_DATA_DIR={stack.data_dir} .venv/bin/ivr journeys")


def wait_for_interrupt() -> None:
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        while not stop.wait(1):
            pass
    except KeyboardInterrupt:
        pass


def main(argv: list[str] | None = None) -> int:
    import lab.demo.scenes  # noqa: F401  (registers the scenes)

    parser = argparse.ArgumentParser(prog="scripts/demo", description=__doc__)
    parser.add_argument("--scene", action="append", default=[], help="run only this scene (repeatable)")
    parser.add_argument("--keep", action="store_true", help="leave Asterisk, the controller and the desktop running")
    parser.add_argument("--list", action="store_true", help="list the scenes and exit")
    parser.add_argument(
        "--work-dir",
        type=Path,
        default=WORK_DIR,
        help=f"flows, data and screenshots (emptied first; default {WORK_DIR})",
    )
    args = parser.parse_args(argv)
    try:
        scenes = select(args.scene)
    except ValueError as exc:
        parser.error(str(exc))
    if args.list:
        for s in scenes:
            say(f"{s.name:10} {s.title}: {s.expected}")
        return 0
    missing = missing_parts()
    if missing:
        say("the demo needs parts that are not installed:\n  " + "\n  ".join(missing))
        return 1
    with lab_session_lock():
        started = time.monotonic()  # after the lock: time spent waiting for another lab user is not set-up
        web_port = DemoStack.preferred_web_port() if args.keep else None
        stack = DemoStack(say, work_dir=args.work_dir.resolve(), web_port=web_port)
        try:
            try:
                stack.start()
            except (LabError, OSError, ValueError) as exc:
                say(f"\nthe demo could not start: {exc}")
                return 1
            set_up = time.monotonic()
            say(f"  set up in {set_up - started:.0f} s")
            results = asyncio.run(play_all(scenes, stack))
            say(f"\n== Summary ({time.monotonic() - set_up:.0f} s of scenes after {set_up - started:.0f} s of set-up)")
            say(summary_table(results))
            if args.keep:
                stack.restore_controller()
                print_keep(stack)
                wait_for_interrupt()
            return exit_code(results)
        except KeyboardInterrupt:
            return 130
        finally:
            stack.close()


if __name__ == "__main__":
    sys.exit(main())
