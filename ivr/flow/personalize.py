"""Menu ranking from a caller's history: which option is spoken first and which key it gets.

Pure: options, the caller's ``OptionStat``s for one menu, ``now`` and the guardrails in; a
``Ranking`` out. No clock, no store, no journey.

The rule
--------
* **Score** = the option's decayed count as of now: ``stat.score * 2 ** -((now - last_at) / half_life)``.
  Each past choice added 1 when it happened and halves every ``half_life``, so the score grows with
  frequency and fades with age. A decayed score under ``FORGOTTEN`` (four half-lives after a
  single choice) counts as no history: one choice long ago does not reorder a menu forever.
  (Decaying every option by the same factor keeps their order independent of ``now``: a menu
  re-rendered on a retry, or seconds later on another channel, comes out in the same order.)
* **Order**: options pinned ``first`` (in file order), then the unpinned options by score, highest
  first, ties and options without history in file order, then options pinned ``last``.
* **Keys**: a pinned option always keeps its own key (``agent`` stays ``0`` whatever the history,
  so "zero for a person" keeps working). The unpinned options share the keys the file gives them:
  taken in file order, they are handed out in ranked order. With the usual file (1, 2, 3, ...) the
  top option is key 1 and is spoken first; the set of keys in use never changes, so a renumbered
  option can never collide with a pinned one; without history every key is the file's own.

Guardrails (set in the flow file)
---------------------------------
``personalize: true`` on a menu turns ranking on; ``personalize: {min_contacts: N}`` also waits for
N past contacts (journeys on any channel) before reordering; a flow-level ``personalize: false``
switches it off for every menu of that flow; ``pin: first|last`` on an option fixes its place.
When ranking is off or does not apply, the menu is the file's order and the ``Ranking`` says why.

The holdout (setting ``personalize.holdout``): a share of known callers, chosen per flow by a stable
hash of the customer (``in_holdout``), always hears the file's order, so the KPIs can compare the
two groups (``ivr.kpis``); the menu's record on the journey and in the log says which group.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from ivr.flow.profile import OptionStat

DAY = 86400.0
#: Default half-life of a past choice: after 30 days it weighs half as much as one made today.
DEFAULT_HALF_LIFE = 30 * DAY
#: A decayed score below this counts as no history (a single choice, four half-lives ago).
FORGOTTEN = 1 / 16
#: Default guardrail: reorder as soon as the caller has any past contact.
DEFAULT_MIN_CONTACTS = 1


class RankableOption(Protocol):
    """What ranking needs of a menu option (``steps.MenuOption`` is one)."""

    @property
    def id(self) -> str: ...
    @property
    def key(self) -> str: ...
    @property
    def pin(self) -> str | None: ...


Option = TypeVar("Option", bound=RankableOption)


@dataclass(frozen=True)
class Ranking:
    """The menu as it will be spoken: option ids in order, the key of each, and why."""

    order: tuple[str, ...]
    keys: dict[str, str]  # option id -> key spoken
    reason: str
    reordered: bool = False  # does the spoken menu differ from the file's?
    scores: dict[str, float] = field(default_factory=dict)  # decayed to now; options with history only

    def key_map(self) -> dict[str, str]:
        """Key -> option id, in spoken order: what input is matched against."""
        return {self.keys[option]: option for option in self.order}

    def record(self) -> dict[str, Any]:
        """Plain data for the journey and the interaction log (agent screen, audit)."""
        return {
            "order": list(self.order),
            "keys": dict(self.keys),
            "reason": self.reason,
            "reordered": self.reordered,
            "scores": {k: round(v, 4) for k, v in self.scores.items()},
        }


def in_holdout(customer_id: str, flow: str, share: float) -> bool:
    """Is this customer in the holdout of ``flow`` (hears its menus in the file's order)?

    A stable hash of (flow, customer), not a coin toss per call: the same caller is in the same
    group on every call and every channel, so the two groups compare callers, not calls, and a
    caller never hears the menu change order from one call to the next because of the experiment.
    """
    if share <= 0.0:
        return False
    digest = hashlib.sha256(f"{flow}\x00{customer_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64 < share


def decayed_score(stat: OptionStat, now: float, half_life: float) -> float:
    """The stat's score as of ``now`` (a stat stamped in the future counts as of now)."""
    age = max(0.0, now - stat.last_at)
    return stat.score * math.pow(2.0, -age / half_life)


def file_ranking(options: Sequence[RankableOption], reason: str) -> Ranking:
    """The menu exactly as written: file order, file keys."""
    return Ranking(tuple(o.id for o in options), {o.id: o.key for o in options}, reason)


def rank_menu(
    options: Sequence[RankableOption],
    stats: Sequence[OptionStat],
    *,
    now: float,
    half_life: float = DEFAULT_HALF_LIFE,
    contacts: int,
    min_contacts: int = DEFAULT_MIN_CONTACTS,
) -> Ranking:
    """Order and key a menu by this caller's history (see the module docstring for the rule).

    ``stats`` are this menu's (``CallerProfile.option_stats(flow, step)``); stats of options no
    longer in the menu are ignored, several stats of one option add up.
    """
    if half_life <= 0:
        raise ValueError(f"half_life must be positive, got {half_life}")
    if contacts < min_contacts:
        noun = "contact" if contacts == 1 else "contacts"
        return file_ranking(options, f"{contacts} past {noun}; reordering starts at {min_contacts}")
    known = {o.id for o in options}
    by_option: dict[str, list[OptionStat]] = {}
    for stat in stats:
        if stat.option in known:
            by_option.setdefault(stat.option, []).append(stat)
    scores: dict[str, float] = {}
    for option, found in by_option.items():
        score = sum(decayed_score(s, now, half_life) for s in found)
        if score >= FORGOTTEN:
            scores[option] = score
    if not scores:
        return file_ranking(options, "no recent history for this menu")

    first = [o for o in options if o.pin == "first"]
    last = [o for o in options if o.pin == "last"]
    free = [o for o in options if o.pin not in ("first", "last")]
    # sorted() is stable: ties (and options without history, all 0) keep the file's order.
    # Rounding makes "equal" mean equal to a reader, not equal to the last bit.
    ranked = sorted(free, key=lambda o: -round(scores.get(o.id, 0.0), 9))
    keys = {o.id: o.key for o in (*first, *last)}
    keys.update({o.id: pool_key.key for o, pool_key in zip(ranked, free, strict=True)})
    order = tuple(o.id for o in (*first, *ranked, *last))
    reordered = order != tuple(o.id for o in options) or any(keys[o.id] != o.key for o in options)
    detail = "; ".join(_explain(option, by_option[option], now) for option in order if option in scores)
    reason = detail if reordered else f"history agrees with the file's order: {detail}"
    return Ranking(order, keys, reason, reordered, scores)


def order_from_keys(options: Sequence[Option], key_map: Mapping[str, str]) -> list[Option]:
    """Spoken order of a menu whose keys were handed out by ``rank_menu`` (key -> option id).

    Used when a journey resumes at a menu (another channel, another node): the keys saved on the
    journey are the truth, and the order follows from them the same way ``rank_menu`` made them.
    Options missing from ``key_map`` are left out.
    """
    key_of = {option: key for key, option in key_map.items()}
    present = [o for o in options if o.id in key_of]
    free = [o for o in present if o.pin not in ("first", "last")]
    pool = [o.key for o in free]
    position = {key: i for i, key in enumerate(pool)}
    ranked = sorted(free, key=lambda o: position.get(key_of[o.id], len(pool)))
    return [
        *(o for o in present if o.pin == "first"),
        *ranked,
        *(o for o in present if o.pin == "last"),
    ]


def _explain(option: str, stats: Sequence[OptionStat], now: float) -> str:
    count = sum(s.count for s in stats)
    last = max(s.last_at for s in stats)
    times = "1 time" if count == 1 else f"{count} times"
    return f"{option} chosen {times}, last {describe_age(now - last)} ago"


def describe_age(seconds: float) -> str:
    """'40 seconds', '5 minutes', '3 hours', '2 days': whole units, for reason texts."""
    seconds = max(0.0, seconds)
    for unit, size, up_to in (("second", 1, 90), ("minute", 60, 90 * 60), ("hour", 3600, DAY)):
        if seconds < up_to:
            n = round(seconds / size)
            return f"{n} {unit}" + ("" if n == 1 else "s")
    n = round(seconds / DAY)
    return f"{n} day" + ("" if n == 1 else "s")
