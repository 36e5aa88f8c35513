"""``ivr``: serve | check | simulate | test | prompts build | flow diagram | config show | journeys | db |
customers | agents | report | funnel."""

from __future__ import annotations

import argparse
import asyncio
import csv
import io
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from ivr.config import Config, load_config
from ivr.errors import IvrError

if TYPE_CHECKING:
    from ivr.flow.profile import CallerProfile


def _config(args: argparse.Namespace) -> Config:
    config = load_config(getattr(args, "config", None))
    overrides = {k: v for k, v in vars(args).items() if k in ("agi_host", "agi_port") and v is not None}
    return config.with_overrides(**overrides)


def cmd_serve(args: argparse.Namespace) -> int:
    from ivr.app import serve
    from ivr.logs import setup_logging

    config = _config(args)
    setup_logging(config.log.level)
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(serve(config))
    from ivr.shutdown import exit_leaving, stragglers

    if threads := stragglers():  # a database driver thread the interpreter would join for ever
        exit_leaving(threads)
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    from ivr.flow.library import queues_named
    from ivr.flow.loader import check_paths
    from ivr.routing.queues_conf import check_queues
    from ivr.routing.rules import RoutingRules

    config = _config(args)
    paths = [Path(p) for p in args.paths] or [Path(config.flows.dir)]
    flows, flow_problems = check_paths(paths)
    queues = check_queues(RoutingRules.from_settings(config.routing), queues_named(flows), config.routing.queues_conf)
    if queues.warning:
        print(f"warning: {queues.warning}", file=sys.stderr)
    problems = [*map(str, flow_problems), *queues.problems]
    for problem in problems:
        print(problem)
    for flow in flows:
        print(f"ok: {flow.name}@{flow.version} ({len(flow.steps)} steps) {flow.source}", file=sys.stderr)
    if problems:
        print(f"{len(problems)} problem(s)", file=sys.stderr)
        return 1
    return 0


def cmd_prompts_build(args: argparse.Namespace) -> int:
    from ivr.flow.loader import check_paths
    from ivr.flow.model import SYSTEM_PROMPTS
    from ivr.prompts.build import PromptItem, build_prompts

    config = _config(args)
    flows, problems = check_paths([Path(config.flows.dir)])
    for problem in problems:
        print(f"skipped: {problem}", file=sys.stderr)
    prefix = config.prompts.prefix
    items = [PromptItem(p.audio_name(prefix), p.text) for p in SYSTEM_PROMPTS]
    for flow in flows:
        items += [PromptItem(p.audio_name(prefix), p.text) for p in flow.prompts() if not p.audio]
    out = args.out or config.prompts.dir
    if not out:
        print("error: give --out DIR or set prompts.dir (Asterisk's sounds directory)", file=sys.stderr)
        return 2

    def progress(done: int, total: int, name: str) -> None:
        print(f"[{done}/{total}] {name}", file=sys.stderr)

    report = build_prompts(
        items, Path(out), engine=args.engine or config.prompts.engine, progress=progress, force=args.force
    )
    print(
        f"{len(report.rendered)} rendered, {len(report.skipped)} up to date, engine {report.engine}, "
        f"{report.seconds:.1f}s -> {out}"
    )
    return 0


def cmd_flow_diagram(args: argparse.Namespace) -> int:
    from ivr.flow.diagram import mermaid
    from ivr.flow.loader import check_paths

    flows, _ = check_paths([Path(_config(args).flows.dir)])
    by_name = {f.name: f for f in flows}
    if args.name not in by_name:
        print(f"error: no valid flow {args.name!r} (found: {', '.join(sorted(by_name))})", file=sys.stderr)
        return 1
    print(mermaid(by_name[args.name]), end="")
    return 0


