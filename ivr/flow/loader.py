"""Flow files (YAML) -> ``Flow`` objects, with every problem reported as ``file:line: step: message``.

Why our own YAML constructor: admins need the line of the mistake, and PyYAML only knows lines
while composing nodes. ``_LineLoader`` keeps them on each mapping (``line`` and ``key_lines``).
The loader never stops at the first problem: ``ivr check`` shows them all at once.

Why our own resolver: PyYAML speaks YAML 1.1, where a yes/no menu written the natural way
(``yes:`` and ``no:`` as option names) turns into the booleans True and False, ``on``/``off``
likewise, ``0100`` is the octal number 64 and ``1:30`` is the number 90. Flow files are names and
words, so plain scalars follow YAML 1.2's core schema: only ``true``/``false`` are booleans,
numbers have no leading zero, no colons and no ``+`` (``+15555550100`` is a phone number, not
15555550100); everything else is the text the admin typed. A
mapping key is always a name, so a plain key keeps its source text (``1:`` is ``"1"``, ``true:``
is ``"true"``). A number or boolean met where a name or text is expected is reported with the fix
(``quote it: "true"``), see ``ivr.flow.steps.base.quote_hint``.

Why limits before parsing: the running server reloads edited files on its event loop, so a file
bigger than ``MAX_FLOW_BYTES`` or whose anchors expand past ``MAX_YAML_NODES`` (an alias bomb) is
refused before anything walks it, in milliseconds, and the last good version keeps serving.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from ivr.errors import FlowError
from ivr.flow.hours import BusinessHours, HoursError, parse_hours
from ivr.flow.model import DEFAULT_TEXTS, Flow, FlowProblem
from ivr.flow.steps import COMMON_KEYS, STEP_KINDS, GotoStep, InvokeStep, ParseContext, Step
from ivr.flow.steps.base import BareWord, as_bool, quote_hint

FLOW_KEYS = frozenset(
    {"flow", "description", "start", "steps", "numbers", "hours", "texts", "on_failure", "personalize"}
)


class FlowLoadError(FlowError):
    """A flow file has problems; ``problems`` lists each with file, line and step."""

    def __init__(self, problems: list[FlowProblem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


class LineDict(dict[str, Any]):
    line: int = 0
    key_lines: dict[str, int]


#: A flow file is a page of YAML; the largest shipped one is under 3 KiB. Measured: a 228 KiB flow
#: of 2,600 steps parses in 0.3-0.5 s with libyaml (3 s pure Python), and a 10 MB file took 16 s
#: before this limit, all of it on the event loop: this bounds the reload's pause.
MAX_FLOW_BYTES = 256 * 1024
#: Nodes a file may expand to once aliases are followed (the shipped flows have a few hundred).
MAX_YAML_NODES = 50_000

_CORE_TAGS = {"tag:yaml.org,2002:bool", "tag:yaml.org,2002:int", "tag:yaml.org,2002:float"}


#: libyaml's parser (PyYAML's C extension) when present: it parses about ten times faster than
#: the pure-Python one, and the reload runs on the server's event loop.
if TYPE_CHECKING:
    _Base = yaml.SafeLoader
else:
    _Base = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _LineLoader(_Base):
    yaml_implicit_resolvers = {
        first: [(tag, regexp) for tag, regexp in resolvers if tag not in _CORE_TAGS]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> LineDict:  # type: ignore[override]
        mapping = LineDict()
        mapping.line = node.start_mark.line + 1
        mapping.key_lines = {}
        for key_node, value_node in node.value:
            key = self.construct_object(key_node, deep=True)
            if not isinstance(key, str):
                plain = isinstance(key_node, yaml.ScalarNode) and key_node.style is None
                key = str(key_node.value) if plain else str(key)
            if key in mapping:
                raise yaml.MarkedYAMLError(
                    "while constructing a mapping", node.start_mark, f"duplicate key {key!r}", key_node.start_mark
                )
            mapping[key] = self.construct_object(value_node, deep=True)
            mapping.key_lines[key] = key_node.start_mark.line + 1
        return mapping


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _LineLoader.construct_mapping)
_LineLoader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)
_BARE_WORD_TAG = "tag:ivr,2026:bare-word"
_LineLoader.add_implicit_resolver(
    _BARE_WORD_TAG, re.compile(r"^(?:y|Y|yes|Yes|YES|n|N|no|No|NO|on|On|ON|off|Off|OFF)$"), list("yYnNoO")
)


def _bare_word(loader: yaml.BaseLoader, node: yaml.Node) -> BareWord:
    assert isinstance(node, yaml.ScalarNode)  # the tag is only resolved on plain scalars
    return BareWord(loader.construct_scalar(node))


_LineLoader.add_constructor(_BARE_WORD_TAG, _bare_word)
_LineLoader.add_implicit_resolver(
    "tag:yaml.org,2002:int", re.compile(r"^(?:-?(?:0|[1-9][0-9_]*)|0x[0-9a-fA-F_]+)$"), list("-0123456789")
)
_LineLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"^(?:-?(?:0|[1-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?|\.[0-9][0-9_]*(?:[eE][-+]?[0-9]+)?"
        r"|-?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
    ),
    list("-0123456789."),
)


def _expanded_nodes(root: yaml.Node, limit: int) -> int:
    """How many nodes ``root`` becomes once every alias is followed, counting no further than
    ``limit + 1``; ``-1`` for an anchor that contains itself. Iterative and memoised by node, so an
    alias bomb is measured in as many steps as it has distinct nodes, not as it expands."""
    sizes: dict[int, int] = {}
    open_: set[int] = set()
    todo: list[tuple[yaml.Node, bool]] = [(root, False)]
    while todo:
        node, done = todo.pop()
        children: list[yaml.Node] = []
        if isinstance(node, yaml.SequenceNode):
            children = list(node.value)
        elif isinstance(node, yaml.MappingNode):
            children = [n for pair in node.value for n in pair]
        if done:
            open_.discard(id(node))
            sizes[id(node)] = min(limit + 1, 1 + sum(sizes[id(c)] for c in children))
            continue
        if id(node) in sizes:
            continue
        if id(node) in open_:
            return -1
        open_.add(id(node))
        todo.append((node, True))
        todo.extend((c, False) for c in children if id(c) not in sizes)
    return sizes[id(root)]


def read_yaml(text: str, file: str) -> Any:
    """YAML as flow files read it (YAML 1.2 words, lines on mappings), composed, measured, then
    constructed: nothing walks an expanded alias bomb. Raises FlowLoadError or yaml.YAMLError."""
    loader = _LineLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        size = _expanded_nodes(node, MAX_YAML_NODES)
        if size < 0:
            raise FlowLoadError([FlowProblem(file, 1, "", "YAML: an anchor contains itself (a recursive alias)")])
        if size > MAX_YAML_NODES:
            raise FlowLoadError(
                [
                    FlowProblem(
                        file,
                        1,
                        "",
                        f"YAML: anchors and aliases expand to more than {MAX_YAML_NODES} nodes; refused "
                        "(write the steps out, or share less)",
                    )
                ]
            )
        return loader.construct_document(node)
    finally:
        loader.dispose()


def flow_version(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:12]


def parse_flow(text: str | bytes, file: str = "<flow>", default_name: str | None = None) -> Flow:
    """Parse one flow file's content; raises FlowLoadError with every problem found."""
    raw = text.encode() if isinstance(text, str) else text
    problems: list[FlowProblem] = []

    def report(line: int, step: str, message: str) -> None:
        problems.append(FlowProblem(file, line, step, message))

    if len(raw) > MAX_FLOW_BYTES:
        raise FlowLoadError(
            [
                FlowProblem(
                    file, 1, "", f"file too big: over {MAX_FLOW_BYTES // 1024} KiB; a flow file is a page of YAML"
                )
            ]
        )
    try:
        doc = read_yaml(raw.decode("utf-8"), file)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        raise FlowLoadError([FlowProblem(file, (mark.line + 1) if mark else 1, "", f"YAML: {exc.problem}")]) from None
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise FlowLoadError([FlowProblem(file, 1, "", f"cannot read: {exc}")]) from None
    except RecursionError:
        raise FlowLoadError([FlowProblem(file, 1, "", "YAML: nested too deeply")]) from None
    if not isinstance(doc, LineDict):
        raise FlowLoadError([FlowProblem(file, 1, "", "a flow file is a mapping with 'flow', 'start' and 'steps'")])

    for key in doc:
        if key not in FLOW_KEYS:
            report(doc.key_lines[key], "", f"unknown top-level key {key!r} (allowed: {', '.join(sorted(FLOW_KEYS))})")
    name = doc.get("flow") or default_name
    if not isinstance(name, str) or not name:
        report(doc.key_lines.get("flow", 1), "", f"missing 'flow': the flow's name{quote_hint(doc.get('flow'))}")
        name = "unnamed"

    hours: dict[str, BusinessHours] = {}
    raw_hours = doc.get("hours") or {}
    if not isinstance(raw_hours, dict):
        report(doc.key_lines.get("hours", 1), "", "'hours' maps calendar names to opening hours")
        raw_hours = {}
    for cal_name, spec in raw_hours.items():
        try:
            hours[cal_name] = parse_hours(cal_name, spec)
        except HoursError as exc:
            report(
                raw_hours.key_lines.get(cal_name, 1) if isinstance(raw_hours, LineDict) else 1,
                "",
                f"hours {cal_name}: {exc}",
            )

    texts = dict(DEFAULT_TEXTS)
    raw_texts = doc.get("texts") or {}
    if isinstance(raw_texts, dict):
        for key, value in raw_texts.items():
            if key not in DEFAULT_TEXTS or not isinstance(value, str) or not value.strip():
                report(
                    doc.key_lines.get("texts", 1),
                    "",
                    f"texts: {key!r} must be one of {sorted(DEFAULT_TEXTS)} with words to say",
                )
            else:
                texts[key] = value

    steps: dict[str, Step] = {}
    next_lines: dict[str, int] = {}
    raw_steps = doc.get("steps")
    if not isinstance(raw_steps, LineDict) or not raw_steps:
        report(doc.key_lines.get("steps", 1), "", "missing 'steps': a mapping of step names to steps")
        raw_steps = LineDict()
        raw_steps.key_lines = {}
    for step_name, body in raw_steps.items():
        line = raw_steps.key_lines.get(step_name, 1)
        if not isinstance(body, LineDict):
            report(line, step_name, "a step is a mapping with one kind (" + ", ".join(sorted(STEP_KINDS)) + ")")
            continue
        kinds = [k for k in body if k in STEP_KINDS]
        unknown = [k for k in body if k not in STEP_KINDS and k not in COMMON_KEYS]
        for k in unknown:
            report(body.key_lines[k], step_name, f"unknown step kind or key {k!r} (kinds: {', '.join(STEP_KINDS)})")
        if len(kinds) != 1:
            if not unknown:
                report(
                    line,
                    step_name,
                    "a step has exactly one kind (" + ", ".join(sorted(STEP_KINDS)) + f"), found {kinds}",
                )
            continue
        kind = kinds[0]
        ctx = ParseContext(step_name, body.key_lines[kind], report, frozenset(hours))
        next_ = ctx.target(body.get("next"), body.key_lines.get("next", line))
        step = STEP_KINDS[kind].parse(step_name, body[kind], next_, ctx)
        if step is not None:
            step = dataclasses.replace(step, line=line)  # the step's own line, for reachability
            next_lines[step_name] = body.key_lines.get("next", line)
            if next_ and not step.FLOWS_ON:
                report(body.key_lines["next"], step_name, f"a {kind} step does not continue: remove 'next'")
            steps[step_name] = step

    start = doc.get("start")
    if not isinstance(start, str) or not start:
        report(doc.key_lines.get("start", 1), "", "missing 'start': the name of the first step")
        start = ""
    on_failure = doc.get("on_failure")
    _check_graph(steps, next_lines, start, on_failure, raw_steps, doc, report)
    _check_loops(steps, name, start, report)
    numbers = doc.get("numbers", [])
    if not isinstance(numbers, list):
        report(doc.key_lines.get("numbers", 1), "", "'numbers' is a list of dialled numbers")
        numbers = []
    personalize = as_bool(doc.get("personalize", True))
    if personalize is None:
        report(doc.key_lines.get("personalize", 1), "", "personalize (for the whole flow) must be true or false")
        personalize = True
    if problems:
        raise FlowLoadError(sorted(problems, key=lambda p: p.line))
    return Flow(
        name=name,
        version=flow_version(raw),
        start=start,
        steps=steps,
        source=file,
        description=str(doc.get("description", "")),
        numbers=tuple(str(n) for n in numbers),
        numbers_line=doc.key_lines.get("numbers", 1),
        hours=hours,
        texts=texts,
        on_failure=on_failure,
        personalize=personalize,
    )


