"""Contact-center KPIs: from the interaction log to the figures supervisors read.

Pure: no clock, no store, no SQL. Every figure is defined once here and applies to every channel
alike: a chat taken by an agent and a call answered by an agent are both ``handled``, from the
same events. ``docs/kpis.md`` gives each definition with its formula; the names are the ones here.

Three steps, each a function here, so the arithmetic is tested with literal rows:

1. :func:`contact_delta`: a batch of one journey's events -> the columns of its one row of facts
   (:class:`ContactFacts`). The journey writer folds every batch into that row in the same
   transaction as the log (``ivr.store.kpis``), with :data:`FIRST`, :data:`COUNTS` and
   :data:`HIGHEST` saying how a new batch merges with the stored row, so a report never scans
   the raw log: a day at a busy centre is a million events but only a hundred thousand contacts.
2. :func:`sums_of`: contacts -> the sums and counts of one group (:class:`GroupSums`); the
   database computes the very same sums with ``GROUP BY`` (``ivr.store.kpis``) and hands back one
   row per group.
3. :func:`figures`: sums -> the KPIs (means, shares, the 90th percentile wait).

A contact is one journey, counted in the interval in which it started (its ``journey_started``),
on the channel it started on, in the flow it started in. Times are seconds (UNIX time).
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Literal

Dimension = Literal["interval", "flow", "queue", "skill", "agent", "channel", "holdout", "step", "handoff"]
DIMENSIONS: tuple[Dimension, ...] = (
    "interval",
    "flow",
    "queue",
    "skill",
    "agent",
    "channel",
    "holdout",
    "step",
    "handoff",
)
#: Interval widths in seconds; intervals are aligned to UTC midnight.
INTERVALS = {"15min": 900, "hour": 3600, "day": 86400}
DEFAULT_SERVICE_LEVEL_S = 20.0
#: Journeys that never reached an agent or a transfer and ended with one of these statuses are
#: contained in self-service; "queued" (waiting for an agent) is not an end of self-service.
CONTAINED_ENDS = frozenset({"completed", "abandoned", "failed", "handed_off"})
#: Outcomes of an ``agent_transfer`` that mean the caller went to the target: a blind transfer
#: handed over, a consult completed. A consult cancelled, a target that failed or hung up, a
#: caller who hung up on hold: the call stayed with its agent or ended, so no transfer took.
TRANSFER_TOOK = frozenset({"transferred", "completed"})
#: The modes of an agent transfer, each its own count (``agent_transfers_<mode>``).
TRANSFER_MODES = ("blind", "consult")


@dataclass(frozen=True)
class ContactFacts:
    """What the interaction log says about one contact (one journey); None: it did not happen."""

    journey_id: str
    started_at: float
    channel: str
    flow: str
    ended: str | None = None  # the journey's first end status: completed, abandoned, queued, ...
    ended_step: str | None = None  # the step the journey was at when it ended
    sent_at: float | None = None  # first hand-off to another channel (a link or an SMS sent)
    sent_from: str | None = None  # ... from this channel
    sent_to: str | None = None  # ... to this one
    opened_at: float | None = None  # first time the continuation link's page was opened
    claimed_at: float | None = None  # first time a continuation link was claimed (channel changed)
    completed_at: float | None = None  # first journey_completed (also after another end)
    callback_at: float | None = None  # a callback was booked (the caller keeps their place)
    callback_queue: str | None = None  # ... in this queue
    callback_dials: int = 0  # times the customer was dialled back
    callback_dialled_at: float | None = None  # first time the customer was dialled back
    callback_connected_at: float | None = None  # the callback reached an agent
    callback_failed_at: float | None = None  # the callback was given up (every attempt failed)
    customer_id: str | None = None  # None: the customer was never identified
    repeat_24h: bool = False  # the same customer started another contact in the 24 h before
    repeat_7d: bool = False  # ... in the 7 days before (see :func:`mark_repeats`)
    callback_kept: bool = False  # dialled before anyone who joined its queue later was answered
    queued_at: float | None = None
    queue: str | None = None
    skill: str | None = None
    queue_reason: str | None = None  # asked_for_agent / flow, from the queued event's intent
    exhausted_at: float | None = None  # first time a step ran out of tries
    exhausted_by: str | None = None  # ... after silence (no_input) or input nothing took (no_match)
    answered_at: float | None = None  # an agent took it: AgentConnect (voice), chat offered to an agent
    agent_id: str | None = None
    agent_ended_at: float | None = None  # the agent's conversation ended (AgentComplete, chat closed)
    abandoned_at: float | None = None  # left the queue before an agent took it
    transfers: int = 0  # transfer steps that sent it elsewhere (outside the queues)
    agent_transfers_blind: int = 0  # an agent's blind transfers that took (TRANSFER_TOOK)
    agent_transfers_consult: int = 0  # an agent's consult transfers that took (completed)
    outbound_at: float | None = None  # an agent called the customer from the desktop (click-to-call)
    outbound_agent: str | None = None  # ... this agent
    outbound_answered_at: float | None = None  # the customer answered that call
    holdout: bool | None = None  # None: no personalized menu was reached
    menu_at: float | None = None  # first personalized menu entered
    chosen_at: float | None = None  # first option chosen (any menu)
    choices: int = 0  # options chosen at personalized menus
    first_choices: int = 0  # ... of them the first one spoken
    no_match: int = 0  # inputs rejected as taking no option (a wrong key, an unrecognised phrase)
    no_input: int = 0  # inputs rejected as silence
    speech_heard: int = 0  # spoken answers at speech menus (silence not counted)
    speech_recognised: int = 0  # ... of them taken as an option
    speech_no_input: int = 0  # silences at speech menus
    confirmations: int = 0  # "did you say ...?" read-backs of a low-confidence answer
    confirmed: int = 0  # ... answered yes
    speech_choices: int = 0  # options chosen by voice
    key_choices: int = 0  # options chosen by key (DTMF)

    @property
    def spoke(self) -> bool:
        """A speech menu listened to this contact (it said something, or stayed silent)."""
        return self.speech_heard + self.speech_no_input > 0

    @property
    def fell_back_to_keys(self) -> bool:
        """A speech menu listened, and the contact chose an option by key after all."""
        return self.spoke and self.key_choices > 0

    @property
    def sent(self) -> bool:
        return self.sent_at is not None

    @property
    def opened(self) -> bool:
        return self.sent_at is not None and self.opened_at is not None and self.opened_at >= self.sent_at

    @property
    def claimed(self) -> bool:
        return self.sent_at is not None and self.claimed_at is not None and self.claimed_at >= self.sent_at

    @property
    def completed_after_claim(self) -> bool:
        return self.claimed and self.completed_at is not None and self.completed_at >= (self.claimed_at or 0.0)

    @property
    def callback_dialled(self) -> bool:
        """A booked callback the dispatcher dialled at least once."""
        return self.callback_at is not None and self.callback_dialled_at is not None

    @property
    def callback_wait(self) -> float | None:
        """Seconds from booking the callback to talking to an agent."""
        if self.callback_at is None or self.callback_connected_at is None:
            return None
        return self.callback_connected_at - self.callback_at

    @property
    def left_in_flow(self) -> bool:
        """The caller left in self-service (hung up, closed the chat) before the flow ended."""
        return self.ended == "abandoned"

    @property
    def offered(self) -> bool:
        return self.queued_at is not None

    @property
    def offer_reason(self) -> str | None:
        """Why an offered contact went to the agents: a step ran out of tries before (no_input,
        no_match), else the caller asked for an agent, else the flow led there."""
        if self.queued_at is None:
            return None
        if self.exhausted_at is not None and self.exhausted_at <= self.queued_at:
            return self.exhausted_by or "no_match"
        return self.queue_reason or "flow"

    @property
    def handled(self) -> bool:
        return self.offered and self.answered_at is not None

    @property
    def abandoned(self) -> bool:
        return self.offered and not self.handled and self.abandoned_at is not None

    @property
    def wait(self) -> float | None:
        """Seconds from queued to answered, for a handled contact."""
        if self.queued_at is None or self.answered_at is None:
            return None
        return self.answered_at - self.queued_at

    @property
    def time_to_abandon(self) -> float | None:
        if not self.abandoned or self.queued_at is None or self.abandoned_at is None:
            return None
        return self.abandoned_at - self.queued_at

    @property
    def handle_time(self) -> float | None:
        """Seconds from answered to the end of the agent's conversation (None while it goes on)."""
        if self.answered_at is None or self.agent_ended_at is None:
            return None
        return self.agent_ended_at - self.answered_at

    @property
    def time_to_choice(self) -> float | None:
        """Seconds from the first personalized menu to the first choice."""
        if self.menu_at is None or self.chosen_at is None or self.chosen_at < self.menu_at:
            return None
        return self.chosen_at - self.menu_at

    @property
    def agent_transfers(self) -> int:
        """Transfers by an agent that took, blind or consult."""
        return self.agent_transfers_blind + self.agent_transfers_consult

    @property
    def outbound(self) -> bool:
        """A call an agent placed to the customer (its journey is the contact)."""
        return self.outbound_at is not None

    @property
    def outbound_answered(self) -> bool:
        return self.outbound_at is not None and self.outbound_answered_at is not None

    @property
    def agent(self) -> str | None:
        """The agent a contact counts for: the one who took it from a queue, else the one who
        called the customer (an outbound call is never queued)."""
        return self.agent_id if self.agent_id is not None else self.outbound_agent

    @property
    def contained(self) -> bool:
        return not self.offered and not self.transfers and self.ended in CONTAINED_ENDS


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
    speech_contacts: int = 0
    speech_heard: int = 0
    speech_recognised: int = 0
    speech_no_match: int = 0
    speech_no_input: int = 0
    recognition_rate: float | None = None
    confirmations: int = 0
    confirmed_share: float | None = None
    speech_choices: int = 0
    fell_back_to_keys: int = 0
    fell_back_share: float | None = None
    offered_by_reason: dict[str, int] = field(default_factory=dict)
    left_in_flow: int = 0
    links_sent: int = 0
    links_opened: int = 0
    links_claimed: int = 0
    links_completed: int = 0
    claimed_share: float | None = None
    callbacks_booked: int = 0
    callbacks_dialled: int = 0
    callback_dials: int = 0
    callbacks_answered: int = 0
    callbacks_failed: int = 0
    avg_callback_wait_s: float | None = None
    callbacks_kept: int = 0
    callbacks_kept_share: float | None = None
    known_contacts: int = 0
    repeat_24h: int = 0
    repeat_7d: int = 0
    repeat_24h_share: float | None = None
    repeat_7d_share: float | None = None
    agent_transfers: int = 0
    agent_transfers_blind: int = 0
    agent_transfers_consult: int = 0
    outbound_calls: int = 0
    outbound_answered: int = 0
    outbound_answered_share: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


