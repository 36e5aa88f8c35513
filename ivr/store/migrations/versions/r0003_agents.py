"""Agents, their desktop sessions, and queue callbacks.

``agents`` are the people who answer: a login name, a password hash (scrypt, never the password),
the PJSIP endpoint of their softphone and their skills with a penalty each (the queue widening
rule reads them). ``agent_sessions`` stores only a hash of the session cookie, so a leaked
database does not log anyone in. ``callbacks`` are virtual queue tickets: ``ticket_at`` is when the
caller joined the queue (their place), ``open_customer`` equals ``customer_id`` while the ticket is
open and NULL once closed, so a plain unique constraint enforces "one open callback per customer"
on SQLite and PostgreSQL alike (NULLs never collide).

Revision ID: 0003
Revises: 0002
Create Date: 2025-01-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "agents",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("username", sa.String(64), nullable=False),
        sa.Column("display_name", sa.String(200), nullable=False),
        sa.Column("password_hash", sa.String(256), nullable=False),
        sa.Column("endpoint", sa.String(64), nullable=False),
        sa.Column("skills", sa.JSON(), nullable=False),
        sa.Column("max_chats", sa.Integer(), nullable=False, server_default="3"),
        sa.Column("disabled", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.UniqueConstraint("username", name="uq_agents_username"),
    )
    op.create_table(
        "agent_sessions",
        sa.Column("token_hash", sa.String(64), primary_key=True),
        sa.Column(
            "agent_id",
            sa.String(32),
            sa.ForeignKey("agents.id", ondelete="CASCADE", name="fk_agent_sessions_agent_id_agents"),
            nullable=False,
        ),
        sa.Column("csrf_token", sa.String(64), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("expires_at", sa.Float(), nullable=False),
    )
    op.create_index("ix_agent_sessions_agent_id", "agent_sessions", ["agent_id"])
    op.create_table(
        "callbacks",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("customer_id", sa.String(64), nullable=True),
        sa.Column("open_customer", sa.String(64), nullable=True),
        sa.Column("journey_id", sa.String(32), nullable=False),
        sa.Column("phone", sa.String(32), nullable=False),
        sa.Column("queue", sa.String(64), nullable=False),
        sa.Column("skill", sa.String(64), nullable=False),
        sa.Column("priority", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("ticket_at", sa.Float(), nullable=False),
        sa.Column("not_before", sa.Float(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("context", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.UniqueConstraint("open_customer", name="uq_callbacks_open_customer"),
    )
    op.create_index("ix_callbacks_status", "callbacks", ["status", "queue", "ticket_at"])


def downgrade() -> None:
    op.drop_index("ix_callbacks_status", table_name="callbacks")
    op.drop_table("callbacks")
    op.drop_index("ix_agent_sessions_agent_id", table_name="agent_sessions")
    op.drop_table("agent_sessions")
    op.drop_table("agents")
