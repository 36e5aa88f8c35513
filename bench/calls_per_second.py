#!/usr/bin/env python3
"""Calls per second sustained with zero failed calls, routes side by side on one Asterisk.

* ``dialplan`` — Asterisk alone (answer, play a short file, set variables, hang up): the ceiling.
* ``ivr``      — the same call through our FastAGI controller (this checkout) running the ``bench`` flow.
* ``ivr-base`` — the same, with the controller's code from ``--base-code`` (another checkout, e.g.
  main): before/after measured in one session, interleaved, instead of against an old table.
* ``bare``     — the same two AGI commands from ``bare_fastagi.py``, the thinnest FastAGI server
  there can be: what FastAGI itself costs Asterisk, before any controller logic.
* ``pyst2``    — the same AGI commands from a classic process-per-call pyst2 script.

Each round searches every route's ceiling, the order flipping every round. Round 1 ramps x1.5
until a step fails, then bisects; later rounds start at 85% of the route's first ceiling and climb
in ``--step`` increments (5% by default) to the first failure, then bisect once: the ceilings are
resolved to a few percent, and ivr / bare is reported pair by pair (each round's two ceilings
were measured minutes apart), with the median and spread of the pairs.

A step passes when SIPp reports every call successful, answers stay fast (p95 INVITE->200 under
500 ms: Asterisk keeping up, not queueing), the run does not overrun, and, for ``ivr``, the
controller itself recorded every call as a completed journey (SIPp success alone does not prove
the IVR ran). A failed step is explained: each failed call is classified from SIPp's error log
(which SIP message, in which phase, from which side: ``bench/loadstats.py``), and for ``ivr`` the
controller's own histograms are scraped from ``/metrics`` before and after the step (how late its
first AGI command was, control-command round trips, event-loop lag, caller lookups).

After the rounds, each ``ivr`` route runs at 80% of its median ceiling ``--target-runs`` times
(3 by default, the routes interleaved, the order flipping every run, a new controller each): the
issue's latency targets (control-command round trip and loop lag p99 <= 5 ms over every run, no
failed call) and the controller's CPU per call, its median and range (one 10 s step cannot resolve
a few percent of CPU here), and ``ivr`` against ``ivr-base`` run by run.

Every call carries a real E.164 caller id (the lab's ``bench`` endpoint trusts
P-Asserted-Identity, as the trunk does): ``--known`` customers are created in each controller's
database before its steps, and each step's calls cycle through them, one call in
``1 / --new-callers`` coming from a number never seen before (a first call: the controller creates
the customer). So ``ivr`` runs the caller lookup before its first command, as a customer's call does.

``--pin``: Asterisk and SIPp run on CPU 0 only, and the FastAGI server of each route (the bare
server, the controller, its PostgreSQL) on CPU 1 only: the two sides on cores of their own, as
when the controller runs on another host than Asterisk (FastAGI's usual deployment). Without it
everything shares both cores, and every millisecond of the controller's CPU is taken from Asterisk.

Two calls (``--calls``):

* ``short`` — answer, one short file, two variables, hang up (2 AGI commands): the worst case for
  any AGI route, nearly all of the call is set-up and tear-down. ivr / pyst2 is reported here only.
* ``menu``  — what a short real IVR call does (flow ``dialplans/bench_menu.yaml``): a greeting, a
  two-option menu spoken from fragments that the caller interrupts with a key (RFC 4733, at the
  same moment on every route), the reply for that key, hang up (about 10 AGI commands, 4-5 s).
  For ``ivr`` a step passes only if every journey took the key's branch.

Run: ``.venv/bin/python bench/calls_per_second.py [--seconds 6] [--rounds 3] [--calls short]
[--routes bare,ivr] [--database sqlite|postgresql] [--base-code /work/main --routes bare,ivr,ivr-base]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import wave
from dataclasses import asdict, dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from sqlalchemy import insert  # noqa: E402

from bench.loadstats import (  # noqa: E402
    Buckets,
    Spread,
    classify_failures,
    count,
    histogram_delta,
    histograms,
    quantile,
    ratio_summary,
)
from ivr.flow.loader import check_paths  # noqa: E402
from ivr.flow.model import SYSTEM_PROMPTS  # noqa: E402
from ivr.prompts.build import PromptItem, build_prompts  # noqa: E402
from ivr.store.journeys import make_engine  # noqa: E402
from ivr.store.models import CustomerIdentityRow, CustomerRow  # noqa: E402
from lab.asterisk import AsteriskLab  # noqa: E402
from lab.controller import ControllerProcess  # noqa: E402
from lab.lock import lab_session_lock  # noqa: E402
from lab.postgres import PostgresServer  # noqa: E402
from lab.sipp import CallerScript, Dtmf, run_load  # noqa: E402

PYST2_IN_ROOT = "/usr/local/share/ivr-lab/bench_pyst2.py"
METRICS_TOKEN = "bench-metrics-" + "b" * 24
#: The controller's histograms a step reports (name in /metrics -> short name).
PROBES = {
    "ivr_agi_first_command_seconds": "first",
    "ivr_agi_control_command_seconds": "control",
    "ivr_event_loop_lag_seconds": "lag",
    "ivr_caller_lookup_seconds": "lookup",
    "ivr_flow_step_seconds": "flow",
    "ivr_journey_batch_seconds": "batch",
}


@dataclass(frozen=True)
class Call:
    """What the caller does: which lab extensions, when they press a key, what the flow must show."""

    name: str
    extension_prefix: str  # the lab extension is <prefix><route>
    dtmf: tuple[Dtmf, ...] = ()
    path_must_include: str | None = None  # a step every ivr journey must have passed


class CallerPool:
    """The caller ids of the bench's calls: known customers, and now and then a first-time caller.

    Why: the controller's call path starts with the caller lookup (one statement for a known
    number; that plus a customer's creation for a new one), and a bench whose calls all come from
    ``lab`` (not a phone number) never ran it. Known numbers are ``+1555200NNNN``, new ones
    ``+1555300NNNN``, each new number used once in the whole bench run.
    """

    def __init__(self, known: int, new_share: float) -> None:
        if known < 1 or not 0 <= new_share < 1:
            raise ValueError("known >= 1 and 0 <= new_share < 1")
        self.known = [f"+1555200{n:04d}" for n in range(known)]
        self.every = round(1 / new_share) if new_share else 0  # one new caller in `every` calls
        self._known = itertools.cycle(self.known)
        self._new = (f"+1555300{n:04d}" for n in itertools.count())

    def take(self, calls: int) -> tuple[str, ...]:
        """The caller ids of a step's ``calls`` calls, in order."""
        return tuple(
            next(self._new) if self.every and n % self.every == self.every - 1 else next(self._known)
            for n in range(calls)
        )

    async def seed(self, url: str) -> None:
        """Create the known customers (each with their phone identity) in one transaction."""
        engine = make_engine(url)
        now = time.time()
        ids = [f"bench{n:027d}" for n in range(len(self.known))]
        try:
            async with engine.begin() as conn:
                await conn.execute(
                    insert(CustomerRow),
                    [{"id": i, "verified": False, "created_at": now, "updated_at": now} for i in ids],
                )
                await conn.execute(
                    insert(CustomerIdentityRow),
                    [
                        {"kind": "phone", "value": number, "customer_id": i, "created_at": now}
                        for i, number in zip(ids, self.known, strict=True)
                    ],
                )
        finally:
            await engine.dispose()


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
    failures: dict[str, int] = field(default_factory=dict)  # classified failed calls
    probes: dict[str, float | None] = field(default_factory=dict)  # "<probe> p99" -> seconds

    @property
    def cpu_ms_per_call(self) -> float | None:
        if self.controller_cpu is None or not self.calls:
            return None
        return 1000 * self.controller_cpu * self.wall_s / self.calls


