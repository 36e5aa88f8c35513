"""Are the queues that routing and the flows name defined in Asterisk's queues.conf? Pure but for one read.

Why check: a queue name is shared by three files (the routing settings, a flow's queue step, and
queues.conf). A name Asterisk does not define is not refused anywhere at run time: the dialplan's
``QUEUE_EXISTS`` check sends such a call to the catch-all queue with a WARNING in Asterisk's log,
so the mistake shows up as misrouted calls. Checked at start (``ivr serve`` refuses to start)
and by ``ivr check``, each problem naming the file and the queue.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from ivr.routing.rules import RoutingRules


@dataclass(frozen=True)
class QueueUse:
    """A flow step that sends callers to a queue (``ivr.flow.library.queues_named`` finds them):
    routing sits below the flow engine, so it is handed names, not flows."""

    where: str  # file:line, or the flow's name
    step: str
    queue: str


def defined_queues(text: str) -> frozenset[str]:
    """The queue sections of a queues.conf: every ``[name]`` but ``[general]`` (app_queue's
    global options, in any case) and templates (``[name](!)``)."""
    names = set()
    for raw in text.splitlines():
        line = raw.split(";", 1)[0].strip()
        match = re.fullmatch(r"\[([^\]]+)\]\s*(\(([^)]*)\))?", line)
        if match is None or match.group(1).lower() == "general":
            continue
        options = (match.group(3) or "").split(",")
        if "!" not in (o.strip() for o in options):
            names.add(match.group(1))
    return frozenset(names)


@dataclass(frozen=True)
class QueueCheck:
    """``problems``: names Asterisk does not define (each line names the file and the queue);
    ``warning``: why nothing could be checked (the file is absent)."""

    problems: tuple[str, ...]
    warning: str | None = None


def missing_queues(
    rules: RoutingRules, uses: Iterable[QueueUse], defined: frozenset[str], conf: str | Path
) -> list[str]:
    """Every queue named by the routing table or by a flow's queue step that ``defined`` lacks."""
    problems = [f"{conf}: no queue [{name}] for routing.queues" for name in sorted(rules.queues) if name not in defined]
    problems += [
        f"routing.intent_skills: intent {intent!r} -> skill {skill!r}, which is not in routing.queues"
        for intent, skill in sorted(rules.intent_skills.items())
        if skill not in rules.queues
    ]
    problems += [f"{use.where}: {use.step}: {conf}: no queue [{use.queue}]" for use in uses if use.queue not in defined]
    return problems


def check_queues(rules: RoutingRules, uses: Iterable[QueueUse], conf: str | Path) -> QueueCheck:
    """Read ``conf`` and compare; an absent file is a warning (Asterisk may run elsewhere)."""
    path = Path(conf)
    try:
        text = path.read_text()
    except FileNotFoundError:
        return QueueCheck((), f"{conf} not found: queue names are not checked (set routing.queues_conf)")
    return QueueCheck(tuple(missing_queues(rules, uses, defined_queues(text), conf)))