# ------------------------------------------------------------------------ events -> contact row
#: A "first" column and the columns that come with it: the earliest batch's values win.
FIRST: dict[str, tuple[str, ...]] = {
    "started_at": ("channel", "flow"),
    "ended_at": ("ended", "ended_step"),
    "queued_at": ("queue", "skill", "queue_reason"),
    "exhausted_at": ("exhausted_by",),
    "sent_at": ("sent_from", "sent_to"),
    "opened_at": (),
    "claimed_at": (),
    "completed_at": (),
    "callback_at": ("callback_queue",),
    "callback_dialled_at": (),
    "callback_connected_at": (),
    "callback_failed_at": (),
    "answered_at": ("agent_id",),
    "agent_ended_at": (),
    "abandoned_at": (),
    "menu_at": (),
    "chosen_at": (),
    "outbound_at": ("outbound_agent",),
    "outbound_answered_at": (),
}
#: The speech columns (they add up across batches), as :class:`ContactFacts` names them.
SPEECH_COUNTS = (
    "speech_heard",
    "speech_recognised",
    "speech_no_input",
    "confirmations",
    "confirmed",
    "speech_choices",
    "key_choices",
)
#: Columns that add up across batches.
COUNTS = (
    "transfers",
    "choices",
    "first_choices",
    "no_match",
    "no_input",
    *SPEECH_COUNTS,
    "callback_dials",
    *(f"agent_transfers_{mode}" for mode in TRANSFER_MODES),
)
#: Columns that keep the highest value (holdout: 1 once any menu heard the file's order;
#: customer_id: any batch that knew the customer names them).
HIGHEST = ("holdout", "customer_id")
COLUMNS = (*(c for first, rest in FIRST.items() for c in (first, *rest)), *COUNTS, *HIGHEST)
END_KINDS = {f"journey_{s}": s for s in ("completed", "abandoned", "failed", "queued", "handed_off")}
ANSWER_KINDS = frozenset({"agent_connected", "chat_offered"})  # voice: AgentConnect; text: given to an agent
AGENT_END_KINDS = frozenset({"agent_completed", "chat_closed"})
#: Why an offered contact went to the agents (:attr:`ContactFacts.offer_reason`).
OFFER_REASONS = ("no_input", "no_match", "asked_for_agent", "flow")
#: Intents of a menu option that means "let me talk to a person" (the flows' agent options).
AGENT_INTENTS = frozenset({"agent", "operator"})
#: Every event kind a contact row is made of; the rest of the log never touches it.
KINDS = frozenset(
    {
        "journey_started",
        *END_KINDS,
        "queued",
        *ANSWER_KINDS,
        *AGENT_END_KINDS,
        "queue_abandoned",
        "transferred",
        "menu_personalized",
        "option_chosen",
        "input_rejected",
        "intent_recognised",
        "confirmation_asked",
        "confirmation_answered",
        "tries_exhausted",
        "handed_off",
        "link_opened",
        "channel_changed",
        "callback_requested",
        "callback_dialled",
        "callback_connected",
        "callback_failed",
        "agent_transfer",
        "outbound_call",
        "outbound_answered",
    }
)


