"""Business-hours calendars declared in a flow file.

::

    hours:
      support:
        timezone: Europe/London
        mon-fri: "08:00-18:00"
        sat: "09:00-13:00, 14:00-16:00"
        closed: ["2026-12-25", "2026-12-26"]

Pure: ``is_open(now)`` takes an aware or naive datetime (naive means UTC) and converts it to the
calendar's zone, so a server in UTC answers for a call centre in London correctly across DST.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class HoursError(ValueError):
    """A calendar that cannot be understood."""


@dataclass(frozen=True)
class BusinessHours:
    name: str
    zone: str
    windows: tuple[tuple[tuple[time, time], ...], ...]  # per weekday index 0=mon
    closed: frozenset[date]

    def is_open(self, now: datetime) -> bool:
        aware = now if now.tzinfo else now.replace(tzinfo=UTC)
        local = aware.astimezone(ZoneInfo(self.zone))
        if local.date() in self.closed:
            return False
        t = local.time().replace(tzinfo=None)
        return any(start <= t < end for start, end in self.windows[local.weekday()])


def _parse_time(text: str) -> time:
    try:
        hh, mm = text.strip().split(":")
        if hh.strip() == "24" and mm.strip() == "00":
            return time(23, 59, 59, 999999)
        return time(int(hh), int(mm))
    except ValueError:
        raise HoursError(f"bad time {text!r}, expected HH:MM") from None


def _day_range(spec: str) -> list[int]:
    parts = spec.split("-")
    if not all(p in DAYS for p in parts) or len(parts) > 2:
        raise HoursError(f"bad day {spec!r}, expected mon..sun or a range like mon-fri")
    first = DAYS.index(parts[0])
    last = DAYS.index(parts[-1])
    if last < first:
        raise HoursError(f"day range {spec!r} runs backwards")
    return list(range(first, last + 1))


def parse_hours(name: str, spec: Mapping[str, Any]) -> BusinessHours:
    if not isinstance(spec, Mapping):
        raise HoursError("a calendar is a mapping of days to 'HH:MM-HH:MM' ranges")
    zone = str(spec.get("timezone", "UTC"))
    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        raise HoursError(f"unknown timezone {zone!r}") from None
    windows: list[list[tuple[time, time]]] = [[] for _ in DAYS]
    closed: set[date] = set()
    for key, value in spec.items():
        if key == "timezone":
            continue
        if key == "closed":
            if not isinstance(value, list):
                raise HoursError("'closed' is a list of dates YYYY-MM-DD")
            for d in value:
                try:
                    closed.add(d if isinstance(d, date) else date.fromisoformat(str(d)))
                except ValueError:
                    raise HoursError(f"bad closed date {d!r}") from None
            continue
        for day in _day_range(str(key)):
            for window in str(value).split(","):
                if not window.strip() or window.strip() == "closed":
                    continue
                try:
                    start_s, end_s = window.split("-")
                except ValueError:
                    raise HoursError(f"bad range {window.strip()!r}, expected HH:MM-HH:MM") from None
                start, end = _parse_time(start_s), _parse_time(end_s)
                if end <= start:
                    raise HoursError(f"range {window.strip()!r} ends before it starts")
                windows[day].append((start, end))
    return BusinessHours(name, zone, tuple(tuple(w) for w in windows), frozenset(closed))


def calendar_for(hours: Mapping[str, BusinessHours], queue: str, skill: str | None) -> BusinessHours | None:
    """The calendar a queue keeps: the flow's calendar named like the skill, else like the queue,
    else the flow's only calendar; ``None`` when the flow has none that applies (always open).

    One rule for both sides that ask: the queue step (is the line open now? the routing decision
    and the screen pop say so) and the callbacks (when to call back after hours)."""
    found = hours.get(skill or "") or hours.get(queue)
    return found or (next(iter(hours.values())) if len(hours) == 1 else None)
