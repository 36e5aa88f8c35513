"""The interaction log folded into one row of facts per contact, in the database.

Why in SQL: a day at a busy centre is hundreds of thousands of events; the database reads only the
kinds the KPIs need (index ``ix_interactions_kind_at``) and returns one row per journey, so Python
does the arithmetic (``ivr.kpis``) over a few thousand rows. Each column is a conditional
aggregate over one journey's events: "the first time it was queued", "the agent who took it".

Events of a contact can come after the window it started in (a caller who waits in the queue
across the end of the hour): rows are read up to ``LATE_S`` past the window's end, and a journey
is kept only when it started inside the window.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, and_, case, false, func, select, true
from sqlalchemy.ext.asyncio import AsyncEngine

from ivr.kpis import DEFAULT_SERVICE_LEVEL_S, ContactFacts, ReportRequest, ReportRow, first_end, report
from ivr.store.models import InteractionRow

#: How long after the window's end a contact that started in it may still be queued or talking.
LATE_S = 4 * 3600.0
END_KINDS = ("journey_completed", "journey_abandoned", "journey_failed", "journey_queued", "journey_handed_off")
ANSWER_KINDS = ("agent_connected", "chat_offered")
AGENT_END_KINDS = ("agent_completed", "chat_closed")
KINDS = (
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
)

_i = InteractionRow.__table__.c


def _first_at(*kinds: str) -> ColumnElement[Any]:
    return func.min(case((_i.kind.in_(kinds), _i.at)))


def _text(kind: str | tuple[str, ...], key: str) -> ColumnElement[Any]:
    kinds = (kind,) if isinstance(kind, str) else kind
    return func.max(case((_i.kind.in_(kinds), _i.data[key].as_string())))


def _count(condition: ColumnElement[bool]) -> ColumnElement[Any]:
    return func.sum(case((condition, 1), else_=0))


def contact_query(start: float, end: float) -> Any:
    """One row per journey that started in ``[start, end)``, with the facts ``ContactFacts`` holds."""
    personalized = _i.kind == "menu_personalized"
    facts = (
        select(
            _i.journey_id,
            _first_at("journey_started").label("started_at"),
            _text("journey_started", "flow").label("flow"),
            func.max(case((_i.kind == "journey_started", _i.channel))).label("channel"),
            *(_first_at(kind).label(kind) for kind in END_KINDS),
            _first_at("queued").label("queued_at"),
            _text("queued", "queue").label("queue"),
            _text("queued", "skill").label("skill"),
            _first_at(*ANSWER_KINDS).label("answered_at"),
            _text(ANSWER_KINDS, "agent_id").label("agent_id"),
            _first_at(*AGENT_END_KINDS).label("agent_ended_at"),
            _first_at("queue_abandoned").label("abandoned_at"),
            _count(_i.kind == "transferred").label("transfers"),
            # 1: a personalized menu of this journey was heard in the file's order (the holdout)
            func.max(
                case(
                    (and_(personalized, _i.data["holdout"].as_boolean() == true()), 1),
                    (and_(personalized, _i.data["holdout"].as_boolean() == false()), 0),
                )
            ).label("holdout"),
            _first_at("menu_personalized").label("menu_at"),
            _first_at("option_chosen").label("chosen_at"),
            _count(_i.kind == "option_chosen").label("choices"),
            _count(and_(_i.kind == "option_chosen", _i.data["position"].as_integer() == 1)).label("first_choices"),
            _count(and_(_i.kind == "input_rejected", _i.data["status"].as_string() == "nomatch")).label("no_match"),
            _count(and_(_i.kind == "input_rejected", _i.data["status"].as_string() == "noinput")).label("no_input"),
        )
        .where(_i.kind.in_(KINDS), _i.at >= start, _i.at < end + LATE_S)
        .group_by(_i.journey_id)
    ).subquery()
    return select(facts).where(facts.c.started_at >= start, facts.c.started_at < end)


def _facts(row: Any) -> ContactFacts:
    return ContactFacts(
        journey_id=row.journey_id,
        started_at=row.started_at,
        channel=row.channel,
        flow=row.flow or "-",
        ended=first_end({kind.removeprefix("journey_"): getattr(row, kind) for kind in END_KINDS}),
        queued_at=row.queued_at,
        queue=row.queue,
        skill=row.skill,
        answered_at=row.answered_at,
        agent_id=row.agent_id,
        agent_ended_at=row.agent_ended_at,
        abandoned_at=row.abandoned_at,
        transferred=bool(row.transfers),
        holdout=None if row.holdout is None else bool(row.holdout),
        menu_at=row.menu_at,
        chosen_at=row.chosen_at,
        choices=int(row.choices or 0),
        first_choices=int(row.first_choices or 0),
        no_match=int(row.no_match or 0),
        no_input=int(row.no_input or 0),
    )


class KpiStore:
    """Reads contacts for KPIs; writes nothing (the journey writer logs every event)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def contacts(self, start: float, end: float) -> list[ContactFacts]:
        """Every contact that started in ``[start, end)``; the caller bounds the window."""
        async with self.engine.connect() as conn:
            rows = (await conn.execute(contact_query(start, end))).all()
        return [_facts(row) for row in rows]

    async def report(
        self, request: ReportRequest, *, service_level_s: float = DEFAULT_SERVICE_LEVEL_S
    ) -> list[ReportRow]:
        """The report ``ivr report`` prints and ``GET /api/kpis`` returns: the same numbers."""
        contacts = await self.contacts(request.start, request.end)
        return report(
            contacts,
            by=request.by,
            interval=request.interval,
            split_holdout=request.split_holdout,
            service_level_s=service_level_s,
        )