def _check_graph(
    steps: dict[str, Step],
    next_lines: dict[str, int],
    start: str,
    on_failure: Any,
    raw_steps: LineDict,
    doc: LineDict,
    report: Any,
) -> None:
    """Dangling targets and unreachable steps (only meaningful for steps that parsed)."""
    if start and start not in raw_steps:
        report(doc.key_lines.get("start", 1), "", f"start step {start!r} does not exist")
    if on_failure is not None and on_failure not in raw_steps:
        report(doc.key_lines.get("on_failure", 1), "", f"on_failure step {on_failure!r} does not exist")
    dangling = False
    for step in steps.values():
        for target, line in step.targets():
            if target not in raw_steps:
                dangling = True
                where = next_lines.get(step.name, line) if target == step.next else line
                report(where, step.name, f"next step {target!r} does not exist")
    if dangling or not start or start not in steps or len(steps) != len(raw_steps):
        return  # a step that did not parse hides its edges: reachability would only add noise
    seen = {start}
    todo = [start]
    if isinstance(on_failure, str) and on_failure in steps:
        seen.add(on_failure)
        todo.append(on_failure)
    while todo:
        current = steps.get(todo.pop())
        if current is None:
            continue
        for target, _ in current.targets():
            if target not in seen:
                seen.add(target)
                todo.append(target)
    for name in steps:
        if name not in seen:
            report(steps[name].line, name, "unreachable: no step leads here from start")