class Controller:
    """One ``ivr serve`` for the ``ivr`` routes: this checkout's code or ``code`` (another checkout),
    on SQLite in its own data folder or on a database of the bench's PostgreSQL."""

    def __init__(self, route: str, code: Path | None, pg: PostgresServer | None, pool: CallerPool) -> None:
        self.route = route
        self.data = Path(tempfile.mkdtemp(prefix=f"ivr-bench-{route}-"))
        env = {"IVR_WEB_METRICS_TOKEN": METRICS_TOKEN, "IVR_SPEECH_ENGINE": "off"}
        if code is not None:  # that checkout's ivr/ shadows the installed one
            env["PYTHONPATH"] = str(code)
        self.pg = pg
        self.database = ""
        url = ""
        if pg is not None:
            self.database = f"bench_{route.replace('-', '_')}_{int(time.time())}"
            url = env["IVR_DATABASE_URL"] = pg.create_database(self.database)
        self.process = ControllerProcess(flows_dir=REPO / "dialplans", data_dir=self.data, log_level="WARNING", env=env)
        self.process.start(timeout=60)
        self.port = self._web_port()
        # the controller has migrated its database by now: its known callers go in beside it
        asyncio.run(pool.seed(url or f"sqlite+aiosqlite:///{self.process.db_path}"))

    def _web_port(self) -> int:
        # WARNING hides the "listening" line: read the port from the process's sockets instead
        deadline = time.monotonic() + 20
        assert self.process.process is not None
        pid = self.process.process.pid
        while time.monotonic() < deadline:
            for port in _listening_ports(pid):
                if port != self.process.agi_port:
                    return port
            time.sleep(0.1)
        raise RuntimeError("the controller's web port was not found")

    def metrics(self) -> dict[str, Buckets]:
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}
        )
        with urllib.request.urlopen(request, timeout=10) as answer:
            return histograms(answer.read().decode())

    def completed(self, call: Call) -> int:
        """Journeys recorded as completed (through ``call.path_must_include`` when it is set)."""
        if self.pg is not None:
            where = "status = 'completed'"
            if call.path_must_include:
                where += f" AND (data->'path')::jsonb ? '{call.path_must_include}'"
            return int(self.pg.psql(f"SELECT count(*) FROM journeys WHERE {where}", self.database).strip() or 0)
        return len([j for j in self.process.journeys() if finished(j, call)])

    def stop(self) -> None:
        self.process.stop()
        shutil.rmtree(self.data, ignore_errors=True)
        if self.pg is not None:
            self.pg.drop_database(self.database)


