"""Flow files (YAML) -> ``Flow`` objects, with every problem reported as ``file:line: step: message``.

Why our own YAML constructor: admins need the line of the mistake, and PyYAML only knows lines
while composing nodes. ``_LineLoader`` keeps them on each mapping (``line`` and ``key_lines``).
The loader never stops at the first problem: ``ivr check`` shows them all at once.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from ivr.errors import FlowError
from ivr.flow.hours import BusinessHours, HoursError, parse_hours
from ivr.flow.model import DEFAULT_TEXTS, Flow, FlowProblem
from ivr.flow.steps import COMMON_KEYS, STEP_KINDS, ParseContext, Step

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


class _LineLoader(yaml.SafeLoader):
    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> LineDict:  # type: ignore[override]
        mapping = LineDict()
        mapping.line = node.start_mark.line + 1
        mapping.key_lines = {}
        for key_node, value_node in node.value:
            key = self.construct_object(key_node, deep=True)
            key = str(key) if not isinstance(key, str) else key
            if key in mapping:
                raise yaml.MarkedYAMLError(
                    "while constructing a mapping", node.start_mark, f"duplicate key {key!r}", key_node.start_mark
                )
            mapping[key] = self.construct_object(value_node, deep=True)
            mapping.key_lines[key] = key_node.start_mark.line + 1
        return mapping


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _LineLoader.construct_mapping)


def flow_version(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:12]


def parse_flow(text: str | bytes, file: str = "<flow>", default_name: str | None = None) -> Flow:
    """Parse one flow file's content; raises FlowLoadError with every problem found."""
    raw = text.encode() if isinstance(text, str) else text
    problems: list[FlowProblem] = []

    def report(line: int, step: str, message: str) -> None:
        problems.append(FlowProblem(file, line, step, message))

    try:
        doc = yaml.load(raw.decode("utf-8"), Loader=_LineLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        raise FlowLoadError([FlowProblem(file, (mark.line + 1) if mark else 1, "", f"YAML: {exc.problem}")]) from None
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise FlowLoadError([FlowProblem(file, 1, "", f"cannot read: {exc}")]) from None
    if not isinstance(doc, LineDict):
        raise FlowLoadError([FlowProblem(file, 1, "", "a flow file is a mapping with 'flow', 'start' and 'steps'")])

    for key in doc:
        if key not in FLOW_KEYS:
            report(doc.key_lines[key], "", f"unknown top-level key {key!r} (allowed: {', '.join(sorted(FLOW_KEYS))})")
    name = doc.get("flow") or default_name
    if not isinstance(name, str) or not name:
        report(1, "", "missing 'flow': the flow's name")
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
    numbers = doc.get("numbers", [])
    if not isinstance(numbers, list):
        report(doc.key_lines.get("numbers", 1), "", "'numbers' is a list of dialled numbers")
        numbers = []
    personalize = doc.get("personalize", True)
    if not isinstance(personalize, bool):
        report(doc.key_lines.get("personalize", 1), "", "personalize (for the whole flow) must be true or false")
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


def load_flow_file(path: Path) -> Flow:
    return parse_flow(path.read_bytes(), str(path), default_name=path.stem)


def flow_files(root: Path) -> list[Path]:
    if root.is_file():
        return [root]
    return sorted(p for p in root.glob("*.y*ml") if p.suffix in (".yaml", ".yml"))


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
    names: dict[str, str] = {}
    for flow in flows:
        if flow.name in names:
            problems.append(
                FlowProblem(flow.source, 1, "", f"flow {flow.name!r} is also defined in {names[flow.name]}")
            )
        names[flow.name] = flow.source
    known = set(names) | {Path(p.file).stem for p in problems}
    for folder in {p.parent for p in paths if p.is_file()}:
        for other in flow_files(folder):  # a single file may invoke flows that live beside it
            if other not in files:
                try:
                    known.add(load_flow_file(other).name)
                except FlowLoadError:
                    known.add(other.stem)
    for flow in flows:
        for step in flow.steps.values():
            for used, line in step.flows_used():
                if used not in known:
                    problems.append(FlowProblem(flow.source, line, step.name, f"flow {used!r} does not exist"))
    return flows, problems
