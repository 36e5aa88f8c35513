"""Where the caller is in their journey with the company, from their profile: pure, no I/O.

Why a stage at all: a caller who rang ten minutes ago about their bill and hung up at the account
number should hear "You called about paying your bill ten minutes ago; press 1 to continue with
that", not the main menu again; one with an open callback ticket should hear that they keep their
place. The profile (``ivr.flow.profile``, one query before the first prompt) carries the latest
few journeys, the open callback ticket and an unused continuation link; this module turns them,
with the time of the call, into what flow conditions read as ``journey`` and ``say`` texts speak:

``journey.stage``
    The one stage that applies, first match in this order: ``open_callback``,
    ``open_continuation``, ``unfinished``, ``recent_contact`` (a contact in the last
    ``RECENT_HOURS``), ``returning`` (known, nothing recent), ``new`` (no past contact);
    ``unknown`` when the store could not say (withheld number, database down).
``journey.why``
    One line saying why that stage applied (the simulator prints it).
``journey.last_contact``, ``journey.unfinished``, ``journey.outage_reported``
    A past contact of the last week (the store reads no further back, ``RECENT_DAYS``) (``Contact``): ``minutes``, ``hours``, ``days`` ago, ``ago`` as a caller hears
    it ("ten minutes ago", "yesterday"), ``flow``, ``channel``, ``step``, ``outcome`` (completed,
    abandoned, queued, handed off, failed, in progress), ``intent``, ``reason`` (the menu option
    that intent belongs to) and ``reason_label`` (that option's spoken words, "paying your bill"),
    ``resumable``. ``unfinished`` is the last contact when the caller left it in self-service;
    ``outage_reported`` the latest of the recent contacts about an outage.
``journey.open_callback``
    ``ticket``, ``queue``, ``skill``, ``status``, ``minutes``/``hours`` since it was booked, ``ago``,
    and the ``reason``/``reason_label`` of the contact that booked it when that is a recent one.
``journey.open_continuation``
    ``channel`` (where the link leads), ``flow``, ``step``, ``minutes`` since it was sent, ``ago``,
    ``expires`` (minutes left).

A stage that does not apply reads as ``None`` (false in a condition); its attributes then read as
``None`` too, so ``journey.last_contact.minutes < 120`` is simply false for a first-time caller.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from ivr.flow.profile import CallerProfile, PastContact

#: A contact this recent makes a caller's stage ``recent_contact`` (and none older does).
RECENT_HOURS = 24
#: The intents that mean "the caller reported an outage" (``journey.outage_reported``).
OUTAGE_INTENTS = frozenset({"outage"})

STAGES = ("open_callback", "open_continuation", "unfinished", "recent_contact", "returning", "new", "unknown")
OUTCOMES = {
    "completed": "completed",
    "abandoned": "abandoned",
    "queued": "queued",
    "handed_off": "handed off",
    "failed": "failed",
    "active": "in progress",
}

#: What each name under ``journey`` has, for ``ivr check`` (an unknown one is an error with its line).
CONTACT_ATTRS = frozenset(
    {
        "when",
        "minutes",
        "hours",
        "days",
        "ago",
        "flow",
        "channel",
        "step",
        "status",
        "outcome",
        "intent",
        "reason",
        "reason_label",
        "resumable",
    }
)
CALLBACK_ATTRS = frozenset(
    {"ticket", "queue", "skill", "status", "when", "minutes", "hours", "ago", "reason", "reason_label"}
)
CONTINUATION_ATTRS = frozenset({"channel", "flow", "step", "when", "minutes", "hours", "ago", "expires"})
JOURNEY_ATTRS: dict[str, frozenset[str] | None] = {
    "stage": None,
    "why": None,
    "last_contact": CONTACT_ATTRS,
    "unfinished": CONTACT_ATTRS,
    "outage_reported": CONTACT_ATTRS,
    "open_callback": CALLBACK_ATTRS,
    "open_continuation": CONTINUATION_ATTRS,
}

#: intent of a contact's flow -> (option id, spoken label), from the flow's menus; None if none has it
Reasons = Callable[[str, str], tuple[str, str] | None]

_SMALL = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")
_TENS = {
    10: "ten",
    15: "fifteen",
    20: "twenty",
    25: "twenty-five",
    30: "thirty",
    35: "thirty-five",
    40: "forty",
    45: "forty-five",
}
_WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


def spoken_ago(seconds: float, now: datetime) -> str:
    """How long ago, in words a caller hears naturally: "a moment ago", "ten minutes ago",
    "about twenty minutes ago", "about an hour ago", "earlier today", "yesterday", "on Monday".

    Why words from a fixed list (``AGO_PHRASES``): each is a prompt recorded (or rendered) once,
    so a call never waits for speech synthesis; minutes past ten are rounded to five, which is
    also how people say them.
    """
    minutes = max(0.0, seconds) / 60
    if minutes < 1.5:
        return "a moment ago"
    if minutes < 10.5:
        return f"{_SMALL[round(minutes)]} minutes ago"
    if minutes < 47.5:
        return f"about {_TENS[min(45, max(10, 5 * round(minutes / 5)))]} minutes ago"
    if minutes < 90:
        return "about an hour ago"
    then = now - timedelta(seconds=seconds)
    days = (now.date() - then.date()).days
    if minutes < 5.5 * 60 and days == 0:
        return f"about {_SMALL[round(minutes / 60)]} hours ago"
    if days == 0:
        return "earlier today"
    if days == 1:
        return "yesterday"
    if days < 7:
        return f"on {_WEEKDAYS[then.weekday()]}"
    return "over a week ago"


#: Every phrase ``spoken_ago`` can give: built as prompts with the system prompts.
AGO_PHRASES: tuple[str, ...] = (
    "a moment ago",
    *(f"{_SMALL[n]} minutes ago" for n in range(2, 11)),
    *(f"about {_TENS[n]} minutes ago" for n in sorted(_TENS)),
    "about an hour ago",
    *(f"about {_SMALL[n]} hours ago" for n in range(2, 6)),
    "earlier today",
    "yesterday",
    *(f"on {day}" for day in _WEEKDAYS),
    "over a week ago",
)


@dataclass(frozen=True)
class Contact:
    """One past contact as conditions and prompts read it (see the module docstring)."""

    journey_id: str
    when: float
    minutes: int
    hours: int
    days: int
    ago: str
    flow: str
    channel: str
    step: str | None
    status: str
    outcome: str
    intent: str | None
    reason: str | None
    reason_label: str | None
    resumable: bool


@dataclass(frozen=True)
class CallbackTicket:
    ticket: str
    queue: str
    skill: str
    status: str
    when: float
    minutes: int
    hours: int
    ago: str
    reason: str | None
    reason_label: str | None


@dataclass(frozen=True)
class ContinuationLink:
    channel: str
    flow: str
    step: str
    when: float
    minutes: int
    hours: int
    ago: str
    expires: int  # minutes left


@dataclass(frozen=True)
class JourneyStage:
    """The caller's stage and everything it was decided from (``journey`` in conditions)."""

    stage: str
    why: str
    last_contact: Contact | None = None
    unfinished: Contact | None = None
    outage_reported: Contact | None = None
    open_callback: CallbackTicket | None = None
    open_continuation: ContinuationLink | None = None

    def attribute(self, name: str) -> Any:
        """``journey.<name>``: ``None`` for a name that is not there (``ivr check`` refuses those)."""
        return getattr(self, name, None) if name in JOURNEY_ATTRS else None


