"""Journeys and the interaction log: the schema as it was before migrations existed.

A database created by the old ``Base.metadata.create_all`` has exactly these tables and no
``alembic_version``; ``ivr.store.schema.upgrade`` stamps it at this revision and goes on from here.

Revision ID: 0001
Revises:
Create Date: 2025-01-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")  # SQLite autoincrement: INTEGER PRIMARY KEY


def upgrade() -> None:
    op.create_table(
        "journeys",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("flow", sa.String(64), nullable=False),
        sa.Column("flow_version", sa.String(16), nullable=False),
        sa.Column("channel", sa.String(16), nullable=False),
        sa.Column("step", sa.String(64), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("caller", sa.String(32), nullable=True),
        sa.Column("customer_id", sa.String(64), nullable=True),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.Column("started_at", sa.Float(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
    )
    op.create_index("ix_journeys_status", "journeys", ["status"])
    op.create_index("ix_journeys_caller", "journeys", ["caller"])
    op.create_index("ix_journeys_customer_id", "journeys", ["customer_id"])
    op.create_index("ix_journeys_updated_at", "journeys", ["updated_at"])
    op.create_table(
        "interactions",
        sa.Column("id", BIG_ID, primary_key=True, autoincrement=True),
        sa.Column("journey_id", sa.String(32), nullable=False),
        sa.Column("customer_id", sa.String(64), nullable=True),
        sa.Column("channel", sa.String(16), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("step", sa.String(64), nullable=True),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.Column("at", sa.Float(), nullable=False),
    )
    op.create_index("ix_interactions_journey", "interactions", ["journey_id", "id"])
    op.create_index("ix_interactions_customer_at", "interactions", ["customer_id", "at"])


def downgrade() -> None:
    op.drop_table("interactions")
    op.drop_table("journeys")