def _check_loops(steps: dict[str, Step], flow: str, start: str, report: Any) -> None:
    """Loops the engine could only stop at run time, after ``MAX_HOPS`` steps without input
    (the caller then lands in the fallback): a flow that invokes itself, and a cycle of steps that
    only decide (branch, goto) with nothing between that waits for the caller."""
    edges: dict[str, list[str]] = {}
    for step in steps.values():
        if isinstance(step, InvokeStep) and step.flow == flow:
            report(step.line, step.name, f"flow {flow!r} invokes itself: every call would go one level deeper")
        if step.WAITS:
            continue
        targets = [t for t, _ in step.targets()]
        if isinstance(step, GotoStep) and step.flow == flow:
            targets.append(step.target or start)  # a goto into its own flow is a jump back
        edges[step.name] = [t for t in targets if t in steps and not steps[t].WAITS]
    reported: set[str] = set()
    for name in sorted(edges, key=lambda n: steps[n].line):
        if name in reported:
            continue
        cycle = _cycle_through(name, edges)
        if cycle:
            reported.update(cycle)
            report(
                steps[name].line,
                name,
                "loop without input: "
                + " -> ".join([*cycle, name])
                + " never waits for the caller (put a say, ask or menu in it, or end it)",
            )


def _cycle_through(first: str, edges: dict[str, list[str]]) -> list[str]:
    """The shortest path ``first -> ... -> first`` along ``edges``, without its last hop; [] if none."""
    parents: dict[str, str] = {}
    todo = [first]
    while todo:
        current = todo.pop(0)
        for target in edges.get(current, []):
            if target == first:
                path = [current]
                while path[-1] != first:
                    path.append(parents[path[-1]])
                return path[::-1]
            if target not in parents:
                parents[target] = current
                todo.append(target)
    return []


