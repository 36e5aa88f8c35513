"""The customer timeline in words: what an agent (or a supervisor) reads at a glance.

Why one module: the agent's card, the chat transcript the agent sees beside a chat, and the
supervisor's board all show the same events; if each page worded them, "option_chosen" would read
three ways, and one page would leak what another masks. The server renders the words into the JSON
the pages already get (:func:`worded`), and the pages only display them, with the raw event kept
for a hover (``raw``, the title attribute).

Pure: timeline entries in (``{"at", "channel", "kind", "step", "data"}``, as
``ivr.store.customers.CustomerStore.timeline`` returns them, newest first), plain dicts out. An
unknown kind, a missing field or a value of the wrong type falls back to a readable form
("Sms delivery: status 1"), never an exception: the store is an append-only log that outlives the
code that wrote it, so a pop must paint whatever an older or newer node recorded.

What never appears: values the card does not already show. Slot values are not in the log at all
(only their length); what the customer or an agent typed in a chat and an agent's notes stay out of
the words and the hover (their length is enough to say "wrote"); the supervisor's audience sees no
caller utterance either, and dialled numbers are masked to their last four digits for it, as the
wallboard masks a waiting caller's number.

Folding: a step reached and then acted on (``step_entered`` then ``slot_filled`` at the same step)
is one line; a recognition and the option it chose are one line; a link texted and then opened is
"Texted a link at 10:41; continued in chat at 10:42". The folded line keeps every kind it stands
for (``kinds``) and every raw event in its hover.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, tzinfo
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

Audience = Literal["agent", "supervisor"]
Entry = Mapping[str, Any]

#: fields whose value is free text a person typed: never worded, never in the hover
PRIVATE_FIELDS = frozenset({"text", "notes"})
#: further fields the supervisor's audience does not see (what the caller said, numbers dialled)
SUPERVISOR_HIDDEN = frozenset({"utterance", "offer", "transcript"})
NUMBER_FIELDS = frozenset({"to_number", "number", "caller"})
MAX_RAW = 400

MODES = {"speech": "by speech", "dtmf": "by keys", "text": "in writing"}
CHANNELS = {"voice": "a call", "sms": "SMS", "chat": "chat", "web": "the web"}
KANNEL_DLR = {"1": "delivered", "2": "failed", "4": "buffered", "8": "accepted", "16": "rejected"}


def zone(name: str) -> tzinfo:
    """The deployment's timezone by IANA name; an empty or unknown name is UTC (and the caller's
    configuration check says so: a timeline must paint all the same)."""
    if not name:
        return UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return UTC


def human(name: object) -> str:
    """``account_number`` -> "account number"; anything -> a short readable string."""
    return str(name if name is not None else "").replace("_", " ").strip()[:80]


def duration(seconds: object) -> str:
    """12 -> "12 s", 80 -> "1 min 20 s", 3600 -> "1 h 0 min"; not a number -> ""."""
    try:
        s = round(float(str(seconds)))
    except (TypeError, ValueError):
        return ""
    if s < 0:
        return ""
    if s < 60:
        return f"{s} s"
    if s < 3600:
        minutes, rest = divmod(s, 60)
        return f"{minutes} min {rest} s" if rest else f"{minutes} min"
    hours, rest = divmod(s, 3600)
    return f"{hours} h {rest // 60} min"


def percent(confidence: object) -> str:
    try:
        value = float(str(confidence))
    except (TypeError, ValueError):
        return ""
    if not 0.0 <= value <= 1.0:
        return ""
    return f"{round(value * 100)}%"


def mask_number(number: object) -> str:
    """The last four digits, the rest as an ellipsis (as the wallboard masks a caller)."""
    digits = "".join(ch for ch in str(number or "") if ch.isdigit())
    return "…" + digits[-4:] if digits else ""


def when(at: object, tz: tzinfo) -> datetime | None:
    """An entry's time (ISO 8601 as the store writes it, or epoch seconds) in ``tz``."""
    try:
        if isinstance(at, int | float):
            return datetime.fromtimestamp(float(at), tz)
        text = str(at)
        parsed = datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith("Z") else text)
        return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).astimezone(tz)
    except (TypeError, ValueError, OverflowError, OSError):
        return None


