"""KPIs: the speech columns of ``contact_facts`` (heard, recognised, silences, read-backs, choices
by voice and by key), the step a contact ended at, the continuation funnel (link sent, from and to
which channel, opened, claimed, completed), callbacks (booked, dialled, connected, failed), the customer (for repeat contacts) and why it went to the agents (the queued event's intent; the first
time a step ran out of tries, and on what), folded from the log written before them.

The journey writer keeps them from now on (``ivr.kpis``); this migration counts the same events
in the log for the rows that already exist, with the rules written out here so the migration does
not change when that code does: correlated counts and firsts, two ``UPDATE`` statements (the
second reads the first's ``exhausted_at``).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COLUMNS = (
    "speech_heard",
    "speech_recognised",
    "speech_no_input",
    "confirmations",
    "confirmed",
    "speech_choices",
    "key_choices",
    "callback_dials",
)

NULLABLE_COLUMNS = (
    ("sent_at", sa.Float()),
    ("sent_from", sa.String(16)),
    ("sent_to", sa.String(16)),
    ("opened_at", sa.Float()),
    ("claimed_at", sa.Float()),
    ("completed_at", sa.Float()),
    ("callback_at", sa.Float()),
    ("callback_connected_at", sa.Float()),
    ("callback_failed_at", sa.Float()),
    ("customer_id", sa.String(64)),
)


def upgrade() -> None:
    with op.batch_alter_table("contact_facts") as batch:
        for name in COLUMNS:
            batch.add_column(sa.Column(name, sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("queue_reason", sa.String(16), nullable=True))
        batch.add_column(sa.Column("exhausted_at", sa.Float(), nullable=True))
        batch.add_column(sa.Column("exhausted_by", sa.String(16), nullable=True))
        batch.add_column(sa.Column("ended_step", sa.String(64), nullable=True))
        for name, kind in NULLABLE_COLUMNS:
            batch.add_column(sa.Column(name, kind, nullable=True))
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        # A log filled in bulk has no planner statistics yet: without them PostgreSQL plans the
        # correlated counts below as scans of the whole log per contact, which never ends on a
        # million events. With them, each count is a probe of ix_interactions_journey.
        bind.execute(sa.text("ANALYZE interactions"))
        bind.execute(sa.text("ANALYZE contact_facts"))
    for statement in _backfill():
        bind.execute(statement)
    op.create_index("ix_contact_facts_customer_started", "contact_facts", ["customer_id", "started_at"])


def downgrade() -> None:
    op.drop_index("ix_contact_facts_customer_started", table_name="contact_facts")
    with op.batch_alter_table("contact_facts") as batch:
        for name in (
            *COLUMNS,
            "queue_reason",
            "exhausted_at",
            "exhausted_by",
            "ended_step",
            *(n for n, _ in NULLABLE_COLUMNS),
        ):
            batch.drop_column(name)


def _log() -> Any:
    return sa.table(
        "interactions",
        sa.column("id", sa.Integer),
        sa.column("journey_id", sa.String),
        sa.column("kind", sa.String),
        sa.column("data", sa.JSON),
        sa.column("at", sa.Float),
        sa.column("step", sa.String),
        sa.column("channel", sa.String),
        sa.column("customer_id", sa.String),
    )


def _backfill() -> list[Any]:
    log = _log().c
    facts = sa.table(
        "contact_facts",
        sa.column("journey_id", sa.String),
        sa.column("queued_at", sa.Float),
        sa.column("queue_reason", sa.String),
        sa.column("exhausted_at", sa.Float),
        sa.column("exhausted_by", sa.String),
        sa.column("ended_at", sa.Float),
        sa.column("ended_step", sa.String),
        *(sa.column(name) for name, _ in NULLABLE_COLUMNS),
        *(sa.column(c) for c in COLUMNS),
    )

    def count(kind: str, *conditions: Any) -> Any:
        return (
            sa.select(sa.func.count())
            .where(log.journey_id == facts.c.journey_id, log.kind == kind, *conditions)
            .scalar_subquery()
        )

    mode = log.data["mode"].as_string()
    mine = log.journey_id == facts.c.journey_id
    asked = sa.exists().where(
        mine,
        log.kind == "queued",
        log.at == facts.c.queued_at,
        log.data["intent"].as_string().in_(("agent", "operator")),
    )
    first_exhausted = sa.select(sa.func.min(log.at)).where(mine, log.kind == "tries_exhausted").scalar_subquery()
    # the status the step ran out of tries on: recorded with tries_exhausted, or (older logs) the
    # input rejected just before it
    given = (
        sa.select(sa.func.max(log.data["status"].as_string()))
        .where(mine, log.kind == "tries_exhausted", log.at == facts.c.exhausted_at)
        .scalar_subquery()
    )
    before = (
        sa.select(log.data["status"].as_string())
        .where(mine, log.kind == "input_rejected", log.at <= facts.c.exhausted_at)
        .order_by(log.at.desc(), log.id.desc())
        .limit(1)
        .scalar_subquery()
    )
    status = sa.func.coalesce(given, before)
    ends = [f"journey_{e}" for e in ("completed", "abandoned", "failed", "queued", "handed_off")]
    # the step of the end event that set ended_at (ties: the greatest name)
    ended_step = (
        sa.select(sa.func.max(log.step)).where(mine, log.kind.in_(ends), log.at == facts.c.ended_at).scalar_subquery()
    )

    def first_at(kind: str) -> Any:
        return sa.select(sa.func.min(log.at)).where(mine, log.kind == kind).scalar_subquery()

    def at_first_send(value: Any) -> Any:
        """The value carried by the first handed_off (ties: the greatest)."""
        return (
            sa.select(sa.func.max(value))
            .where(mine, log.kind == "handed_off", log.at == facts.c.sent_at)
            .scalar_subquery()
        )

    links = facts.update().values(
        sent_at=first_at("handed_off"),
        opened_at=first_at("link_opened"),
        claimed_at=sa.select(sa.func.min(log.at))
        .where(mine, log.kind == "channel_changed", log.data["via"].as_string() == "link")
        .scalar_subquery(),
        completed_at=first_at("journey_completed"),
        callback_at=first_at("callback_requested"),
        callback_connected_at=first_at("callback_connected"),
        callback_failed_at=first_at("callback_failed"),
        customer_id=sa.select(sa.func.max(log.customer_id)).where(mine).scalar_subquery(),
    )
    pairs = facts.update().values(
        sent_from=at_first_send(log.channel), sent_to=at_first_send(log.data["to"].as_string())
    )
    reasons = facts.update().values(
        queue_reason=sa.case((facts.c.queued_at.is_(None), None), (asked, "asked_for_agent"), else_="flow"),
        exhausted_at=first_exhausted,
        ended_step=ended_step,
    )
    exhausted_by = facts.update().values(
        exhausted_by=sa.case(
            (facts.c.exhausted_at.is_(None), None), (status == "noinput", "no_input"), else_="no_match"
        )
    )
    counts = facts.update().values(
        speech_heard=count("intent_recognised"),
        speech_recognised=count("intent_recognised", log.data["status"].as_string() == "match"),
        speech_no_input=count("input_rejected", log.data["status"].as_string() == "noinput", mode == "speech"),
        confirmations=count("confirmation_asked"),
        confirmed=count("confirmation_answered", log.data["confirmed"].as_boolean() == sa.true()),
        speech_choices=count("option_chosen", mode == "speech"),
        key_choices=count("option_chosen", mode == "dtmf"),
        callback_dials=count("callback_dialled"),
    )
    return [counts, reasons, exhausted_by, links, pairs]
