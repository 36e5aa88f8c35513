"""Branch conditions: a tiny, safe expression language parsed with Python's ``ast``.

Why not ``eval``: flow files come from admins, and a condition must never run code. Why a Python
subset: admins read ``slots.account_number and customer.tier in ["gold", "platinum"]`` without a
manual, and ``ast`` gives us a parser with precise error positions for free. Only the node types
listed in ``_ALLOWED`` are accepted; evaluation walks the tree itself.

Names: ``slots``, ``customer`` (attribute access; a missing attribute is ``None``), ``caller``,
``channel``, ``intent``, ``now`` (``now.hour``, ``now.minute``, ``now.weekday`` as "mon".."sun",
``now.time`` as "HH:MM", ``now.date`` as "YYYY-MM-DD"), ``journey`` (where the caller is in their
journey: ``journey.stage``, ``journey.unfinished.reason``, ``journey.last_contact.minutes``...; the
names are fixed, listed in ``ivr.flow.stages``, and a name that is not there is refused when the
flow is loaded, so a typo is an ``ivr check`` error, not a branch that is silently never taken).
Functions: ``open("hours-name")`` (is the named business-hours calendar open now), ``len(x)``,
``digits(x)`` (x is all digits), ``within(x, minutes=N)`` (or ``hours=``/``days=``: the contact,
ticket or link ``x`` happened at most that long ago; false when there is none).
"""

from __future__ import annotations

import ast
import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ivr.flow.stages import JOURNEY_ATTRS, UNKNOWN, JourneyStage

ROOT_NAMES = frozenset({"slots", "customer", "caller", "channel", "intent", "now", "journey"})
FUNCTIONS = frozenset({"open", "len", "digits", "within"})
WITHIN_UNITS = {"minutes": 60, "hours": 3600, "days": 86400}
_WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")

_ALLOWED = (
    ast.Expression,
    ast.BoolOp,
    ast.And,
    ast.Or,
    ast.UnaryOp,
    ast.Not,
    ast.USub,
    ast.Compare,
    ast.Eq,
    ast.NotEq,
    ast.Lt,
    ast.LtE,
    ast.Gt,
    ast.GtE,
    ast.In,
    ast.NotIn,
    ast.Name,
    ast.Load,
    ast.Attribute,
    ast.Constant,
    ast.List,
    ast.Tuple,
    ast.Call,
    ast.keyword,
)

_COMPARE: dict[type[ast.cmpop], Callable[[Any, Any], bool]] = {
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
    ast.In: lambda a, b: b is not None and a in b,
    ast.NotIn: lambda a, b: b is None or a not in b,
}


class ConditionError(ValueError):
    """A condition that cannot be parsed or uses something not allowed."""


@dataclass(frozen=True)
class Condition:
    source: str
    tree: ast.Expression
    hours_used: frozenset[str]

    def evaluate(self, scope: ConditionScope) -> bool:
        return bool(_eval(self.tree.body, scope))


@dataclass(frozen=True)
class ConditionScope:
    """Everything a condition may read; built by the machine for each evaluation."""

    slots: Mapping[str, Any]
    customer: Mapping[str, Any]
    caller: str | None
    channel: str
    intent: str | None
    now: datetime
    is_open: Callable[[str, datetime], bool]
    journey: JourneyStage = UNKNOWN


class _Attrs:
    """Attribute access over a mapping; missing keys read as None (an unknown slot is not an error)."""

    def __init__(self, data: Mapping[str, Any]) -> None:
        self._data = data

    def get(self, name: str) -> Any:
        return self._data.get(name)


def parse_condition(source: str, known_hours: frozenset[str] | None = None) -> Condition:
    """Parse and validate; raises ConditionError with a message an admin can act on."""
    if not isinstance(source, str) or not source.strip():
        raise ConditionError("condition must be a non-empty string")
    try:
        tree = ast.parse(source.strip(), mode="eval")
    except SyntaxError as exc:
        raise ConditionError(f"cannot parse {source!r}: {exc.msg} at column {exc.offset}") from None
    hours: set[str] = set()
    called = {id(n.func) for n in ast.walk(tree) if isinstance(n, ast.Call)}
    for node in ast.walk(tree):
        if not isinstance(node, _ALLOWED):
            raise ConditionError(f"{type(node).__name__} is not allowed in a condition: {source!r}")
        if isinstance(node, ast.Name) and node.id not in ROOT_NAMES and id(node) not in called:
            raise ConditionError(f"unknown name {node.id!r} (use one of {', '.join(sorted(ROOT_NAMES))})")
        if isinstance(node, ast.Attribute):
            _check_attribute(node, source)
        if isinstance(node, ast.Constant) and not isinstance(node.value, str | int | float | bool | None):
            raise ConditionError(f"constant {node.value!r} is not allowed")
        if isinstance(node, ast.Call):
            if not isinstance(node.func, ast.Name) or node.func.id not in FUNCTIONS:
                raise ConditionError(f"unknown function in {source!r} (allowed: {', '.join(sorted(FUNCTIONS))})")
            if node.func.id == "within":
                _check_within(node)
            elif node.keywords or len(node.args) != 1:
                raise ConditionError(f"{node.func.id}() takes exactly one argument")
            if node.func.id == "open":
                arg = node.args[0]
                if not (isinstance(arg, ast.Constant) and isinstance(arg.value, str)):
                    raise ConditionError('open() takes the name of a business-hours calendar, e.g. open("support")')
                if known_hours is not None and arg.value not in known_hours:
                    raise ConditionError(f"open({arg.value!r}): no such calendar under 'hours'")
                hours.add(arg.value)
    return Condition(source.strip(), tree, frozenset(hours))