UNKNOWN = JourneyStage("unknown", "the caller is not known to the store (no number, or the lookup failed)")


def _contact(past: PastContact, now: datetime, reasons: Reasons | None) -> Contact:
    seconds = max(0.0, now.timestamp() - past.updated_at)
    reason = reasons(past.flow, past.intent) if reasons is not None and past.intent else None
    return Contact(
        journey_id=past.journey_id,
        when=past.updated_at,
        minutes=int(seconds // 60),
        hours=int(seconds // 3600),
        days=int(seconds // 86400),
        ago=spoken_ago(seconds, now),
        flow=past.flow,
        channel=past.channel,
        step=past.step,
        status=past.status,
        outcome=OUTCOMES.get(past.status, past.status),
        intent=past.intent,
        reason=reason[0] if reason else past.intent,
        reason_label=reason[1] if reason else None,
        resumable=past.status == "abandoned" and past.step is not None,
    )


def journey_stage(profile: CallerProfile | None, now: datetime, reasons: Reasons | None = None) -> JourneyStage:
    """The caller's stage at ``now`` from what the store knew (``None``: an unknown caller).

    ``reasons`` finds the menu option (and its spoken label) that a contact's intent belongs to in
    that contact's flow, so a prompt can say "about paying your bill", not "about billing".
    """
    if profile is None:
        return UNKNOWN
    t = now.timestamp()
    contacts = [_contact(p, now, reasons) for p in profile.recent]
    last = contacts[0] if contacts else None
    unfinished = last if last is not None and last.resumable else None
    outage = next((c for c in contacts if c.intent in OUTAGE_INTENTS), None)
    callback = None
    if profile.callback is not None:
        cb = profile.callback
        seconds = max(0.0, t - cb.ticket_at)
        booked_by = next((c for c in contacts if c.journey_id == cb.journey_id), None)
        callback = CallbackTicket(
            ticket=cb.ticket_id,
            queue=cb.queue,
            skill=cb.skill,
            status=cb.status,
            when=cb.ticket_at,
            minutes=int(seconds // 60),
            hours=int(seconds // 3600),
            ago=spoken_ago(seconds, now),
            reason=booked_by.reason if booked_by else None,
            reason_label=booked_by.reason_label if booked_by else None,
        )
    link = None
    k = profile.continuation
    if k is not None and k.expires_at > t:
        seconds = max(0.0, t - k.created_at)
        link = ContinuationLink(
            channel=k.channel,
            flow=k.flow,
            step=k.step,
            when=k.created_at,
            minutes=int(seconds // 60),
            hours=int(seconds // 3600),
            ago=spoken_ago(seconds, now),
            expires=int((k.expires_at - t) // 60),
        )
    found = JourneyStage("new", "no past contact on any channel", last, unfinished, outage, callback, link)
    if callback is not None:
        why = f"callback ticket {callback.ticket} open in queue {callback.queue} since {callback.ago}"
        return replace(found, stage="open_callback", why=why)
    if link is not None:
        why = f"a {link.channel} link to step {link.step} of {link.flow} sent {link.ago}, unused"
        return replace(found, stage="open_continuation", why=why)
    if unfinished is not None:
        about = f" about {unfinished.reason}" if unfinished.reason else ""
        why = f"left {unfinished.flow} at step {unfinished.step}{about} {unfinished.ago}"
        return replace(found, stage="unfinished", why=why)
    if last is not None and last.hours < RECENT_HOURS:
        why = f"last contact {last.ago} on {last.channel}, {last.outcome}"
        return replace(found, stage="recent_contact", why=why)
    if last is not None or profile.contacts:
        why = f"{profile.contacts} past contact(s), none in the last {RECENT_HOURS} h"
        return replace(found, stage="returning", why=why)
    return found
