"""Agents: which phone rings for them, a desk or soft SIP phone (``sip``) or the desktop's
browser softphone (``browser``, WebRTC: ``ivr.acd.sipcreds``).

Every existing agent keeps ``sip``: their phones and deployments work as before.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("agents") as batch:
        batch.add_column(sa.Column("phone", sa.String(16), nullable=False, server_default="sip"))


def downgrade() -> None:
    with op.batch_alter_table("agents") as batch:
        batch.drop_column("phone")