def _check_attribute(node: ast.Attribute, source: str) -> None:
    """One level of attributes (``customer.tier``), two under ``journey``, each a name that exists."""
    base = node.value
    if isinstance(base, ast.Name):
        if base.id == "journey" and node.attr not in JOURNEY_ATTRS:
            raise ConditionError(f"journey.{node.attr} does not exist (use one of {', '.join(sorted(JOURNEY_ATTRS))})")
        return
    if isinstance(base, ast.Attribute) and isinstance(base.value, ast.Name) and base.value.id == "journey":
        attrs = JOURNEY_ATTRS.get(base.attr)
        if attrs is None:
            raise ConditionError(f"journey.{base.attr} has no attributes (it is a word): {source!r}")
        if node.attr not in attrs:
            raise ConditionError(
                f"journey.{base.attr}.{node.attr} does not exist (use one of {', '.join(sorted(attrs))})"
            )
        return
    raise ConditionError(f"only one level of attributes is allowed (two under journey): {source!r}")


def _check_within(node: ast.Call) -> None:
    """``within(journey.last_contact, hours=2)``: one thing that happened, one length of time."""
    usage = "within() takes a contact and a time, e.g. within(journey.last_contact, hours=2)"
    if len(node.args) != 1 or len(node.keywords) != 1:
        raise ConditionError(usage)
    kw = node.keywords[0]
    if kw.arg not in WITHIN_UNITS:
        raise ConditionError(f"{usage}; the time is minutes=, hours= or days=")
    value = kw.value
    if not (isinstance(value, ast.Constant) and isinstance(value.value, int | float) and value.value > 0):
        raise ConditionError(f"{usage}; {kw.arg}= is a positive number")
    if isinstance(value.value, bool):
        raise ConditionError(f"{usage}; {kw.arg}= is a positive number")


def _now_attr(now: datetime, name: str) -> Any:
    values: dict[str, Any] = {
        "hour": now.hour,
        "minute": now.minute,
        "weekday": _WEEKDAYS[now.weekday()],
        "time": now.strftime("%H:%M"),
        "date": now.strftime("%Y-%m-%d"),
    }
    if name not in values:
        raise ConditionError(f"now.{name} does not exist (use hour, minute, weekday, time, date)")
    return values[name]


def _eval(node: ast.expr, scope: ConditionScope) -> Any:
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.List | ast.Tuple):
        return [_eval(e, scope) for e in node.elts]
    if isinstance(node, ast.Name):
        roots: dict[str, Any] = {
            "slots": _Attrs(scope.slots),
            "customer": _Attrs(scope.customer),
            "caller": scope.caller,
            "channel": scope.channel,
            "intent": scope.intent,
            "now": scope.now,
            "journey": scope.journey,
        }
        return roots[node.id]
    if isinstance(node, ast.Attribute):
        base = _eval(node.value, scope)
        if isinstance(base, datetime):
            return _now_attr(base, node.attr)
        if isinstance(base, _Attrs):
            return base.get(node.attr)
        if isinstance(base, JourneyStage):
            return base.attribute(node.attr)
        if base is not None and not isinstance(base, str | int | float | bool | list):
            return getattr(base, node.attr, None)  # a stage's contact, ticket or link
        return None
    if isinstance(node, ast.BoolOp):
        if isinstance(node.op, ast.And):
            return all(_eval(v, scope) for v in node.values)
        return any(_eval(v, scope) for v in node.values)
    if isinstance(node, ast.UnaryOp):
        value = _eval(node.operand, scope)
        if isinstance(node.op, ast.Not):
            return not value
        return -value if isinstance(value, int | float) else None
    if isinstance(node, ast.Compare):
        left = _eval(node.left, scope)
        for op, comparator in zip(node.ops, node.comparators, strict=True):
            right = _eval(comparator, scope)
            try:
                ok = _COMPARE[type(op)](left, right)
            except TypeError:
                return False  # e.g. None < 3: a missing value never satisfies an ordering
            if not ok:
                return False
            left = right
        return True
    if isinstance(node, ast.Call):
        assert isinstance(node.func, ast.Name)
        arg = _eval(node.args[0], scope)
        if node.func.id == "open":
            return scope.is_open(str(arg), scope.now)
        if node.func.id == "len":
            return len(arg) if arg is not None else 0
        if node.func.id == "within":
            kw = node.keywords[0]
            assert kw.arg is not None and isinstance(kw.value, ast.Constant)
            when, length = getattr(arg, "when", None), kw.value.value
            if not isinstance(when, int | float) or not isinstance(length, int | float):
                return False
            return scope.now.timestamp() - when <= float(length) * WITHIN_UNITS[kw.arg]
        return isinstance(arg, str) and arg.isdigit()
    raise ConditionError(f"cannot evaluate {type(node).__name__}")
