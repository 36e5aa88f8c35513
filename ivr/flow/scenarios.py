"""Scenario files: callers, their inputs and the path the admin expects, run by ``ivr test``.

Why next to the flows (``dialplans/scenarios/*.yaml``): a flow edit and the scenarios that pin
its behaviour change together and are reviewed together; ``ivr test dialplans/`` runs them with
the simulator (``ivr.flow.simulate``), so nothing is written and no phone is needed. A failed
scenario prints the expected and the actual path side by side, from the first step they differ.

A file holds a list under ``scenarios``::

    scenarios:
      - name: pays a bill with the keypad
        flow: support
        caller: "+15551230001"
        channel: voice             # voice (default), chat or sms
        at: 2026-03-02T10:00:00Z   # optional: the time of the call (business hours)
        inputs: ["1", "12345678", "1234"]
        path: [greeting, check_hours, main_menu, account, ...]
        queue: billing             # optional: the queue it must end in
        skill: billing             # optional
        stage: unfinished          # optional: the journey stage the caller must be found at

The caller is unknown to the store (scenarios must not depend on a database's contents), unless
the scenario gives them a past, relative to the time of the call (``at``, else now)::

        history:                   # their latest contacts, newest first
          - {flow: support, status: abandoned, step: account, intent: billing, minutes_ago: 10}
        callback: {queue: billing, skill: billing, minutes_ago: 30}   # an open callback ticket
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from ivr.flow.loader import MAX_FLOW_BYTES, FlowLoadError, read_yaml
from ivr.flow.machine import FlowSource
from ivr.flow.model import FlowProblem
from ivr.flow.profile import CallerProfile, OpenCallback, PastContact
from ivr.flow.simulate import Transcript, simulate
from ivr.flow.stages import STAGES
from ivr.routing.rules import RoutingRules

SCENARIO_KEYS = frozenset(
    {"name", "flow", "caller", "channel", "at", "inputs", "path", "queue", "skill", "stage", "history", "callback"}
)
HISTORY_KEYS = frozenset({"flow", "channel", "status", "step", "intent", "minutes_ago"})
CALLBACK_KEYS = frozenset({"queue", "skill", "minutes_ago"})
STATUSES = ("completed", "abandoned", "queued", "handed_off", "failed", "active")
CHANNELS = ("voice", "chat", "sms")


@dataclass(frozen=True)
class Scenario:
    name: str
    flow: str
    caller: str | None
    channel: str
    inputs: tuple[str, ...]
    path: tuple[str, ...]
    source: str
    at: datetime | None = None
    queue: str | None = None
    skill: str | None = None
    stage: str | None = None
    #: the caller's past: (flow, channel, status, step, intent, minutes ago), newest first
    history: tuple[tuple[str, str, str, str | None, str | None, float], ...] = ()
    #: an open callback ticket: (queue, skill, minutes ago)
    callback: tuple[str, str, float] | None = None

    def profile(self, now: datetime) -> CallerProfile | None:
        """The caller as the store would know them at ``now``; None without a past."""
        if not self.history and self.callback is None:
            return None
        t = now.timestamp()
        recent = tuple(
            PastContact(f"past{i}", flow, channel, status, step, intent, t - ago * 60 - 120, t - ago * 60)
            for i, (flow, channel, status, step, intent, ago) in enumerate(self.history)
        )
        callback = None
        if self.callback is not None:
            queue, skill, ago = self.callback
            callback = OpenCallback("ticket0", queue, skill, "waiting", t - ago * 60, "past0")
        return CallerProfile("scenario", contacts=len(recent), recent=recent, callback=callback)


@dataclass
class Outcome:
    scenario: Scenario
    transcript: Transcript | None
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def scenario_files(root: Path) -> list[Path]:
    folder = root / "scenarios" if root.is_dir() else root.parent / "scenarios"
    beside = sorted(root.glob("*.scenarios.yaml")) if root.is_dir() else []
    return sorted(folder.glob("*.yaml")) + beside if folder.is_dir() else beside


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def parse_scenarios(text: str | bytes, file: str) -> tuple[list[Scenario], list[FlowProblem]]:
    raw = text.encode() if isinstance(text, str) else text
    if len(raw) > MAX_FLOW_BYTES:
        return [], [FlowProblem(file, 1, "", f"file too big: over {MAX_FLOW_BYTES // 1024} KiB")]
    try:
        doc = read_yaml(raw.decode("utf-8"), file)
    except FlowLoadError as exc:
        return [], exc.problems
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        return [], [FlowProblem(file, 1, "", f"cannot read: {exc}")]
    items = doc.get("scenarios") if isinstance(doc, dict) else None
    if not isinstance(items, list):
        return [], [FlowProblem(file, 1, "", "a scenario file has a list under 'scenarios'")]
    found: list[Scenario] = []
    problems: list[FlowProblem] = []
    for i, item in enumerate(items):
        line = getattr(item, "line", 1)
        name = str(item.get("name") or f"#{i + 1}") if isinstance(item, dict) else f"#{i + 1}"

        def bad(message: str, line: int = line, name: str = name) -> None:
            problems.append(FlowProblem(file, line, name, message))

        if not isinstance(item, dict):
            bad("a scenario is a mapping: name, flow, caller, inputs, path")
            continue
        for key in item:
            if key not in SCENARIO_KEYS:
                where = getattr(item, "key_lines", {}).get(key, line)
                bad(f"unknown key {key!r} (allowed: {', '.join(sorted(SCENARIO_KEYS))})", where)
        inputs, path = item.get("inputs", []), item.get("path")
        channel = str(item.get("channel", "voice"))
        at = item.get("at")
        if isinstance(at, datetime) and at.tzinfo is None:
            at = at.replace(tzinfo=UTC)
        if not isinstance(item.get("flow"), str):
            bad("'flow' names the flow to run")
        elif not isinstance(inputs, list) or not isinstance(path, list) or not path:
            bad("'inputs' is a list of what the caller does, 'path' the list of steps expected")
        elif channel not in CHANNELS:
            bad(f"channel must be one of {', '.join(CHANNELS)}")
        elif at is not None and not isinstance(at, datetime):
            bad("'at' is a time like 2026-03-02T10:00:00Z")
        elif item.get("stage") is not None and item.get("stage") not in STAGES:
            bad(f"stage must be one of {', '.join(STAGES)}")
        elif (past := _past(item, bad)) is None:
            pass
        else:
            found.append(
                Scenario(
                    name,
                    item["flow"],
                    _text(item.get("caller")),
                    channel,
                    tuple("" if i is None else str(i) for i in inputs),
                    tuple(str(p) for p in path),
                    file,
                    at,
                    _text(item.get("queue")),
                    _text(item.get("skill")),
                    _text(item.get("stage")),
                    *past,
                )
            )
    return found, problems


History = tuple[tuple[str, str, str, str | None, str | None, float], ...]


def _past(item: dict[str, Any], bad: Any) -> tuple[History, tuple[str, str, float] | None] | None:
    """A scenario's ``history`` and ``callback``, checked; None (and a problem) when wrong."""
    history: list[tuple[str, str, str, str | None, str | None, float]] = []
    raw = item.get("history", [])
    if not isinstance(raw, list):
        bad("'history' is a list of past contacts: {flow, status, step, intent, minutes_ago}")
        return None
    for entry in raw:
        if not isinstance(entry, dict) or set(entry) - HISTORY_KEYS or "minutes_ago" not in entry:
            bad(f"a past contact has minutes_ago and any of {', '.join(sorted(HISTORY_KEYS - {'minutes_ago'}))}")
            return None
        status = str(entry.get("status", "completed"))
        ago = entry["minutes_ago"]
        if status not in STATUSES or isinstance(ago, bool) or not isinstance(ago, int | float) or ago < 0:
            bad(f"a past contact's status is one of {', '.join(STATUSES)}; minutes_ago a number")
            return None
        history.append(
            (
                str(entry.get("flow", item.get("flow"))),
                str(entry.get("channel", "voice")),
                status,
                _text(entry.get("step")),
                _text(entry.get("intent")),
                float(ago),
            )
        )
    cb = item.get("callback")
    callback = None
    if cb is not None:
        if not isinstance(cb, dict) or set(cb) - CALLBACK_KEYS or "queue" not in cb:
            bad(f"'callback' is an open ticket: {', '.join(sorted(CALLBACK_KEYS))}")
            return None
        ago = cb.get("minutes_ago", 0)
        if isinstance(ago, bool) or not isinstance(ago, int | float) or ago < 0:
            bad("the callback's minutes_ago is a number")
            return None
        callback = (str(cb["queue"]), str(cb.get("skill", cb["queue"])), float(ago))
    return tuple(history), callback


