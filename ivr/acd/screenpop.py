"""The screen pop: everything the agent must see before saying hello. Pure: dicts in, a dict out.

Built from the journey's plain data (what the IVR recorded), the customer row and the newest
timeline entries; nothing here queries anything, so a pop can be prepared when the caller joins the
queue and published in microseconds when the agent's phone rings.

The timeline is in words (``ivr.channels.wording``: "Chose 'pay your bill' by speech, 99%"), with
each raw event kept for the page's hover, and its times in the deployment's timezone (``tz``):
the page only displays it, so the card, the chat box beside it and the supervisor read alike.

Secret slots (a PIN) never appear: the journey store has already redacted them, and this module
drops any slot named in ``secret_slots`` as a second guard.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from datetime import UTC, tzinfo
from typing import Any

from ivr.channels.wording import worded

#: lines of the timeline on a card (after folding: a step and what was done there are one line)
TIMELINE_ENTRIES = 10
#: raw events read to make them: enough for ten lines when most steps fold in two
TIMELINE_EVENTS = 40
#: lines the supervisor's board shows of a waiting caller (worded for that audience: masked)
STORY_LINES = 3


def _recognition(journey: Mapping[str, Any]) -> dict[str, Any] | None:
    rec = journey.get("recognition") or {}
    intent = rec.get("intent") or journey.get("intent")
    if not intent and not rec.get("utterance"):
        return None
    return {
        "intent": intent,
        "confidence": rec.get("confidence"),
        "transcript": rec.get("utterance") or "",
        "mode": rec.get("mode") or ("speech" if rec.get("utterance") else "dtmf"),
        "step": rec.get("step"),
        # why the words were taken to mean this (nearest example, margin), when the matcher said
        **({"reason": rec["reason"]} if rec.get("reason") else {}),
    }


def _slots(journey: Mapping[str, Any]) -> list[dict[str, Any]]:
    secret = set(journey.get("secret_slots") or [])
    customer = journey.get("customer") or {}
    verified_identity = bool(customer.get("verified")) or "verify_identity" in (journey.get("flows_done") or [])
    out = []
    for name, value in sorted((journey.get("slots") or {}).items()):
        if name in secret:
            continue
        out.append({"name": name, "value": value, "verified": verified_identity})
    return out


def _menu_reasons(journey: Mapping[str, Any]) -> list[dict[str, Any]]:
    out = []
    for step, info in sorted((journey.get("personalization") or {}).items()):
        out.append(
            {
                "step": step,
                "reordered": bool(info.get("reordered")),
                "reason": info.get("reason") or "",
                "order": list(info.get("order") or []),
            }
        )
    return out


def build_pop(
    journey: Mapping[str, Any] | None,
    *,
    customer: Mapping[str, Any] | None = None,
    timeline: Sequence[Mapping[str, Any]] = (),
    call: Mapping[str, Any],
    routing: Mapping[str, Any] | None = None,
    now: float | None = None,
    tz: tzinfo = UTC,
) -> dict[str, Any]:
    """``call``: {"uniqueid", "queue", "callerid", "joined_at", "called_at", "channel",
    "direction"}; ``timeline``: the customer's entries, newest first, as the store returns them."""
    j: Mapping[str, Any] = journey or {}
    joined = float(call.get("joined_at") or 0.0)
    called = float(call.get("called_at") or (time.time() if now is None else now))
    profile: dict[str, Any] = {}
    if customer:
        profile = {
            "id": customer.get("id"),
            "name": customer.get("name") or customer.get("display_name"),
            "tier": customer.get("tier"),
            "language": customer.get("language"),
            "verified": bool(customer.get("verified")),
            "email": customer.get("email"),
        }
    elif j.get("customer"):
        c = j["customer"]
        profile = {
            "id": j.get("customer_id"),
            "name": c.get("name") or c.get("display_name"),
            "tier": c.get("tier"),
            "language": c.get("language"),
            "verified": bool(c.get("verified")),
        }
    return {
        "pop_id": f"{call.get('uniqueid', '')}:{called:.6f}",
        "journey_id": j.get("id") or call.get("journey_id"),
        "channel": j.get("channel") or "voice",
        # "outbound": the agent called the customer (click-to-call); else they came in
        "direction": call.get("direction") or j.get("direction") or "inbound",
        "caller": j.get("caller") or call.get("callerid"),
        "customer": profile,
        "known_customer": bool(profile.get("id")),
        "contacts": (j.get("customer") or {}).get("contacts"),
        "flow": j.get("flow"),
        "path": list(j.get("path") or []),
        "recognition": _recognition(j),
        # the menu option that brought them here, keyed or said, as the menu words it (the
        # wallboard's "why"); journeys saved before ``chosen`` existed: the option a phrase took
        "choice": (j.get("chosen") or {}).get("label") or (j.get("recognition") or {}).get("option"),
        "slots": _slots(j),
        "menus": _menu_reasons(j),
        "queue": call.get("queue") or (j.get("outcome") or {}).get("queue"),
        "skill": (j.get("outcome") or {}).get("skill"),
        "priority": (j.get("outcome") or {}).get("priority"),
        "routing": dict(routing or {}),
        "waited_s": round(max(0.0, called - joined), 1) if joined else None,
        "called_at": called,
        "uniqueid": call.get("uniqueid"),
        "timeline": worded(timeline, tz=tz, limit=TIMELINE_ENTRIES),
        # the newest lines as the supervisor's board words them (no utterance, masked numbers)
        "story": [
            {"time": line["time"], "words": line["words"], "raw": line["raw"]}
            for line in worded(timeline, tz=tz, who="supervisor", limit=STORY_LINES)
        ],
    }