async def _read_profile(config: Config, caller: str) -> CallerProfile | None:
    """The caller's profile as a call would load it, reading only: no migration, no new customer,
    and an SQLite file that does not exist is not created."""
    from ivr.store.customers import CustomerStore
    from ivr.store.journeys import make_engine

    engine = make_engine(config.database_url)
    try:
        return await CustomerStore(engine, country_code=config.phone.country_code).load_profile(phone=caller)
    except Exception as exc:  # a database the simulator cannot read: say so and go on unknown
        print(f"warning: cannot read the caller's profile ({exc}); simulated as unknown", file=sys.stderr)
        return None
    finally:
        await engine.dispose()


def cmd_simulate(args: argparse.Namespace) -> int:
    from ivr.flow.library import FlowLibrary
    from ivr.flow.personalize import DAY
    from ivr.flow.simulate import simulate
    from ivr.routing.rules import RoutingRules

    config = _config(args)
    library = FlowLibrary(Path(args.flows or config.flows.dir))
    for problem in library.reload().problems:
        print(f"warning: {problem}", file=sys.stderr)
    if args.flow not in library.names():
        raise IvrError(f"no valid flow {args.flow!r} (found: {', '.join(library.names())})")
    url = config.database_url
    missing = url.startswith("sqlite") and ":memory:" not in url and not Path(url.split("///", 1)[-1]).exists()
    if missing and args.caller:
        print("warning: no database yet: the caller is simulated as unknown", file=sys.stderr)
    profile = asyncio.run(_read_profile(config, args.caller)) if args.caller and not missing else None
    matchers = None
    words = [i for i in args.input if i.strip() and not i.strip().isdigit() and i.strip() not in ("*", "#")]
    if args.channel == "voice" and words and config.speech.matcher == "semantic":
        from ivr.speech.semantic import warm_examples
        from ivr.speech.service import IntentMatchers

        try:  # the matcher ivr serve uses for speech; about 2 s to load
            matchers = IntentMatchers(config.speech.language, encoder=warm_examples())
        except IvrError as exc:
            print(f"warning: semantic matcher unavailable ({exc}); words matched by the word rules", file=sys.stderr)
    transcript = simulate(
        library,
        args.flow,
        caller=args.caller,
        channel=args.channel,
        inputs=args.input,
        profile=profile,
        routing=RoutingRules.from_settings(config.routing),
        half_life=config.personalize.half_life_days * DAY,
        matchers=matchers,
        holdout=config.personalize.holdout,
    )
    print(transcript.text(), end="")
    print(f"path: {' > '.join(transcript.path)}\nstatus: {transcript.status}")
    return 0


def cmd_test(args: argparse.Namespace) -> int:
    from ivr.flow.library import FlowLibrary
    from ivr.flow.scenarios import parse_scenarios, run_scenario, scenario_files
    from ivr.routing.rules import RoutingRules

    config = _config(args)
    root = Path(args.path or config.flows.dir)
    library = FlowLibrary(root if root.is_dir() else root.parent)
    problems = [str(p) for p in library.reload().problems]
    routing = RoutingRules.from_settings(config.routing)
    passed = failed = 0
    files = scenario_files(root)
    if not files:
        problems.append(f"{root}: no scenario files (scenarios/*.yaml or *.scenarios.yaml)")
    for file in files:
        scenarios, bad = parse_scenarios(file.read_bytes(), str(file))
        problems += map(str, bad)
        for scenario in scenarios:
            outcome = run_scenario(library, scenario, routing)
            if outcome.ok:
                passed += 1
                print(f"ok    {file.name}: {scenario.name}")
            else:
                failed += 1
                print(f"FAIL  {file.name}: {scenario.name}")
                for problem in outcome.problems:
                    print(f"  {problem}")
    for problem in problems:
        print(problem)
    print(f"{passed} passed, {failed} failed, {len(problems)} problem(s)", file=sys.stderr)
    return 1 if failed or problems else 0


def cmd_config_show(args: argparse.Namespace) -> int:
    config = _config(args)
    for key, value, source, description in config.rows():
        print(f"{key:24} {value:40} [{source}]\n{'':24} {description}")
    return 0


