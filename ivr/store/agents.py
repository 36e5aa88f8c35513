"""Agents, desktop sessions and callback tickets in the database (tables of migration r0003).

The SQL for the ACD lives here, next to the code that uses it, over the same engine as the
journey store. Passwords arrive already hashed (``ivr.web.agents_auth.hash_password``).
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from sqlalchemy import delete, exists, insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from ivr.errors import StoreError
from ivr.store.models import AgentRow, AgentSessionRow, CallbackRow, LeaseRow
from ivr.store.turns import writing

SESSION_TTL = 12 * 3600.0
#: What a login may open: the agent desktop, the supervisor pages, or the flow studio (one role per login).
ROLES = ("agent", "supervisor", "admin")
#: What rings for an agent (``ivr.acd.sipcreds``): a SIP phone on their endpoint, or the desktop.
PHONES = ("sip", "browser")


def _agent(row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "username": row.username,
        "display_name": row.display_name,
        "endpoint": row.endpoint,
        "skills": dict(row.skills or {}),
        "max_chats": row.max_chats,
        "disabled": bool(row.disabled),
        "role": row.role,
        "phone": row.phone,
    }


class AgentStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def add(
        self,
        *,
        username: str,
        display_name: str,
        password_hash: str,
        endpoint: str,
        skills: dict[str, int],
        max_chats: int = 3,
        agent_id: str | None = None,
        role: str = "agent",
        phone: str = "sip",
    ) -> str:
        if role not in ROLES:
            raise StoreError(f"role must be one of {', '.join(ROLES)}, not {role!r}")
        if phone not in PHONES:
            raise StoreError(f"phone must be one of {', '.join(PHONES)}, not {phone!r}")
        now = time.time()
        agent_id = agent_id or uuid.uuid4().hex[:12]
        try:
            async with writing(self.engine) as conn:
                await conn.execute(
                    insert(AgentRow).values(
                        id=agent_id,
                        username=username,
                        display_name=display_name,
                        password_hash=password_hash,
                        endpoint=endpoint,
                        skills=skills,
                        max_chats=max_chats,
                        disabled=False,
                        role=role,
                        phone=phone,
                        created_at=now,
                        updated_at=now,
                    )
                )
        except IntegrityError:
            raise StoreError(f"agent {username!r} already exists") from None
        return agent_id

    async def by_username(self, username: str) -> tuple[dict[str, Any], str] | None:
        """(agent, password hash) for a login attempt."""
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(AgentRow).where(AgentRow.username == username))).first()
        return (_agent(row), row.password_hash) if row else None

    async def get(self, agent_id: str) -> dict[str, Any] | None:
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(AgentRow).where(AgentRow.id == agent_id))).first()
        return _agent(row) if row else None

    async def all(self) -> list[dict[str, Any]]:
        async with self.engine.connect() as conn:
            rows = (await conn.execute(select(AgentRow).order_by(AgentRow.username))).all()
        return [_agent(r) for r in rows]

    async def set_password(self, username: str, password_hash: str) -> bool:
        async with writing(self.engine) as conn:
            result = await conn.execute(
                update(AgentRow)
                .where(AgentRow.username == username)
                .values(password_hash=password_hash, updated_at=time.time())
            )
            await conn.execute(
                delete(AgentSessionRow).where(
                    AgentSessionRow.agent_id.in_(select(AgentRow.id).where(AgentRow.username == username))
                )
            )
        return bool(result.rowcount)

    async def set_phone(self, username: str, phone: str) -> bool:
        """Change what rings for an agent, and end their sessions: the queues learn the new phone
        when the desktop signs in again. False if there is no such agent."""
        if phone not in PHONES:
            raise StoreError(f"phone must be one of {', '.join(PHONES)}, not {phone!r}")
        async with writing(self.engine) as conn:
            result = await conn.execute(
                update(AgentRow).where(AgentRow.username == username).values(phone=phone, updated_at=time.time())
            )
            await conn.execute(
                delete(AgentSessionRow).where(
                    AgentSessionRow.agent_id.in_(select(AgentRow.id).where(AgentRow.username == username))
                )
            )
        return bool(result.rowcount)

    async def set_disabled(self, username: str, disabled: bool) -> bool:
        """Disable (and end every session of) or enable an agent; False if there is no such agent."""
        async with writing(self.engine) as conn:
            result = await conn.execute(
                update(AgentRow).where(AgentRow.username == username).values(disabled=disabled, updated_at=time.time())
            )
            if disabled:
                await conn.execute(
                    delete(AgentSessionRow).where(
                        AgentSessionRow.agent_id.in_(select(AgentRow.id).where(AgentRow.username == username))
                    )
                )
        return bool(result.rowcount)

    # ------------------------------------------------------------------ sessions

    async def create_session(self, agent_id: str, token_hash: str, csrf: str, ttl: float = SESSION_TTL) -> None:
        now = time.time()
        async with writing(self.engine) as conn:
            await conn.execute(delete(AgentSessionRow).where(AgentSessionRow.expires_at < now))
            await conn.execute(
                insert(AgentSessionRow).values(
                    token_hash=token_hash, agent_id=agent_id, csrf_token=csrf, created_at=now, expires_at=now + ttl
                )
            )

    async def session(self, token_hash: str) -> tuple[dict[str, Any], str] | None:
        """(agent, csrf token) of a live session, or None (unknown, expired, or agent disabled)."""
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(
                    select(AgentRow.__table__, AgentSessionRow.csrf_token, AgentSessionRow.expires_at)
                    .join(AgentSessionRow, AgentSessionRow.agent_id == AgentRow.id)
                    .where(AgentSessionRow.token_hash == token_hash)
                )
            ).first()
        if row is None or row.expires_at < time.time() or row.disabled:
            return None
        return _agent(row), row.csrf_token

    async def end_session(self, token_hash: str) -> None:
        async with writing(self.engine) as conn:
            await conn.execute(delete(AgentSessionRow).where(AgentSessionRow.token_hash == token_hash))


class CallbackStore:
    """Virtual queue tickets. ``open_customer`` makes "one open callback per customer" a constraint."""

    OPEN = ("waiting", "dialing")

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def open(
        self,
        *,
        customer_id: str | None,
        journey_id: str,
        phone: str,
        queue: str,
        skill: str,
        priority: int,
        ticket_at: float,
        not_before: float,
        context: dict[str, Any],
    ) -> str | None:
        """The new ticket's id, or None when this customer already has an open one."""
        now = time.time()
        ticket = uuid.uuid4().hex
        try:
            async with writing(self.engine) as conn:
                await conn.execute(
                    insert(CallbackRow).values(
                        id=ticket,
                        customer_id=customer_id,
                        open_customer=customer_id,
                        journey_id=journey_id,
                        phone=phone,
                        queue=queue,
                        skill=skill,
                        priority=priority,
                        status="waiting",
                        ticket_at=ticket_at,
                        not_before=not_before,
                        attempts=0,
                        context=context,
                        created_at=now,
                        updated_at=now,
                    )
                )
        except IntegrityError:
            return None
        return ticket

    async def waiting(self, queue: str | None = None) -> list[dict[str, Any]]:
        query = select(CallbackRow.__table__).where(CallbackRow.status.in_(self.OPEN))
        if queue:
            query = query.where(CallbackRow.queue == queue)
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query.order_by(CallbackRow.ticket_at))).mappings().all()
        return [dict(r) for r in rows]

    async def postpone(self, ticket: str, not_before: float) -> None:
        async with writing(self.engine) as conn:
            await conn.execute(
                update(CallbackRow)
                .where(CallbackRow.id == ticket)
                .values(not_before=not_before, updated_at=time.time())
            )

    async def set_status(self, ticket: str, status: str, *, attempts: int | None = None) -> None:
        values: dict[str, Any] = {"status": status, "updated_at": time.time()}
        if status not in self.OPEN:
            values["open_customer"] = None
        if attempts is not None:
            values["attempts"] = attempts
        async with writing(self.engine) as conn:
            await conn.execute(update(CallbackRow).where(CallbackRow.id == ticket).values(**values))

    async def claim(self, ticket: str, *, attempts: int, lease: str | None = None, token: int | None = None) -> bool:
        """Take a waiting ticket for dialling (status ``dialing``, attempt ``attempts``): True for
        exactly one caller, however many race for it.

        With a fencing ``token``, the same statement also requires that token to still hold the
        lease ``lease`` (and stamps it on the ticket): a node that lost the ACD lease without
        knowing it yet (stalled, cut off from its peers) claims nothing, so a ticket is never
        dialled by two leaders."""
        now = time.time()
        query = update(CallbackRow).where(CallbackRow.id == ticket, CallbackRow.status == "waiting")
        if token is not None:
            query = query.where(
                exists().where(LeaseRow.name == lease, LeaseRow.token == token, LeaseRow.expires_at > now)
            )
        async with writing(self.engine) as conn:
            result = await conn.execute(
                query.values(status="dialing", attempts=attempts, dial_token=token, updated_at=now)
            )
        return bool(result.rowcount)

    async def orphaned(self, token: int, *, before: float) -> list[dict[str, Any]]:
        """Tickets left ``dialing`` by an earlier leader (a token below ``token``, or none) and not
        touched since ``before``: their dial's outcome went to a node that is gone."""
        query = select(CallbackRow.__table__).where(
            CallbackRow.status == "dialing",
            or_(CallbackRow.dial_token.is_(None), CallbackRow.dial_token < token),
            CallbackRow.updated_at < before,
        )
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query)).mappings().all()
        return [dict(r) for r in rows]

    async def requeue(self, ticket: str, *, dial_token: int | None, status: str = "waiting") -> bool:
        """Put an orphaned ticket back to ``waiting`` (or settle it as ``done``: it reached an
        agent) unless it moved on meanwhile, compared on the token it was dialled under."""
        query = update(CallbackRow).where(CallbackRow.id == ticket, CallbackRow.status == "dialing")
        if dial_token is None:
            query = query.where(CallbackRow.dial_token.is_(None))
        else:
            query = query.where(CallbackRow.dial_token == dial_token)
        values: dict[str, Any] = {"status": status, "updated_at": time.time()}
        if status not in self.OPEN:
            values["open_customer"] = None
        async with writing(self.engine) as conn:
            result = await conn.execute(query.values(**values))
        return bool(result.rowcount)
