"""Customers, their identities, and the per-customer aggregates the call path reads.

``option_stats`` and ``customer_slots`` are derived from ``interactions`` by the journey writer;
the timeline index gains ``id`` so its (at, id) cursor is served from the index alone.

Revision ID: 0002
Revises: 0001
Create Date: 2025-01-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _customer_fk(table: str) -> sa.ForeignKey:
    return sa.ForeignKey("customers.id", ondelete="CASCADE", name=f"fk_{table}_customer_id_customers")


def upgrade() -> None:
    op.create_table(
        "customers",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("display_name", sa.String(200), nullable=True),
        sa.Column("email", sa.String(320), nullable=True),
        sa.Column("crm_id", sa.String(64), nullable=True),
        sa.Column("tier", sa.String(32), nullable=True),
        sa.Column("language", sa.String(16), nullable=True),
        sa.Column("verified", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.UniqueConstraint("crm_id", name="uq_customers_crm_id"),
    )
    op.create_table(
        "customer_identities",
        sa.Column("kind", sa.String(16), primary_key=True),
        sa.Column("value", sa.String(320), primary_key=True),
        sa.Column("customer_id", sa.String(32), _customer_fk("customer_identities"), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
    )
    op.create_index("ix_customer_identities_customer_id", "customer_identities", ["customer_id"])
    op.create_table(
        "option_stats",
        sa.Column("customer_id", sa.String(32), _customer_fk("option_stats"), primary_key=True),
        sa.Column("flow", sa.String(64), primary_key=True),
        sa.Column("step", sa.String(64), primary_key=True),
        sa.Column("option", sa.String(64), primary_key=True),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("last_at", sa.Float(), nullable=False),
    )
    op.create_table(
        "customer_slots",
        sa.Column("customer_id", sa.String(32), _customer_fk("customer_slots"), primary_key=True),
        sa.Column("slot", sa.String(64), primary_key=True),
        sa.Column("value", sa.String(256), nullable=False),
        sa.Column("channel", sa.String(16), nullable=False),
        sa.Column("at", sa.Float(), nullable=False),
    )
    op.drop_index("ix_interactions_customer_at", table_name="interactions")
    op.create_index("ix_interactions_customer_at", "interactions", ["customer_id", "at", "id"])


def downgrade() -> None:
    op.drop_index("ix_interactions_customer_at", table_name="interactions")
    op.create_index("ix_interactions_customer_at", "interactions", ["customer_id", "at"])
    op.drop_table("customer_slots")
    op.drop_table("option_stats")
    op.drop_table("customer_identities")
    op.drop_table("customers")
