"""KPIs: whether a callback kept its place, and a continuation link's first open.

``contact_facts`` gains the queue a callback was booked in (``callback_queue``) and when the
customer was first dialled back (``callback_dialled_at``): a callback kept its place when nobody
who joined that queue after the booking reached an agent before that first dial (``ivr.kpis``).
The index on (queue, queued_at) finds those later callers without a scan per callback. Rows that
already booked a callback are filled from the log, with the rule written out here so the
migration does not change when that code does.

``continuations.opened_at``: the first time the link's page was opened. ``link_opened`` is logged
only when this is set, so a bot refreshing the page adds no rows. Links made before this migration
start with none (they expire within hours; at most one more open is logged for each).

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("contact_facts") as batch:
        batch.add_column(sa.Column("callback_queue", sa.String(64), nullable=True))
        batch.add_column(sa.Column("callback_dialled_at", sa.Float(), nullable=True))
    with op.batch_alter_table("continuations") as batch:
        batch.add_column(sa.Column("opened_at", sa.Float(), nullable=True))
    op.get_bind().execute(_backfill())
    op.create_index("ix_contact_facts_queue_queued", "contact_facts", ["queue", "queued_at"])
    dialled = sa.text("callback_dialled_at IS NOT NULL")
    op.create_index(
        "ix_contact_facts_callback_dialled",
        "contact_facts",
        ["started_at"],
        postgresql_where=dialled,
        sqlite_where=dialled,
    )


def downgrade() -> None:
    op.drop_index("ix_contact_facts_callback_dialled", table_name="contact_facts")
    op.drop_index("ix_contact_facts_queue_queued", table_name="contact_facts")
    with op.batch_alter_table("continuations") as batch:
        batch.drop_column("opened_at")
    with op.batch_alter_table("contact_facts") as batch:
        batch.drop_column("callback_dialled_at")
        batch.drop_column("callback_queue")


def _backfill() -> Any:
    """The queue of the first ``callback_requested`` (ties: the greatest) and the first
    ``callback_dialled``, for the contacts that booked a callback."""
    log = sa.table(
        "interactions",
        sa.column("journey_id", sa.String),
        sa.column("kind", sa.String),
        sa.column("data", sa.JSON),
        sa.column("at", sa.Float),
    ).c
    facts = sa.table(
        "contact_facts",
        sa.column("journey_id", sa.String),
        sa.column("callback_at", sa.Float),
        sa.column("callback_queue", sa.String),
        sa.column("callback_dialled_at", sa.Float),
    )
    mine = log.journey_id == facts.c.journey_id
    queue = (
        sa.select(sa.func.max(log.data["queue"].as_string()))
        .where(mine, log.kind == "callback_requested", log.at == facts.c.callback_at)
        .scalar_subquery()
    )
    dialled = sa.select(sa.func.min(log.at)).where(mine, log.kind == "callback_dialled").scalar_subquery()
    return (
        facts.update().where(facts.c.callback_at.is_not(None)).values(callback_queue=queue, callback_dialled_at=dialled)
    )
