"""``ivr demo``: a real Asterisk 22, the controller and four SIPp callers, end to end.

What it proves to someone evaluating the product on a bare machine: calls arrive over the SIP
trunk, hear rendered prompts, press keys, fill slots, reach queues or hang up, and the controller
recorded each journey step by step. The output is each caller's story, read back from the store.
"""

from __future__ import annotations

import asyncio
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from ivr.config import Config
from ivr.flow.loader import check_paths
from ivr.flow.model import REDACTED, SYSTEM_PROMPTS, Journey
from ivr.prompts.build import PromptItem, build_prompts
from lab.asterisk import AsteriskLab
from lab.lock import lab_session_lock
from lab.sipp import CallerScript, Dtmf, run_caller_async


@dataclass(frozen=True)
class DemoCaller:
    who: str
    story: str
    script: CallerScript


CALLERS = (
    DemoCaller(
        "Alice",
        "pays her bill: presses 1, types her account number and PIN",
        CallerScript(
            caller_id="+15551230001",
            dialled="5550100",
            dtmf=(Dtmf("1", 4000), Dtmf("12345678", 6500), Dtmf("4321", 11000)),
            hangup_after_ms=24000,
        ),
    ),
    DemoCaller(
        "Bob",
        "reports an outage, then ends the call from the menu",
        CallerScript(
            caller_id="+15551230002", dialled="5550100", dtmf=(Dtmf("2", 4000), Dtmf("2", 13000)), max_call_ms=40000
        ),
    ),
    DemoCaller(
        "Carol",
        "presses keys that mean nothing three times",
        CallerScript(
            caller_id="+15551230003",
            dialled="5550100",
            dtmf=(Dtmf("7", 4000), Dtmf("9", 8000), Dtmf("8", 12000)),
            hangup_after_ms=22000,
        ),
    ),
    DemoCaller(
        "Dave",
        "hangs up while the menu is playing",
        CallerScript(caller_id="+15551230004", dialled="5550100", hangup_after_ms=4500),
    ),
)


def say(text: str) -> None:
    print(text, flush=True)


def build_demo_prompts(config: Config, sounds_dir: Path) -> None:
    flows, problems = check_paths([Path(config.flows.dir)])
    for problem in problems:
        say(f"  flow problem (skipped): {problem}")
    prefix = config.prompts.prefix
    items = [PromptItem(p.audio_name(prefix), p.text) for p in SYSTEM_PROMPTS]
    for flow in flows:
        items += [PromptItem(p.audio_name(prefix), p.text) for p in flow.prompts() if not p.audio]
    report = build_prompts(
        items, sounds_dir, engine=config.prompts.engine, progress=lambda i, n, name: say(f"  [{i}/{n}] {name}")
    )
    say(f"  {len(report.rendered)} rendered, {len(report.skipped)} up to date (engine {report.engine})")


def describe(journey: Journey) -> str:
    slots = (
        ", ".join(
            f"{k}=…{v[-2:]}" if k not in journey.secret_slots and v != REDACTED else f"{k}=(secret)"
            for k, v in journey.slots.items()
        )
        or "none"
    )
    where = journey.outcome.get("queue") if journey.status == "queued" else journey.step
    return (
        f"{journey.status} at {where}\n      path:  {' > '.join(journey.path)}\n"
        f"      slots: {slots}   intent: {journey.intent or '-'}"
    )


async def _calls(config: Config) -> int:
    from ivr.app import App

    app = App(config)
    await app.start()
    try:
        say("\n== Placing demo calls through SIPp -> Asterisk trunk -> FastAGI controller")
        for caller in CALLERS:
            say(f"  {caller.who} ({caller.script.caller_id}) {caller.story}")
        results = await asyncio.gather(*(run_caller_async(c.script, timeout=60) for c in CALLERS))
        await app.store.flush()
        journeys = {j.caller: j for j in await app.store.recent(50)}
        say("\n== What each caller went through (read back from the journey store)")
        failures = 0
        for caller, result in zip(CALLERS, results, strict=True):
            journey = journeys.get(caller.script.caller_id)
            sip = "SIP ok" if result.ok else "SIP FAILED"
            if journey is None:
                failures += 1
                say(f"  {caller.who}: {sip}; the controller has no journey for this call!")
                continue
            say(f"  {caller.who}: {sip}; journey {journey.id[:8]} {describe(journey)}")
        say(f"\ncontroller: {app.inbound.calls} calls, outcomes {app.inbound.finished}")
        return 1 if failures else 0
    finally:
        await app.stop()


def run_demo(config: Config) -> int:
    with lab_session_lock():
        return _run_demo(config)


def _run_demo(config: Config) -> int:
    say("== Provisioning Asterisk 22 (Debian sid root; cached after the first run)")
    lab = AsteriskLab(progress=lambda line: say(f"  {line}"))
    lab.provision()
    lab.install_config()
    demo_dir = config.data_dir / "demo"
    shutil.rmtree(demo_dir, ignore_errors=True)
    # The controller reads the prompts Asterisk plays (spoken menus stream them over AudioSocket);
    # in the lab they live inside the Asterisk root.
    config = config.with_overrides(**{"data_dir": str(demo_dir), "speech.sounds_dir": str(lab.sounds_dir)})
    say("== Rendering prompts with an offline TTS into Asterisk's sounds directory")
    build_demo_prompts(config, lab.sounds_dir)
    say("== Starting Asterisk")
    lab.start()
    try:
        return asyncio.run(_calls(config))
    except KeyboardInterrupt:
        return 130
    finally:
        say("== Stopping Asterisk")
        lab.stop()


if __name__ == "__main__":
    from ivr.config import load_config

    sys.exit(run_demo(load_config()))
