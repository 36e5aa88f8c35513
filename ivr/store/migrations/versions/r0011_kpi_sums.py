"""KPIs: sums per 15-minute slot and group (``kpi_sums``, ``kpi_waits``) and the repeat flags of
each contact (``contact_facts.repeat_24h`` / ``repeat_7d``), built from the contact rows.

The journey writer keeps them from now on (``ivr.store.kpi_sums``); this migration computes the
same from ``contact_facts`` in SQL, with the rules written out here so the migration does not
change when that code does: one ``UPDATE`` for the flags (a probe of the customer's index per
contact), then one ``INSERT ... SELECT ... GROUP BY`` per grouping for the sums and the waits.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

HANDLED = "queued_at IS NOT NULL AND answered_at IS NOT NULL"
OFFERED = "queued_at IS NOT NULL"
ABANDONED = "queued_at IS NOT NULL AND answered_at IS NULL AND abandoned_at IS NOT NULL"
SELF_SERVICE = "queued_at IS NULL AND transfers = 0"
TO_CHOICE = "menu_at IS NOT NULL AND chosen_at IS NOT NULL AND chosen_at >= menu_at"
SPOKE = "speech_heard + speech_no_input > 0"
SENT = "sent_at IS NOT NULL"
CLAIMED = f"{SENT} AND claimed_at >= sent_at"
BOOKED = "callback_at IS NOT NULL"
CALLED_BACK = f"{BOOKED} AND callback_connected_at IS NOT NULL"
REASON = (
    "CASE WHEN exhausted_at IS NOT NULL AND exhausted_at <= queued_at THEN coalesce(exhausted_by, 'no_match')"
    " ELSE coalesce(queue_reason, 'flow') END"
)


def _count(condition: str) -> str:
    return f"SUM(CASE WHEN {condition} THEN 1 ELSE 0 END)"


def _sum(condition: str, value: str) -> str:
    return f"SUM(CASE WHEN {condition} THEN {value} ELSE 0 END)"


#: column of kpi_sums -> its sum over a group of contact rows (ivr.kpis.sums_of, in SQL)
MEASURES: dict[str, str] = {
    "contacts": "COUNT(*)",
    "offered": _count(OFFERED),
    "handled": _count(HANDLED),
    "abandoned": _count(ABANDONED),
    "handle_n": _count(f"{HANDLED} AND agent_ended_at IS NOT NULL"),
    **{f"contained_{e}": _count(f"{SELF_SERVICE} AND ended = '{e}'") for e in ("abandoned", "completed", "failed", "handed_off")},
    "choices": "SUM(choices)",
    "first_choices": "SUM(first_choices)",
    "to_choice_n": _count(TO_CHOICE),
    "no_match": "SUM(no_match)",
    "no_input": "SUM(no_input)",
    "speech_contacts": _count(SPOKE),
    **{c: f"SUM({c})" for c in ("speech_heard", "speech_recognised", "speech_no_input", "confirmations", "confirmed", "speech_choices")},
    "fell_back": _count(f"{SPOKE} AND key_choices > 0"),
    **{f"reason_{r}": _count(f"{OFFERED} AND {REASON} = '{r}'") for r in ("no_input", "no_match", "asked_for_agent", "flow")},
    "left_in_flow": _count("ended = 'abandoned'"),
    "links_sent": _count(SENT),
    "links_opened": _count(f"{SENT} AND opened_at >= sent_at"),
    "links_claimed": _count(CLAIMED),
    "links_completed": _count(f"{CLAIMED} AND completed_at >= claimed_at"),
    "callbacks_booked": _count(BOOKED),
    "callbacks_dialled": _count(f"{BOOKED} AND callback_dials > 0"),
    "callback_dials": _sum(BOOKED, "callback_dials"),
    "callbacks_answered": _count(CALLED_BACK),
    "callbacks_failed": _count(f"{BOOKED} AND callback_failed_at IS NOT NULL"),
    "known_contacts": _count("customer_id IS NOT NULL"),
    "repeat_24h": "SUM(repeat_24h)",
    "repeat_7d": "SUM(repeat_7d)",
    "abandon_s": _sum(ABANDONED, "abandoned_at - queued_at"),
    "wait_s": _sum(HANDLED, "answered_at - queued_at"),
    "handle_s": _sum(f"{HANDLED} AND agent_ended_at IS NOT NULL", "agent_ended_at - answered_at"),
    "to_choice_s": _sum(TO_CHOICE, "chosen_at - menu_at"),
    "callback_wait_s": _sum(CALLED_BACK, "callback_connected_at - callback_at"),
}  # fmt: skip
FLOAT_MEASURES = ("abandon_s", "wait_s", "handle_s", "to_choice_s", "callback_wait_s")
#: grouping -> a contact row's key along it (ivr.store.kpi_sums.group_keys)
KEYS = {
    "all": "'-'",
    "queue": "coalesce(queue, '-')",
    "skill": "coalesce(skill, '-')",
    "agent": "coalesce(agent_id, '-')",
    "channel": "coalesce(channel, '-')",
    "step": "coalesce(flow, '-') || '/' || coalesce(ended_step, '-')",
    "handoff": "CASE WHEN sent_at IS NULL THEN '-' ELSE coalesce(sent_from, '-') || '>' || coalesce(sent_to, '-') END",
}
_FLOOR = "floor(started_at / 900.0) * 900.0"
#: the greatest multiple of 900 at or before started_at, exactly (ivr.store.kpi_sums.slot_of)
SLOT = (
    f"CASE WHEN {_FLOOR} > started_at THEN {_FLOOR} - 900.0"
    f" WHEN {_FLOOR} + 900.0 <= started_at THEN {_FLOOR} + 900.0 ELSE {_FLOOR} END"
)
HOLDOUT = "CASE WHEN holdout = 1 THEN 'holdout' WHEN holdout = 0 THEN 'personalized' ELSE '-' END"
REPEAT = (
    "CASE WHEN EXISTS (SELECT 1 FROM contact_facts AS earlier WHERE earlier.customer_id = contact_facts.customer_id"
    " AND earlier.started_at < contact_facts.started_at AND earlier.started_at >= contact_facts.started_at - {window})"
    " THEN 1 ELSE 0 END"
)


def _group() -> list[sa.Column[str] | sa.Column[float]]:
    return [
        sa.Column("dim", sa.String(8), primary_key=True),
        sa.Column("slot", sa.Float(), primary_key=True),
        sa.Column("key", sa.String(160), primary_key=True),
        sa.Column("flow", sa.String(64), primary_key=True),
        sa.Column("holdout", sa.String(16), primary_key=True),
    ]


def upgrade() -> None:
    with op.batch_alter_table("contact_facts") as batch:
        for name in ("repeat_24h", "repeat_7d"):
            batch.add_column(sa.Column(name, sa.Integer(), nullable=False, server_default="0"))
    op.create_table(
        "kpi_sums",
        *_group(),
        *(
            sa.Column(name, sa.Float() if name in FLOAT_MEASURES else sa.Integer(), nullable=False, server_default="0")
            for name in MEASURES
        ),
    )
    op.create_table(
        "kpi_waits",
        *_group(),
        sa.Column("second", sa.Integer(), primary_key=True),
        sa.Column("n", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("n_whole", sa.Integer(), nullable=False, server_default="0"),
    )
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        # statistics first: without them a bulk-filled table's correlated probes are planned as scans
        bind.execute(sa.text("ANALYZE contact_facts"))
    bind.execute(
        sa.text(
            f"UPDATE contact_facts SET repeat_24h = {REPEAT.format(window='86400.0')},"
            f" repeat_7d = {REPEAT.format(window='604800.0')}"
            " WHERE customer_id IS NOT NULL AND started_at IS NOT NULL"
        )
    )
    columns = ", ".join(MEASURES)
    sums = ", ".join(MEASURES.values())
    for dim, key in KEYS.items():
        rows = (
            f"SELECT {SLOT} AS slot_, {key} AS key_, coalesce(flow, '') AS flow_, {HOLDOUT} AS holdout_, *"
            " FROM contact_facts WHERE started_at IS NOT NULL"
        )
        bind.execute(
            sa.text(
                f"INSERT INTO kpi_sums (dim, slot, key, flow, holdout, {columns})"
                f" SELECT '{dim}', slot_, key_, flow_, holdout_, {sums} FROM ({rows}) AS f"
                " GROUP BY slot_, key_, flow_, holdout_"
            )
        )
        waits = (
            f"SELECT slot_, key_, flow_, holdout_, answered_at - queued_at AS wait_ FROM ({rows}) AS f WHERE {HANDLED}"
        )
        bind.execute(
            sa.text(
                "INSERT INTO kpi_waits (dim, slot, key, flow, holdout, second, n, n_whole)"
                f" SELECT '{dim}', slot_, key_, flow_, holdout_, floor(wait_), COUNT(*),"
                " SUM(CASE WHEN wait_ = floor(wait_) THEN 1 ELSE 0 END)"
                f" FROM ({waits}) AS w GROUP BY slot_, key_, flow_, holdout_, floor(wait_)"
            )
        )


def downgrade() -> None:
    op.drop_table("kpi_waits")
    op.drop_table("kpi_sums")
    with op.batch_alter_table("contact_facts") as batch:
        batch.drop_column("repeat_7d")
        batch.drop_column("repeat_24h")