def load_flow_file(path: Path) -> Flow:
    """Reads no more than one byte past ``MAX_FLOW_BYTES``: a huge file is refused unread."""
    with path.open("rb") as f:
        data = f.read(MAX_FLOW_BYTES + 1)
    return parse_flow(data, str(path), default_name=path.stem)


def flow_files(root: Path) -> list[Path]:
    if root.is_file():
        return [root]
    return sorted(p for p in root.glob("*.y*ml") if p.suffix in (".yaml", ".yml"))


def number_conflicts(flows: Iterable[Flow]) -> list[FlowProblem]:
    """Two flows claiming one dialled number: which answers would depend on load order."""
    owners: dict[str, Flow] = {}
    problems: list[FlowProblem] = []
    for flow in flows:
        for number in flow.numbers:
            owner = owners.setdefault(number, flow)
            if owner is not flow and owner.name != flow.name:
                problems.append(
                    FlowProblem(
                        flow.source,
                        flow.numbers_line,
                        "",
                        f"number {number} is also claimed by flow {owner.name!r} ({owner.source}): "
                        "a number belongs to one flow",
                    )
                )
    return problems


def _invoke_cycles(flows: list[Flow]) -> list[FlowProblem]:
    """Flows that invoke each other round in a circle (a flow invoking itself is the loader's)."""
    calls: dict[str, list[tuple[str, InvokeStep]]] = {}
    for flow in flows:
        for step in flow.steps.values():
            if isinstance(step, InvokeStep) and step.flow != flow.name:
                calls.setdefault(flow.name, []).append((step.flow, step))
    edges = {name: [callee for callee, _ in out] for name, out in calls.items()}
    by_name = {flow.name: flow for flow in flows}
    problems: list[FlowProblem] = []
    reported: set[str] = set()
    for name in sorted(calls):
        if name in reported:
            continue
        cycle = _cycle_through(name, edges)
        if cycle:
            reported.update(cycle)
            step = next(s for callee, s in calls[name] if callee == (cycle[1] if len(cycle) > 1 else name))
            problems.append(
                FlowProblem(
                    by_name[name].source,
                    step.line,
                    step.name,
                    "flows invoke each other in a circle: " + " -> ".join([*cycle, name]),
                )
            )
    return problems