def cmd_journeys(args: argparse.Namespace) -> int:
    from ivr.store.journeys import JourneyStore, make_engine

    async def run() -> None:
        store = JourneyStore(make_engine(_config(args).database_url))
        await store.start()
        try:
            if args.id:
                journey = await store.get(args.id)
                if journey is None:
                    raise IvrError(f"no journey {args.id}")
                print(json.dumps(journey.to_dict(), indent=2))
                for event in await store.interactions(args.id):
                    print(f"  {event['kind']:16} {event['step'] or '-':20} {json.dumps(event['data'])}")
            else:
                for j in await store.recent(args.limit):
                    print(f"{j.id}  {j.channel:5} {j.caller or '-':14} {j.flow:12} {j.status:10} {' > '.join(j.path)}")
        finally:
            await store.stop()

    asyncio.run(run())
    return 0


def cmd_db(args: argparse.Namespace) -> int:
    from ivr.store import schema
    from ivr.store.journeys import make_engine

    config = _config(args)
    if config.database_url.startswith("sqlite"):
        config.data_dir.mkdir(parents=True, exist_ok=True)

    async def run() -> str | None:
        engine = make_engine(config.database_url)
        try:
            if args.db_cmd == "upgrade":
                await schema.upgrade(engine, args.revision)
            return await schema.current(engine)
        finally:
            await engine.dispose()

    print(f"database at revision {asyncio.run(run()) or '(empty)'} (code expects {schema.head()})")
    return 0


def cmd_customers(args: argparse.Namespace) -> int:
    from ivr.store.customers import CustomerStore
    from ivr.store.journeys import JourneyStore, make_engine

    config = _config(args)

    async def run() -> int:
        store = JourneyStore(make_engine(config.database_url))
        await store.start()
        try:
            customers = CustomerStore(store.engine, country_code=config.phone.country_code)
            who = args.who
            customer_id = await customers.find("phone", who) if who.startswith("+") or who.isdigit() else who
            profile = await customers.load_profile(customer_id=customer_id) if customer_id else None
            if profile is None:
                print(f"error: no customer {who}", file=sys.stderr)
                return 1
            print(json.dumps(await customers.get(profile.customer_id), indent=2))
            print(f"contacts: {profile.contacts}  verified: {profile.verified}")
            for o in profile.options:
                print(f"  option {o.flow}.{o.step}.{o.option}: chosen {o.count}x, score {o.score:.2f}")
            for slot in profile.slots:
                print(f"  slot {slot.name} = {slot.value} ({slot.channel})")
            page = await customers.timeline(profile.customer_id, limit=args.limit)
            for e in page.entries:
                print(f"  {e['at']} {e['channel']:5} {e['kind']:16} {e['step'] or '-':20} {json.dumps(e['data'])}")
            return 0
        finally:
            await store.stop()

    return asyncio.run(run())


def _skills(values: list[str]) -> dict[str, int]:
    """``billing`` or ``billing:1`` (skill:penalty; 0 primary, 1 secondary, 2 backup)."""
    skills: dict[str, int] = {}
    for value in values:
        name, _, penalty = value.partition(":")
        if not name.replace("-", "").replace("_", "").isalnum() or name == "general":
            raise IvrError(f"bad skill {name!r}: letters, digits, '-' or '_' (and not 'general')")
        try:
            skills[name] = int(penalty or 0)
        except ValueError:
            raise IvrError(f"bad penalty in {value!r}: skill:penalty, e.g. billing:1") from None
    return skills


#: ``ivr agents add|set --phone``: what rings for an agent (ivr.store.agents.PHONES)
PHONE_CHOICES = ("sip", "browser")
PHONE_HELP = (
    "sip: a desk or soft SIP phone registered as --endpoint (default); browser: the desktop's own "
    "softphone (WebRTC, endpoint <endpoint>-webrtc, a SIP password made at each desktop sign-in)"
)


