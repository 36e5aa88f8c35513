"""Agents' roles: ``agent`` (the desktop) or ``supervisor`` (the supervisor pages).

One role per login: what a session may open is decided by the role of the account it belongs to,
re-read with the session on every request, so changing a role takes effect at the next request.
Existing rows become agents (the server default), which is what they were.

Revision ID: 0005
Revises: 0004
Create Date: 2025-01-05
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("agents", sa.Column("role", sa.String(16), nullable=False, server_default="agent"))


def downgrade() -> None:
    with op.batch_alter_table("agents") as batch:
        batch.drop_column("role")