def _goto_loops_across_flows(flows: list[Flow]) -> list[FlowProblem]:
    """Steps that only decide, jumping between flows (``goto: {flow: ...}``) and back without
    waiting for the caller: each file alone is fine, together they spin until ``MAX_HOPS``."""
    by_name = {flow.name: flow for flow in flows}

    def passes(flow: str, step: str | None) -> bool:
        found = by_name[flow].steps.get(step or "") if flow in by_name else None
        return found is not None and not found.WAITS

    edges: dict[str, list[str]] = {}
    crosses: set[str] = set()
    for flow in flows:
        for step in flow.steps.values():
            if step.WAITS:
                continue
            me = f"{flow.name}.{step.name}"
            out = [f"{flow.name}.{t}" for t, _ in step.targets() if passes(flow.name, t)]
            if isinstance(step, GotoStep) and step.flow and step.flow != flow.name and step.flow in by_name:
                target = step.target or by_name[step.flow].start
                if passes(step.flow, target):
                    out.append(f"{step.flow}.{target}")
                    crosses.add(me)
            edges[me] = out
    problems: list[FlowProblem] = []
    reported: set[str] = set()
    for node in sorted(crosses):
        if node in reported:
            continue
        cycle = _cycle_through(node, edges)
        if cycle:
            reported.update(cycle)
            flow_name, _, step_name = node.partition(".")
            flow = by_name[flow_name]
            problems.append(
                FlowProblem(
                    flow.source,
                    flow.steps[step_name].line,
                    step_name,
                    "loop without input across flows: " + " -> ".join([*cycle, node]) + " never waits for the caller",
                )
            )
    return problems


def check_paths(paths: Iterable[Path]) -> tuple[list[Flow], list[FlowProblem]]:
    """Load every flow file under ``paths``; cross-check flow references and names."""
    flows: list[Flow] = []
    problems: list[FlowProblem] = []
    files = [f for p in paths for f in flow_files(p)]
    for file in files:
        try:
            flows.append(load_flow_file(file))
        except FlowLoadError as exc:
            problems.extend(exc.problems)
    known = {Path(p.file).stem for p in problems}
    for folder in {p.parent for p in paths if p.is_file()}:
        for other in flow_files(folder):  # a single file may invoke flows that live beside it
            if other not in files:
                try:
                    known.add(load_flow_file(other).name)
                except FlowLoadError:
                    known.add(other.stem)
    problems.extend(cross_check(flows, known))
    return flows, problems


def cross_check(flows: list[Flow], known: set[str]) -> list[FlowProblem]:
    """What no single file shows: a name defined twice, a number claimed twice, flows invoking
    each other in a circle or jumping round without input, and flows used that do not exist
    (``known``: names beyond ``flows`` that exist, such as files that did not load)."""
    problems: list[FlowProblem] = []
    names: dict[str, str] = {}
    for flow in flows:
        if flow.name in names:
            problems.append(
                FlowProblem(flow.source, 1, "", f"flow {flow.name!r} is also defined in {names[flow.name]}")
            )
        names[flow.name] = flow.source
    problems.extend(number_conflicts(flows))
    problems.extend(_invoke_cycles(flows))
    problems.extend(_goto_loops_across_flows(flows))
    known = known | set(names)
    for flow in flows:
        for step in flow.steps.values():
            for used, line in step.flows_used():
                if used not in known:
                    problems.append(FlowProblem(flow.source, line, step.name, f"flow {used!r} does not exist"))
    return problems