def clock(at: object, tz: tzinfo) -> str:
    found = when(at, tz)
    return found.strftime("%H:%M") if found else ""


def _data(entry: Entry) -> Mapping[str, Any]:
    data = entry.get("data")
    return data if isinstance(data, Mapping) else {}


def _quoted(value: object) -> str:
    return f"'{human(value)}'"


def _mode(value: object) -> str:
    return MODES.get(str(value), f"by {human(value)}" if value else "")


def _join(*parts: str) -> str:
    return ", ".join(p for p in parts if p)


# ------------------------------------------------------------------------------ one event each

Worder = Callable[[Mapping[str, Any], Entry, Audience], str]


def _option(d: Mapping[str, Any], e: Entry, who: Audience) -> str:
    label = d.get("label") or d.get("option")
    how = _mode(d.get("mode"))
    sure = percent(d.get("confidence")) if d.get("mode") == "speech" else ""
    return _join(f"Chose {_quoted(label)} {how}".strip(), sure)


def _recognised(d: Mapping[str, Any], e: Entry, who: Audience) -> str:
    said = "" if who == "supervisor" or not d.get("utterance") else f"“{str(d['utterance'])[:80]}”"
    if d.get("status") == "nomatch" or not (d.get("option") or d.get("intent")):
        return f"Said {said} (not understood)" if said else "Said something not understood"
    meaning = _quoted(d.get("intent") or d.get("option"))
    words = f"Said {said} meaning {meaning}" if said else f"Understood as {meaning}"
    return _join(words, percent(d.get("confidence")))


def _slot_filled(d: Mapping[str, Any], e: Entry, who: Audience) -> str:
    words = f"Gave {human(d.get('slot')) or 'a value'}"
    how = {"dtmf": "keyed", "speech": "said", "text": "typed"}.get(str(d.get("mode")), "")
    extra = " (declined the one on file)" if d.get("offer_declined") else ""
    return _join(words, how) + extra + (", verified" if d.get("verified") else "")


def _slot_prefilled(d: Mapping[str, Any], e: Entry, who: Audience) -> str:
    source = CHANNELS.get(str(d.get("source_channel")), human(d.get("source_channel")))
    age = duration(d.get("age_s"))
    return (
        f"Confirmed the {human(d.get('slot'))} given"
        + (f" on {source}" if source else "")
        + (f" {age} ago" if age else "")
    )


def _prefill_offered(d: Mapping[str, Any], e: Entry, who: Audience) -> str:
    return f"Offered the {human(d.get('slot'))} on file"


def _queued(d: Mapping[str, Any], e: Entry, who: Audience) -> str:
    skill = d.get("skill")
    return _join(
        f"Queued for {human(d.get('queue')) or 'an agent'}",
        f"skill {human(skill)}" if skill and skill != d.get("queue") else "",
        f"priority {d['priority']}" if d.get("priority") not in (None, "") else "",
    )


def _queue_estimate(d: Mapping[str, Any], e: Entry, who: Audience) -> str:
    told = "Told" if e.get("kind") == "queue_announced" else "Estimated"
    wait = duration(d.get("eta_s"))
    words = f"{told} position {d.get('position', '?')}" + (f", about {wait} wait" if wait else "")
    return words + ("; offered a callback" if d.get("callback_offered") else "")


def _agent_connected(d: Mapping[str, Any], e: Entry, who: Audience) -> str:
    wait = duration(d.get("hold_time"))
    queue = human(d.get("queue"))
    waited = f"Waited {wait}" + (f" in {queue}" if queue else "") if wait else (f"In {queue}" if queue else "")
    answered = f"answered by {d.get('agent') or d.get('agent_id') or 'an agent'}"
    return f"{waited}; {answered}" if waited else answered[0].upper() + answered[1:]


def _agent_completed(d: Mapping[str, Any], e: Entry, who: Audience) -> str:
    talk = duration(d.get("talk_time"))
    by = {"caller": "the caller hung up", "agent": "the agent hung up"}.get(str(d.get("by")), "")
    return _join("Call with the agent ended" + (f" after {talk}" if talk else ""), by)


def _queue_abandoned(d: Mapping[str, Any], e: Entry, who: Audience) -> str:
    wait = duration(d.get("hold_time"))
    where = human(d.get("queue"))
    what = "Left the chat queue" if d.get("channel") == "chat" else "Hung up in the queue"
    return what + (f" {where}" if where else "") + (f" after {wait}" if wait else "")


