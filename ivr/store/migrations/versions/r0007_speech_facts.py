"""KPIs: the speech columns of ``contact_facts`` (heard, recognised, silences, read-backs, choices
by voice and by key), folded from the log written before them.

The journey writer keeps them from now on (``ivr.kpis``); this migration counts the same events
in the log for the rows that already exist, with the rules written out here so the migration does
not change when that code does: a correlated count per column, one ``UPDATE``.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
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
)


def upgrade() -> None:
    with op.batch_alter_table("contact_facts") as batch:
        for name in COLUMNS:
            batch.add_column(sa.Column(name, sa.Integer(), nullable=False, server_default="0"))
    op.get_bind().execute(_backfill())


def downgrade() -> None:
    with op.batch_alter_table("contact_facts") as batch:
        for name in COLUMNS:
            batch.drop_column(name)


def _backfill() -> Any:
    log = sa.table(
        "interactions",
        sa.column("journey_id", sa.String),
        sa.column("kind", sa.String),
        sa.column("data", sa.JSON),
    ).c
    facts = sa.table("contact_facts", sa.column("journey_id", sa.String), *(sa.column(c) for c in COLUMNS))

    def count(kind: str, *conditions: Any) -> Any:
        return (
            sa.select(sa.func.count())
            .where(log.journey_id == facts.c.journey_id, log.kind == kind, *conditions)
            .scalar_subquery()
        )

    mode = log.data["mode"].as_string()
    return facts.update().values(
        speech_heard=count("intent_recognised"),
        speech_recognised=count("intent_recognised", log.data["status"].as_string() == "match"),
        speech_no_input=count("input_rejected", log.data["status"].as_string() == "noinput", mode == "speech"),
        confirmations=count("confirmation_asked"),
        confirmed=count("confirmation_answered", log.data["confirmed"].as_boolean() == sa.true()),
        speech_choices=count("option_chosen", mode == "speech"),
        key_choices=count("option_chosen", mode == "dtmf"),
    )
