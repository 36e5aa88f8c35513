"""KPIs: an agent's transfers that took (blind, consult) and click-to-call (placed, answered).

``contact_facts`` gains ``agent_transfers_blind`` / ``agent_transfers_consult`` (``agent_transfer``
entries whose outcome is ``transferred`` or ``completed``, by their ``mode``), ``outbound_at`` and
``outbound_agent`` (the first ``outbound_call`` and the agent who placed it) and
``outbound_answered_at`` (the first ``outbound_answered``); ``kpi_sums`` gains the four sums a
group adds up. Rows that exist are filled from the log.

Why the sums are built again, not just their new columns: a contact's agent is now the agent who
took it, else the one who called out (``ivr.kpis.ContactFacts.agent``), so an outbound contact
moves from the agent group ``-`` to its agent. ``kpi_sums`` and ``kpi_waits`` are rebuilt from
``contact_facts`` as migration 0011 built them (one ``INSERT ... SELECT ... GROUP BY`` per
grouping); the downgrade rebuilds them with the key and the columns before. The rules are written
out here so the migration does not change when that code does.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TOOK = ("transferred", "completed")
MODES = ("blind", "consult")
FACT_COUNTS = tuple(f"agent_transfers_{mode}" for mode in MODES)
FACT_COLUMNS: tuple[tuple[str, Any], ...] = (
    ("outbound_at", sa.Float()),
    ("outbound_agent", sa.String(64)),
    ("outbound_answered_at", sa.Float()),
)
NEW_SUMS = (*FACT_COUNTS, "outbound_calls", "outbound_answered")

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
OUTBOUND = "outbound_at IS NOT NULL"
REASON = (
    "CASE WHEN exhausted_at IS NOT NULL AND exhausted_at <= queued_at THEN coalesce(exhausted_by, 'no_match')"
    " ELSE coalesce(queue_reason, 'flow') END"
)


def _count(condition: str) -> str:
    return f"SUM(CASE WHEN {condition} THEN 1 ELSE 0 END)"


def _sum(condition: str, value: str) -> str:
    return f"SUM(CASE WHEN {condition} THEN {value} ELSE 0 END)"


#: column of kpi_sums before this migration -> its sum over a group of contact rows (as 0011)
MEASURES_BEFORE: dict[str, str] = {
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
#: ... and after it (ivr.kpis.sums_of, in SQL)
MEASURES: dict[str, str] = {
    **MEASURES_BEFORE,
    **{name: f"SUM({name})" for name in FACT_COUNTS},
    "outbound_calls": _count(OUTBOUND),
    "outbound_answered": _count(f"{OUTBOUND} AND outbound_answered_at IS NOT NULL"),
}
#: grouping -> a contact row's key along it, before this migration (as 0011)
KEYS_BEFORE = {
    "all": "'-'",
    "queue": "coalesce(queue, '-')",
    "skill": "coalesce(skill, '-')",
    "agent": "coalesce(agent_id, '-')",
    "channel": "coalesce(channel, '-')",
    "step": "coalesce(flow, '-') || '/' || coalesce(ended_step, '-')",
    "handoff": "CASE WHEN sent_at IS NULL THEN '-' ELSE coalesce(sent_from, '-') || '>' || coalesce(sent_to, '-') END",
}
#: ... and after it (ivr.store.kpi_sums.group_keys): an outbound contact counts for its agent
KEYS = {**KEYS_BEFORE, "agent": "coalesce(agent_id, outbound_agent, '-')"}
_FLOOR = "floor(started_at / 900.0) * 900.0"
#: the greatest multiple of 900 at or before started_at, exactly (ivr.store.kpi_sums.slot_of)
SLOT = (
    f"CASE WHEN {_FLOOR} > started_at THEN {_FLOOR} - 900.0"
    f" WHEN {_FLOOR} + 900.0 <= started_at THEN {_FLOOR} + 900.0 ELSE {_FLOOR} END"
)
HOLDOUT = "CASE WHEN holdout = 1 THEN 'holdout' WHEN holdout = 0 THEN 'personalized' ELSE '-' END"


def upgrade() -> None:
    with op.batch_alter_table("contact_facts") as batch:
        for name in FACT_COUNTS:
            batch.add_column(sa.Column(name, sa.Integer(), nullable=False, server_default="0"))
        for name, kind in FACT_COLUMNS:
            batch.add_column(sa.Column(name, kind, nullable=True))
    with op.batch_alter_table("kpi_sums") as batch:
        for name in NEW_SUMS:
            batch.add_column(sa.Column(name, sa.Integer(), nullable=False, server_default="0"))
    bind = op.get_bind()
    for statement in _backfill():
        bind.execute(statement)
    _rebuild(bind, MEASURES, KEYS)


def downgrade() -> None:
    with op.batch_alter_table("kpi_sums") as batch:
        for name in NEW_SUMS:
            batch.drop_column(name)
    with op.batch_alter_table("contact_facts") as batch:
        for name in (*FACT_COUNTS, *(n for n, _ in FACT_COLUMNS)):
            batch.drop_column(name)
    _rebuild(op.get_bind(), MEASURES_BEFORE, KEYS_BEFORE)


def _backfill() -> list[Any]:
    """The transfers that took by mode, the first click-to-call with its agent (ties: the
    greatest) and the first answer, for the contacts whose journeys logged any of them."""
    log = sa.table(
        "interactions",
        sa.column("journey_id", sa.String),
        sa.column("kind", sa.String),
        sa.column("data", sa.JSON),
        sa.column("at", sa.Float),
    ).c
    facts = sa.table(
        "contact_facts",
        sa.column("journey_id", sa.String),
        *(sa.column(name) for name in FACT_COUNTS),
        *(sa.column(name) for name, _ in FACT_COLUMNS),
    )
    mine = log.journey_id == facts.c.journey_id

    def took(mode: str) -> Any:
        return (
            sa.select(sa.func.count())
            .where(
                mine,
                log.kind == "agent_transfer",
                log.data["mode"].as_string() == mode,
                log.data["outcome"].as_string().in_(TOOK),
            )
            .scalar_subquery()
        )

    def first_at(kind: str) -> Any:
        return sa.select(sa.func.min(log.at)).where(mine, log.kind == kind).scalar_subquery()

    agent = (
        sa.select(sa.func.max(sa.func.substr(log.data["agent_id"].as_string(), 1, 64)))
        .where(mine, log.kind == "outbound_call", log.at == facts.c.outbound_at)
        .scalar_subquery()
    )
    touched = facts.c.journey_id.in_(
        sa.select(log.journey_id).where(log.kind.in_(("agent_transfer", "outbound_call", "outbound_answered")))
    )
    firsts = (
        facts.update()
        .where(touched)
        .values(
            **{f"agent_transfers_{mode}": took(mode) for mode in MODES},
            outbound_at=first_at("outbound_call"),
            outbound_answered_at=first_at("outbound_answered"),
        )
    )
    # a second statement: the agent is the one of the first call, which the first one set
    return [firsts, facts.update().where(facts.c.outbound_at.is_not(None)).values(outbound_agent=agent)]


def _rebuild(bind: Any, measures: Mapping[str, str], keys: Mapping[str, str]) -> None:
    """``kpi_sums`` and ``kpi_waits`` from ``contact_facts``, as 0011 built them."""
    bind.execute(sa.text("DELETE FROM kpi_waits"))
    bind.execute(sa.text("DELETE FROM kpi_sums"))
    columns = ", ".join(measures)
    sums = ", ".join(measures.values())
    for dim, key in keys.items():
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