def _disposition(d: Mapping[str, Any], e: Entry, who: Audience) -> str:
    notes = " (with notes)" if d.get("notes") else ""
    return f"{d.get('agent') or 'The agent'} closed it: {human(d.get('disposition')) or 'no disposition'}{notes}"


def _handed_off(d: Mapping[str, Any], e: Entry, who: Audience) -> str:
    to = CHANNELS.get(str(d.get("to")), human(d.get("to")))
    sent = "Texted a link" if "sms" in str(d.get("via") or "").lower() or d.get("to") == "chat" else "Sent a link"
    return f"{sent} to continue in {to}" if to else sent


def _link_opened(d: Mapping[str, Any], e: Entry, who: Audience) -> str:
    to = CHANNELS.get(str(d.get("to")), human(d.get("to")))
    return f"Opened the link and continued in {to or 'another channel'}"


def _channel_changed(d: Mapping[str, Any], e: Entry, who: Audience) -> str:
    before = CHANNELS.get(str(d.get("from")), human(d.get("from")))
    after = CHANNELS.get(str(d.get("to")), human(d.get("to")))
    return f"Moved from {before or '?'} to {after or '?'}"


def _chat_message(d: Mapping[str, Any], e: Entry, who: Audience) -> str:
    return "Customer wrote in chat" if d.get("from") == "customer" else "Agent replied in chat"


def _message_received(d: Mapping[str, Any], e: Entry, who: Audience) -> str:
    return f"Wrote on {CHANNELS.get(str(e.get('channel')), human(e.get('channel'))) or 'a text channel'}"


def _sms_delivery(d: Mapping[str, Any], e: Entry, who: Audience) -> str:
    status = str(d.get("status", ""))
    return f"Text message {KANNEL_DLR.get(status, 'status ' + status if status else 'status unknown')}"


def _callback_requested(d: Mapping[str, Any], e: Entry, who: Audience) -> str:
    queue = human(d.get("queue"))
    pos = d.get("position")
    return "Asked to be called back" + (f" by {queue}" if queue else "") + (f", keeping place {pos}" if pos else "")


def _outbound(d: Mapping[str, Any], e: Entry, who: Audience) -> str:
    number = d.get("to_number")
    shown = mask_number(number) if who == "supervisor" else str(number or "")
    return f"{d.get('agent') or 'An agent'} called the customer" + (f" at {shown}" if shown else "")


def _outbound_answered(d: Mapping[str, Any], e: Entry, who: Audience) -> str:
    return "The customer answered the agent's call"


def _outbound_failed(d: Mapping[str, Any], e: Entry, who: Audience) -> str:
    why = human(d.get("why"))
    return "The agent's call did not connect" + (f" ({why})" if why else "")


def _status(words: str) -> Worder:
    return lambda d, e, who: words


