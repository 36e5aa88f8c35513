#!/usr/bin/env python3
"""Calls per second sustained with zero failed calls, three routes side by side on one Asterisk.

* ``dialplan`` — Asterisk alone (answer, play a short file, set variables, hang up): the ceiling.
* ``ivr``      — the same call through our FastAGI controller running the ``bench`` flow.
* ``bare``     — the same two AGI commands from ``bare_fastagi.py``, the thinnest FastAGI server
  there can be: what FastAGI itself costs Asterisk, before any controller logic.
* ``pyst2``    — the same AGI commands from a classic process-per-call pyst2 script.

For each route the rate ramps up (x1.5) until a step fails, then bisects between the last good
and the first bad rate. A step passes when SIPp reports every call successful, answers stay
fast (p95 INVITE->200 under 500 ms: Asterisk keeping up, not queueing), the run does not overrun,
and, for ``ivr``, the controller itself recorded every call as a completed journey (SIPp success
alone does not prove the IVR ran). Prints the ratios and the controller's CPU share.

Two calls (``--calls``), each through all four routes:

* ``short`` — answer, one short file, two variables, hang up (2 AGI commands): the worst case for
  any AGI route, nearly all of the call is set-up and tear-down.
* ``menu``  — what a short real IVR call does (flow ``dialplans/bench_menu.yaml``): a greeting, a
  two-option menu spoken from fragments that the caller interrupts with a key (RFC 4733, at the
  same moment on every route), the reply for that key, hang up (about 10 AGI commands, 4-5 s).
  For ``ivr`` a step passes only if every journey took the key's branch.

Run: ``.venv/bin/python bench/calls_per_second.py [--seconds 8] [--calls short,menu]``
(about 25 minutes for both calls and two rounds).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import wave
from dataclasses import asdict, dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ivr.flow.loader import check_paths  # noqa: E402
from ivr.flow.model import SYSTEM_PROMPTS  # noqa: E402
from ivr.prompts.build import PromptItem, build_prompts  # noqa: E402
from lab.asterisk import AsteriskLab  # noqa: E402
from lab.controller import ControllerProcess  # noqa: E402
from lab.lock import lab_session_lock  # noqa: E402
from lab.sipp import CallerScript, Dtmf, run_load  # noqa: E402

PYST2_IN_ROOT = "/usr/local/share/ivr-lab/bench_pyst2.py"


@dataclass(frozen=True)
class Call:
    """What the caller does: which lab extensions, when they press a key, what the flow must show."""

    name: str
    extension_prefix: str  # the lab extension is <prefix><route>
    dtmf: tuple[Dtmf, ...] = ()
    path_must_include: str | None = None  # a step every ivr journey must have passed


@dataclass
class Step:
    call: str
    route: str
    rate: float
    calls: int
    ok: bool
    successful: int
    failed: int
    journeys: int | None
    answer_p95_ms: float | None
    wall_s: float
    controller_cpu: float | None  # share of one core
    asterisk_cpu: float | None
    why: str


def proc_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def p95(values: tuple[int, ...]) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return float(ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))])


def finished(journey: dict[str, object], call: Call) -> bool:
    path = journey.get("path") or []
    return journey["status"] == "completed" and (
        call.path_must_include is None or call.path_must_include in path  # type: ignore[operator]
    )


def run_step(
    call: Call, route: str, rate: float, seconds: float, lab: AsteriskLab, controller: ControllerProcess
) -> Step:
    calls = max(10, int(rate * seconds))
    script = CallerScript(
        caller_id="+15550000000",
        from_user="lab",
        dialled=f"{call.extension_prefix}{route}",
        dtmf=call.dtmf,
        max_call_ms=15000,
    )
    before = len(controller.journeys()) if route == "ivr" else 0
    ast_pid = lab.server_pid()
    ast0 = proc_cpu(ast_pid) if ast_pid else None
    ctl0 = controller.cpu_seconds()
    started = time.monotonic()
    result = run_load(script, rate=rate, calls=calls, timeout=seconds * 3 + 30)
    wall = time.monotonic() - started
    ctl = (controller.cpu_seconds() - ctl0) / wall if route == "ivr" else None
    ast = (proc_cpu(ast_pid) - ast0) / wall if ast_pid and ast0 is not None else None
    journeys = None
    why = ""
    if route == "ivr":
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            done = [j for j in controller.journeys()[before:] if finished(j, call)]
            if len(done) >= result.successful:
                break
            time.sleep(0.2)
        journeys = len([j for j in controller.journeys()[before:] if finished(j, call)])
    answer = p95(result.answer_times_ms)
    if not result.ok or result.failed or result.successful != calls:
        why = f"sipp: {result.successful}/{calls} ok, {result.failed} failed {result.failure_counters}"
    elif answer is None or answer > 500:
        why = f"answer p95 {answer} ms: Asterisk is queueing calls"
    elif wall > calls / rate + 10:
        why = f"overran: {wall:.1f}s for {calls / rate:.1f}s of calls"
    elif journeys is not None and journeys != calls:
        why = f"controller recorded {journeys} completed journeys (path through {call.path_must_include}) for {calls} calls"
    return Step(
        call.name, route, rate, calls, not why, result.successful, result.failed, journeys, answer, wall, ctl, ast, why
    )


def ceiling(call: Call, route: str, start: float, seconds: float, lab: AsteriskLab, controller: ControllerProcess,
            steps: list[Step]) -> float:  # fmt: skip
    good, bad = 0.0, None
    rate = start
    while bad is None:
        step = run_step(call, route, rate, seconds, lab, controller)
        steps.append(step)
        print(f"  {call.name:5} {route:8} {rate:7.1f} calls/s  {'ok  ' if step.ok else 'FAIL'} {step.why}", flush=True)
        if step.ok:
            good, rate = rate, rate * 1.5
        else:
            bad = rate
        if rate > 2000:
            break
    for _ in range(3):
        if bad is None or bad - good < max(2.0, good * 0.05):
            break
        rate = (good + bad) / 2
        step = run_step(call, route, rate, seconds, lab, controller)
        steps.append(step)
        print(f"  {call.name:5} {route:8} {rate:7.1f} calls/s  {'ok  ' if step.ok else 'FAIL'} {step.why}", flush=True)
        good, bad = (rate, bad) if step.ok else (good, rate)
        time.sleep(1)
    return good


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=8, help="length of each rate step")
    parser.add_argument("--routes", default="dialplan,bare,ivr,pyst2")
    parser.add_argument("--calls", default="menu,short", help="which calls to run: menu, short or both")
    parser.add_argument(
        "--rounds",
        type=int,
        default=2,
        help="search each route's ceiling this many times, interleaved (the order flips every round); "
        "each route keeps its best: whatever else runs on the machine then weighs on every route alike",
    )
    args = parser.parse_args()

    with lab_session_lock():
        return run(args)


def prompt_ms(lab: AsteriskLab, name: str) -> int:
    with wave.open(str(lab.sounds_dir / f"{name}.wav")) as w:
        return int(w.getnframes() * 1000 / w.getframerate())


def build_calls(lab: AsteriskLab) -> dict[str, Call]:
    """Render the menu call's prompts (as ``ivr prompts build`` does) and time its key press."""
    flows, problems = check_paths([REPO / "dialplans" / "bench_menu.yaml"])
    assert not problems, problems
    items = [PromptItem(p.audio_name(), p.text) for p in SYSTEM_PROMPTS]
    items += [PromptItem(p.audio_name(), p.text) for p in flows[0].prompts() if not p.audio]
    build_prompts(items, lab.sounds_dir)
    # The caller presses 2 while "For billing" is read: after the greeting and the menu's prompt.
    greeting = prompt_ms(lab, "ivr/thank-you-for-calling-ce598488")
    prompt = prompt_ms(lab, "ivr/please-choose-from-the-following-14e28566")
    return {
        "short": Call("short", "bench-"),
        "menu": Call("menu", "bench-menu-", (Dtmf("2", at_ms=greeting + prompt + 400),), path_must_include="outage"),
    }


