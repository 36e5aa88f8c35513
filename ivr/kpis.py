"""Contact-center KPIs: from one row of facts per contact to the figures supervisors read.

Pure: no clock, no store, no SQL. ``ivr.store.kpis`` folds the interaction log into one
:class:`ContactFacts` per journey in the database (so a day of a busy centre travels as a few
thousand rows, not millions of events); this module groups them and does the arithmetic. Every
figure is defined once here and applies to every channel alike: a chat answered by an agent and a
call answered by an agent are both ``handled``, from the same events. ``docs/kpis.md`` gives each
definition with its formula; the names below are the ones used there.

A contact is one journey, counted in the interval in which it started (its ``journey_started``),
on the channel it started on, in the flow it started in. Times are seconds (UNIX time).
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

Dimension = Literal["interval", "flow", "queue", "skill", "agent", "channel", "holdout"]
DIMENSIONS: tuple[Dimension, ...] = ("interval", "flow", "queue", "skill", "agent", "channel", "holdout")
#: Interval widths in seconds; intervals are aligned to UTC midnight.
INTERVALS = {"15min": 900, "hour": 3600, "day": 86400}
DEFAULT_SERVICE_LEVEL_S = 20.0
#: Journeys that never reached an agent or a transfer and ended with one of these statuses are
#: contained in self-service; "queued" (waiting for an agent) is not an end of self-service.
CONTAINED_ENDS = frozenset({"completed", "abandoned", "failed", "handed_off"})


@dataclass(frozen=True)
class ContactFacts:
    """What the interaction log says about one contact (one journey); None: it did not happen."""

    journey_id: str
    started_at: float
    channel: str
    flow: str
    ended: str | None = None  # the journey's first end status: completed, abandoned, queued, ...
    queued_at: float | None = None
    queue: str | None = None
    skill: str | None = None
    answered_at: float | None = None  # an agent took it: AgentConnect (voice), chat offered to an agent
    agent_id: str | None = None
    agent_ended_at: float | None = None  # the agent's conversation ended (AgentComplete, chat closed)
    abandoned_at: float | None = None  # left the queue before an agent took it
    transferred: bool = False  # a transfer step sent it elsewhere (outside the queues)
    holdout: bool | None = None  # None: no personalized menu was reached
    menu_at: float | None = None  # first personalized menu entered
    chosen_at: float | None = None  # first option chosen (any menu)
    choices: int = 0  # options chosen at personalized menus
    first_choices: int = 0  # ... of them the first one spoken
    no_match: int = 0  # inputs rejected as not matching
    no_input: int = 0  # inputs rejected as silence

    @property
    def offered(self) -> bool:
        return self.queued_at is not None

    @property
    def handled(self) -> bool:
        return self.offered and self.answered_at is not None

    @property
    def abandoned(self) -> bool:
        return self.offered and not self.handled and self.abandoned_at is not None

    @property
    def contained(self) -> bool:
        return not self.offered and not self.transferred and self.ended in CONTAINED_ENDS


def first_end(ends: Mapping[str, float | None]) -> str | None:
    """The status a journey ended with first (status -> when, None: never): a caller who hung up
    in the IVR and came back later by text is still a contact that left the IVR ``abandoned``."""
    happened = [(at, status) for status, at in ends.items() if at is not None]
    return min(happened)[1] if happened else None


def percentile(values: Sequence[float], share: float) -> float | None:
    """Nearest rank: the smallest value with at least ``share`` of all values at or below it."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


def mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def ratio(part: int, whole: int) -> float | None:
    return part / whole if whole else None


@dataclass(frozen=True)
class Figures:
    """The KPIs of one group of contacts (see docs/kpis.md for each formula)."""

    contacts: int
    offered: int
    handled: int
    abandoned: int
    avg_abandon_s: float | None
    avg_wait_s: float | None
    p90_wait_s: float | None
    avg_handle_s: float | None
    service_level: float | None
    contained: int
    containment: float | None
    contained_by_outcome: dict[str, int] = field(default_factory=dict)
    choices: int = 0
    first_option_share: float | None = None
    avg_time_to_choice_s: float | None = None
    no_match: int = 0
    no_input: int = 0
    bad_input_per_contact: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