WORDS: dict[str, Worder] = {
    "journey_started": lambda d, e, w: (
        f"Started {human(d.get('flow')) or 'the IVR'} on "
        f"{CHANNELS.get(str(e.get('channel')), human(e.get('channel'))) or 'a channel'}"
    ),
    "journey_resumed": lambda d, e, w: f"Picked up {human(d.get('flow')) or 'the journey'} where they left off",
    "journey_stage": lambda d, e, w: _join(f"Seen as {human(d.get('stage'))}", human(d.get("why"))),
    "journey_completed": _status("Finished in the IVR"),
    "journey_queued": _status("Handed to the queue"),
    "journey_abandoned": _status("Hung up in the IVR"),
    "journey_failed": _status("The IVR failed and sent them to an agent"),
    "journey_handed_off": _status("Left the call to continue elsewhere"),
    "journey_active": _status("Back in the IVR"),
    "channel_changed": _channel_changed,
    "caller_left": lambda d, e, w: "Hung up" + (f" ({human(d.get('reason'))})" if d.get("reason") else ""),
    "flow_error": _status("The IVR hit an error here"),
    "step_entered": lambda d, e, w: (
        f"Reached {_quoted(e.get('step'))}" + (f" ({human(d.get('kind'))})" if d.get("kind") else "")
    ),
    "flow_entered": lambda d, e, w: f"Went into {human(d.get('flow')) or 'another flow'}",
    "flow_returned": lambda d, e, w: f"Came back to {human(d.get('flow')) or 'the flow'}",
    "branch_taken": lambda d, e, w: f"Went on to {_quoted(d.get('next'))}",
    "menu_personalized": lambda d, e, w: (
        "Heard the menu in their own order" if d.get("reordered") else "Heard the menu as designed"
    ),
    "option_chosen": _option,
    "intent_recognised": _recognised,
    "confirmation_asked": lambda d, e, w: _join(
        f"Asked to confirm {_quoted(d.get('option'))}",
        percent(d.get("confidence")) + " sure" if percent(d.get("confidence")) else "",
    ),
    "confirmation_answered": lambda d, e, w: (
        ("Confirmed " if d.get("confirmed") else "Said no to ") + _quoted(d.get("option"))
    ),
    "input_rejected": lambda d, e, w: (
        {"noinput": "Said nothing", "nomatch": "Was not understood"}.get(
            str(d.get("status")), "Gave an answer that did not fit"
        )
        + (f" (try {d['attempt']})" if d.get("attempt") else "")
    ),
    "tries_exhausted": lambda d, e, w: "Ran out of tries" + (f" after {d['tries']}" if d.get("tries") else ""),
    "prefill_offered": _prefill_offered,
    "slot_prefilled": _slot_prefilled,
    "slot_filled": _slot_filled,
    "queue_announced": _queue_estimate,
    "queue_estimated": _queue_estimate,
    "queued": _queued,
    "callback_declined": _status("Chose to keep holding"),
    "callback_refused": lambda d, e, w: (
        "Could not book a callback" + (f" ({human(d.get('why'))})" if d.get("why") else "")
    ),
    "callback_requested": _callback_requested,
    "callback_dialled": lambda d, e, w: "Called back" + (f" (try {d['attempt']})" if d.get("attempt") else ""),
    "callback_connected": _status("The callback reached an agent"),
    "callback_failed": lambda d, e, w: "The callback failed" + (f" ({human(d.get('why'))})" if d.get("why") else ""),
    "call_requested": lambda d, e, w: (
        f"Asked for a call from {CHANNELS.get(str(d.get('from')), human(d.get('from'))) or 'chat'}"
    ),
    "handed_off": _handed_off,
    "handoff_failed": lambda d, e, w: (
        "Could not send a link" + (f" ({human(d.get('reason'))})" if d.get("reason") else "")
    ),
    "link_opened": _link_opened,
    "continue_offer_answered": lambda d, e, w: f"Chose to {human(d.get('choice')) or 'go on'}",
    "transferred": lambda d, e, w: f"Transferred to {human(d.get('to'))}",
    "transfer_failed": lambda d, e, w: f"Transfer to {human(d.get('to'))} failed",
    "message_received": _message_received,
    "sms_sent": _status("Sent a text message"),
    "sms_delivery": _sms_delivery,
    "agent_connected": _agent_connected,
    "agent_completed": _agent_completed,
    "agent_disposition": _disposition,
    "queue_abandoned": _queue_abandoned,
    "chat_offered": lambda d, e, w: f"Chat offered to {d.get('agent') or 'an agent'}",
    "chat_message": _chat_message,
    "chat_closed": lambda d, e, w: {
        "customer": "The customer closed the chat",
        "agent": "The agent ended the chat",
    }.get(str(d.get("by")), "The chat ended"),
    "outbound_call": _outbound,
    "outbound_answered": _outbound_answered,
    "outbound_failed": _outbound_failed,
}


def fallback(entry: Entry, who: Audience) -> str:
    """An event this module has no words for: its kind in words and its short plain fields."""
    kind = human(entry.get("kind")) or "event"
    fields = [
        f"{human(k)} {v}"
        for k, v in sorted(_data(entry).items())
        if isinstance(v, str | int | float | bool) and _shown(str(k), who) and len(str(v)) <= 40
    ][:3]
    return kind[0].upper() + kind[1:] + (": " + ", ".join(fields) if fields else "")


def _shown(field: str, who: Audience) -> bool:
    return field not in PRIVATE_FIELDS and not (who == "supervisor" and field in SUPERVISOR_HIDDEN)


