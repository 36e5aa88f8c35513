"""The live funnel of one flow: where its callers go, step by step, from the interaction log.

Pure: it reads events (already selected by ``ivr.store.funnels``) and counts; it never awaits.

Why events are replayed journey by journey instead of grouped by their ``step`` column: a log
entry names its step but not its flow. A journey that invokes a sub-flow (``invoke:
verify_identity``) logs the sub-flow's steps in between its own, and two flows may share a step
name, so the flow each event belongs to is followed from the events that move a journey between
flows (``journey_started``, ``journey_resumed``, ``flow_entered``, ``flow_returned``), the way the
machine moved it. Each journey is counted on the steps it actually ran: a step that a later
version of the file removed or renamed keeps its counts under its old id, and the diagram of the
current version simply has no node for it.

The window selects journeys by when they **started** (as the KPIs count contacts, docs/kpis.md),
and every event of a selected journey counts, also one after the window's end: a funnel is then
never cut in the middle of a journey.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, NamedTuple

from ivr.flow.system import SYSTEM_FLOW

#: Longest window a funnel may cover (the same bound as a KPI report's, ``kpi.max_days``).
MAX_WINDOW_S = 31 * 86400.0
#: The windows the studio offers; any ``<n>h`` or ``<n>d`` up to ``MAX_WINDOW_S`` is taken too.
WINDOWS = ("24h", "7d")
_WINDOW = re.compile(r"(\d{1,4})([hd])")

#: Kinds that move a journey between flows (each carries ``flow``: the flow it is in afterwards).
MOVES = ("journey_started", "journey_resumed", "flow_entered", "flow_returned")
#: How a journey ended, by the status the machine gave it (``journey_<status>``).
ENDS = ("journey_completed", "journey_abandoned", "journey_failed", "journey_queued", "journey_handed_off")
#: Every kind the funnel reads: the store selects only these.
KINDS = (
    *MOVES,
    *ENDS,
    "step_entered",
    "option_chosen",
    "input_rejected",
    "slot_filled",
    "slot_prefilled",
    "handed_off",
    "queued",
    "transferred",
)
#: ``InputResult.mode`` -> the name the funnel gives it.
MODES = {"dtmf": "key", "speech": "speech", "text": "text"}


class FunnelEvent(NamedTuple):
    """One log entry, reduced to what the funnel reads (the store extracts these from ``data``).

    ``flow``: the flow a move went to, or the flow an ``option_chosen`` was made in; ``returns``:
    whether a ``flow_entered`` comes back (``invoke``) or not (a flow that passes the caller on).
    Events of one journey must come together, in the order they were logged.
    """

    journey_id: str
    kind: str
    step: str | None
    flow: str | None = None
    option: str | None = None
    mode: str | None = None
    status: str | None = None
    returns: bool | None = None


@dataclass
class StepFunnel:
    """What happened at one step of the flow."""

    journeys: set[str] = field(default_factory=set)
    counted_journeys: int = 0  # journeys counted in SQL (``FunnelBuilder.add_counted``), not in the set
    times: int = 0
    #: option id -> funnel mode (key / speech / text) -> times chosen
    options: dict[str, dict[str, int]] = field(default_factory=dict)
    no_input: int = 0
    no_match: int = 0
    answered: int = 0  # options chosen and slots filled: the inputs the step took
    left: int = 0
    completed: int = 0
    failed: int = 0
    handed_off: int = 0
    transferred: int = 0

    def to_dict(self) -> dict[str, Any]:
        chosen = sum(sum(modes.values()) for modes in self.options.values())
        attempts = self.no_input + self.no_match + self.answered
        return {
            "entered": len(self.journeys) + self.counted_journeys,
            "entered_times": self.times,
            "options": {
                option: {
                    **{mode: modes.get(mode, 0) for mode in MODES.values()},
                    "share": _ratio(sum(modes.values()), chosen),
                }
                for option, modes in sorted(self.options.items())
            },
            "no_input": self.no_input,
            "no_match": self.no_match,
            "no_input_rate": _ratio(self.no_input, attempts),
            "no_match_rate": _ratio(self.no_match, attempts),
            "left": self.left,
            "completed": self.completed,
            "failed": self.failed,
            "handed_off": self.handed_off,
            "transferred": self.transferred,
        }


def _ratio(part: int, whole: int) -> float | None:
    return part / whole if whole else None


@dataclass
class Funnel:
    """The funnel of ``flow``: its steps by id, and how many journeys ran any of them."""

    flow: str
    steps: dict[str, StepFunnel] = field(default_factory=dict)
    journeys: set[str] = field(default_factory=set)
    counted_journeys: int = 0

    @property
    def journey_count(self) -> int:
        """Journeys that ran the flow: started in it, resumed in it or entered it as a sub-flow."""
        return len(self.journeys) + self.counted_journeys

    def step(self, name: str) -> StepFunnel:
        found = self.steps.get(name)
        if found is None:
            found = self.steps[name] = StepFunnel()
        return found

    def to_dict(self, window: FunnelWindow) -> dict[str, Any]:
        """The answer of ``GET /api/funnel`` and ``ivr funnel --format json`` (docs/kpis.md)."""
        return {
            "flow": self.flow,
            "window": window.label,
            "from": _iso(window.start),
            "to": _iso(window.end),
            "journeys": self.journey_count,
            "steps": {name: self.steps[name].to_dict() for name in sorted(self.steps)},
        }


def _iso(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class _Replay:
    """Which flow one journey is in, event by event, as the machine moved it."""

    def __init__(self) -> None:
        self.flow: str | None = None
        self.stack: list[str | None] = []

    def move(self, event: FunnelEvent) -> None:
        if event.kind in ("journey_started", "journey_resumed"):
            self.flow = event.flow
        elif event.kind == "flow_entered":
            if event.returns is not False:
                self.stack.append(self.flow)
            self.flow = event.flow
        elif event.kind == "flow_returned":
            if self.stack:
                self.stack.pop()
            self.flow = event.flow
        elif event.kind in ENDS:
            # the machine leaves a system flow (a continue offer) before it ends a journey, and
            # logs the end at the journey's own step without a flow_returned
            while self.flow == SYSTEM_FLOW and self.stack:
                self.flow = self.stack.pop()

    def flow_of(self, event: FunnelEvent) -> str | None:
        if event.kind == "option_chosen" and event.flow:
            return event.flow  # the menu says which flow it was in
        return self.flow


def build_funnel(flow: str, events: Iterable[FunnelEvent]) -> Funnel:
    """Count ``flow``'s steps over ``events`` (each journey's together, in logged order)."""
    builder = FunnelBuilder(flow)
    for event in events:
        builder.add(event)
    return builder.funnel


class FunnelBuilder:
    """The funnel, fed entry by entry (``add``: a journey's entries together, in logged order), or
    with counts already grouped (``add_counted``, ``add_entered``) for journeys that never left
    the flow, whose every entry is the flow's: the store groups those in SQL, so a week of a busy
    flow does not cross the wire entry by entry (``ivr.store.funnels``)."""

    def __init__(self, flow: str) -> None:
        self.funnel = Funnel(flow)
        self._replay = _Replay()
        self._journey: str | None = None

    def add(self, event: FunnelEvent) -> None:
        if event.journey_id != self._journey:
            self._journey, self._replay = event.journey_id, _Replay()
        self._replay.move(event)
        if event.kind in MOVES:
            if self._replay.flow == self.funnel.flow:  # started in, resumed in or entered the flow
                self.funnel.journeys.add(event.journey_id)
            return
        if event.step is None or self._replay.flow_of(event) != self.funnel.flow:
            return
        step = self.funnel.step(event.step)
        if event.kind == "step_entered":
            step.journeys.add(event.journey_id)
        _count(step, event.kind, event.option, event.mode, event.status, 1)

    def add_counted(
        self,
        kind: str,
        step: str | None,
        option: str | None,
        mode: str | None,
        status: str | None,
        times: int,
        journeys: int,
    ) -> None:
        """``times`` entries alike (kind, step, option, mode, status), of ``journeys`` journeys
        that never left this flow and are never given to ``add``."""
        if step is None or kind in MOVES:
            return
        found = self.funnel.step(step)
        if kind == "step_entered":
            found.counted_journeys += journeys
        _count(found, kind, option, mode, status, times)

    def add_journeys(self, journeys: int) -> None:
        """``journeys`` more journeys (never given to ``add``) started in the flow."""
        self.funnel.counted_journeys += journeys


def _count(step: StepFunnel, kind: str, option: str | None, mode: str | None, status: str | None, n: int) -> None:
    if kind == "step_entered":
        step.times += n
    elif kind == "option_chosen" and option is not None:
        modes = step.options.setdefault(option, {})
        name = MODES.get(mode or "", "key")
        modes[name] = modes.get(name, 0) + n
        step.answered += n
    elif kind in ("slot_filled", "slot_prefilled"):
        step.answered += n
    elif kind == "input_rejected":
        if status == "noinput":
            step.no_input += n
        else:  # a wrong key arrives as a keypad "match" the step refused; a phrase as "nomatch"
            step.no_match += n
    elif kind == "journey_abandoned":
        step.left += n
    elif kind == "journey_completed":
        step.completed += n
    elif kind == "journey_failed":
        step.failed += n
    elif kind == "handed_off":
        step.handed_off += n
    elif kind in ("queued", "transferred"):
        step.transferred += n


@dataclass(frozen=True)
class FunnelWindow:
    """Which journeys a funnel counts: those started in ``[start, end)``."""

    start: float
    end: float
    label: str

    @classmethod
    def parse(
        cls,
        *,
        now: float,
        window: str | None = None,
        start: str | None = None,
        end: str | None = None,
        max_window_s: float = MAX_WINDOW_S,
    ) -> FunnelWindow:
        """``window`` (``24h``, ``7d``: up to now) or ``start``/``end`` (ISO 8601, UTC unless they
        carry an offset), not both; the default is the last 24 h. ValueError says what is wrong."""
        if window is not None and (start is not None or end is not None):
            raise ValueError("give either 'window' or 'from'/'to', not both")
        if start is not None or end is not None:
            if start is None or end is None:
                raise ValueError("'from' and 'to' go together")
            begin, finish = _when(start, "from"), _when(end, "to")
            if finish <= begin:
                raise ValueError("'to' must be after 'from'")
            label = "custom"
        else:
            label = window or WINDOWS[0]
            matched = _WINDOW.fullmatch(label)
            if matched is None:
                raise ValueError(f"'window' must be like {' or '.join(WINDOWS)}, got {label[:40]!r}")
            size = int(matched.group(1)) * (3600 if matched.group(2) == "h" else 86400)
            if size == 0:
                raise ValueError("'window' must be longer than nothing")
            begin, finish = now - size, now
        if finish - begin > max_window_s:
            raise ValueError(f"the window may cover at most {max_window_s / 86400:g} days")
        return cls(begin, finish, label)


def _when(text: str, name: str) -> float:
    if len(text) > 40:
        raise ValueError(f"'{name}' is not a date or time")
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"'{name}' must be an ISO 8601 date or time (2026-12-03 or 2026-12-03T09:00Z)") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def render_text(data: dict[str, Any]) -> str:
    """``ivr funnel``'s table: one line per step, its options indented below it."""
    lines = [f"flow {data['flow']}  {data['from']} .. {data['to']}  ({data['window']}, {data['journeys']} journeys)"]
    lines.append(
        f"{'step':<24}{'entered':>8}{'times':>7}{'no-in':>7}{'no-match':>9}{'left':>6}{'done':>6}{'h/off':>7}{'agent':>7}"
    )
    for name, s in data["steps"].items():
        lines.append(
            f"{name[:23]:<24}{s['entered']:>8}{s['entered_times']:>7}{s['no_input']:>7}{s['no_match']:>9}"
            f"{s['left']:>6}{s['completed']:>6}{s['handed_off']:>7}{s['transferred']:>7}"
        )
        for option, o in s["options"].items():
            share = "-" if o["share"] is None else f"{o['share']:.0%}"
            lines.append(
                f"    {option[:30]:<30} key {o['key']:>5}  speech {o['speech']:>5}  text {o['text']:>5}  {share:>5}"
            )
    return "\n".join(lines) + "\n"