def cmd_agents(args: argparse.Namespace) -> int:
    import getpass

    from ivr.store.agents import AgentStore
    from ivr.store.journeys import JourneyStore, make_engine
    from ivr.web.agents_auth import MAX_USERNAME, WeakPassword, hash_password

    config = _config(args)
    if config.database_url.startswith("sqlite"):
        config.data_dir.mkdir(parents=True, exist_ok=True)

    def password() -> str:
        if args.password_stdin:
            return sys.stdin.readline().rstrip("\n")
        first = getpass.getpass("password: ")
        if getpass.getpass("again: ") != first:
            raise IvrError("passwords differ")
        return first

    async def run() -> int:
        store = JourneyStore(make_engine(config.database_url))
        await store.start()
        try:
            agents = AgentStore(store.engine)
            if args.agents_cmd == "list":
                for a in await agents.all():
                    skills = ", ".join(f"{k}:{v}" for k, v in sorted(a["skills"].items()))
                    off = "  (disabled)" if a["disabled"] else ""
                    print(
                        f"{a['id']}  {a['username']:16} {a['role']:10} {a['endpoint']:12} {a['phone']:8} {skills}  "
                        f"{a['display_name']}{off}"
                    )
                return 0
            if args.agents_cmd == "set":
                if not await agents.set_phone(args.username, args.phone):
                    raise IvrError(f"no agent {args.username!r}")
                print(f"agent {args.username}: phone {args.phone}; their sessions are closed (sign in again)")
                return 0
            if args.agents_cmd in ("disable", "enable"):
                if not await agents.set_disabled(args.username, args.agents_cmd == "disable"):
                    raise IvrError(f"no agent {args.username!r}")
                done = "disabled; their sessions are closed" if args.agents_cmd == "disable" else "enabled"
                print(f"agent {args.username} {done}")
                return 0
            if args.agents_cmd == "add" and len(args.username) > MAX_USERNAME:
                raise IvrError(f"user names have at most {MAX_USERNAME} characters")
            if args.agents_cmd == "add" and args.role == "agent" and not args.endpoint:
                raise IvrError("an agent needs --endpoint (the PJSIP endpoint of their softphone)")
            try:
                hashed = hash_password(password())
            except WeakPassword as exc:
                raise IvrError(str(exc)) from None
            if args.agents_cmd == "passwd":
                if not await agents.set_password(args.username, hashed):
                    raise IvrError(f"no agent {args.username!r}")
                print(f"password of {args.username} changed; their sessions are closed")
                return 0
            agent_id = await agents.add(
                username=args.username,
                display_name=args.name or args.username,
                password_hash=hashed,
                endpoint=args.endpoint,
                skills=_skills(args.skill),
                max_chats=args.max_chats,
                role=args.role,
                phone=args.phone,
            )
            if args.role in ("supervisor", "admin"):
                where = "/supervisor/" if args.role == "supervisor" else "/studio/"
                print(f"{args.role} {args.username} added (id {agent_id}; signs in at {where})")
            else:
                endpoint = args.endpoint + ("-webrtc" if args.phone == "browser" else "")
                print(f"agent {args.username} added (id {agent_id}, phone PJSIP/{endpoint}, {args.phone})")
            return 0
        finally:
            await store.stop()

    return asyncio.run(run())