def _text(value: object) -> str | None:
    return value[:64] if isinstance(value, str) else None


Event = tuple[str, float, Mapping[str, Any]] | tuple[str, float, Mapping[str, Any], str | None]


def contact_delta(channel: str, events: Iterable[Event], customer_id: str | None = None) -> dict[str, Any] | None:
    """One batch of one journey's events ``(kind, at, data)`` or ``(kind, at, data, step)`` as a
    contact row to merge (every column of :data:`COLUMNS`, None or 0 where the batch says
    nothing); None if no KPI event. ``step``: the step the journey was at (where it ended)."""
    row: dict[str, Any] = dict.fromkeys(COLUMNS)
    row.update(dict.fromkeys(COUNTS, 0))
    seen = False
    last_status: object = None  # of the latest input_rejected: a step runs out of tries on it

    def first(column: str, at: float, **values: Any) -> None:
        if row[column] is None or at < row[column]:
            row[column] = at
            row.update(values)

    for event in events:
        kind, at, data = event[0], event[1], event[2]
        if kind not in KINDS:
            continue
        seen = True
        if kind == "journey_started":
            first("started_at", at, channel=channel, flow=_text(data.get("flow")))
        elif kind in END_KINDS:
            if kind == "journey_completed":
                first("completed_at", at)
            first("ended_at", at, ended=END_KINDS[kind], ended_step=_text(event[3] if len(event) > 3 else None))
        elif kind == "queued":
            asked = data.get("intent") in AGENT_INTENTS
            first(
                "queued_at",
                at,
                queue=_text(data.get("queue")),
                skill=_text(data.get("skill")),
                queue_reason="asked_for_agent" if asked else "flow",
            )
        elif kind == "handed_off":
            first("sent_at", at, sent_from=channel, sent_to=_text(data.get("to")))
        elif kind == "link_opened":
            first("opened_at", at)
        elif kind == "channel_changed":
            if data.get("via") == "link":  # not a returning caller, not "call me now"
                first("claimed_at", at)
        elif kind == "callback_requested":
            first("callback_at", at, callback_queue=_text(data.get("queue")))
        elif kind == "callback_dialled":
            first("callback_dialled_at", at)
            row["callback_dials"] += 1
        elif kind == "callback_connected":
            first("callback_connected_at", at)
        elif kind == "callback_failed":
            first("callback_failed_at", at)
        elif kind == "tries_exhausted":
            status = data.get("status", last_status)  # older logs: the input rejected just before
            first("exhausted_at", at, exhausted_by="no_input" if status == "noinput" else "no_match")
        elif kind in ANSWER_KINDS:
            first("answered_at", at, agent_id=_text(data.get("agent_id")))
        elif kind in AGENT_END_KINDS:
            first("agent_ended_at", at)
        elif kind == "queue_abandoned":
            first("abandoned_at", at)
        elif kind == "transferred":
            row["transfers"] += 1
        elif kind == "agent_transfer":
            mode = data.get("mode")
            if data.get("outcome") in TRANSFER_TOOK and mode in TRANSFER_MODES:
                row[f"agent_transfers_{mode}"] += 1
        elif kind == "outbound_call":
            first("outbound_at", at, outbound_agent=_text(data.get("agent_id")))
        elif kind == "outbound_answered":
            first("outbound_answered_at", at)
        elif kind == "menu_personalized":
            first("menu_at", at)
            held = data.get("holdout")
            if isinstance(held, bool):
                row["holdout"] = max(int(held), row["holdout"] if row["holdout"] is not None else 0)
        elif kind == "option_chosen":
            first("chosen_at", at)
            row["choices"] += 1
            row["first_choices"] += int(data.get("position") == 1)
            mode = data.get("mode")
            if mode in ("speech", "dtmf"):
                row["speech_choices" if mode == "speech" else "key_choices"] += 1
        elif kind == "intent_recognised":  # something was said at a speech menu (never silence)
            row["speech_heard"] += 1
            row["speech_recognised"] += int(data.get("status") == "match")
        elif kind == "confirmation_asked":
            row["confirmations"] += 1
        elif kind == "confirmation_answered":
            row["confirmed"] += int(data.get("confirmed") is True)
        else:  # input_rejected: silence, or input that took no option (a wrong key is heard as a
            # "match" of the keypad that the menu then refused, so anything but noinput is no-match)
            last_status = data.get("status")
            silent = last_status == "noinput"
            row["no_input" if silent else "no_match"] += 1
            row["speech_no_input"] += int(silent and data.get("mode") == "speech")
    if seen:
        row["customer_id"] = _text(customer_id)
    return row if seen else None