def run(args: argparse.Namespace) -> int:
    lab = AsteriskLab()
    lab.provision()
    lab.install_config()
    target = lab.root / PYST2_IN_ROOT.lstrip("/")
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO / "bench" / "bench_pyst2.py", target)
    target.chmod(0o755)
    known = build_calls(lab)
    calls = [known[name] for name in args.calls.split(",")]
    started_lab = not lab.is_running()
    if started_lab:
        lab.start()
    data = Path(tempfile.mkdtemp(prefix="ivr-bench-"))
    controller = ControllerProcess(flows_dir=REPO / "dialplans", data_dir=data, log_level="WARNING")
    controller.start()
    bare = subprocess.Popen(
        [sys.executable, str(REPO / "bench" / "bare_fastagi.py"), "4575"], stdout=subprocess.PIPE, text=True
    )
    assert bare.stdout is not None and bare.stdout.readline().strip() == "ready"
    steps: list[Step] = []
    results: dict[str, dict[str, float]] = {call.name: {} for call in calls}
    rounds: list[dict[str, dict[str, float]]] = []
    try:
        routes = args.routes.split(",")
        for number in range(max(1, args.rounds)):
            order = routes if number % 2 == 0 else routes[::-1]
            this: dict[str, dict[str, float]] = {}
            for call in calls:
                this[call.name] = {}
                for route in order:
                    print(f"== round {number + 1}: {call.name} call, {route}", flush=True)
                    start = 8 if route == "pyst2" else 40
                    this[call.name][route] = ceiling(call, route, start, args.seconds, lab, controller, steps)
                    results[call.name][route] = max(results[call.name].get(route, 0.0), this[call.name][route])
                print(
                    f"   round {number + 1}, {call.name} call: "
                    + ", ".join(f"{r} {v:.1f}" for r, v in this[call.name].items()),
                    flush=True,
                )
            rounds.append(this)
    finally:
        controller.stop()
        bare.terminate()
        bare.wait(10)
        if started_lab:
            lab.stop()
    for call in calls:
        report(call.name, results[call.name], [s for s in steps if s.call == call.name])
    out = REPO / "bench" / "results"
    out.mkdir(exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    (out / f"calls_per_second-{stamp}.json").write_text(
        json.dumps({"ceilings": results, "rounds": rounds, "steps": [asdict(s) for s in steps]}, indent=2)
    )
    shutil.rmtree(data, ignore_errors=True)
    return 0


def report(call: str, results: dict[str, float], steps: list[Step]) -> None:
    print(f"\n== {call} call: sustained calls/s with zero failed calls (Asterisk 22, SIPp on loopback)")
    for route, rate in results.items():
        print(f"  {route:8} {rate:7.1f}")
    if "ivr" in results and results.get("dialplan"):
        print(f"  ivr / dialplan-only ceiling = {results['ivr'] / results['dialplan']:.2f}  (target >= 0.9)")
    if "ivr" in results and results.get("bare"):
        print(
            f"  ivr / bare FastAGI          = {results['ivr'] / results['bare']:.2f}  (what the controller's logic costs)"
        )
    if "bare" in results and results.get("dialplan"):
        print(
            f"  bare FastAGI / dialplan     = {results['bare'] / results['dialplan']:.2f}  (what FastAGI costs Asterisk)"
        )
    if "ivr" in results and results.get("pyst2"):
        print(f"  ivr / pyst2                 = {results['ivr'] / results['pyst2']:.1f}x (target >= 8x)")
    ivr_steps = [s for s in steps if s.route == "ivr" and s.ok]
    if ivr_steps:
        top = max(ivr_steps, key=lambda s: s.rate)
        print(
            f"  controller CPU at {top.rate:.0f} calls/s: {100 * (top.controller_cpu or 0):.0f}% of one core "
            f"(Asterisk {100 * (top.asterisk_cpu or 0):.0f}%)"
        )


if __name__ == "__main__":
    sys.exit(main())
