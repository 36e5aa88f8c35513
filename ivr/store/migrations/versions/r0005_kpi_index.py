"""KPIs: the interactions of one kind in a time range, found by index.

The KPI query reads a dozen event kinds (journey started, queued, agent connected, ...) in a
window (today, an hour) out of a log that holds months of every event; ``(kind, at)`` turns that
into one index range per kind instead of a scan of the whole log.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_interactions_kind_at", "interactions", ["kind", "at"])


def downgrade() -> None:
    op.drop_index("ix_interactions_kind_at", table_name="interactions")
