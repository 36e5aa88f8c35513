"""Leases between controller nodes, and the fencing token a callback was dialled under.

``leases`` holds one row per thing only one node may do at a time (``acd``: drive the ACD from AMI
and dial callbacks). The holder renews ``expires_at`` every second; a node may take the row only
once it has expired, and taking it increments ``token``. ``callbacks.dial_token`` is the token of
the leader that claimed the ticket for dialling: the claim is one conditional UPDATE that also
requires that token to still hold the lease, so a leader that lost its lease (paused, cut off)
can never dial a ticket its successor may dial too.

Revision ID: 0007
Revises: 0006
Create Date: 2025-01-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "leases",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("holder", sa.String(128), nullable=False),
        sa.Column("token", sa.BigInteger(), nullable=False),
        sa.Column("expires_at", sa.Float(), nullable=False),
    )
    op.add_column("callbacks", sa.Column("dial_token", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("callbacks") as batch:
        batch.drop_column("dial_token")
    op.drop_table("leases")
