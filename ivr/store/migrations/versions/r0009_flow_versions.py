"""The flow studio's history: every published (or found-on-disk) version of a flow file, with
its text, who and when, and the diff to the one before; and the audit log of publishes and
rollbacks with the admin's name.

Files in the flows directory stay the source of truth; these rows are the record of how they got
there, so a rollback can republish any earlier text.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "flow_versions",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("flow", sa.String(64), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("version", sa.String(16), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("diff", sa.Text(), nullable=False),
        sa.Column("author", sa.String(64), nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.UniqueConstraint("flow", "number", name="uq_flow_versions_flow_number"),
    )
    op.create_table(
        "flow_audit",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("at", sa.Float(), nullable=False),
        sa.Column("actor", sa.String(64), nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("flow", sa.String(64), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("version", sa.String(16), nullable=False),
        sa.Column("detail", sa.String(256), nullable=False),
    )
    op.create_index("ix_flow_audit_at", "flow_audit", ["at"])


def downgrade() -> None:
    op.drop_index("ix_flow_audit_at", table_name="flow_audit")
    op.drop_table("flow_audit")
    op.drop_table("flow_versions")