def _listening_ports(pid: int) -> list[int]:
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    ports = []
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        parts = line.split()
        if parts[3] == "0A" and parts[9] in inodes:  # LISTEN
            ports.append(int(parts[1].split(":")[1], 16))
    return ports


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


def extension(route: str) -> str:
    return "ivr" if route.startswith("ivr") else route


#: ``--pin``: the cores of Asterisk's side (Asterisk, SIPp, this script) and of the FastAGI side
ASTERISK_CPUS, FASTAGI_CPUS = {0}, {1}


def pin(pid: int, cpus: set[int]) -> None:
    """Every thread of ``pid`` onto ``cpus``; threads it starts later inherit it."""
    for tid in os.listdir(f"/proc/{pid}/task"):
        with contextlib.suppress(ProcessLookupError, FileNotFoundError):  # a thread that ended meanwhile
            os.sched_setaffinity(int(tid), cpus)


def run_step(
    call: Call,
    route: str,
    rate: float,
    seconds: float,
    lab: AsteriskLab,
    controller: Controller | None,
    pool: CallerPool,
) -> Step:
    calls = max(10, int(rate * seconds))
    script = CallerScript(
        from_user="bench",  # the lab endpoint that takes the caller's number from P-Asserted-Identity
        caller_ids=pool.take(calls),
        dialled=f"{call.extension_prefix}{extension(route)}",
        dtmf=call.dtmf,
        max_call_ms=15000,
    )
    before = controller.completed(call) if controller else 0
    scraped = controller.metrics() if controller else {}
    ast_pid = lab.server_pid()
    ast0 = proc_cpu(ast_pid) if ast_pid else None
    ctl0 = controller.process.cpu_seconds() if controller else 0.0
    started = time.monotonic()
    result = run_load(script, rate=rate, calls=calls, timeout=seconds * 3 + 30)  # a failed run keeps its logs
    wall = time.monotonic() - started
    ctl = (controller.process.cpu_seconds() - ctl0) / wall if controller else None
    ast = (proc_cpu(ast_pid) - ast0) / wall if ast_pid and ast0 is not None else None
    journeys = None
    why = ""
    probes: dict[str, float | None] = {}
    if controller is not None:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            journeys = controller.completed(call) - before
            if journeys >= result.successful:
                break
            time.sleep(0.2)
        after = controller.metrics()
        for name, short in PROBES.items():
            if name in after:
                delta = histogram_delta(scraped.get(name), after[name])
                probes[f"{short} p99"] = quantile(delta, 0.99)
                probes[f"{short} n"] = count(delta)
    failures = {str(k): v for k, v in classify_failures(result.errors).most_common()}
    explained = sum(v for k, v in failures.items() if not k.startswith("after the end"))
    if result.failed > explained:
        failures[f"not in SIPp's error log (logs: {result.logs_dir})"] = result.failed - explained
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
        call.name,
        route,
        rate,
        calls,
        not why,
        result.successful,
        result.failed,
        journeys,
        answer,
        wall,
        ctl,
        ast,
        why,
        failures,
        probes,
    )


