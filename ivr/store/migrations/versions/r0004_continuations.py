"""Continuations: one row per link sent to move a journey to another channel.

The link's token carries only a random id, an expiry and a keyed tag of the customer; this row
says which journey and step it continues. ``claimed_at`` is set by a single conditional UPDATE
(``WHERE claimed_at IS NULL AND expires_at > now``), so a link can be used once even if two
browsers race for it. ``session_hash`` is the SHA-256 of the chat session cookie issued on claim
(never the cookie itself).

Revision ID: 0004
Revises: 0003
Create Date: 2025-01-04
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "continuations",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("journey_id", sa.String(32), nullable=False),
        sa.Column("customer_id", sa.String(64), nullable=True),
        sa.Column("channel", sa.String(16), nullable=False),
        sa.Column("step", sa.String(64), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("expires_at", sa.Float(), nullable=False),
        sa.Column("claimed_at", sa.Float(), nullable=True),
        sa.Column("session_hash", sa.String(64), nullable=True),
    )
    op.create_index("ix_continuations_journey_id", "continuations", ["journey_id"])
    op.create_index("ix_continuations_session_hash", "continuations", ["session_hash"])


def downgrade() -> None:
    op.drop_index("ix_continuations_session_hash", table_name="continuations")
    op.drop_index("ix_continuations_journey_id", table_name="continuations")
    op.drop_table("continuations")
