"""KPIs: ``contact_facts``, one row per contact (journey) folded from the interaction log.

Reports group these rows instead of scanning the log: a day at a busy centre is a million events
but a hundred thousand contacts. The journey writer keeps each row up to date in the same
transaction as the events (``ivr.store.kpis``); this migration folds the log written before it,
with the same rules (``ivr.kpis``: the earliest "first" times and their values, counts added,
holdout the highest), written out here so the migration does not change when that code does.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ENDS = ("completed", "abandoned", "failed", "queued", "handed_off")
KINDS = (
    "journey_started",
    *(f"journey_{e}" for e in ENDS),
    "queued",
    "agent_connected",
    "chat_offered",
    "agent_completed",
    "chat_closed",
    "queue_abandoned",
    "transferred",
    "menu_personalized",
    "option_chosen",
    "input_rejected",
)


def upgrade() -> None:
    op.create_table(
        "contact_facts",
        sa.Column("journey_id", sa.String(32), primary_key=True),
        sa.Column("started_at", sa.Float(), nullable=True),
        sa.Column("channel", sa.String(16), nullable=True),
        sa.Column("flow", sa.String(64), nullable=True),
        sa.Column("ended_at", sa.Float(), nullable=True),
        sa.Column("ended", sa.String(16), nullable=True),
        sa.Column("queued_at", sa.Float(), nullable=True),
        sa.Column("queue", sa.String(64), nullable=True),
        sa.Column("skill", sa.String(64), nullable=True),
        sa.Column("answered_at", sa.Float(), nullable=True),
        sa.Column("agent_id", sa.String(64), nullable=True),
        sa.Column("agent_ended_at", sa.Float(), nullable=True),
        sa.Column("abandoned_at", sa.Float(), nullable=True),
        sa.Column("menu_at", sa.Float(), nullable=True),
        sa.Column("chosen_at", sa.Float(), nullable=True),
        sa.Column("transfers", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("choices", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("first_choices", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("no_match", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("no_input", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("holdout", sa.Integer(), nullable=True),
    )
    op.create_index("ix_contact_facts_started_at", "contact_facts", ["started_at"])
    op.get_bind().execute(_backfill())


def downgrade() -> None:
    op.drop_index("ix_contact_facts_started_at", table_name="contact_facts")
    op.drop_table("contact_facts")


def _backfill() -> Any:
    log = sa.table(
        "interactions",
        sa.column("journey_id", sa.String),
        sa.column("channel", sa.String),
        sa.column("kind", sa.String),
        sa.column("data", sa.JSON),
        sa.column("at", sa.Float),
    ).c

    def first_at(*kinds: str) -> Any:
        return sa.func.min(sa.case((log.kind.in_(kinds), log.at)))

    def value_at_first(kinds: tuple[str, ...], value: Any) -> Any:
        """The value carried by the earliest event of ``kinds`` (ties: the greatest)."""
        earliest = (
            sa.select(sa.func.min(inner.at))
            .where(inner.journey_id == log.journey_id, inner.kind.in_(kinds))
            .scalar_subquery()
        )
        return sa.func.max(sa.case((sa.and_(log.kind.in_(kinds), log.at == earliest), value)))

    inner = sa.table("interactions", sa.column("journey_id"), sa.column("kind"), sa.column("at", sa.Float)).alias().c

    def count(condition: Any) -> Any:
        return sa.func.sum(sa.case((condition, 1), else_=0))

    menu = log.kind == "menu_personalized"
    per_journey = (
        sa.select(
            log.journey_id,
            first_at("journey_started").label("started_at"),
            value_at_first(("journey_started",), log.channel).label("channel"),
            value_at_first(("journey_started",), log.data["flow"].as_string()).label("flow"),
            *(first_at(f"journey_{e}").label(f"end_{e}") for e in ENDS),
            first_at("queued").label("queued_at"),
            value_at_first(("queued",), log.data["queue"].as_string()).label("queue"),
            value_at_first(("queued",), log.data["skill"].as_string()).label("skill"),
            first_at("agent_connected", "chat_offered").label("answered_at"),
            value_at_first(("agent_connected", "chat_offered"), log.data["agent_id"].as_string()).label("agent_id"),
            first_at("agent_completed", "chat_closed").label("agent_ended_at"),
            first_at("queue_abandoned").label("abandoned_at"),
            first_at("menu_personalized").label("menu_at"),
            first_at("option_chosen").label("chosen_at"),
            count(log.kind == "transferred").label("transfers"),
            count(log.kind == "option_chosen").label("choices"),
            count(sa.and_(log.kind == "option_chosen", log.data["position"].as_integer() == 1)).label("first_choices"),
            count(
                sa.and_(
                    log.kind == "input_rejected",
                    sa.func.coalesce(log.data["status"].as_string(), "") != "noinput",
                )
            ).label("no_match"),
            count(sa.and_(log.kind == "input_rejected", log.data["status"].as_string() == "noinput")).label("no_input"),
            sa.func.max(
                sa.case(
                    (sa.and_(menu, log.data["holdout"].as_boolean() == sa.true()), 1),
                    (sa.and_(menu, log.data["holdout"].as_boolean() == sa.false()), 0),
                )
            ).label("holdout"),
        )
        .where(log.kind.in_(KINDS))
        .group_by(log.journey_id)
    ).subquery()
    j = per_journey.c
    # the earliest end: for each status, "it happened and no other status happened earlier"
    firsts = [
        (
            sa.and_(
                j[f"end_{e}"].is_not(None),
                *(sa.or_(j[f"end_{o}"].is_(None), j[f"end_{o}"] >= j[f"end_{e}"]) for o in ENDS if o != e),
            ),
            e,
        )
        for e in ENDS
    ]
    columns = [
        "journey_id",
        "started_at",
        "channel",
        "flow",
        "queued_at",
        "queue",
        "skill",
        "answered_at",
        "agent_id",
        "agent_ended_at",
        "abandoned_at",
        "menu_at",
        "chosen_at",
        "transfers",
        "choices",
        "first_choices",
        "no_match",
        "no_input",
        "holdout",
    ]
    ended = sa.case(*((condition, sa.literal(e)) for condition, e in firsts), else_=None)
    ended_at = sa.case(*((condition, j[f"end_{e}"]) for condition, e in firsts), else_=None)
    facts = sa.table("contact_facts", *(sa.column(c) for c in [*columns, "ended", "ended_at"]))
    return facts.insert().from_select(
        [*columns, "ended", "ended_at"], sa.select(*(j[c] for c in columns), ended, ended_at)
    )