def figures(contacts: Iterable[ContactFacts], *, service_level_s: float = DEFAULT_SERVICE_LEVEL_S) -> Figures:
    """Every KPI of one group of contacts."""
    group = list(contacts)
    offered = [c for c in group if c.offered]
    handled = [c for c in offered if c.handled]
    abandoned = [c for c in offered if c.abandoned]
    waits = [c.answered_at - c.queued_at for c in handled if c.answered_at is not None and c.queued_at is not None]
    abandon_times = [
        c.abandoned_at - c.queued_at for c in abandoned if c.abandoned_at is not None and c.queued_at is not None
    ]
    handle_times = [
        c.agent_ended_at - c.answered_at for c in handled if c.agent_ended_at is not None and c.answered_at is not None
    ]
    within = sum(1 for w in waits if w <= service_level_s)
    contained = [c for c in group if c.contained]
    to_choice = [
        c.chosen_at - c.menu_at
        for c in group
        if c.menu_at is not None and c.chosen_at is not None and c.chosen_at >= c.menu_at
    ]
    choices = sum(c.choices for c in group)
    no_match = sum(c.no_match for c in group)
    no_input = sum(c.no_input for c in group)
    return Figures(
        contacts=len(group),
        offered=len(offered),
        handled=len(handled),
        abandoned=len(abandoned),
        avg_abandon_s=mean(abandon_times),
        avg_wait_s=mean(waits),
        p90_wait_s=percentile(waits, 0.9),
        avg_handle_s=mean(handle_times),
        service_level=ratio(within, len(offered)),
        contained=len(contained),
        containment=ratio(len(contained), len(group)),
        contained_by_outcome=dict(sorted(Counter(str(c.ended) for c in contained).items())),
        choices=choices,
        first_option_share=ratio(sum(c.first_choices for c in group), choices),
        avg_time_to_choice_s=mean(to_choice),
        no_match=no_match,
        no_input=no_input,
        bad_input_per_contact=(no_match + no_input) / len(group) if group else None,
    )


def interval_start(at: float, interval: str) -> float:
    width = INTERVALS[interval]
    return float(math.floor(at / width) * width)


def _interval_label(at: float, interval: str) -> str:
    return datetime.fromtimestamp(interval_start(at, interval), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def key_of(by: Dimension, interval: str) -> Callable[[ContactFacts], str]:
    """What groups contacts along ``by``: a contact with no queue (or agent...) goes under ``"-"``."""
    if by == "interval":
        return lambda c: _interval_label(c.started_at, interval)
    if by == "holdout":
        return lambda c: {None: "-", True: "holdout", False: "personalized"}[c.holdout]
    attribute = {"flow": "flow", "queue": "queue", "skill": "skill", "agent": "agent_id", "channel": "channel"}[by]
    return lambda c: getattr(c, attribute) or "-"


@dataclass(frozen=True)
class ReportRow:
    by: str
    key: str
    holdout: str | None  # "holdout" / "personalized" / "-" when split, else None
    figures: Figures

    def to_dict(self) -> dict[str, Any]:
        row: dict[str, Any] = {self.by: self.key}
        if self.holdout is not None:
            row["holdout"] = self.holdout
        return {**row, **self.figures.to_dict()}


def report(
    contacts: Iterable[ContactFacts],
    *,
    by: Dimension,
    interval: str = "hour",
    split_holdout: bool = False,
    service_level_s: float = DEFAULT_SERVICE_LEVEL_S,
) -> list[ReportRow]:
    """Figures per group along ``by`` (sorted by key); ``split_holdout``: each group also split into
    the callers who heard the personalized menus and the holdout who heard the file's order."""
    if by not in DIMENSIONS:
        raise ValueError(f"cannot group by {by!r}: one of {', '.join(DIMENSIONS)}")
    if interval not in INTERVALS:
        raise ValueError(f"interval must be one of {', '.join(INTERVALS)}")
    key = key_of(by, interval)
    split = key_of("holdout", interval)
    groups: dict[tuple[str, str | None], list[ContactFacts]] = defaultdict(list)
    for contact in contacts:
        groups[(key(contact), split(contact) if split_holdout else None)].append(contact)
    return [
        ReportRow(by, k, h, figures(members, service_level_s=service_level_s))
        for (k, h), members in sorted(groups.items(), key=lambda item: (item[0][0], item[0][1] or ""))
    ]


#: The longest window one report or API request may cover: longer windows are refused up front
#: (never a query that reads a year of the log).
MAX_WINDOW_S = 31 * 86400.0


@dataclass(frozen=True)
class ReportRequest:
    """A validated report: the window, the grouping, the interval width, the holdout split."""

    start: float
    end: float
    by: Dimension
    interval: str = "hour"
    split_holdout: bool = False

    @classmethod
    def parse(
        cls,
        start: str,
        end: str,
        *,
        by: str = "interval",
        interval: str = "hour",
        split_holdout: bool = False,
        max_window_s: float = MAX_WINDOW_S,
    ) -> ReportRequest:
        """From the words a person types (ISO 8601 times, naive ones in UTC); ValueError says
        what is wrong in terms they can act on."""
        begin, finish = _when(start, "from"), _when(end, "to")
        if finish <= begin:
            raise ValueError("'to' must be after 'from'")
        if finish - begin > max_window_s:
            raise ValueError(f"the window may cover at most {max_window_s / 86400:g} days")
        dimension = next((d for d in DIMENSIONS if d == by), None)
        if dimension is None:
            raise ValueError(f"'by' must be one of {', '.join(DIMENSIONS)}, got {by[:40]!r}")
        if interval not in INTERVALS:
            raise ValueError(f"'interval' must be one of {', '.join(INTERVALS)}, got {interval[:40]!r}")
        return cls(begin, finish, dimension, interval, split_holdout)


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
