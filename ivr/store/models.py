"""Tables. Only ``ivr.store`` knows SQL; everything else sees ``Journey`` and plain dicts.

``journeys`` holds the latest snapshot of each journey (its full plain-data form in ``data``, plus
indexed columns for lookups); ``interactions`` is the append-only log of everything that happened,
on every channel, which timelines and metrics are computed from.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, Float, Index, Integer, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


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


class InteractionRow(Base):
    __tablename__ = "interactions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    journey_id: Mapped[str] = mapped_column(String(32))
    customer_id: Mapped[str | None] = mapped_column(String(64))
    channel: Mapped[str] = mapped_column(String(16))
    kind: Mapped[str] = mapped_column(String(32))
    step: Mapped[str | None] = mapped_column(String(64))
    data: Mapped[dict[str, Any]] = mapped_column(JSON)
    at: Mapped[float] = mapped_column(Float)

    __table_args__ = (
        Index("ix_interactions_journey", "journey_id", "id"),
        Index("ix_interactions_customer_at", "customer_id", "at"),
    )
