"""Flow versions and the studio's audit log in the database (tables of migration r0009).

Why versions are numbered per flow and the number is unique: a publish records "version n + 1"
where n is the newest version its author saw; two publishes from the same base, on one node or two,
both ask for the same number and the database keeps exactly one (``VersionConflict`` for the
other). The file on disk stays the source of truth: a text found there that is not the newest
recorded one is recorded as a version of its own (source ``disk``, author ``(on disk)``), so an
edit made with git or an editor shows up in the history and can be rolled back to like any other.
"""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import func, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ivr.errors import StoreError
from ivr.flow.publishing import diff
from ivr.store.models import FlowAuditRow, FlowVersionRow
from ivr.store.turns import writing

ON_DISK = "(on disk)"


class VersionConflict(StoreError):
    """Another version was recorded after the one this change started from."""


def _version(row: Any, *, text: bool = False) -> dict[str, Any]:
    out = {
        "number": row.number,
        "version": row.version,
        "author": row.author,
        "source": row.source,
        "created_at": row.created_at,
    }
    if text:
        out["text"] = row.text
        out["diff"] = row.diff
    return out


class FlowVersionStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def latest(self, flow: str, *, text: bool = False) -> dict[str, Any] | None:
        async with self.engine.connect() as conn:
            row = await self._latest(conn, flow)
        return _version(row, text=text) if row is not None else None

    @staticmethod
    async def _latest(conn: AsyncConnection, flow: str) -> Any:
        query = select(FlowVersionRow).where(FlowVersionRow.flow == flow).order_by(FlowVersionRow.number.desc())
        return (await conn.execute(query.limit(1))).first()

    async def latest_of_all(self) -> dict[str, dict[str, Any]]:
        """The newest recorded version of every flow, by flow name."""
        newest = (
            select(FlowVersionRow.flow, func.max(FlowVersionRow.number).label("number"))
            .group_by(FlowVersionRow.flow)
            .subquery()
        )
        query = select(FlowVersionRow).join(
            newest, (FlowVersionRow.flow == newest.c.flow) & (FlowVersionRow.number == newest.c.number)
        )
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return {r.flow: _version(r) for r in rows}

    async def history(self, flow: str, limit: int = 100) -> list[dict[str, Any]]:
        query = select(FlowVersionRow).where(FlowVersionRow.flow == flow).order_by(FlowVersionRow.number.desc())
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query.limit(limit))).all()
        return [_version(r) for r in rows]

    async def get(self, flow: str, number: int) -> dict[str, Any] | None:
        query = select(FlowVersionRow).where(FlowVersionRow.flow == flow, FlowVersionRow.number == number)
        async with self.engine.connect() as conn:
            row = (await conn.execute(query)).first()
        return _version(row, text=True) if row is not None else None

    async def record(
        self,
        flow: str,
        *,
        text: str,
        version: str,
        author: str,
        source: str,
        after: int,
        action: str | None = None,
        detail: str = "",
    ) -> dict[str, Any]:
        """Record ``text`` as version ``after + 1`` of ``flow`` (``after``: the newest number the
        author saw, 0 for none), with an audit line when ``action`` is given; VersionConflict when
        a version after ``after`` exists already."""
        now = time.time()
        try:
            async with writing(self.engine) as conn:
                previous = await self._latest(conn, flow)
                if (previous.number if previous is not None else 0) != after:
                    raise VersionConflict(f"flow {flow}: version {after} is no longer the newest")
                values = {
                    "flow": flow,
                    "number": after + 1,
                    "version": version,
                    "text": text,
                    "diff": diff(previous.text if previous is not None else "", text, flow),
                    "author": author,
                    "source": source,
                    "created_at": now,
                }
                await conn.execute(insert(FlowVersionRow).values(**values))
                if action is not None:
                    await conn.execute(
                        insert(FlowAuditRow).values(
                            at=now,
                            actor=author,
                            action=action,
                            flow=flow,
                            number=after + 1,
                            version=version,
                            detail=detail[:256],
                        )
                    )
        except IntegrityError:
            raise VersionConflict(f"flow {flow}: another version {after + 1} was recorded first") from None
        return {k: v for k, v in values.items() if k not in ("text", "flow")}

    async def sync_disk(self, flow: str, text: str, version: str) -> dict[str, Any]:
        """The newest version, after recording the file's ``text`` if it is not that version."""
        latest = await self.latest(flow)
        if latest is not None and latest["version"] == version:
            return latest
        try:
            return await self.record(
                flow,
                text=text,
                version=version,
                author=ON_DISK,
                source="disk",
                after=latest["number"] if latest else 0,
            )
        except VersionConflict:  # another request recorded it (or something newer) meanwhile
            found = await self.latest(flow)
            assert found is not None
            return found

    async def audit(self, flow: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        query = select(FlowAuditRow).order_by(FlowAuditRow.id.desc())
        if flow is not None:
            query = query.where(FlowAuditRow.flow == flow)
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query.limit(limit))).mappings().all()
        return [dict(r) for r in rows]
