"""Tables. Only ``ivr.store`` knows SQL; everything else sees ``Journey``, ``CallerProfile`` and dicts.

``journeys`` holds the latest snapshot of each journey (its full plain-data form in ``data``, plus
indexed columns for lookups); ``interactions`` is the ONE append-only log of everything that
happened, on every channel, which timelines and metrics are computed from.

``customers`` and ``customer_identities`` say who a contact is: an identity (a phone number in
E.164, an e-mail address, an external CRM id) points to exactly one customer.

``option_stats``, ``customer_slots`` and ``contact_facts`` are derived from the log, kept up to date
incrementally by the journey writer, so the call path reads a handful of rows instead of scanning a
customer's history: the count and exponentially decayed score of every menu option a customer
chose, and the last value of every (non-secret) slot they gave; and a report reads one row per
contact instead of every event (``contact_facts``, see ``ivr.kpis``), or for whole quarters of an
hour one row of sums per group (``kpi_sums``, ``kpi_waits``, see ``ivr.store.kpi_sums``).

The schema is owned by the Alembic migrations in ``ivr/store/migrations``; these classes must match
them (a test compares the two).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    false,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

#: 64-bit ids where the database has them; SQLite's autoincrement needs exactly INTEGER PRIMARY KEY.
BigId = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    # Named constraints: SQLite's batch migrations can only drop or alter what has a name.
    metadata = MetaData(
        naming_convention={
            "ix": "ix_%(column_0_label)s",
            "uq": "uq_%(table_name)s_%(column_0_name)s",
            "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        }
    )


class JourneyRow(Base):
    __tablename__ = "journeys"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    flow: Mapped[str] = mapped_column(String(64))
    flow_version: Mapped[str] = mapped_column(String(16))
    channel: Mapped[str] = mapped_column(String(16))
    step: Mapped[str | None] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), index=True)
    caller: Mapped[str | None] = mapped_column(String(32), index=True)
    customer_id: Mapped[str | None] = mapped_column(String(64), index=True)
    data: Mapped[dict[str, Any]] = mapped_column(JSON)
    started_at: Mapped[float] = mapped_column(Float)
    updated_at: Mapped[float] = mapped_column(Float, index=True)

    # the caller's profile: their latest journeys, newest first, off the index
    __table_args__ = (Index("ix_journeys_customer_updated", "customer_id", "updated_at"),)


class InteractionRow(Base):
    """One event on one channel: call started, step entered, option chosen, queued, message sent, ..."""

    __tablename__ = "interactions"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    journey_id: Mapped[str] = mapped_column(String(32))
    customer_id: Mapped[str | None] = mapped_column(String(64))
    channel: Mapped[str] = mapped_column(String(16))
    kind: Mapped[str] = mapped_column(String(32))
    step: Mapped[str | None] = mapped_column(String(64))
    data: Mapped[dict[str, Any]] = mapped_column(JSON)
    at: Mapped[float] = mapped_column(Float)

    __table_args__ = (
        Index("ix_interactions_journey", "journey_id", "id"),
        # the timeline: one customer's events, newest first, with a stable (at, id) cursor
        Index("ix_interactions_customer_at", "customer_id", "at", "id"),
        # the funnel: which journeys moved into another flow (a few entries in a hundred)
        Index(
            "ix_interactions_flow_entered",
            "journey_id",
            postgresql_where=text("kind = 'flow_entered'"),
            sqlite_where=text("kind = 'flow_entered'"),
        ),
    )


class CustomerRow(Base):
    __tablename__ = "customers"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    display_name: Mapped[str | None] = mapped_column(String(200))
    email: Mapped[str | None] = mapped_column(String(320))
    crm_id: Mapped[str | None] = mapped_column(String(64), unique=True)
    tier: Mapped[str | None] = mapped_column(String(32))
    language: Mapped[str | None] = mapped_column(String(16))
    verified: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    created_at: Mapped[float] = mapped_column(Float)
    updated_at: Mapped[float] = mapped_column(Float)


class CustomerIdentityRow(Base):
    """How a contact is recognised: (kind, normalised value) -> one customer."""

    __tablename__ = "customer_identities"

    kind: Mapped[str] = mapped_column(String(16), primary_key=True)  # phone | email | crm
    value: Mapped[str] = mapped_column(String(320), primary_key=True)  # phone in E.164, e-mail lower-cased
    customer_id: Mapped[str] = mapped_column(String(32), ForeignKey("customers.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[float] = mapped_column(Float)


class OptionStatRow(Base):
    """How often and how recently a customer chose one option of one menu (decayed as of last_at)."""

    __tablename__ = "option_stats"

    customer_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("customers.id", ondelete="CASCADE"), primary_key=True
    )
    flow: Mapped[str] = mapped_column(String(64), primary_key=True)
    step: Mapped[str] = mapped_column(String(64), primary_key=True)
    option: Mapped[str] = mapped_column(String(64), primary_key=True)
    count: Mapped[int] = mapped_column(Integer)
    score: Mapped[float] = mapped_column(Float)
    last_at: Mapped[float] = mapped_column(Float)


class CustomerSlotRow(Base):
    """The last value a customer gave for a slot, on any channel. Secret slots are never here."""

    __tablename__ = "customer_slots"

    customer_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("customers.id", ondelete="CASCADE"), primary_key=True
    )
    slot: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(String(256))
    channel: Mapped[str] = mapped_column(String(16))
    at: Mapped[float] = mapped_column(Float)


class AgentRow(Base):
    """A person who answers contacts: login, scrypt password hash, softphone endpoint, skills."""

    __tablename__ = "agents"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    display_name: Mapped[str] = mapped_column(String(200))
    password_hash: Mapped[str] = mapped_column(String(256))
    endpoint: Mapped[str] = mapped_column(String(64))  # PJSIP endpoint of the softphone, e.g. agent1001
    skills: Mapped[dict[str, Any]] = mapped_column(JSON)  # skill -> penalty (0 = primary)
    max_chats: Mapped[int] = mapped_column(Integer, default=3, server_default="3")
    disabled: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    role: Mapped[str] = mapped_column(String(16), default="agent", server_default="agent")  # or "supervisor"
    # what rings for an agent: "sip" (a SIP phone registered as endpoint) or "browser" (the desktop, WebRTC)
    phone: Mapped[str] = mapped_column(String(16), default="sip", server_default="sip")
    created_at: Mapped[float] = mapped_column(Float)
    updated_at: Mapped[float] = mapped_column(Float)


class AgentSessionRow(Base):
    """A desktop login. Only the SHA-256 of the cookie token is stored."""

    __tablename__ = "agent_sessions"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    agent_id: Mapped[str] = mapped_column(String(32), ForeignKey("agents.id", ondelete="CASCADE"), index=True)
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[float] = mapped_column(Float)
    expires_at: Mapped[float] = mapped_column(Float)


class CallbackRow(Base):
    """A virtual queue ticket: the caller hung up but keeps their place (``ticket_at``)."""

    __tablename__ = "callbacks"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    customer_id: Mapped[str | None] = mapped_column(String(64))
    # == customer_id while the ticket is open, NULL once closed: one open callback per customer
    open_customer: Mapped[str | None] = mapped_column(String(64), unique=True)
    journey_id: Mapped[str] = mapped_column(String(32))
    phone: Mapped[str] = mapped_column(String(32))
    queue: Mapped[str] = mapped_column(String(64))
    skill: Mapped[str] = mapped_column(String(64))
    priority: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    status: Mapped[str] = mapped_column(String(16))  # waiting | dialing | connected | done | failed | cancelled
    ticket_at: Mapped[float] = mapped_column(Float)
    not_before: Mapped[float] = mapped_column(Float)
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    context: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[float] = mapped_column(Float)
    updated_at: Mapped[float] = mapped_column(Float)
    #: the fencing token of the ACD leader that claimed it for its latest dial (``leases``)
    dial_token: Mapped[int | None] = mapped_column(BigInteger)

    __table_args__ = (Index("ix_callbacks_status", "status", "queue", "ticket_at"),)


class LeaseRow(Base):
    """Who may do a thing only one controller node may do (``acd``), until ``expires_at``.

    ``token`` grows by one each time the lease changes hands: the fencing token its holder stamps
    on what it claims, so a holder that lost the lease cannot act on the same rows as its successor.
    """

    __tablename__ = "leases"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    holder: Mapped[str] = mapped_column(String(128))
    token: Mapped[int] = mapped_column(BigInteger)
    expires_at: Mapped[float] = mapped_column(Float)


class ContinuationRow(Base):
    """A link that continues a journey on another channel; usable once (``claimed_at``); its page
    first opened at ``opened_at`` (the continuation funnel logs that first open only)."""

    __tablename__ = "continuations"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    journey_id: Mapped[str] = mapped_column(String(32), index=True)
    customer_id: Mapped[str | None] = mapped_column(String(64))
    channel: Mapped[str] = mapped_column(String(16))
    step: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[float] = mapped_column(Float)
    expires_at: Mapped[float] = mapped_column(Float)
    claimed_at: Mapped[float | None] = mapped_column(Float)
    opened_at: Mapped[float | None] = mapped_column(Float)
    session_hash: Mapped[str | None] = mapped_column(String(64), index=True)

    # the caller's profile: their newest link
    __table_args__ = (Index("ix_continuations_customer_created", "customer_id", "created_at"),)


class ContactFactRow(Base):
    """One contact (journey) as the KPIs see it, folded from the log by the journey writer.

    ``ivr.kpis`` says what each column means and how a batch of events merges into it (earliest
    "first" times with their values, counts added, holdout the highest); reports group these rows
    in SQL instead of scanning the log.
    """

    __tablename__ = "contact_facts"
    # repeat contacts: a customer's earlier contacts, found by start time; callbacks' kept place:
    # who joined a queue after a booking, found by queue and time
    __table_args__ = (
        Index("ix_contact_facts_customer_started", "customer_id", "started_at"),
        Index("ix_contact_facts_queue_queued", "queue", "queued_at"),
        # the few contacts whose callback was dialled, by start: "kept its place" is counted from
        # them per report, beside the 15-minute sums (ivr.store.kpis)
        Index(
            "ix_contact_facts_callback_dialled",
            "started_at",
            postgresql_where=text("callback_dialled_at IS NOT NULL"),
            sqlite_where=text("callback_dialled_at IS NOT NULL"),
        ),
    )

    journey_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    started_at: Mapped[float | None] = mapped_column(Float, index=True)
    channel: Mapped[str | None] = mapped_column(String(16))
    flow: Mapped[str | None] = mapped_column(String(64))
    ended_at: Mapped[float | None] = mapped_column(Float)
    ended: Mapped[str | None] = mapped_column(String(16))
    ended_step: Mapped[str | None] = mapped_column(String(64))
    sent_at: Mapped[float | None] = mapped_column(Float)
    sent_from: Mapped[str | None] = mapped_column(String(16))
    sent_to: Mapped[str | None] = mapped_column(String(16))
    opened_at: Mapped[float | None] = mapped_column(Float)
    claimed_at: Mapped[float | None] = mapped_column(Float)
    completed_at: Mapped[float | None] = mapped_column(Float)
    callback_at: Mapped[float | None] = mapped_column(Float)
    callback_queue: Mapped[str | None] = mapped_column(String(64))
    callback_dials: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    callback_dialled_at: Mapped[float | None] = mapped_column(Float)
    callback_connected_at: Mapped[float | None] = mapped_column(Float)
    callback_failed_at: Mapped[float | None] = mapped_column(Float)
    customer_id: Mapped[str | None] = mapped_column(String(64))
    queued_at: Mapped[float | None] = mapped_column(Float)
    queue: Mapped[str | None] = mapped_column(String(64))
    skill: Mapped[str | None] = mapped_column(String(64))
    queue_reason: Mapped[str | None] = mapped_column(String(16))
    exhausted_at: Mapped[float | None] = mapped_column(Float)
    exhausted_by: Mapped[str | None] = mapped_column(String(16))
    answered_at: Mapped[float | None] = mapped_column(Float)
    agent_id: Mapped[str | None] = mapped_column(String(64))
    agent_ended_at: Mapped[float | None] = mapped_column(Float)
    abandoned_at: Mapped[float | None] = mapped_column(Float)
    menu_at: Mapped[float | None] = mapped_column(Float)
    chosen_at: Mapped[float | None] = mapped_column(Float)
    transfers: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    choices: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    first_choices: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    no_match: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    no_input: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    holdout: Mapped[int | None] = mapped_column(Integer)  # 1 holdout, 0 personalized, NULL neither
    speech_heard: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    speech_recognised: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    speech_no_input: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    confirmations: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    confirmed: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    speech_choices: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    key_choices: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # another contact of the same customer started in the 24 h (7 days) before this one: kept by
    # the writer (ivr.store.kpi_sums), so a report never probes a customer's history per contact
    repeat_24h: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    repeat_7d: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # an agent's transfers that took, by mode; a click-to-call (its agent, answered or not)
    agent_transfers_blind: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    agent_transfers_consult: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    outbound_at: Mapped[float | None] = mapped_column(Float)
    outbound_agent: Mapped[str | None] = mapped_column(String(64))
    outbound_answered_at: Mapped[float | None] = mapped_column(Float)


#: What ``kpi_sums`` adds up per group: the counts and sums of ``ivr.kpis.GroupSums`` (its two
#: mappings one column per key: ``contained_<end>``, ``reason_<why>``); ``within_sl`` comes from
#: ``kpi_waits`` instead, since the service level's threshold is a setting, not a stored fact.
KPI_COUNTS = (
    "contacts",
    "offered",
    "handled",
    "abandoned",
    "handle_n",
    "contained_abandoned",
    "contained_completed",
    "contained_failed",
    "contained_handed_off",
    "choices",
    "first_choices",
    "to_choice_n",
    "no_match",
    "no_input",
    "speech_contacts",
    "speech_heard",
    "speech_recognised",
    "speech_no_input",
    "confirmations",
    "confirmed",
    "speech_choices",
    "fell_back",
    "reason_no_input",
    "reason_no_match",
    "reason_asked_for_agent",
    "reason_flow",
    "left_in_flow",
    "links_sent",
    "links_opened",
    "links_claimed",
    "links_completed",
    "callbacks_booked",
    "callbacks_dialled",
    "callback_dials",
    "callbacks_answered",
    "callbacks_failed",
    "known_contacts",
    "repeat_24h",
    "repeat_7d",
    "agent_transfers_blind",
    "agent_transfers_consult",
    "outbound_calls",
    "outbound_answered",
)
KPI_SECONDS = ("abandon_s", "wait_s", "handle_s", "to_choice_s", "callback_wait_s")


#: A group of ``kpi_sums`` / ``kpi_waits``: which grouping (``dim``: ``all`` for interval, flow and
#: holdout, else the dimension's name), the 15-minute slot, the key along it, the flow ("" for
#: none) and the holdout label. The primary key leads with ``dim`` and ``slot``: a report reads
#: one range of it.
def _kpi_group() -> list[Column[Any]]:
    return [
        Column("dim", String(8), primary_key=True),
        Column("slot", Float, primary_key=True),
        Column("key", String(160), primary_key=True),
        Column("flow", String(64), primary_key=True),
        Column("holdout", String(16), primary_key=True),
    ]


KpiSums = Table(
    "kpi_sums",
    Base.metadata,
    *_kpi_group(),
    *(Column(name, Integer, nullable=False, server_default="0") for name in KPI_COUNTS),
    *(Column(name, Float, nullable=False, server_default="0") for name in KPI_SECONDS),
)
KpiWaits = Table(
    "kpi_waits",
    Base.metadata,
    *_kpi_group(),
    Column("second", Integer, primary_key=True),  # floor of the wait
    Column("n", Integer, nullable=False, server_default="0"),  # handled contacts that waited that second
    Column("n_whole", Integer, nullable=False, server_default="0"),  # ... of them exactly that many seconds
)


class FlowVersionRow(Base):
    """Every version of a flow file the studio published or found on disk, numbered per flow.

    ``(flow, number)`` is unique: two nodes publishing over the same version both try the same
    next number and the database keeps one, so a race is a conflict, never a silent overwrite.
    """

    __tablename__ = "flow_versions"
    __table_args__ = (UniqueConstraint("flow", "number", name="uq_flow_versions_flow_number"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    flow: Mapped[str] = mapped_column(String(64))
    number: Mapped[int] = mapped_column(Integer)
    version: Mapped[str] = mapped_column(String(16))
    text: Mapped[str] = mapped_column(Text)
    diff: Mapped[str] = mapped_column(Text)
    author: Mapped[str] = mapped_column(String(64))
    source: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[float] = mapped_column(Float)


class FlowAuditRow(Base):
    """Who published or rolled back which flow, when: append-only."""

    __tablename__ = "flow_audit"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    at: Mapped[float] = mapped_column(Float, index=True)
    actor: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(16))
    flow: Mapped[str] = mapped_column(String(64))
    number: Mapped[int] = mapped_column(Integer)
    version: Mapped[str] = mapped_column(String(16))
    detail: Mapped[str] = mapped_column(String(256))