def report_csv(rows: list[dict[str, object]]) -> str:
    """One line per group; nested figures (contained by outcome) as ``outcome=n`` pairs."""
    out = io.StringIO()
    columns: list[str] = []
    for row in rows:
        columns += [name for name in row if name not in columns]
    writer = csv.DictWriter(out, columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow(
            {
                k: ";".join(f"{a}={b}" for a, b in v.items()) if isinstance(v, dict) else "" if v is None else v
                for k, v in row.items()
            }
        )
    return out.getvalue()


def cmd_report(args: argparse.Namespace) -> int:
    from ivr.kpis import ReportRequest
    from ivr.store.journeys import make_engine
    from ivr.store.kpis import KpiStore

    config = _config(args)
    try:
        wanted = ReportRequest.parse(
            args.start,
            args.end,
            by=args.by,
            interval=args.interval,
            split_holdout=args.holdout,
            max_window_s=config.kpi.max_days * 86400.0,
            flow=args.flow,
        )
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    async def run() -> list[dict[str, object]]:
        engine = make_engine(config.database_url)
        try:
            rows = await KpiStore(engine).report(wanted, service_level_s=config.kpi.service_level_s)
            return [row.to_dict() for row in rows]
        finally:
            await engine.dispose()

    rows = asyncio.run(run())
    print(
        json.dumps(rows, indent=2) if args.format == "json" else report_csv(rows),
        end="\n" if args.format == "json" else "",
    )
    return 0


def cmd_funnel(args: argparse.Namespace) -> int:
    import time

    from ivr.flow.funnel import MAX_WINDOW_S, FunnelWindow, render_text
    from ivr.store.funnels import FunnelStore
    from ivr.store.journeys import make_engine

    config = _config(args)
    try:
        if not 0 < len(args.flow) <= 64:
            raise ValueError("FLOW must be a flow's name (1 to 64 characters)")
        window = FunnelWindow.parse(
            now=time.time(),
            window=args.window,
            start=args.start,
            end=args.end,
            max_window_s=min(config.kpi.max_days * 86400.0, MAX_WINDOW_S),
        )
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    async def run() -> dict[str, object]:
        engine = make_engine(config.database_url)
        try:
            return (await FunnelStore(engine).funnel(args.flow, window)).to_dict(window)
        finally:
            await engine.dispose()

    data = asyncio.run(run())
    print(
        json.dumps(data, indent=2) if args.format == "json" else render_text(data),
        end="\n" if args.format == "json" else "",
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ivr", description=__doc__)
    parser.add_argument("--config", help="TOML config file (default: $IVR_CONFIG or ./ivr.toml)")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("serve", help="run the FastAGI controller")
    p.add_argument("--agi-host")
    p.add_argument("--agi-port", type=int)
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser(
        "check", help="validate flow files and their queues (routing.queues_conf); prints file:line: step: message"
    )
    p.add_argument("paths", nargs="*")
    p.set_defaults(func=cmd_check)

    p = sub.add_parser(
        "simulate", help="run a flow without a phone: what the caller hears or reads, and why (writes nothing)"
    )
    p.add_argument("flow")
    p.add_argument("--caller", help="the caller's number: their profile is read from the database")
    p.add_argument("--channel", choices=("voice", "chat", "sms"), default="voice")
    p.add_argument(
        "--input", action="append", default=[], help="what the caller does, in order: a key, digits or words"
    )
    p.add_argument("--flows", help="flow folder (default: flows.dir)")
    p.set_defaults(func=cmd_simulate)

    p = sub.add_parser("test", help="run the scenario files beside the flows; non-zero when one fails")
    p.add_argument("path", nargs="?", help="flow folder (default: flows.dir)")
    p.set_defaults(func=cmd_test)

    prompts = sub.add_parser("prompts", help="prompt audio").add_subparsers(dest="prompts_cmd", required=True)
    p = prompts.add_parser("build", help="render every prompt text in the flows to 8 kHz audio")
    p.add_argument("--out", help="Asterisk sounds directory (default: prompts.dir)")
    p.add_argument("--engine", choices=["auto", "piper", "flite", "espeak-ng"])
    p.add_argument("--force", action="store_true")
    p.set_defaults(func=cmd_prompts_build)

    flow = sub.add_parser("flow", help="flow tools").add_subparsers(dest="flow_cmd", required=True)
    p = flow.add_parser("diagram", help="print a flow as a Mermaid flowchart")
    p.add_argument("name")
    p.set_defaults(func=cmd_flow_diagram)

    config = sub.add_parser("config", help="configuration").add_subparsers(dest="config_cmd", required=True)
    config.add_parser("show", help="every setting, its value, source and description").set_defaults(
        func=cmd_config_show
    )

    p = sub.add_parser("journeys", help="recent journeys, or one journey with its interaction log")
    p.add_argument("id", nargs="?")
    p.add_argument("--limit", type=int, default=20)
    p.set_defaults(func=cmd_journeys)

    db = sub.add_parser("db", help="database schema (Alembic)").add_subparsers(dest="db_cmd", required=True)
    p = db.add_parser("upgrade", help="migrate the database to the code's schema (ivr serve does it too)")
    p.add_argument("revision", nargs="?", default="head")
    p.set_defaults(func=cmd_db)
    db.add_parser("current", help="the database's schema revision").set_defaults(func=cmd_db)

    p = sub.add_parser("customers", help="one customer (by phone or id): profile and latest timeline entries")
    p.add_argument("who", help="phone number (E.164) or customer id")
    p.add_argument("--limit", type=int, default=20)
    p.set_defaults(func=cmd_customers)

    agents = sub.add_parser("agents", help="contact-centre agents (desktop logins)").add_subparsers(
        dest="agents_cmd", required=True
    )
    p = agents.add_parser("add", help="create an agent: login, softphone endpoint, skills")
    p.add_argument("username")
    p.add_argument("--name", help="display name (default: the user name)")
    p.add_argument("--endpoint", default="", help="PJSIP endpoint of their softphone, e.g. agent1001 (agents need one)")
    p.add_argument("--skill", action="append", default=[], help="skill[:penalty], repeatable (0 primary, 1, 2)")
    p.add_argument("--max-chats", type=int, default=3, help="chats at once besides one call")
    p.add_argument(
        "--role",
        choices=("agent", "supervisor", "admin"),
        default="agent",
        help="agent: the desktop (default); supervisor: the supervisor pages; admin: the flow studio (/studio/)",
    )
    p.add_argument("--phone", choices=PHONE_CHOICES, default="sip", help=PHONE_HELP)
    p.add_argument("--password-stdin", action="store_true", help="read the password from stdin (scripts)")
    p.set_defaults(func=cmd_agents)
    p = agents.add_parser("passwd", help="set an agent's password (closes their sessions, desktops too)")
    p.add_argument("username")
    p.add_argument("--password-stdin", action="store_true")
    p.set_defaults(func=cmd_agents)
    p = agents.add_parser("set", help="change an agent's phone (closes their sessions, desktops too)")
    p.add_argument("username")
    p.add_argument("--phone", choices=PHONE_CHOICES, required=True, help=PHONE_HELP)
    p.set_defaults(func=cmd_agents)
    p = agents.add_parser("disable", help="refuse an agent's logins and close their sessions (desktops too)")
    p.add_argument("username")
    p.set_defaults(func=cmd_agents)
    p = agents.add_parser("enable", help="let a disabled agent log in again")
    p.add_argument("username")
    p.set_defaults(func=cmd_agents)
    agents.add_parser("list", help="every agent").set_defaults(func=cmd_agents)

    p = sub.add_parser("report", help="contact-centre KPIs over a window (docs/kpis.md); the numbers of /api/kpis")
    p.add_argument("--from", dest="start", required=True, help="ISO 8601 date or time (UTC unless it says)")
    p.add_argument("--to", dest="end", required=True, help="ISO 8601 date or time, after --from")
    p.add_argument(
        "--by", default="interval", help="interval | flow | queue | skill | agent | channel | holdout | step"
    )
    p.add_argument("--flow", default=None, help="only contacts that started in this flow (with --by step: its steps)")
    p.add_argument("--interval", default="hour", help="15min | hour | day (for --by interval)")
    p.add_argument("--holdout", action="store_true", help="split every group: personalized vs holdout")
    p.add_argument("--format", choices=["csv", "json"], default="csv")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("funnel", help="a flow's live funnel per step (docs/kpis.md); the numbers of /api/funnel")
    p.add_argument("flow", metavar="FLOW")
    p.add_argument("--window", default=None, help="24h (the default) | 7d | <n>h | <n>d, up to now")
    p.add_argument("--from", dest="start", default=None, help="ISO 8601 date or time, instead of --window")
    p.add_argument("--to", dest="end", default=None, help="ISO 8601 date or time, after --from")
    p.add_argument("--format", choices=["text", "json"], default="text")
    p.set_defaults(func=cmd_funnel)

    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except IvrError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