def ms(value: float | None) -> str:
    if value is None:
        return "-"
    return ">5s" if value == float("inf") else f"{value * 1000:.1f}"


def show(step: Step) -> None:
    line = f"  {step.call:5} {step.route:8} {step.rate:7.1f} calls/s  {'ok  ' if step.ok else 'FAIL'} {step.why}"
    if step.probes:
        line += "\n      p99 ms: " + ", ".join(
            f"{k.removesuffix(' p99')} {ms(v)}" for k, v in step.probes.items() if k.endswith("p99")
        )
        if step.cpu_ms_per_call is not None:
            line += (
                f"; controller {100 * (step.controller_cpu or 0):.0f}% of a core, {step.cpu_ms_per_call:.2f} ms/call"
            )
    for failure, n in list(step.failures.items())[:3]:
        line += f"\n      {n} x {failure}"
    print(line, flush=True)


def ceiling(
    call: Call,
    route: str,
    start: float,
    seconds: float,
    lab: AsteriskLab,
    controller: Controller | None,
    steps: list[Step],
    *,
    hint: float | None,
    step_factor: float,
    pool: CallerPool,
) -> float:
    """The highest rate that passed. Without ``hint``: x1.5 from ``start``, then bisect to 5%.
    With it (a ceiling found before): from 85% of it up by ``step_factor``, then bisect once."""
    good, bad = 0.0, None
    rate, factor = (start, 1.5) if hint is None else (hint * 0.85, step_factor)
    while bad is None:
        step = run_step(call, route, rate, seconds, lab, controller, pool)
        steps.append(step)
        show(step)
        if step.ok:
            good, rate = rate, rate * factor
        else:
            bad = rate
        if rate > 2000:
            break
    resolution = 0.05 if hint is None else (step_factor - 1) / 2
    for _ in range(4):
        if bad is None or bad - good < max(2.0, good * resolution):
            break
        rate = (good + bad) / 2
        step = run_step(call, route, rate, seconds, lab, controller, pool)
        steps.append(step)
        show(step)
        good, bad = (rate, bad) if step.ok else (good, rate)
        time.sleep(1)
    return good


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=6, help="length of each rate step")
    parser.add_argument("--routes", default="dialplan,bare,ivr,pyst2")
    parser.add_argument("--calls", default="short", help="which calls to run: short, menu or both")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (the order flips every round)")
    parser.add_argument("--step", type=float, default=1.05, help="rate factor between steps near a known ceiling")
    parser.add_argument("--database", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--base-code", type=Path, help="a checkout whose controller runs as route ivr-base")
    parser.add_argument("--no-target-run", action="store_true", help="skip the runs at 80%% of the ivr ceiling")
    parser.add_argument("--target-runs", type=int, default=3, help="runs at 80%% of each ivr route's ceiling")
    parser.add_argument("--known", type=int, default=1000, help="known customers the calls come from")
    parser.add_argument("--new-callers", type=float, default=0.2, help="share of calls from a new number")
    parser.add_argument(
        "--pin", action="store_true", help="Asterisk and SIPp on CPU 0, each FastAGI server (and PostgreSQL) on CPU 1"
    )
    args = parser.parse_args()
    if "ivr-base" in args.routes.split(",") and args.base_code is None:
        parser.error("route ivr-base needs --base-code")

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
    # A controller imports ivr from its working folder first: run them all from a neutral one, so
    # ivr-base's PYTHONPATH (and this checkout's install for ivr) decide which code runs.
    os.chdir(tempfile.gettempdir())
    lab = AsteriskLab()
    lab.provision()
    lab.install_config()
    target = lab.root / PYST2_IN_ROOT.lstrip("/")
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO / "bench" / "bench_pyst2.py", target)
    target.chmod(0o755)
    known = build_calls(lab)
    calls = [known[name] for name in args.calls.split(",")]
    if args.pin:  # SIPp, started from here, inherits it
        os.sched_setaffinity(0, ASTERISK_CPUS)
    started_lab = not lab.is_running()
    if started_lab:
        lab.start()
    if args.pin:
        server = lab.server_pid()
        assert server is not None, "the lab's Asterisk has no pid to pin"
        pin(server, ASTERISK_CPUS)
    pg = PostgresServer().start() if args.database == "postgresql" else None
    if pg is not None and args.pin:  # its backends are forked from the postmaster: they inherit
        pin(int((pg.data_dir / "postmaster.pid").read_text().split()[0]), FASTAGI_CPUS)
    bare = subprocess.Popen(
        [sys.executable, str(REPO / "bench" / "bare_fastagi.py"), "4575"], stdout=subprocess.PIPE, text=True
    )
    assert bare.stdout is not None and bare.stdout.readline().strip() == "ready"
    if args.pin:
        pin(bare.pid, FASTAGI_CPUS)
    steps: list[Step] = []
    routes = args.routes.split(",")
    rounds: list[dict[str, dict[str, float]]] = []
    first: dict[tuple[str, str], float] = {}
    target_steps: list[Step] = []
    pool = CallerPool(args.known, args.new_callers)
    try:
        for number in range(max(1, args.rounds)):
            order = routes if number % 2 == 0 else routes[::-1]
            this: dict[str, dict[str, float]] = {}
            for call in calls:
                this[call.name] = {}
                for route in order:
                    print(
                        f"== round {number + 1}: {call.name} call, {route} ({args.database}{', pinned' if args.pin else ''})",
                        flush=True,
                    )
                    controller = start_controller(route, args, pg, pool)
                    try:
                        start = 8 if route == "pyst2" else 40
                        found = ceiling(
                            call,
                            route,
                            start,
                            args.seconds,
                            lab,
                            controller,
                            steps,
                            hint=first.get((call.name, route)),
                            step_factor=args.step,
                            pool=pool,
                        )
                    finally:
                        if controller is not None:
                            controller.stop()
                    this[call.name][route] = found
                    first.setdefault((call.name, route), found)
                print(
                    f"   round {number + 1}, {call.name} call: "
                    + ", ".join(f"{r} {v:.1f}" for r, v in this[call.name].items()),
                    flush=True,
                )
            rounds.append(this)
        if not args.no_target_run:
            for call in calls:
                rates: dict[str, float] = {}
                for route in [r for r in routes if r.startswith("ivr")]:
                    ceilings = [r[call.name][route] for r in rounds if r[call.name].get(route)]
                    if ceilings:
                        rates[route] = 0.8 * statistics.median(ceilings)
                for run_number in range(args.target_runs):
                    order = list(rates) if run_number % 2 == 0 else list(rates)[::-1]
                    for route in order:
                        rate = rates[route]
                        print(
                            f"== {call.name} call, {route} at 80% of its median ceiling: {rate:.1f} calls/s "
                            f"(run {run_number + 1} of {args.target_runs})",
                            flush=True,
                        )
                        controller = start_controller(route, args, pg, pool)
                        try:
                            step = run_step(call, route, rate, max(args.seconds, 10), lab, controller, pool)
                        finally:
                            if controller is not None:
                                controller.stop()
                        show(step)
                        target_steps.append(step)
    finally:
        bare.terminate()
        bare.wait(10)
        if pg is not None:
            pg.stop()
        if started_lab:
            lab.stop()
    for call in calls:
        report(call.name, routes, [r[call.name] for r in rounds], [s for s in target_steps if s.call == call.name])
    out = REPO / "bench" / "results"
    out.mkdir(exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    (out / f"calls_per_second-{stamp}.json").write_text(
        json.dumps(
            {
                "database": args.database,
                "rounds": rounds,
                "steps": [asdict(s) for s in steps],
                "at_80_percent": [asdict(s) for s in target_steps],
            },
            indent=2,
            default=str,
        )
    )
    return 0


def start_controller(
    route: str, args: argparse.Namespace, pg: PostgresServer | None, pool: CallerPool
) -> Controller | None:
    if route not in ("ivr", "ivr-base"):
        return None
    controller = Controller(route, args.base_code if route == "ivr-base" else None, pg, pool)
    if args.pin:
        assert controller.process.process is not None
        pin(controller.process.process.pid, FASTAGI_CPUS)
    return controller


def pairs(rounds: list[dict[str, float]], top: str, bottom: str) -> list[tuple[float, float]]:
    return [(r[top], r[bottom]) for r in rounds if top in r and bottom in r]


def report(call: str, routes: list[str], rounds: list[dict[str, float]], at_80: list[Step]) -> None:
    print(f"\n== {call} call: sustained calls/s with zero failed calls (Asterisk 22, SIPp on loopback)")
    print("  route    " + "".join(f"  round {n + 1:<2}" for n in range(len(rounds))) + "   median")
    for route in routes:
        values = [r.get(route, 0.0) for r in rounds]
        print(f"  {route:8} " + "".join(f"{v:10.1f}" for v in values) + f" {statistics.median(values):8.1f}")
    targets = {("ivr", "bare"): "target median >= 0.95 (SQLite) / 0.9 (PostgreSQL), no round below 0.9"}
    for top, bottom, why in (
        ("ivr", "bare", "what the controller's logic costs"),
        ("ivr", "ivr-base", "this checkout against the base code, round by round"),
        ("ivr-base", "bare", "the base code's controller"),
        ("bare", "dialplan", "what FastAGI costs Asterisk"),
        ("ivr", "dialplan", "the controller against Asterisk alone"),
    ):
        found = pairs(rounds, top, bottom)
        if found:
            summary = ratio_summary(found)
            note = targets.get((top, bottom), why)
            print(f"  {top} / {bottom}: {summary}  ({note})")
    if call == "short" and pairs(rounds, "ivr", "pyst2"):
        print(f"  ivr / pyst2: {ratio_summary(pairs(rounds, 'ivr', 'pyst2'))}  (short call only)")
    by_route: dict[str, list[Step]] = {}
    for step in at_80:
        by_route.setdefault(step.route, []).append(step)
    for route, steps in by_route.items():
        worst: dict[str, float | None] = {}
        for probe in PROBES.values():
            seen = [v for s in steps if (v := s.probes.get(f"{probe} p99")) is not None]
            worst[probe] = max(seen) if seen else None
        cpus = tuple(s.cpu_ms_per_call for s in steps if s.cpu_ms_per_call is not None)
        print(
            f"  {route} at 80% of its median ceiling ({len(steps)} runs, {steps[0].rate:.0f} calls/s): "
            f"{sum(s.successful for s in steps)}/{sum(s.calls for s in steps)} calls ok, "
            f"{sum(s.failed for s in steps)} failed; worst p99 control command {ms(worst['control'])} ms, "
            f"loop lag {ms(worst['lag'])} ms, first command {ms(worst['first'])} ms, lookup {ms(worst['lookup'])} ms "
            f"(targets: <= 5 ms, 0 failed); CPU per call {Spread(cpus) if cpus else '-'} ms (target <= 0.8)"
        )
    runs = list(zip(by_route.get("ivr", []), by_route.get("ivr-base", []), strict=False))
    cpu_pairs = [(a.cpu_ms_per_call, b.cpu_ms_per_call) for a, b in runs if a.cpu_ms_per_call and b.cpu_ms_per_call]
    if cpu_pairs:
        print(f"  ivr / ivr-base CPU per call at 80%: {ratio_summary(cpu_pairs)}  (run by run)")


if __name__ == "__main__":
    sys.exit(main())