def run_scenario(flows: FlowSource, scenario: Scenario, routing: RoutingRules | None = None) -> Outcome:
    at = scenario.at or datetime.now(UTC)
    try:
        transcript = simulate(
            flows,
            scenario.flow,
            caller=scenario.caller,
            channel=scenario.channel,
            inputs=scenario.inputs,
            profile=scenario.profile(at),
            routing=routing,
            clock=(lambda: at) if scenario.at is not None else None,
        )
    except KeyError:
        return Outcome(scenario, None, [f"flow {scenario.flow!r} is not loaded"])
    outcome = Outcome(scenario, transcript)
    if tuple(transcript.path) != scenario.path:
        outcome.problems.append("path differs:\n" + path_diff(scenario.path, transcript.path))
    if scenario.queue is not None and transcript.queue != scenario.queue:
        outcome.problems.append(f"queue: expected {scenario.queue}, got {transcript.queue or '(none)'}")
    if scenario.skill is not None and transcript.skill != scenario.skill:
        outcome.problems.append(f"skill: expected {scenario.skill}, got {transcript.skill or '(none)'}")
    if scenario.stage is not None and transcript.stage != scenario.stage:
        outcome.problems.append(f"stage: expected {scenario.stage}, got {transcript.stage or '(none)'}")
    return outcome


def path_diff(expected: Sequence[str], actual: Sequence[str]) -> str:
    """A unified diff of two paths, one step a line."""
    lines = difflib.unified_diff(list(expected), list(actual), "expected", "actual", lineterm="", n=2)
    return "\n".join(f"    {line}" for line in lines)