def merge(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """Two rows of one contact as one (what the store's upsert does in SQL): order-free."""
    out = dict(old)
    for column, attached in FIRST.items():
        if new[column] is not None and (old[column] is None or new[column] < old[column]):
            out[column] = new[column]
            out.update({a: new[a] for a in attached})
    for column in COUNTS:
        out[column] = (old[column] or 0) + (new[column] or 0)
    for column in HIGHEST:
        given = [v for v in (old[column], new[column]) if v is not None]
        out[column] = max(given) if given else None
    return out


def facts(journey_id: str, row: Mapping[str, Any]) -> ContactFacts:
    """A stored contact row as :class:`ContactFacts` (it must have started)."""
    return ContactFacts(
        journey_id=journey_id,
        started_at=row["started_at"],
        channel=row["channel"] or "-",
        flow=row["flow"] or "-",
        ended=row["ended"],
        ended_step=row["ended_step"],
        sent_at=row["sent_at"],
        sent_from=row["sent_from"],
        sent_to=row["sent_to"],
        opened_at=row["opened_at"],
        claimed_at=row["claimed_at"],
        completed_at=row["completed_at"],
        callback_at=row["callback_at"],
        callback_queue=row["callback_queue"],
        callback_dials=row["callback_dials"] or 0,
        callback_dialled_at=row["callback_dialled_at"],
        callback_connected_at=row["callback_connected_at"],
        callback_failed_at=row["callback_failed_at"],
        customer_id=row["customer_id"],
        queued_at=row["queued_at"],
        queue=row["queue"],
        skill=row["skill"],
        queue_reason=row["queue_reason"],
        exhausted_at=row["exhausted_at"],
        exhausted_by=row["exhausted_by"],
        answered_at=row["answered_at"],
        agent_id=row["agent_id"],
        agent_ended_at=row["agent_ended_at"],
        abandoned_at=row["abandoned_at"],
        transfers=row["transfers"] or 0,
        agent_transfers_blind=row["agent_transfers_blind"] or 0,
        agent_transfers_consult=row["agent_transfers_consult"] or 0,
        outbound_at=row["outbound_at"],
        outbound_agent=row["outbound_agent"],
        outbound_answered_at=row["outbound_answered_at"],
        holdout=None if row["holdout"] is None else bool(row["holdout"]),
        menu_at=row["menu_at"],
        chosen_at=row["chosen_at"],
        choices=row["choices"] or 0,
        first_choices=row["first_choices"] or 0,
        no_match=row["no_match"] or 0,
        no_input=row["no_input"] or 0,
        speech_heard=row["speech_heard"] or 0,
        speech_recognised=row["speech_recognised"] or 0,
        speech_no_input=row["speech_no_input"] or 0,
        confirmations=row["confirmations"] or 0,
        confirmed=row["confirmed"] or 0,
        speech_choices=row["speech_choices"] or 0,
        key_choices=row["key_choices"] or 0,
    )


# ------------------------------------------------------------------------- contacts -> sums
@dataclass(frozen=True)
class GroupSums:
    """What one group's figures are computed from: counts and sums, as ``GROUP BY`` gives them.

    ``waits``: how many handled contacts waited each whole second (floor of the wait), so the
    90th percentile comes out of the database as a histogram, not one row per contact.
    """

    contacts: int = 0
    offered: int = 0
    handled: int = 0
    abandoned: int = 0
    abandon_s: float = 0.0
    wait_s: float = 0.0
    within_sl: int = 0
    handle_s: float = 0.0
    handle_n: int = 0
    contained: Mapping[str, int] = field(default_factory=dict)  # by end status
    choices: int = 0
    first_choices: int = 0
    to_choice_s: float = 0.0
    to_choice_n: int = 0
    no_match: int = 0
    no_input: int = 0
    waits: Mapping[int, int] = field(default_factory=dict)  # whole seconds -> handled contacts
    speech_contacts: int = 0
    speech_heard: int = 0
    speech_recognised: int = 0
    speech_no_input: int = 0
    confirmations: int = 0
    confirmed: int = 0
    speech_choices: int = 0
    fell_back: int = 0
    offered_by_reason: Mapping[str, int] = field(default_factory=dict)
    left_in_flow: int = 0
    links_sent: int = 0
    links_opened: int = 0
    links_claimed: int = 0
    links_completed: int = 0
    callbacks_booked: int = 0
    callbacks_dialled: int = 0
    callback_dials: int = 0
    callbacks_answered: int = 0
    callbacks_failed: int = 0
    callback_wait_s: float = 0.0
    callbacks_kept: int = 0
    known_contacts: int = 0
    repeat_24h: int = 0
    repeat_7d: int = 0
    agent_transfers_blind: int = 0
    agent_transfers_consult: int = 0
    outbound_calls: int = 0
    outbound_answered: int = 0


def sums_of(contacts: Iterable[ContactFacts], *, service_level_s: float = DEFAULT_SERVICE_LEVEL_S) -> GroupSums:
    """The sums of one group: the definition the SQL in ``ivr.store.kpis`` reproduces."""
    group = list(contacts)
    handled = [(c, c.wait) for c in group if c.handled and c.wait is not None]
    abandoned = [c.time_to_abandon for c in group if c.time_to_abandon is not None]
    handles = [c.handle_time for c, _ in handled if c.handle_time is not None]
    to_choice = [c.time_to_choice for c in group if c.time_to_choice is not None]
    return GroupSums(
        contacts=len(group),
        offered=sum(1 for c in group if c.offered),
        handled=len(handled),
        abandoned=len(abandoned),
        abandon_s=sum(abandoned),
        wait_s=sum(w for _, w in handled if w is not None),
        within_sl=sum(1 for _, w in handled if w <= service_level_s),
        handle_s=sum(handles),
        handle_n=len(handles),
        contained=dict(Counter(str(c.ended) for c in group if c.contained)),
        choices=sum(c.choices for c in group),
        first_choices=sum(c.first_choices for c in group),
        to_choice_s=sum(to_choice),
        to_choice_n=len(to_choice),
        no_match=sum(c.no_match for c in group),
        no_input=sum(c.no_input for c in group),
        waits=dict(Counter(math.floor(w) for _, w in handled)),
        speech_contacts=sum(1 for c in group if c.spoke),
        speech_heard=sum(c.speech_heard for c in group),
        speech_recognised=sum(c.speech_recognised for c in group),
        speech_no_input=sum(c.speech_no_input for c in group),
        confirmations=sum(c.confirmations for c in group),
        confirmed=sum(c.confirmed for c in group),
        speech_choices=sum(c.speech_choices for c in group),
        fell_back=sum(1 for c in group if c.fell_back_to_keys),
        offered_by_reason=dict(Counter(str(c.offer_reason) for c in group if c.offered)),
        left_in_flow=sum(1 for c in group if c.left_in_flow),
        links_sent=sum(1 for c in group if c.sent),
        links_opened=sum(1 for c in group if c.opened),
        links_claimed=sum(1 for c in group if c.claimed),
        links_completed=sum(1 for c in group if c.completed_after_claim),
        callbacks_booked=sum(1 for c in group if c.callback_at is not None),
        callbacks_dialled=sum(1 for c in group if c.callback_at is not None and c.callback_dials),
        callbacks_kept=sum(1 for c in group if c.callback_dialled and c.callback_kept),
        callback_dials=sum(c.callback_dials for c in group if c.callback_at is not None),
        callbacks_answered=sum(1 for c in group if c.callback_wait is not None),
        callbacks_failed=sum(1 for c in group if c.callback_at is not None and c.callback_failed_at is not None),
        callback_wait_s=sum(c.callback_wait for c in group if c.callback_wait is not None),
        known_contacts=sum(1 for c in group if c.customer_id is not None),
        repeat_24h=sum(1 for c in group if c.repeat_24h),
        repeat_7d=sum(1 for c in group if c.repeat_7d),
        agent_transfers_blind=sum(c.agent_transfers_blind for c in group),
        agent_transfers_consult=sum(c.agent_transfers_consult for c in group),
        outbound_calls=sum(1 for c in group if c.outbound),
        outbound_answered=sum(1 for c in group if c.outbound_answered),
    )


def histogram_percentile(counts: Mapping[int, int], share: float) -> float | None:
    """Nearest rank over a histogram (value -> how many): the smallest value with at least
    ``share`` of all counts at or below it."""
    total = sum(counts.values())
    if not total:
        return None
    rank = max(1, math.ceil(share * total))
    seen = 0
    for value in sorted(counts):
        seen += counts[value]
        if seen >= rank:
            return float(value)
    raise AssertionError("unreachable: the ranks add up to the total")


def figures(s: GroupSums) -> Figures:
    """Every KPI of one group from its sums."""
    contained = sum(s.contained.values())
    return Figures(
        contacts=s.contacts,
        offered=s.offered,
        handled=s.handled,
        abandoned=s.abandoned,
        avg_abandon_s=s.abandon_s / s.abandoned if s.abandoned else None,
        avg_wait_s=s.wait_s / s.handled if s.handled else None,
        p90_wait_s=histogram_percentile(s.waits, 0.9),
        avg_handle_s=s.handle_s / s.handle_n if s.handle_n else None,
        service_level=ratio(s.within_sl, s.offered),
        contained=contained,
        containment=ratio(contained, s.contacts),
        contained_by_outcome=dict(sorted((k, v) for k, v in s.contained.items() if v)),
        choices=s.choices,
        first_option_share=ratio(s.first_choices, s.choices),
        avg_time_to_choice_s=s.to_choice_s / s.to_choice_n if s.to_choice_n else None,
        no_match=s.no_match,
        no_input=s.no_input,
        bad_input_per_contact=ratio(s.no_match + s.no_input, s.contacts),
        speech_contacts=s.speech_contacts,
        speech_heard=s.speech_heard,
        speech_recognised=s.speech_recognised,
        speech_no_match=s.speech_heard - s.speech_recognised,
        speech_no_input=s.speech_no_input,
        recognition_rate=ratio(s.speech_recognised, s.speech_heard),
        confirmations=s.confirmations,
        confirmed_share=ratio(s.confirmed, s.confirmations),
        speech_choices=s.speech_choices,
        fell_back_to_keys=s.fell_back,
        fell_back_share=ratio(s.fell_back, s.speech_contacts),
        offered_by_reason=dict(sorted((k, v) for k, v in s.offered_by_reason.items() if v)),
        left_in_flow=s.left_in_flow,
        links_sent=s.links_sent,
        links_opened=s.links_opened,
        links_claimed=s.links_claimed,
        links_completed=s.links_completed,
        claimed_share=ratio(s.links_claimed, s.links_sent),
        callbacks_booked=s.callbacks_booked,
        callbacks_dialled=s.callbacks_dialled,
        callback_dials=s.callback_dials,
        callbacks_answered=s.callbacks_answered,
        callbacks_failed=s.callbacks_failed,
        avg_callback_wait_s=s.callback_wait_s / s.callbacks_answered if s.callbacks_answered else None,
        callbacks_kept=s.callbacks_kept,
        callbacks_kept_share=ratio(s.callbacks_kept, s.callbacks_dialled),
        known_contacts=s.known_contacts,
        repeat_24h=s.repeat_24h,
        repeat_7d=s.repeat_7d,
        repeat_24h_share=ratio(s.repeat_24h, s.known_contacts),
        repeat_7d_share=ratio(s.repeat_7d, s.known_contacts),
        agent_transfers=s.agent_transfers_blind + s.agent_transfers_consult,
        agent_transfers_blind=s.agent_transfers_blind,
        agent_transfers_consult=s.agent_transfers_consult,
        outbound_calls=s.outbound_calls,
        outbound_answered=s.outbound_answered,
        outbound_answered_share=ratio(s.outbound_answered, s.outbound_calls),
    )


REPEAT_WINDOWS = {"repeat_24h": 86400.0, "repeat_7d": 7 * 86400.0}


def mark_repeats(contacts: Iterable[ContactFacts], earlier: Iterable[ContactFacts] = ()) -> list[ContactFacts]:
    """Each contact with ``repeat_24h`` / ``repeat_7d`` set: the same (identified) customer
    started another contact, among ``contacts`` and ``earlier``, in the 24 h (7 days) before it
    (the store asks the same of every stored contact in SQL)."""
    group = list(contacts)
    starts: dict[str, list[float]] = defaultdict(list)
    for c in [*group, *earlier]:
        if c.customer_id is not None:
            starts[c.customer_id].append(c.started_at)

    def before(c: ContactFacts, window: float) -> bool:
        return c.customer_id is not None and any(
            c.started_at - window <= at < c.started_at for at in starts[c.customer_id]
        )

    day, week = REPEAT_WINDOWS["repeat_24h"], REPEAT_WINDOWS["repeat_7d"]
    return [replace(c, repeat_24h=before(c, day), repeat_7d=before(c, week)) for c in group]


def overtakes(callback: ContactFacts, other: ContactFacts) -> bool:
    """``other`` joined the callback's queue after the booking and reached an agent before the
    callback was first dialled: it took the place the ticket was holding."""
    return (
        callback.callback_at is not None
        and callback.callback_dialled_at is not None
        and other.journey_id != callback.journey_id
        and other.queue is not None
        and other.queue == callback.callback_queue
        and other.queued_at is not None
        and other.queued_at > callback.callback_at
        and other.answered_at is not None
        and other.answered_at < callback.callback_dialled_at
    )


def mark_place_kept(contacts: Iterable[ContactFacts], others: Iterable[ContactFacts] = ()) -> list[ContactFacts]:
    """Each dialled callback with ``callback_kept`` set: nobody among ``contacts`` and ``others``
    overtook it (:func:`overtakes`). The store asks the same of every stored contact in SQL, so a
    caller who started before the report's window still counts."""
    group = list(contacts)
    everyone = [*group, *others]
    return [replace(c, callback_kept=c.callback_dialled and not any(overtakes(c, o) for o in everyone)) for c in group]


# ------------------------------------------------------------------------------- grouping
def interval_start(at: float, interval: str) -> float:
    width = INTERVALS[interval]
    return float(math.floor(at / width) * width)


def interval_label(start: float) -> str:
    return datetime.fromtimestamp(start, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def holdout_label(holdout: bool | None) -> str:
    return {None: "-", True: "holdout", False: "personalized"}[holdout]


def step_label(flow: str | None, step: str | None) -> str:
    """``flow/step`` where a contact ended (step names repeat across flows); ``-`` for unknown."""
    return f"{flow or '-'}/{step or '-'}"


def handoff_label(sent_from: str | None, sent_to: str | None) -> str:
    """The channel pair of a hand-off, ``voice>sms``."""
    return f"{sent_from or '-'}>{sent_to or '-'}"


def key_of(by: Dimension, interval: str) -> Callable[[ContactFacts], str]:
    """What groups contacts along ``by``: a contact with no queue (or agent...) goes under ``"-"``."""
    if by == "interval":
        return lambda c: interval_label(interval_start(c.started_at, interval))
    if by == "holdout":
        return lambda c: holdout_label(c.holdout)
    if by == "step":
        return lambda c: step_label(c.flow, c.ended_step)
    if by == "handoff":
        return lambda c: handoff_label(c.sent_from, c.sent_to) if c.sent else "-"
    if by == "agent":
        return lambda c: c.agent or "-"
    attribute = {"flow": "flow", "queue": "queue", "skill": "skill", "channel": "channel"}[by]
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


GroupKey = tuple[str, str | None]  # (key along ``by``, holdout label or None when not split)


def rows(by: str, groups: Mapping[GroupKey, GroupSums]) -> list[ReportRow]:
    """The report's rows, sorted by key, from each group's sums."""
    return [
        ReportRow(by, key, held, figures(sums))
        for (key, held), sums in sorted(groups.items(), key=lambda item: (item[0][0], item[0][1] or ""))
    ]


def report(
    contacts: Iterable[ContactFacts],
    *,
    by: Dimension,
    interval: str = "hour",
    split_holdout: bool = False,
    service_level_s: float = DEFAULT_SERVICE_LEVEL_S,
    flow: str | None = None,
) -> list[ReportRow]:
    """Figures per group along ``by``; ``split_holdout``: each group also split into the callers
    who heard the personalized menus and the holdout who heard the file's order. (The store
    groups in SQL; this is the same report from contacts in memory.)"""
    if by not in DIMENSIONS:
        raise ValueError(f"cannot group by {by!r}: one of {', '.join(DIMENSIONS)}")
    if interval not in INTERVALS:
        raise ValueError(f"interval must be one of {', '.join(INTERVALS)}")
    key = key_of(by, interval)
    split = key_of("holdout", interval)
    groups: dict[GroupKey, list[ContactFacts]] = defaultdict(list)
    for contact in contacts:
        if flow is not None and contact.flow != flow:
            continue
        groups[(key(contact), split(contact) if split_holdout else None)].append(contact)
    return rows(by, {k: sums_of(members, service_level_s=service_level_s) for k, members in groups.items()})


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
    flow: str | None = None  # only the contacts that started in this flow

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
        flow: str | None = None,
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
        if flow is not None and not 0 < len(flow) <= 64:
            raise ValueError("'flow' must be a flow's name (1 to 64 characters)")
        return cls(begin, finish, dimension, interval, split_holdout, flow)


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
