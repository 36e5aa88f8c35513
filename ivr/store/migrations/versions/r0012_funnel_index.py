"""The funnel: an index of the log entries that move a journey into another flow.

A flow's funnel (``ivr.store.funnels``) must find the journeys that entered it as a sub-flow, and
tell the journeys that never left their own flow (counted in SQL) from those that did (replayed
entry by entry). Both are questions about ``flow_entered`` entries, a few in a hundred of the
log: a partial index holds only those, so either question is a probe of a small index instead of
a scan of the whole log.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

WHERE = sa.text("kind = 'flow_entered'")


def upgrade() -> None:
    op.create_index(
        "ix_interactions_flow_entered",
        "interactions",
        ["journey_id"],
        postgresql_where=WHERE,
        sqlite_where=WHERE,
    )


def downgrade() -> None:
    op.drop_index("ix_interactions_flow_entered", table_name="interactions")