def sentence(entry: Entry, who: Audience = "agent") -> str:
    """One event in words; never raises (a bad entry reads as its kind)."""
    worder = WORDS.get(str(entry.get("kind")))
    try:
        words = worder(_data(entry), entry, who) if worder else fallback(entry, who)
    except Exception:  # a field of a type no writer ever used: say what it was, not nothing
        words = fallback(entry, who)
    return words or fallback(entry, who)


def raw(entry: Entry, who: Audience = "agent") -> str:
    """The event as recorded, for the hover: kind, step, channel, fields (private ones left out)."""
    data: dict[str, Any] = {}
    for k, v in _data(entry).items():
        if not _shown(str(k), who):
            continue
        data[str(k)] = mask_number(v) if who == "supervisor" and str(k) in NUMBER_FIELDS else v
    head = " · ".join(
        str(x) for x in (entry.get("kind"), entry.get("step"), entry.get("channel"), entry.get("at")) if x
    )
    try:
        body = json.dumps(data, ensure_ascii=False, sort_keys=True, default=str) if data else ""
    except (TypeError, ValueError):
        body = ""
    return (head + (" " + body if body else ""))[:MAX_RAW]


# ------------------------------------------------------------------------------ folding


def _same_step(a: Entry, b: Entry) -> bool:
    return bool(a.get("step")) and a.get("step") == b.get("step") and a.get("journey_id") == b.get("journey_id")


def _folds(first: Entry, second: Entry) -> bool:
    """Whether ``second`` (just after ``first``) completes the same thing on the same journey."""
    k1, k2 = first.get("kind"), second.get("kind")
    if first.get("journey_id") != second.get("journey_id"):
        return False
    if k1 == "step_entered" and k2 != "step_entered":
        return _same_step(first, second)
    if k1 == "journey_started" and k2 == "outbound_call":  # the journey is the call
        return True
    if k1 == "intent_recognised" and k2 == "option_chosen":
        return _data(first).get("option") == _data(second).get("option")
    if k1 == "handed_off" and k2 == "link_opened":
        return True
    return k1 == "outbound_call" and k2 in ("outbound_answered", "outbound_failed")


def _fold_words(group: Sequence[Entry], who: Audience, tz: tzinfo) -> str:
    """A folded group's line: a step reached says nothing more than what was done there."""
    acts = [g for g in group if g.get("kind") not in ("step_entered", "journey_started")] or list(group)
    kinds = [g.get("kind") for g in acts]
    if kinds[0] == "handed_off" and "link_opened" in kinds:
        opened = acts[kinds.index("link_opened")]
        sent = sentence(acts[0], who).split(" to continue")[0]
        to = CHANNELS.get(str(_data(opened).get("to")), human(_data(opened).get("to"))) or "another channel"
        return f"{sent} at {clock(acts[0].get('at'), tz)}; continued in {to} at {clock(opened.get('at'), tz)}"
    if kinds[0] == "outbound_call" and len(acts) > 1:
        if kinds[-1] == "outbound_answered":
            return sentence(acts[0], who) + "; they answered"
        return sentence(acts[0], who) + "; it did not connect"
    return sentence(acts[-1], who)


def worded(
    entries: Sequence[Entry], *, tz: tzinfo = UTC, who: Audience = "agent", limit: int | None = None
) -> list[dict[str, Any]]:
    """Timeline entries (newest first) as lines (newest first): ``{"at", "time", "channel",
    "kind", "kinds", "journey_id", "words", "raw"}``; ``limit``: at most this many lines."""
    ordered = [e for e in reversed(list(entries)) if isinstance(e, Mapping)]
    groups: list[list[Entry]] = []
    for entry in ordered:
        if groups and _folds(groups[-1][-1], entry):
            groups[-1].append(entry)
        else:
            groups.append([entry])
    lines = []
    for group in reversed(groups):
        first = group[0]
        lines.append(
            {
                "at": first.get("at"),
                "time": clock(first.get("at"), tz),
                "channel": first.get("channel"),
                "kind": group[-1].get("kind"),
                "kinds": [g.get("kind") for g in group],
                "journey_id": first.get("journey_id"),
                "words": _fold_words(group, who, tz),
                "raw": "\n".join(raw(g, who) for g in group),
            }
        )
    return lines[:limit] if limit is not None else lines
